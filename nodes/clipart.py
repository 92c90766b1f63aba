"""AniClipart nodes: load an SVG, check or edit its keypoints, animate it procedurally, render, save.

The text-guided (SDS) animation node lives in ``nodes/clipart_sds.py``: it takes the same
``ANIMATESUITE_CLIPART`` and returns the same ``ANIMATESUITE_CLIPART_ANIMATION``, so Render and
Save below work for both modes.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from ..core.errors import InputError
from . import comfy_bridge

log = logging.getLogger("animate_suite")
io = comfy_bridge.io
CATEGORY = "Animate Suite/AniClipart"
CLIPART = comfy_bridge.CLIPART
CLIPART_ANIMATION = comfy_bridge.CLIPART_ANIMATION
EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
EXAMPLE_LABEL = "(pack example) "
KEYPOINT_SOURCES = ("side files, else detect", "detect")
EDIT_SOURCES = ("as loaded", "detect", "from text")
BACKGROUNDS = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0), "transparent": None}
SIDE_SUFFIXES = ("_keypoint.svg", "_keypoint_scaled.svg")


def _svg_choices() -> list[str]:
    listed = [name for name in comfy_bridge.input_file_choices((".svg",)) if not name.endswith(SIDE_SUFFIXES)]
    examples = sorted(p.name for p in EXAMPLES_DIR.glob("*.svg") if not p.name.endswith(SIDE_SUFFIXES))
    return listed + [EXAMPLE_LABEL + name for name in examples]


def svg_path(name: str) -> str:
    """The chosen SVG: a bundled example or a file inside ComfyUI's input folder."""
    if name.startswith(EXAMPLE_LABEL):
        base = name[len(EXAMPLE_LABEL):]
        path = EXAMPLES_DIR / base
        if "/" in base or "\\" in base or not path.is_file():
            raise InputError("svg", f"'{base}' is not one of the pack's examples", "a listed example")
        return str(path)
    return comfy_bridge.input_file_path(name, "svg", "an SVG in ComfyUI's input folder (upload it there)")


def _rig_settings(max_tri_area: float, min_tri_angle: float):
    from ..svg.rig import RigSettings

    return RigSettings(max_tri_area=max_tri_area, min_tri_angle=min_tri_angle)


def mesh_inputs() -> list:
    return [
        io.Float.Input("max_tri_area", default=30.0, min=2.0, max=1000.0, step=1.0,
                       tooltip="Largest mesh triangle in canvas pixels² (AniClipart: 30). Smaller is smoother and slower."),
        io.Float.Input("min_tri_angle", default=20.0, min=5.0, max=33.0, step=1.0,
                       tooltip="Smallest mesh triangle angle in degrees (AniClipart: 20)."),
    ]


class AnimateSuiteLoadClipart(io.ComfyNode):
    DISPLAY_NAME = "Load Clipart SVG (Animate Suite)"

    @classmethod
    def define_schema(cls):
        return comfy_bridge.schema(
            cls, "Loads an SVG from ComfyUI's input folder (or a pack example), fits it into the working canvas and "
            "rigs it: keypoints and bones from AniClipart side files (<name>_keypoint.svg, <name>_skeleton.txt, "
            "<name>_layer.json next to it) or detected from the silhouette, a triangle mesh, ARAP.", CATEGORY,
            inputs=[
                comfy_bridge.file_combo("svg", _svg_choices(), "An SVG in ComfyUI's input folder (use the Upload SVG button) or a pack example."),
                io.Int.Input("canvas", default=256, min=64, max=1024, step=8,
                             tooltip="Working canvas in pixels the SVG is fitted into (AniClipart: 256). Rendering can be larger."),
                comfy_bridge.combo("keypoints", KEYPOINT_SOURCES, "Use AniClipart side files when present, else detect keypoints and bones from the silhouette.",
                                   default=KEYPOINT_SOURCES[0]),
                io.Float.Input("complexity", default=0.5, min=0.0, max=1.0, step=0.05, tooltip="Detected skeleton detail: 0 few joints, 1 many."),
                *mesh_inputs(),
            ],
            outputs=[comfy_bridge.output(CLIPART, "clipart", "The rigged clipart."),
                     comfy_bridge.output(io.Image, "preview", "The artwork with its numbered keypoints and bones.")])

    @classmethod
    def fingerprint_inputs(cls, svg, **kwargs):
        path = Path(svg_path(svg))
        stamps = [path.stat().st_mtime]
        for side in Path(path).parent.glob(Path(path).stem.removesuffix("_scaled") + "_*"):
            stamps.append(side.stat().st_mtime)
        return max(stamps)

    @classmethod
    def validate_inputs(cls, svg):
        return comfy_bridge.validation_result(svg_path, svg)

    @classmethod
    def execute(cls, svg, canvas, keypoints, complexity, max_tri_area, min_tri_angle):
        from ..svg.animate import load_clipart, rig_preview

        clipart = load_clipart(svg_path(svg), canvas, use_side_files=keypoints == KEYPOINT_SOURCES[0],
                               settings=_rig_settings(max_tri_area, min_tri_angle), complexity=complexity)
        return io.NodeOutput(clipart, rig_preview(clipart.rig))


