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

import numpy as np
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

        if mode not in ("boxes", "landmark_hull"):
            raise InputError("mode", f"'{mode}' is unknown", "boxes or landmark_hull")
        frames = image_ops.to_uint8(image_ops.check_image_batch(images))
        height, width = frames.shape[1:3]
        landmarks = _pose_face_points(pose_keypoint, len(frames), width, height) if mode == "landmark_hull" else None
        ctx = comfy_bridge.run_context([], torch.float32)
        masks, faceless = [], []
        for index, frame in enumerate(frames):
            ctx.check_interrupt()
            if landmarks is not None:
                masks.append(faces.hull_mask(width, height, landmarks[index]))
            else:
                found = face_analysis.detect(frame, channel_order)
                if not found:
                    faceless.append(index)
                masks.append(faces.box_mask(width, height, found) if mode == "boxes"
                             else faces.hull_mask(width, height, [faces.face_outline_points(f) for f in found]))
            ctx.report(index + 1, len(frames))
        if faceless:
            log.warning("Face Mask: no face in %d of %d frames (0-based: %s)%s", len(faceless), len(frames),
                        ", ".join(map(str, faceless)), "; their masks cover the whole frame" if mode == "boxes" else "")
        result = faces.feather(faces.grow(np.stack(masks), grow), feather)
        return io.NodeOutput(torch.from_numpy(np.ascontiguousarray(result, np.float32)))


def _pose_face_points(pose_keypoint, count: int, width: int, height: int):
    """Per frame, the visible DWPose face points of every person, on the frames' pixel grid."""
    if pose_keypoint is None:
        return None
    from ..pose.keypoints import FACE
    from ..pose.openpose_json import from_pose_keypoint

    poses = from_pose_keypoint(pose_keypoint, "pose_keypoint")
    if len(poses) != count:
        raise InputError("pose_keypoint", f"has {len(poses)} frames for {count} images", "one pose frame per image")
    out = []
    for pose in poses:
        pose = pose.rescaled(width, height)
        out.append([points[scores >= 0.3] for points, scores in zip(pose.keypoints[:, FACE], pose.scores[:, FACE])])
    return out


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
        from ..pose.faces import EMBEDDING_SIZE

        frames = image_ops.to_uint8(image_ops.check_image_batch(image, "image"))
        rows, faceless = [], []
        for index, frame in enumerate(frames):
            vector = face_analysis.largest_face_embedding(frame, channel_order)
            if vector is None:
                faceless.append(index)
                vector = np.zeros(EMBEDDING_SIZE, np.float32)
            rows.append(vector)
        if faceless:
            log.warning("Face Embedding: no face in image(s) %s (0-based); using zeros as StableAnimator does",
                        ", ".join(map(str, faceless)))
        return io.NodeOutput(torch.from_numpy(np.stack(rows).astype(np.float32)))


NODE_CLASSES = [AnimateSuiteFaceAnalysisLoader, AnimateSuiteFaceMask, AnimateSuiteFaceEmbedding]
