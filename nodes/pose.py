"""DWPose extraction and pose tools.

Types these nodes pass around:

- ``ANIMATESUITE_DWPOSE``: a loaded ``pose.dwpose.DWPose`` (detector + pose model, two cached
  onnxruntime sessions; ONNX models are not torch modules, so they have no ModelPatcher).
- ``POSE_KEYPOINT``: the community type from comfyui_controlnet_aux, a list with one OpenPose dict
  per frame (``people``, ``canvas_width``, ``canvas_height``; pixel coordinates; ``c`` = 1.0 or 0).
  Ours adds ``animate_suite_wholebody`` to each person: all 134 points with their raw scores, which
  StableAnimator's drawing needs. Packs that do not know the key ignore it; poses from other packs
  are accepted and rebuilt from the OpenPose fields. See ``pose/openpose_json.py``.
- ``IMAGE`` pose images in one of three conventions: ``animateanyone`` (what AnimateAnyone was
  trained on: thick limbs, best person, 512 short side), ``stableanimator`` (thin, confidence-scaled,
  every person; feed these to StableAnimator) and ``controlnet_aux`` (what the DWPose Estimator of
  comfyui_controlnet_aux draws).
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch

from ..core import images as image_ops
from ..core import model_registry
from ..core.errors import InputError, ModelNotFoundError
from . import comfy_bridge

log = logging.getLogger("animate_suite")

io = comfy_bridge.io
CATEGORY = "Animate Suite/DWPose"
POSE = comfy_bridge.POSE_KEYPOINT
DWPOSE = comfy_bridge.DWPOSE_MODEL
CONVENTIONS = ("animateanyone", "stableanimator", "controlnet_aux")
DETECTOR_NAME = model_registry.DWPOSE.file("detector").name
POSE_NAME = model_registry.DWPOSE.file("pose").name


def _convention_input():
    return comfy_bridge.combo(
        "convention", CONVENTIONS,
        "animateanyone: thick limbs on a 512 short side, best person only (AnimateAnyone's training data). "
        "stableanimator: thin confidence-shaded lines, every person (StableAnimator). "
        "controlnet_aux: as comfyui_controlnet_aux's DWPose Estimator draws it.", default="stableanimator")


def _part_inputs() -> list:
    return [
        io.Boolean.Input("body", default=True, tooltip="Draw the body skeleton."),
        io.Boolean.Input("hands", default=True, tooltip="Draw both hands."),
        io.Boolean.Input("face", default=True, tooltip="Draw the 68 face points."),
    ]


def _size_inputs() -> list:
    return [
        io.Int.Input("width", default=0, min=0, max=8192, step=8, tooltip="Width of the pose images; 0 keeps the convention's own size (or follows the height's aspect)."),
        io.Int.Input("height", default=0, min=0, max=8192, step=8, tooltip="Height of the pose images; 0 keeps the convention's own size (or follows the width's aspect)."),
    ]


def _pose_output(tooltip: str | None = None):
    return comfy_bridge.output(POSE, "pose_keypoint", tooltip)


def _model_choices(default: str) -> list[str]:
    return sorted(set(comfy_bridge.file_choices("dwpose")) | {default})


def _dwpose_file(name: str, model_dir: str, role: str, what: str) -> str:
    """The chosen file: in ``model_dir`` if given, else in the dwpose folders (one sub-folder down too)."""
    if model_dir.strip():
        base = comfy_bridge.registered_path(model_dir, "model_dir")
        path = os.path.join(base, os.path.basename(name))
        if not os.path.isfile(path):
            raise ModelNotFoundError(what, f"'{name}'", [base], model_registry.DWPOSE.source)
        return path
    if name == model_registry.DWPOSE.file(role).name:
        return comfy_bridge.find_model(model_registry.DWPOSE, role)
    return comfy_bridge.model_file_path("dwpose", name, what)


class AnimateSuiteDWPoseLoader(io.ComfyNode):
    DISPLAY_NAME = "Load DWPose (Animate Suite)"

    @classmethod
    def define_schema(cls):
        return comfy_bridge.schema(
            cls, "Loads the DWPose person detector and whole-body pose model (ONNX) with onnxruntime: "
            "the CUDA provider when the installed onnxruntime has it, otherwise the CPU. "
            "Sessions stay cached between runs.", CATEGORY,
            inputs=[
                comfy_bridge.file_combo("detector", _model_choices(DETECTOR_NAME), "Person detector in models/dwpose (yolox_l.onnx from yzd-v/DWPose).", default=DETECTOR_NAME),
                comfy_bridge.file_combo("pose_model", _model_choices(POSE_NAME), "Whole-body pose model in models/dwpose (dw-ll_ucoco_384.onnx from yzd-v/DWPose).", default=POSE_NAME),
                comfy_bridge.onnx_device_input(),
                io.String.Input("model_dir", default="", optional=True, tooltip="Optional '<folder key>/<sub-folder>' to take both files from, e.g. a key you added in extra_model_paths.yaml for comfyui_controlnet_aux's ckpts folder: 'aux_ckpts/yzd-v/DWPose'. Only folders ComfyUI knows are accepted."),
            ],
            outputs=[comfy_bridge.output(DWPOSE, "dwpose")])

    @classmethod
    def execute(cls, detector, pose_model, device, model_dir=""):
        from ..pose.dwpose import DWPose

        detector_path = _dwpose_file(detector, model_dir, "detector", "DWPose person detector")
        pose_path = _dwpose_file(pose_model, model_dir, "pose", "DWPose pose model")
        return io.NodeOutput(DWPose.from_files(detector_path, pose_path, device))


def _frames_uint8(images, input_name: str = "images") -> np.ndarray:
    return image_ops.to_uint8(image_ops.check_image_batch(images, input_name))


def _frame_ranges(indices: list[int]) -> str:
    parts, start = [], None
    for i, index in enumerate(indices):
        if start is None:
            start = index
        if i + 1 == len(indices) or indices[i + 1] != index + 1:
            parts.append(str(start) if start == index else f"{start}-{index}")
            start = None
    return ", ".join(parts)


def _pose_images(frames: np.ndarray) -> torch.Tensor:
    return comfy_bridge.to_intermediate(image_ops.from_uint8(frames))


class AnimateSuiteDWPoseEstimator(io.ComfyNode):
    DISPLAY_NAME = "DWPose Estimator (Animate Suite)"

    @classmethod
    def define_schema(cls):
        return comfy_bridge.schema(
            cls, "Finds every person's body, hand and face keypoints in each frame and draws pose images for "
            "AnimateAnyone, StableAnimator or ControlNet. Also outputs POSE_KEYPOINT (OpenPose JSON with the "
            "raw scores). Frames without a person give an empty pose and a warning listing them.", CATEGORY,
            inputs=[
                DWPOSE.Input("dwpose", tooltip="From Load DWPose."),
                io.Image.Input("images", tooltip="Frames (any size; all the same size in one batch)."),
                _convention_input(),
                *_part_inputs(),
                *_size_inputs(),
                comfy_bridge.combo("when_no_person", ("empty", "whole_image"), "empty: a frame without a detected person gets an empty pose. whole_image: run the pose model on the whole frame as the AnimateAnyone/StableAnimator scripts do (invents a skeleton).", default="empty", optional=True),
            ],
            outputs=[comfy_bridge.output(io.Image, "pose_images", "Pose images in the chosen convention."),
                     _pose_output("Keypoints per frame, pixel coordinates of the input frames.")])

    @classmethod
    def execute(cls, dwpose, images, convention, body, hands, face, width, height, when_no_person="empty"):
        from dataclasses import replace

        from ..pose import dwpose as dw
        from ..pose import openpose_json, render
        from ..pose.keypoints import empty_frames, on_canvas

        render.check_convention(convention)
        frames = _frames_uint8(images)
        settings = replace(dw.PRESETS[convention], when_no_person=when_no_person)
        ctx = comfy_bridge.run_context([], torch.float32)
        extraction = dwpose(frames, settings, ctx)
        missing = empty_frames(extraction.frames)
        if missing:
            log.warning("DWPose: no person found in %d of %d frames (0-based): %s", len(missing),
                        len(frames), _frame_ranges(missing))
        in_h, in_w = frames.shape[1:3]
        parts = render.Parts(body, hands, face)
        pose_keypoint = openpose_json.to_pose_keypoint(on_canvas(extraction.frames, in_w, in_h), parts)
        pose_images = render.render_extraction(extraction.frames, in_w, in_h, convention, width, height, parts, ctx)
        return io.NodeOutput(_pose_images(pose_images), pose_keypoint)


def _poses(value, input_name: str):
    from ..pose import openpose_json

    return openpose_json.from_pose_keypoint(value, input_name)


class AnimateSuiteRenderPose(io.ComfyNode):
    DISPLAY_NAME = "Render Pose (Animate Suite)"

    @classmethod
    def define_schema(cls):
        return comfy_bridge.schema(
            cls, "Draws POSE_KEYPOINT frames (ours or another pack's) as pose images in the AnimateAnyone, StableAnimator or controlnet_aux convention.",
            CATEGORY, inputs=[POSE.Input("pose_keypoint", tooltip="Poses to draw."), _convention_input(), *_part_inputs(), *_size_inputs()],
            outputs=[comfy_bridge.output(io.Image, "pose_images")])

    @classmethod
    def execute(cls, pose_keypoint, convention, body, hands, face, width, height):
        from ..pose import render

        frames = _poses(pose_keypoint, "pose_keypoint")
        ctx = comfy_bridge.run_context([], torch.float32)
        return io.NodeOutput(_pose_images(render.render_frames(frames, convention, width, height,
                                                               render.Parts(body, hands, face), ctx)))


class AnimateSuiteAlignPose(io.ComfyNode):
    DISPLAY_NAME = "Align Pose to Reference (Animate Suite)"

    @classmethod
    def define_schema(cls):
        return comfy_bridge.schema(
            cls, "Fits a driving pose sequence to the body in the reference image, as StableAnimator does before "
            "animating (one scale and offset for the clip), optionally also giving every bone the reference's "
            "length. The result is on the reference image's canvas.", CATEGORY,
            inputs=[
                POSE.Input("reference_pose", tooltip="The reference image's pose (its first frame and first person are used)."),
                POSE.Input("driving_pose", tooltip="The driving video's poses."),
                comfy_bridge.combo("method", ("global", "limbs"), "global: StableAnimator's least-squares scale and offset over the whole clip. limbs: that, then each bone takes the reference's length (hands and face follow).", default="global"),
            ],
            outputs=[_pose_output()])

    @classmethod
    def execute(cls, reference_pose, driving_pose, method):
        from ..pose import align, openpose_json

        reference = _poses(reference_pose, "reference_pose")[0]
        aligned = align.align(reference, _poses(driving_pose, "driving_pose"), method)
        return io.NodeOutput(openpose_json.to_pose_keypoint(aligned))


class AnimateSuiteSmoothPose(io.ComfyNode):
    DISPLAY_NAME = "Smooth Pose (Animate Suite)"

    @classmethod
    def define_schema(cls):
        return comfy_bridge.schema(
            cls, "Reduces keypoint jitter: each point becomes a confidence-weighted Gaussian average over neighbouring frames.",
            CATEGORY, inputs=[
                POSE.Input("pose_keypoint", tooltip="Poses to smooth."),
                io.Int.Input("radius", default=2, min=0, max=30, tooltip="Frames on each side that are averaged; 0 leaves the poses unchanged."),
                io.Float.Input("sigma", default=1.0, min=0.1, max=30.0, step=0.1, tooltip="Width of the Gaussian weights in frames; larger is smoother."),
            ],
            outputs=[_pose_output()])

    @classmethod
    def execute(cls, pose_keypoint, radius, sigma):
        from ..pose import align, openpose_json

        return io.NodeOutput(openpose_json.to_pose_keypoint(align.smooth(_poses(pose_keypoint, "pose_keypoint"), radius, sigma)))


class AnimateSuiteFitPose(io.ComfyNode):
    DISPLAY_NAME = "Fit Pose to Size (Animate Suite)"

    @classmethod
    def define_schema(cls):
        return comfy_bridge.schema(
            cls, "Moves poses onto a canvas of another size the way Load Video resizes frames: crop to fill, pad to fit, or stretch.",
            CATEGORY, inputs=[
                POSE.Input("pose_keypoint", tooltip="Poses to move."),
                io.Int.Input("width", default=512, min=8, max=8192, step=8, tooltip="Target canvas width."),
                io.Int.Input("height", default=768, min=8, max=8192, step=8, tooltip="Target canvas height."),
                comfy_bridge.combo("resize_mode", image_ops.RESIZE_MODES, "crop fills the size (points cut off are hidden), pad letterboxes, stretch ignores the aspect.", default="crop"),
            ],
            outputs=[_pose_output()])

    @classmethod
    def execute(cls, pose_keypoint, width, height, resize_mode):
        from ..pose import align, openpose_json

        if resize_mode not in image_ops.RESIZE_MODES:
            raise InputError("resize_mode", f"'{resize_mode}' is unknown", ", ".join(image_ops.RESIZE_MODES))
        fitted = align.fit_canvas(_poses(pose_keypoint, "pose_keypoint"), width, height, resize_mode)
        return io.NodeOutput(openpose_json.to_pose_keypoint(fitted))


class AnimateSuiteLoadPoseJSON(io.ComfyNode):
    DISPLAY_NAME = "Load Pose JSON (Animate Suite)"

    @classmethod
    def define_schema(cls):
        return comfy_bridge.schema(
            cls, "Loads a pose sequence saved as OpenPose JSON (a list of frames, or one frame) from ComfyUI's input folder.",
            CATEGORY, inputs=[comfy_bridge.file_combo("file", comfy_bridge.input_file_choices((".json",)), "An OpenPose JSON file in ComfyUI's input folder.")],
            outputs=[_pose_output()])

    @classmethod
    def fingerprint_inputs(cls, file, **kwargs):
        return os.path.getmtime(comfy_bridge.input_file_path(file, "file"))

    @classmethod
    def validate_inputs(cls, file):
        return comfy_bridge.validation_result(comfy_bridge.input_file_path, file, "file")

    @classmethod
    def execute(cls, file):
        from ..pose import openpose_json

        return io.NodeOutput(openpose_json.load(comfy_bridge.input_file_path(file, "file"), "file"))


class AnimateSuiteSavePoseJSON(io.ComfyNode):
    DISPLAY_NAME = "Save Pose JSON (Animate Suite)"

    @classmethod
    def define_schema(cls):
        return comfy_bridge.schema(
            cls, "Saves POSE_KEYPOINT as an OpenPose JSON file (a list of frames) in ComfyUI's output folder.",
            CATEGORY, is_output_node=True, inputs=[
                POSE.Input("pose_keypoint", tooltip="Poses to save."),
                io.String.Input("filename_prefix", default="AnimateSuite/pose", tooltip="Sub-folder and file name start inside the output folder."),
            ])

    @classmethod
    def execute(cls, pose_keypoint, filename_prefix):
        from ..pose import openpose_json

        frames = _poses(pose_keypoint, "pose_keypoint")
        path, entry = comfy_bridge.output_file_path(filename_prefix, ".json")
        value = pose_keypoint if isinstance(pose_keypoint, list) else [pose_keypoint]
        openpose_json.save(value, path)
        log.info("Saved %d pose frames to %s", len(frames), path)
        return io.NodeOutput(ui={"text": [entry["filename"]]})


NODE_CLASSES = [AnimateSuiteDWPoseLoader, AnimateSuiteDWPoseEstimator, AnimateSuiteRenderPose, AnimateSuiteAlignPose,
                AnimateSuiteSmoothPose, AnimateSuiteFitPose, AnimateSuiteLoadPoseJSON, AnimateSuiteSavePoseJSON]