class AnimateSuiteClipartKeypoints(io.ComfyNode):
    DISPLAY_NAME = "Clipart Keypoints (Animate Suite)"

    @classmethod
    def define_schema(cls):
        return comfy_bridge.schema(
            cls, "Shows, detects or edits the keypoints and bones that drive the clipart. Copy the keypoints/bones "
            "outputs into the text boxes, change them and pick 'from text' to re-rig.", CATEGORY,
            inputs=[
                CLIPART.Input("clipart", tooltip="Clipart from Load Clipart SVG."),
                comfy_bridge.combo("source", EDIT_SOURCES, "Keep the loaded keypoints, detect new ones, or use the text boxes below.",
                                   default=EDIT_SOURCES[0]),
                io.Float.Input("complexity", default=0.5, min=0.0, max=1.0, step=0.05, tooltip="Detected skeleton detail (source 'detect')."),
                io.String.Input("keypoints", multiline=True, default="",
                                tooltip="One 'x y' per line in canvas pixels, keypoint 0 first (source 'from text')."),
                io.String.Input("bones", multiline=True, default="",
                                tooltip="One 'i j' per line (0-based keypoint indices); empty: a minimum spanning tree."),
            ],
            outputs=[comfy_bridge.output(CLIPART, "clipart", "The re-rigged clipart."),
                     comfy_bridge.output(io.Image, "preview", "Artwork with numbered keypoints and bones."),
                     comfy_bridge.output(io.String, "keypoints", "Keypoints as 'x y' lines (canvas pixels)."),
                     comfy_bridge.output(io.String, "bones", "Bones as 'i j' lines (0-based).")])

    @classmethod
    def execute(cls, clipart, source, complexity, keypoints, bones):
        from ..svg import rigfiles
        from ..svg.animate import redetect, rerig_from_text, rig_preview

        if source not in EDIT_SOURCES:
            raise InputError("source", f"'{source}' is unknown", "one of " + ", ".join(EDIT_SOURCES))
        if source == "detect":
            clipart = redetect(clipart, complexity)
        elif source == "from text":
            clipart = rerig_from_text(clipart, keypoints, bones)
        rig = clipart.rig
        return io.NodeOutput(clipart, rig_preview(rig), rigfiles.keypoints_text(rig.keypoints.numpy()),
                             rigfiles.skeleton_text(rig.bones))


class AnimateSuiteAnimateClipart(io.ComfyNode):
    DISPLAY_NAME = "Animate Clipart (Animate Suite)"

    @classmethod
    def define_schema(cls):
        from ..svg.motion import PRESETS

        return comfy_bridge.schema(
            cls, "Procedural clipart animation, no model needed (CPU, seconds): a named motion moves the keypoints "
            "and the ARAP mesh carries the artwork. Frame 0 is the input artwork when 'fixed_start' is on. "
            "A motion that would fold the drawing is played smaller.", CATEGORY,
            inputs=[
                CLIPART.Input("clipart", tooltip="Clipart from Load Clipart SVG or Clipart Keypoints."),
                comfy_bridge.combo("motion", PRESETS, "The motion preset.", default="wave"),
                io.Int.Input("frames", default=24, min=1, max=1000, tooltip="Number of frames."),
                io.Float.Input("fps", default=12.0, min=1.0, max=60.0, step=1.0, tooltip="Frames per second."),
                io.Float.Input("amplitude", default=1.0, min=0.0, max=5.0, step=0.05,
                               tooltip="Size of the motion; 1 is the preset's natural size."),
                io.Float.Input("speed", default=0.5, min=0.05, max=10.0, step=0.05, tooltip="Motion cycles per second."),
                io.Boolean.Input("loop", default=True, tooltip="Round to whole cycles so the clip loops seamlessly."),
                io.Boolean.Input("fixed_start", default=True, tooltip="Start at the input pose (frame 0 = the artwork)."),
                comfy_bridge.seed_input(0, 2**31 - 1, "Variation of the motion."),
            ],
            outputs=[comfy_bridge.output(CLIPART_ANIMATION, "animation", "Keypoint positions per frame with the rig (render or save it)."),
                     comfy_bridge.output(io.Float, "fps", "Frames per second.")])

    @classmethod
    def execute(cls, clipart, motion, frames, fps, amplitude, speed, loop, fixed_start, seed):
        from ..svg.animate import animate_procedural
        from ..svg.motion import MotionSettings

        settings = MotionSettings(motion, frames, fps, amplitude, speed, loop, seed, fixed_start)
        animation = animate_procedural(clipart.rig, settings, clipart.name, clipart.svg_sha256)
        if animation.motion["amplitude_used"] < amplitude:
            log.warning("Animate Clipart: amplitude lowered from %.2f to %.2f so the drawing does not fold",
                        amplitude, animation.motion["amplitude_used"])
        return io.NodeOutput(animation, float(fps))


