"""SVG clipart: parsing, keypoints, mesh, deformation, rasterisation. Never imports ComfyUI.

The pieces a motion method builds on (the procedural presets here, the text-guided AniClipart
optimiser in ``pipelines/aniclipart``, which renders through ``ClipartRig.render`` and returns the
same ``ClipartAnimation``)::

    from comfyui_animate_suite import svg

    clipart = svg.load_clipart("man_dance_scaled.svg")      # parse + side files (or detection) + rig
    rig = clipart.rig                                        # ClipartRig: keypoints [K,2], bones, mesh(es), ARAP
    control = svg.init_bezier(rig.keypoints, 0.01, 256, 256) # [K,4,2] AniClipart's initial trajectories
    poses = svg.bezier_poses(control, svg.sample_times(24, 2))   # [T,K,2], differentiable
    points = svg.deform(rig, poses)                          # [T,P,2] drawing points, differentiable
    rgba = svg.rasterise(rig.layout, points, 256)            # [T,256,256,4], differentiable
    images = rig.render(poses)                               # both steps, on white: [T,256,256,3]
    frames = points[svg.frame_to_pose(len(poses), 2)]        # the looped clip
    loss = 25 * svg.skeleton_length_loss(poses, rig.bones, svg.bone_lengths(rig.keypoints, rig.bones))
"""

from .animate import (Clipart, ClipartAnimation, animate_procedural, animation_from_record, animation_svg,
                      frame_svgs, load_clipart, motion_record, render_animation, rig_drawing, rig_preview)
from .autorig import detect_keypoints
from .document import Drawing, ShapeGroup, load_svg, parse_svg
from .export import MotionRecord, animated_svg, frame_svg, motion_json, parse_motion_json
from .motion import PRESETS, MotionSettings
from .paths import PathLayout, layout_drawing
from .raster import rasterise
from .rig import ClipartRig, RigSettings, build_rig, deform, rig_from_mesh
from .rigfiles import find_side_files, read_keypoint_file, read_layer_file, read_skeleton_file
from .skeleton import bone_lengths, skeleton_length_loss
from .trajectories import bezier_poses, fix_start, frame_to_pose, init_bezier, sample_times

__all__ = [
    "Clipart", "ClipartAnimation", "ClipartRig", "Drawing", "MotionRecord", "MotionSettings", "PRESETS", "PathLayout",
    "RigSettings", "ShapeGroup", "animate_procedural", "animated_svg", "animation_from_record", "animation_svg",
    "bezier_poses", "bone_lengths", "build_rig", "deform", "detect_keypoints", "find_side_files", "fix_start",
    "frame_svg", "frame_svgs", "frame_to_pose", "init_bezier", "layout_drawing", "load_clipart", "load_svg",
    "motion_json", "motion_record", "parse_motion_json", "parse_svg", "rasterise", "read_keypoint_file",
    "read_layer_file", "read_skeleton_file", "render_animation", "rig_drawing", "rig_from_mesh", "rig_preview",
    "sample_times", "skeleton_length_loss",
]
