"""Face detection, face masks and ArcFace embeddings from insightface model packs (onnxruntime only).

Types these nodes pass around:

- ``ANIMATESUITE_FACE_ANALYSIS``: a loaded ``pose.faces.FaceAnalysis`` (SCRFD detector + ArcFace
  recognizer of an antelopev2 / buffalo_l pack, cached onnxruntime sessions).
- ``ANIMATESUITE_FACE_EMBEDS``: a float32 torch tensor ``[N, 512]``, one row per input image: the raw
  (un-normalised) ArcFace vector of the largest face, exactly what StableAnimator feeds its face
  encoder; an all-zero row where no face was found (StableAnimator's own fallback).
- ``MASK``: ComfyUI's ``[N, H, W]`` float masks, 1 = face.
"""

from __future__ import annotations

import logging
import os

import torch

from ..core import images as image_ops
from ..core import model_registry
from ..core.errors import InputError, ModelNotFoundError
from . import comfy_bridge

log = logging.getLogger("animate_suite")

io = comfy_bridge.io
CATEGORY = "Animate Suite/Faces"
FACE_ANALYSIS = comfy_bridge.FACE_ANALYSIS_MODEL
FACE_EMBEDS = comfy_bridge.FACE_EMBEDS
FOLDER = "insightface"
PACKS = ("antelopev2", "buffalo_l")


def _channel_input():
    return comfy_bridge.combo(
        "channel_order", ("rgb", "bgr"),
        "Colour order the insightface models see. rgb: as insightface intends (and StableAnimator's "
        "training data). bgr: as StableAnimator's inference scripts pass it.", default="rgb")


def pack_choices() -> list[str]:
    """Folders with ONNX files under the insightface model folders (also 'models/<pack>', insightface's own layout)."""
    found = set(PACKS)
    for root in comfy_bridge.ComfyLocator().roots(FOLDER):
        if not os.path.isdir(root):
            continue
        for folder, subfolders, files in os.walk(root):
            depth = os.path.relpath(folder, root).count(os.sep)
            if depth >= 2:
                subfolders[:] = []
            if folder != root and any(f.lower().endswith(".onnx") for f in files):
                found.add(os.path.relpath(folder, root).replace(os.sep, "/"))
    return sorted(found)


def _pack_path(choice: str) -> str:
    if choice in PACKS:
        for name in (choice, f"models/{choice}"):
            try:
                return comfy_bridge.registered_path(f"{FOLDER}/{name}", "model_pack")
            except (InputError, ModelNotFoundError):
                continue
        return comfy_bridge.find_model(model_registry.INSIGHTFACE, "model_pack")
    return comfy_bridge.registered_path(f"{FOLDER}/{choice}", "model_pack")


class AnimateSuiteFaceAnalysisLoader(io.ComfyNode):
    DISPLAY_NAME = "Load Face Analysis (Animate Suite)"

    @classmethod
    def define_schema(cls):
        return comfy_bridge.schema(
            cls, "Loads an insightface model pack (antelopev2 for StableAnimator, or buffalo_l) from models/insightface "
            "and runs it with onnxruntime: no insightface package, dlib or compiler needed.", CATEGORY,
            inputs=[
                comfy_bridge.file_combo("model_pack", pack_choices(), "Unzipped insightface pack folder in models/insightface (antelopev2 is what StableAnimator uses).", default="antelopev2"),
                comfy_bridge.onnx_device_input(),
            ],
            outputs=[comfy_bridge.output(FACE_ANALYSIS, "face_analysis")])

    @classmethod
    def execute(cls, model_pack, device):
        from ..pose.faces import FaceAnalysis

        return io.NodeOutput(FaceAnalysis.from_folder(_pack_path(model_pack), device))


class AnimateSuiteFaceMask(io.ComfyNode):
    DISPLAY_NAME = "Face Mask (Animate Suite)"

    @classmethod
    def define_schema(cls):
        return comfy_bridge.schema(
            cls, "Face masks per frame. boxes: StableAnimator's convention, every detected face box filled and the whole "
            "frame when no face is found. landmark_hull: the outline of the face landmarks (DWPose's 68 face points "
            "when pose_keypoint is connected, else the detected box and 5 points), grown and feathered.", CATEGORY,
            inputs=[
                FACE_ANALYSIS.Input("face_analysis", tooltip="From Load Face Analysis."),
                io.Image.Input("images", tooltip="Frames to find faces in."),
                comfy_bridge.combo("mode", ("boxes", "landmark_hull"), "boxes: StableAnimator's face masks. landmark_hull: tighter masks following the face outline.", default="boxes"),
                io.Int.Input("grow", default=0, min=-256, max=256, tooltip="Pixels to grow (negative: shrink) the mask by."),
                io.Int.Input("feather", default=0, min=0, max=256, tooltip="Soft edge width in pixels (Gaussian blur)."),
                _channel_input(),
                comfy_bridge.POSE_KEYPOINT.Input("pose_keypoint", optional=True, tooltip="Optional DWPose keypoints of the same frames: landmark_hull then uses their 68 face points."),
            ],
            outputs=[comfy_bridge.output(io.Mask, "mask")])

    @classmethod
    def execute(cls, face_analysis, images, mode, grow, feather, channel_order, pose_keypoint=None):
        from ..pose import faces

        frames = image_ops.to_uint8(image_ops.check_image_batch(images))
        ctx = comfy_bridge.run_context([], torch.float32)
        result = faces.face_masks(face_analysis, frames, mode, grow, feather, channel_order, pose_keypoint, ctx)
        if result.faceless:
            log.warning("Face Mask: no face in %d of %d frames (0-based: %s)%s", len(result.faceless), len(frames),
                        ", ".join(map(str, result.faceless)), "; their masks cover the whole frame" if mode == "boxes" else "")
        return io.NodeOutput(torch.from_numpy(result.masks))


class AnimateSuiteFaceEmbedding(io.ComfyNode):
    DISPLAY_NAME = "Face Embedding (Animate Suite)"

    @classmethod
    def define_schema(cls):
        return comfy_bridge.schema(
            cls, "The ArcFace identity vector of the largest face in each image (raw, un-normalised, as StableAnimator "
            "uses it); zeros and a warning where no face is found.", CATEGORY,
            inputs=[
                FACE_ANALYSIS.Input("face_analysis", tooltip="From Load Face Analysis (antelopev2 for StableAnimator)."),
                io.Image.Input("image", tooltip="The reference image (a batch gives one vector per image)."),
                _channel_input(),
            ],
            outputs=[comfy_bridge.output(FACE_EMBEDS, "face_embeds")])

    @classmethod
    def execute(cls, face_analysis, image, channel_order):
        from ..pose.faces import largest_face_embeddings

        frames = image_ops.to_uint8(image_ops.check_image_batch(image, "image"))
        result = largest_face_embeddings(face_analysis, frames, channel_order)
        if result.faceless:
            log.warning("Face Embedding: no face in image(s) %s (0-based); using zeros as StableAnimator does",
                        ", ".join(map(str, result.faceless)))
        return io.NodeOutput(torch.from_numpy(result.vectors))


NODE_CLASSES = [AnimateSuiteFaceAnalysisLoader, AnimateSuiteFaceMask, AnimateSuiteFaceEmbedding]
