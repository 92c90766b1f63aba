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

CATEGORY = "Animate Suite/DWPose"
POSE = "POSE_KEYPOINT"
DWPOSE = "ANIMATESUITE_DWPOSE"
CONVENTIONS = ("animateanyone", "stableanimator", "controlnet_aux")
DETECTOR_NAME = model_registry.DWPOSE.file("detector").name
POSE_NAME = model_registry.DWPOSE.file("pose").name
SIZE_INPUT = {"default": 0, "min": 0, "max": 8192, "step": 8}

CONVENTION_INPUT = (list(CONVENTIONS), {
    "default": "stableanimator",
    "tooltip": "animateanyone: thick limbs on a 512 short side, best person only (AnimateAnyone's training data). "
               "stableanimator: thin confidence-shaded lines, every person (StableAnimator). "
               "controlnet_aux: as comfyui_controlnet_aux's DWPose Estimator draws it.",
})


def _part_inputs() -> dict:
    return {
        "body": ("BOOLEAN", {"default": True, "tooltip": "Draw the body skeleton."}),
        "hands": ("BOOLEAN", {"default": True, "tooltip": "Draw both hands."}),
        "face": ("BOOLEAN", {"default": True, "tooltip": "Draw the 68 face points."}),
    }


def _size_inputs() -> dict:
    return {
        "width": ("INT", {**SIZE_INPUT, "tooltip": "Width of the pose images; 0 keeps the convention's own size (or follows the height's aspect)."}),
        "height": ("INT", {**SIZE_INPUT, "tooltip": "Height of the pose images; 0 keeps the convention's own size (or follows the width's aspect)."}),
    }


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


class AnimateSuiteDWPoseLoader:
    DISPLAY_NAME = "Load DWPose (Animate Suite)"
    DESCRIPTION = ("Loads the DWPose person detector and whole-body pose model (ONNX) with onnxruntime: "
                   "the CUDA provider when the installed onnxruntime has it, otherwise the CPU. "
                   "Sessions stay cached between runs.")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = (DWPOSE,)
    RETURN_NAMES = ("dwpose",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "detector": comfy_bridge.listing_input(_model_choices(DETECTOR_NAME), "Person detector in models/dwpose (yolox_l.onnx from yzd-v/DWPose).", default=DETECTOR_NAME),
                "pose_model": comfy_bridge.listing_input(_model_choices(POSE_NAME), "Whole-body pose model in models/dwpose (dw-ll_ucoco_384.onnx from yzd-v/DWPose).", default=POSE_NAME),
                "device": (["auto", "cpu"], {"default": "auto", "tooltip": "auto: CUDA (or another accelerated onnxruntime provider) when installed, else CPU."}),
            },
            "optional": {
                "model_dir": ("STRING", {"default": "", "tooltip": "Optional '<folder key>/<sub-folder>' to take both files from, e.g. a key you added in extra_model_paths.yaml for comfyui_controlnet_aux's ckpts folder: 'aux_ckpts/yzd-v/DWPose'. Only folders ComfyUI knows are accepted."}),
            },
        }

    def load(self, detector, pose_model, device, model_dir=""):
        from ..pose.dwpose import DWPose

        detector_path = _dwpose_file(detector, model_dir, "detector", "DWPose person detector")
        pose_path = _dwpose_file(pose_model, model_dir, "pose", "DWPose pose model")
        return (DWPose.from_files(detector_path, pose_path, device),)


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


def _render_batch(frames, convention: str, width: int, height: int, body: bool, hands: bool, face: bool):
    """IMAGE batch of pose images; every frame comes out at the first frame's size."""
    from ..pose import render

    parts = render.Parts(body, hands, face)
    ctx = comfy_bridge.run_context([], torch.float32)
    images = []
    for index, frame in enumerate(frames):
        ctx.check_interrupt()
        image = render.render(frame, convention, width, height, parts)
        if images and image.shape != images[0].shape:
            image = render.render(frame, convention, images[0].shape[1], images[0].shape[0], parts)
        images.append(image)
        ctx.report(index + 1, len(frames))
    return comfy_bridge.to_intermediate(image_ops.from_uint8(np.stack(images)))