class AnimateSuiteRenderClipart(io.ComfyNode):
    DISPLAY_NAME = "Render Clipart Animation (Animate Suite)"

    @classmethod
    def define_schema(cls):
        return comfy_bridge.schema(
            cls, "Renders a clipart animation at any size as IMAGE frames (for Save Animation) and an alpha MASK.", CATEGORY,
            inputs=[
                CLIPART_ANIMATION.Input("animation", tooltip="From Animate Clipart (or the text-guided node)."),
                io.Int.Input("size", default=512, min=16, max=4096, step=8,
                             tooltip="Output width and height in pixels (vector art renders sharp at any size)."),
                comfy_bridge.combo("background", BACKGROUNDS, "Background colour; 'transparent' gives the plain colours and leaves the cut-out to the alpha mask.",
                                   default="white"),
            ],
            outputs=[comfy_bridge.output(io.Image, "images", "The frames."),
                     comfy_bridge.output(io.Mask, "alpha", "Coverage of the artwork per frame: 1 on the drawing, 0 on the background.")])

    @classmethod
    def execute(cls, animation, size, background):
        from ..svg.animate import on_background, render_animation

        if background not in BACKGROUNDS:
            raise InputError("background", f"'{background}' is unknown", "one of " + ", ".join(BACKGROUNDS))
        ctx = comfy_bridge.run_context([], torch.float32)
        rgba = render_animation(animation, size, None, ctx)
        images = on_background(rgba, BACKGROUNDS[background])
        return io.NodeOutput(comfy_bridge.to_intermediate(images), comfy_bridge.to_intermediate(rgba[..., 3]))


class AnimateSuiteSaveClipartSVG(io.ComfyNode):
    DISPLAY_NAME = "Save Clipart SVG (Animate Suite)"

    @classmethod
    def define_schema(cls):
        return comfy_bridge.schema(
            cls, "Saves the animation as an animated SVG that plays in any browser (previewed here), optionally one SVG "
            "per frame and the motion JSON (re-renders at any size with the CLI's --replay).", CATEGORY, is_output_node=True,
            inputs=[
                CLIPART_ANIMATION.Input("animation", tooltip="From Animate Clipart (or the text-guided node)."),
                io.String.Input("filename_prefix", default="AnimateSuite/clipart", tooltip="Sub-folder and file name start inside the output folder."),
                io.Int.Input("size", default=512, min=16, max=4096, step=8, tooltip="Displayed width/height of the SVGs in pixels."),
                io.Boolean.Input("frame_svgs", default=False, tooltip="Also write one SVG per frame into a folder."),
                io.Boolean.Input("motion_json", default=True, tooltip="Also write the keypoint motion as JSON."),
                io.Boolean.Input("rig_files", default=True, optional=True,
                                 tooltip="Also write the keypoints and bones as AniClipart side files (<name>_keypoint.svg, "
                                         "<name>_skeleton.txt, <name>_layer.json), reusable with Load Clipart SVG."),
            ])

    @classmethod
    def execute(cls, animation, filename_prefix, size, frame_svgs, motion_json, rig_files=True):
        from ..svg import animate as clipart_animate
        from ..svg import export

        folder, stem, counter, subfolder = comfy_bridge.output_location(filename_prefix, size, size)
        base = comfy_bridge.unused_base(folder, stem, counter, (".svg",), separator="")
        files = clipart_animate.animation_files(animation, base, size, motion_json, rig_files)
        export.write_text_files(folder, files)
        if frame_svgs:
            frames_folder = Path(folder) / f"{base}_frames"
            frames_folder.mkdir(exist_ok=True)
            texts = clipart_animate.frame_svgs(animation, size)
            export.write_text_files(frames_folder, [(f"frame_{i:05d}.svg", t) for i, t in enumerate(texts)])
        results = [comfy_bridge.output_entry(name, subfolder) for name, _ in files]
        return io.NodeOutput(ui={"clipart_svg": results[:1], "text": [name for name, _ in files]})


NODE_CLASSES = [AnimateSuiteLoadClipart, AnimateSuiteClipartKeypoints, AnimateSuiteAnimateClipart,
                AnimateSuiteRenderClipart, AnimateSuiteSaveClipartSVG]
