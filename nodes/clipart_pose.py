"""AniClipart additions: clipart driven by a human pose sequence, and the Lottie save node.

Animate Clipart from Pose takes the ``ANIMATESUITE_CLIPART`` of Load Clipart SVG and a ``POSE_KEYPOINT``
(DWPose Estimator, Load Pose JSON or another pack) and returns the same ``ANIMATESUITE_CLIPART_ANIMATION``
the procedural node does, so Render Clipart Animation, Save Clipart SVG and Save Clipart Lottie work
unchanged. The retargeting lives in ``svg/retarget.py``, the Lottie writer in ``svg/lottie.py``.
"""

from __future__ import annotations

import logging
import os

from ..core.errors import InputError
from . import comfy_bridge
from .clipart import CATEGORY, CLIPART, CLIPART_ANIMATION

io = comfy_bridge.io
log = logging.getLogger("animate_suite")
POSE_KEYPOINT = comfy_bridge.POSE_KEYPOINT
LOTTIE_FORMATS = ("lottie (dotLottie)", "json (Lottie JSON)")


class AnimateSuiteAnimateClipartFromPose(io.ComfyNode):
    DISPLAY_NAME = "Animate Clipart from Pose (Animate Suite)"

    @classmethod
    def define_schema(cls):
        from ..svg.retarget import FOLLOW, JOINTS, NO_PERSON

        return comfy_bridge.schema(
            cls, "Drives the clipart's keypoints with a human pose sequence (POSE_KEYPOINT from DWPose Estimator, "
            "Load Pose JSON or another pack), one animation frame per pose frame (CPU, seconds). Body joints are "
            "mapped onto the clipart's keypoints automatically for a human-like skeleton (two arms, two legs), "
            "else from the map text. The clipart keeps its bone lengths and takes the driver's joint angles; "
            "jitter is smoothed, frames without a person are interpolated or held. The map output shows the "
            "map used: copy it into 'map', edit and run again.", CATEGORY,
            inputs=[
                CLIPART.Input("clipart", tooltip="Clipart from Load Clipart SVG or Clipart Keypoints."),
                POSE_KEYPOINT.Input("pose_keypoint", tooltip="The driving poses, one per frame (the best person of each frame drives)."),
                io.Float.Input("fps", default=12.0, min=1.0, max=60.0, step=1.0,
                               tooltip="Frames per second of the animation (use the driving video's)."),
                io.Int.Input("smoothing", default=2, min=0, max=30,
                             tooltip="Frames each side averaged to remove jitter (Smooth Pose's radius); 0: none."),
                io.Boolean.Input("loop", default=False, tooltip="Bend the last frames towards the first so the clip repeats seamlessly."),
                io.String.Input("map", multiline=True, default="", optional=True,
                                tooltip="Empty: automatic for human-like skeletons. Else one 'keypoint joint' per line, e.g. "
                                        "'3 right_elbow' (joints: " + ", ".join(JOINTS) + "). The figure's left in the "
                                        "picture is the driver's right."),
                comfy_bridge.combo("follow", FOLLOW, "motion: the driver's changes since its first frame are added to the drawn pose "
                                   "(frame 0 is the artwork). pose: the figure takes the driver's bone directions "
                                   "(folds art drawn in a very different pose).", default=FOLLOW[0], optional=True),
                comfy_bridge.combo("no_person", NO_PERSON, "Frames without a person (or a joint): interpolate between the frames "
                                   "around them, or hold the last.", default=NO_PERSON[0], optional=True),
                io.Float.Input("move", default=1.0, min=0.0, max=5.0, step=0.05, optional=True,
                               tooltip="How far the figure follows the driver across the picture (0: stays in place)."),
            ],
            outputs=[comfy_bridge.output(CLIPART_ANIMATION, "animation", "Keypoint positions per frame with the rig (render or save it)."),
                     comfy_bridge.output(io.Float, "fps", "Frames per second."),
                     comfy_bridge.output(io.String, "map", "The map used: 'keypoint joint' per line.")])

    @classmethod
    def execute(cls, clipart, pose_keypoint, fps, smoothing, loop, map="", follow="motion", no_person="interpolate", move=1.0):
        from ..pose.openpose_json import from_pose_keypoint
        from ..svg import retarget
        from ..svg.animate import folds

        frames = from_pose_keypoint(pose_keypoint, "pose_keypoint")
        mapping = retarget.parse_map(map, clipart.rig.num_keypoints) if map.strip() else None
        settings = retarget.RetargetSettings(float(fps), int(smoothing), no_person=no_person, loop=bool(loop),
                                             follow=follow, move=float(move))
        animation = retarget.animate_from_pose(clipart.rig, frames, mapping, settings, clipart.name, clipart.svg_sha256)
        if animation.motion["frames_without_person"]:
            log.warning("Animate Clipart from Pose: %d of %d frames show no person (%s)",
                        len(animation.motion["frames_without_person"]), len(frames), no_person)
        if folds(clipart.rig, animation.keypoints):
            log.warning("Animate Clipart from Pose: some poses fold the artwork (follow=%s); try the other follow or a map", follow)
        used = {int(k): retarget.joint_index(v) for k, v in animation.motion["map"].items()}
        return io.NodeOutput(animation, float(fps), retarget.map_text(used))


class AnimateSuiteSaveClipartLottie(io.ComfyNode):
    DISPLAY_NAME = "Save Clipart Lottie (Animate Suite)"

    @classmethod
    def define_schema(cls):
        return comfy_bridge.schema(
            cls, "Saves a clipart animation as Lottie, the vector animation format of lottie-web, lottie-ios/android "
            "and After Effects: one shape layer per filled shape, its path keyframed every frame. 'lottie' writes "
            "a dotLottie file (.lottie, zipped), 'json' plain Lottie JSON (.lottie.json).", CATEGORY, is_output_node=True,
            inputs=[
                CLIPART_ANIMATION.Input("animation", tooltip="From Animate Clipart, Animate Clipart from Pose or the text-guided node."),
                io.String.Input("filename_prefix", default="AnimateSuite/clipart", tooltip="Sub-folder and file name start inside the output folder."),
                io.Int.Input("size", default=512, min=16, max=4096, step=8, tooltip="Width/height of the Lottie composition in pixels."),
                comfy_bridge.combo("format", LOTTIE_FORMATS, "dotLottie (zip) or plain Lottie JSON.", default=LOTTIE_FORMATS[0]),
                io.Boolean.Input("loop", default=True, tooltip="dotLottie: tell players to loop (plain Lottie JSON loops by the player's setting)."),
            ])

    @classmethod
    def execute(cls, animation, filename_prefix, size, format, loop):
        from ..svg import lottie

        if format not in LOTTIE_FORMATS:
            raise InputError("format", f"'{format}' is unknown", " or ".join(LOTTIE_FORMATS))
        document = lottie.animation_lottie(animation, size)
        dotlottie = format == LOTTIE_FORMATS[0]
        path, entry = comfy_bridge.output_file_path(filename_prefix, ".lottie" if dotlottie else ".lottie.json")
        data = lottie.dotlottie_bytes(document, loop, os.path.basename(path).split(".")[0]) if dotlottie \
            else lottie.lottie_json(document).encode("utf-8")
        with open(path, "wb") as handle:
            handle.write(data)
        log.info("Saved %d Lottie frames to %s", animation.num_frames, path)
        return io.NodeOutput(ui={"text": [entry["filename"]]})


NODE_CLASSES = [AnimateSuiteAnimateClipartFromPose, AnimateSuiteSaveClipartLottie]