class AnimateSuiteDWPoseEstimator:
    DISPLAY_NAME = "DWPose Estimator (Animate Suite)"
    DESCRIPTION = ("Finds every person's body, hand and face keypoints in each frame and draws pose images for "
                   "AnimateAnyone, StableAnimator or ControlNet. Also outputs POSE_KEYPOINT (OpenPose JSON with the "
                   "raw scores). Frames without a person give an empty pose and a warning listing them.")
    CATEGORY = CATEGORY
    FUNCTION = "estimate"
    RETURN_TYPES = ("IMAGE", POSE)
    RETURN_NAMES = ("pose_images", "pose_keypoint")
    OUTPUT_TOOLTIPS = ("Pose images in the chosen convention.", "Keypoints per frame, pixel coordinates of the input frames.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "dwpose": (DWPOSE, {"tooltip": "From Load DWPose."}),
                "images": ("IMAGE", {"tooltip": "Frames (any size; all the same size in one batch)."}),
                "convention": CONVENTION_INPUT,
                **_part_inputs(),
                **_size_inputs(),
            },
            "optional": {
                "when_no_person": (["empty", "whole_image"], {"default": "empty", "tooltip": "empty: a frame without a detected person gets an empty pose. whole_image: run the pose model on the whole frame as the AnimateAnyone/StableAnimator scripts do (invents a skeleton)."}),
            },
        }

    def estimate(self, dwpose, images, convention, body, hands, face, width, height, when_no_person="empty"):
        from dataclasses import replace

        from ..pose import dwpose as dw
        from ..pose import openpose_json, render
        from ..pose.keypoints import empty_frames

        if convention not in CONVENTIONS:
            raise InputError("convention", f"'{convention}' is unknown", ", ".join(CONVENTIONS))
        frames = _frames_uint8(images)
        settings = replace(dw.PRESETS[convention], when_no_person=when_no_person)
        ctx = comfy_bridge.run_context([], torch.float32)
        extraction = dwpose(frames, settings, ctx)
        missing = empty_frames(extraction.frames)
        if missing:
            log.warning("DWPose: no person found in %d of %d frames (0-based): %s", len(missing),
                        len(frames), _frame_ranges(missing))
        in_h, in_w = frames.shape[1:3]
        poses = [f if (f.width, f.height) == (in_w, in_h) else f.rescaled(in_w, in_h) for f in extraction.frames]
        pose_keypoint = openpose_json.to_pose_keypoint(poses, render.Parts(body, hands, face))
        if width or height:  # a missing side follows the input frames' aspect
            width, height = render.output_size(in_w, in_h, width, height)
        return (_render_batch(extraction.frames, convention, width, height, body, hands, face), pose_keypoint)


def _poses(value, input_name: str):
    from ..pose import openpose_json

    return openpose_json.from_pose_keypoint(value, input_name)


class AnimateSuiteRenderPose:
    DISPLAY_NAME = "Render Pose (Animate Suite)"
    DESCRIPTION = "Draws POSE_KEYPOINT frames (ours or another pack's) as pose images in the AnimateAnyone, StableAnimator or controlnet_aux convention."
    CATEGORY = CATEGORY
    FUNCTION = "render"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("pose_images",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "pose_keypoint": (POSE, {"tooltip": "Poses to draw."}),
            "convention": CONVENTION_INPUT,
            **_part_inputs(),
            **_size_inputs(),
        }}

    def render(self, pose_keypoint, convention, body, hands, face, width, height):
        if convention not in CONVENTIONS:
            raise InputError("convention", f"'{convention}' is unknown", ", ".join(CONVENTIONS))
        return (_render_batch(_poses(pose_keypoint, "pose_keypoint"), convention, width, height, body, hands, face),)


class AnimateSuiteAlignPose:
    DISPLAY_NAME = "Align Pose to Reference (Animate Suite)"
    DESCRIPTION = ("Fits a driving pose sequence to the body in the reference image, as StableAnimator does before "
                   "animating (one scale and offset for the clip), optionally also giving every bone the reference's "
                   "length. The result is on the reference image's canvas.")
    CATEGORY = CATEGORY
    FUNCTION = "align"
    RETURN_TYPES = (POSE,)
    RETURN_NAMES = ("pose_keypoint",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "reference_pose": (POSE, {"tooltip": "The reference image's pose (its first frame and first person are used)."}),
            "driving_pose": (POSE, {"tooltip": "The driving video's poses."}),
            "method": (["global", "limbs"], {"default": "global", "tooltip": "global: StableAnimator's least-squares scale and offset over the whole clip. limbs: that, then each bone takes the reference's length (hands and face follow)."}),
        }}

    def align(self, reference_pose, driving_pose, method):
        from ..pose import align, openpose_json

        reference = _poses(reference_pose, "reference_pose")[0]
        aligned = align.align(reference, _poses(driving_pose, "driving_pose"), method)
        return (openpose_json.to_pose_keypoint(aligned),)


class AnimateSuiteSmoothPose:
    DISPLAY_NAME = "Smooth Pose (Animate Suite)"
    DESCRIPTION = "Reduces keypoint jitter: each point becomes a confidence-weighted Gaussian average over neighbouring frames."
    CATEGORY = CATEGORY
    FUNCTION = "smooth"
    RETURN_TYPES = (POSE,)
    RETURN_NAMES = ("pose_keypoint",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "pose_keypoint": (POSE, {"tooltip": "Poses to smooth."}),
            "radius": ("INT", {"default": 2, "min": 0, "max": 30, "tooltip": "Frames on each side that are averaged; 0 leaves the poses unchanged."}),
            "sigma": ("FLOAT", {"default": 1.0, "min": 0.1, "max": 30.0, "step": 0.1, "tooltip": "Width of the Gaussian weights in frames; larger is smoother."}),
        }}

    def smooth(self, pose_keypoint, radius, sigma):
        from ..pose import align, openpose_json

        return (openpose_json.to_pose_keypoint(align.smooth(_poses(pose_keypoint, "pose_keypoint"), radius, sigma)),)


class AnimateSuiteFitPose:
    DISPLAY_NAME = "Fit Pose to Size (Animate Suite)"
    DESCRIPTION = "Moves poses onto a canvas of another size the way Load Video resizes frames: crop to fill, pad to fit, or stretch."
    CATEGORY = CATEGORY
    FUNCTION = "fit"
    RETURN_TYPES = (POSE,)
    RETURN_NAMES = ("pose_keypoint",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "pose_keypoint": (POSE, {"tooltip": "Poses to move."}),
            "width": ("INT", {"default": 512, "min": 8, "max": 8192, "step": 8, "tooltip": "Target canvas width."}),
            "height": ("INT", {"default": 768, "min": 8, "max": 8192, "step": 8, "tooltip": "Target canvas height."}),
            "resize_mode": (list(image_ops.RESIZE_MODES), {"default": "crop", "tooltip": "crop fills the size (points cut off are hidden), pad letterboxes, stretch ignores the aspect."}),
        }}

    def fit(self, pose_keypoint, width, height, resize_mode):
        from ..pose import align, openpose_json

        if resize_mode not in image_ops.RESIZE_MODES:
            raise InputError("resize_mode", f"'{resize_mode}' is unknown", ", ".join(image_ops.RESIZE_MODES))
        fitted = align.fit_canvas(_poses(pose_keypoint, "pose_keypoint"), width, height, resize_mode)
        return (openpose_json.to_pose_keypoint(fitted),)


class AnimateSuiteLoadPoseJSON:
    DISPLAY_NAME = "Load Pose JSON (Animate Suite)"
    DESCRIPTION = "Loads a pose sequence saved as OpenPose JSON (a list of frames, or one frame) from ComfyUI's input folder."
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = (POSE,)
    RETURN_NAMES = ("pose_keypoint",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "file": comfy_bridge.listing_input(comfy_bridge.input_file_choices((".json",)), "An OpenPose JSON file in ComfyUI's input folder."),
        }}

    @classmethod
    def IS_CHANGED(cls, file):
        return os.path.getmtime(comfy_bridge.input_file_path(file, "file"))

    @classmethod
    def VALIDATE_INPUTS(cls, file):
        try:
            comfy_bridge.input_file_path(file, "file")
        except InputError as error:
            return str(error)
        return True

    def load(self, file):
        from ..pose import openpose_json

        return (openpose_json.load(comfy_bridge.input_file_path(file, "file"), "file"),)


class AnimateSuiteSavePoseJSON:
    DISPLAY_NAME = "Save Pose JSON (Animate Suite)"
    DESCRIPTION = "Saves POSE_KEYPOINT as an OpenPose JSON file (a list of frames) in ComfyUI's output folder."
    CATEGORY = CATEGORY
    FUNCTION = "save"
    RETURN_TYPES = ()
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "pose_keypoint": (POSE, {"tooltip": "Poses to save."}),
            "filename_prefix": ("STRING", {"default": "AnimateSuite/pose", "tooltip": "Sub-folder and file name start inside the output folder."}),
        }}

    def save(self, pose_keypoint, filename_prefix):
        from ..pose import openpose_json

        frames = _poses(pose_keypoint, "pose_keypoint")
        path, entry = comfy_bridge.output_file_path(filename_prefix, ".json")
        value = pose_keypoint if isinstance(pose_keypoint, list) else [pose_keypoint]
        openpose_json.save(value, path)
        log.info("Saved %d pose frames to %s", len(frames), path)
        return {"ui": {"text": [entry["filename"]]}}


NODE_CLASSES = [AnimateSuiteDWPoseLoader, AnimateSuiteDWPoseEstimator, AnimateSuiteRenderPose, AnimateSuiteAlignPose,
                AnimateSuiteSmoothPose, AnimateSuiteFitPose, AnimateSuiteLoadPoseJSON, AnimateSuiteSavePoseJSON]
