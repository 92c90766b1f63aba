"""Face detection, 5-point landmarks, ArcFace embeddings and face masks from insightface ONNX packs.

Runs insightface's released model packs (``antelopev2``: ``scrfd_10g_bnkps.onnx`` + ``glintr100.onnx``;
``buffalo_l``: ``det_10g.onnx`` + ``w600k_r50.onnx``) with onnxruntime directly, so neither the
``insightface`` package nor a compiler (dlib) is needed. The steps follow ``FaceAnalysis.get`` with
``det_size=(640, 640)``:

- SCRFD: letterbox top-left into 640x640 (bilinear, zero padding), ``(x - 127.5) / 128``; per stride
  8/16/32 decode distance boxes and 5 keypoints around anchor centres (2 anchors per cell), keep
  score >= 0.5, NMS at IoU 0.4 (legacy +1 areas), boxes and points back to image pixels.
- ArcFace: similarity transform of the 5 points onto the 112x112 ArcFace template (Umeyama),
  bilinear warp, ``(x - 127.5) / 127.5``; the output vector is returned raw (not normalised), as
  StableAnimator feeds it to its face encoder. (insightface reads the graph to spot old MXNet
  recognizers, which want no normalisation; both released packs' recognizers, glintr100 and
  w600k_r50, are PyTorch exports that take the 127.5 scaling used here.)

insightface expects BGR images and swaps to RGB for its models. Frames here are RGB and reach the
models as RGB (``channel_order="rgb"``, what insightface intends and what StableAnimator's training
data saw). StableAnimator's inference scripts hand insightface RGB images, so its models see BGR
there; ``channel_order="bgr"`` reproduces that.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import CheckpointError, InputError, ModelNotFoundError
from . import drawing, resize, sessions, warp
from .detector import nms
from .keypoints import FACE
from .openpose_json import from_pose_keypoint

DET_SIZE = (640, 640)
DET_THRESHOLD = 0.5
NMS_THRESHOLD = 0.4
DET_MEAN, DET_STD = 127.5, 128.0
REC_MEAN, REC_STD = 127.5, 127.5
EMBEDDING_SIZE = 512
CHANNEL_ORDERS = ("rgb", "bgr")
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], np.float32)
SOURCE = "https://github.com/deepinsight/insightface/releases (antelopev2 or buffalo_l model pack)"

# SCRFD output layouts by output count: (strides, anchors per cell, has keypoints).
SCRFD_LAYOUTS = {6: ((8, 16, 32), 2, False), 9: ((8, 16, 32), 2, True),
                 10: ((8, 16, 32, 64, 128), 1, False), 15: ((8, 16, 32, 64, 128), 1, True)}


@dataclass
class Face:
    bbox: np.ndarray  # x1, y1, x2, y2 in image pixels
    score: float
    kps: np.ndarray | None  # 5x2: eyes, nose, mouth corners

    @property
    def area(self) -> float:
        return float((self.bbox[2] - self.bbox[0]) * (self.bbox[3] - self.bbox[1]))


def find_pack_models(folder: str | os.PathLike) -> tuple[Path, Path | None]:
    """The detection and recognition ONNX files of a model pack folder, told apart by their I/O."""
    folder = Path(folder)
    files = sorted(folder.glob("*.onnx"))
    if not files:
        raise ModelNotFoundError("Face analysis model pack", f"ONNX files in '{folder.name}'", [str(folder)], SOURCE)
    ort = sessions.onnxruntime_module()
    detection = recognition = None
    for path in files:
        try:
            probe = ort.InferenceSession(str(path), providers=[sessions.CPU])
        except Exception:
            continue
        inputs, outputs = probe.get_inputs(), probe.get_outputs()
        shape = inputs[0].shape
        side = shape[2] if len(shape) == 4 and shape[2] == shape[3] and isinstance(shape[2], int) else None
        # insightface's model router, in its order: detector, then landmark (192) and attribute (96)
        # models, which we skip, then the recognizer.
        if len(outputs) in SCRFD_LAYOUTS:
            detection = detection or path
        elif side in (192, 96):
            continue
        elif len(inputs) == 1 and len(outputs) == 1 and side and side >= 112 and side % 16 == 0:
            recognition = recognition or path
    if detection is None:
        raise CheckpointError(f"'{folder}' has no SCRFD face detector (e.g. det_10g.onnx or scrfd_10g_bnkps.onnx). "
                              f"Get a complete pack from {SOURCE}.")
    return detection, recognition


class FaceAnalysis:
    """An SCRFD detector and (optionally) an ArcFace recognizer."""

    def __init__(self, detector: sessions.OnnxModel, recognizer: sessions.OnnxModel | None = None):
        self.detector = detector
        self.recognizer = recognizer
        count = len(detector.outputs)
        if count not in SCRFD_LAYOUTS:
            raise CheckpointError(f"'{detector.path.name}' is not an SCRFD face detector: it has {detector.describe()}.")
        self.strides, self.anchors, self.has_kps = SCRFD_LAYOUTS[count]
        if recognizer is not None:
            shape = recognizer.input.shape
            if len(recognizer.outputs) != 1 or len(shape) != 4 or shape[2] != shape[3]:
                raise CheckpointError(f"'{recognizer.path.name}' is not an ArcFace recognizer: it has {recognizer.describe()}.")
            self.rec_size = int(shape[2])

    @classmethod
    def from_folder(cls, folder, device: str = "auto") -> "FaceAnalysis":
        detection, recognition = find_pack_models(folder)
        detector = sessions.load(detection, "face detector", device, SOURCE)
        recognizer = sessions.load(recognition, "face recognizer", device, SOURCE) if recognition else None
        return cls(detector, recognizer)

    # ------------------------------------------------------------------ detection

    def detect(self, image: np.ndarray, channel_order: str = "rgb", threshold: float = DET_THRESHOLD,
               det_size: tuple[int, int] = DET_SIZE) -> list[Face]:
        """Faces in one uint8 RGB image, highest score first."""
        model_image = _model_channels(image, channel_order)
        height, width = image.shape[:2]
        in_w, in_h = det_size
        if float(height) / width > float(in_h) / in_w:
            new_h = in_h
            new_w = int(new_h / (float(height) / width))
        else:
            new_w = in_w
            new_h = int(new_w * (float(height) / width))
        det_scale = float(new_h) / height
        canvas = np.zeros((in_h, in_w, 3), np.uint8)
        canvas[:new_h, :new_w] = resize.resize(model_image, new_w, new_h, "linear")
        blob = ((canvas.astype(np.float32) - np.float32(DET_MEAN)) * np.float32(1.0 / DET_STD)).transpose(2, 0, 1)[None]
        outputs = self.detector.session.run([o.name for o in self.detector.outputs], {self.detector.input.name: blob})
        scores, boxes, points = self._decode(outputs, in_h, in_w, threshold)
        if len(scores) == 0:
            return []
        order = scores.ravel().argsort()[::-1]
        boxes = boxes / det_scale
        detections = np.hstack((boxes, scores)).astype(np.float32, copy=False)[order]
        keep = nms(detections[:, :4], detections[:, 4], NMS_THRESHOLD)
        kps = None if points is None else (points / det_scale)[order][keep]
        return [Face(detections[i, :4], float(detections[i, 4]), None if kps is None else kps[n])
                for n, i in enumerate(keep)]

    def _decode(self, outputs, height: int, width: int, threshold: float):
        count = len(self.strides)
        batched = len(outputs[0].shape) == 3
        scores_list, boxes_list, kps_list = [], [], []
        for index, stride in enumerate(self.strides):
            scores = outputs[index][0] if batched else outputs[index]
            box_preds = (outputs[index + count][0] if batched else outputs[index + count]) * stride
            centers = np.stack(np.mgrid[: height // stride, : width // stride][::-1], axis=-1).astype(np.float32)
            centers = (centers * stride).reshape(-1, 2)
            if self.anchors > 1:
                centers = np.stack([centers] * self.anchors, axis=1).reshape(-1, 2)
            keep = np.where(scores >= threshold)[0]
            boxes = np.stack([centers[:, 0] - box_preds[:, 0], centers[:, 1] - box_preds[:, 1],
                              centers[:, 0] + box_preds[:, 2], centers[:, 1] + box_preds[:, 3]], axis=-1)
            scores_list.append(scores[keep])
            boxes_list.append(boxes[keep])
            if self.has_kps:
                kps_preds = (outputs[index + count * 2][0] if batched else outputs[index + count * 2]) * stride
                kps = np.stack([centers[:, i % 2] + kps_preds[:, i] for i in range(kps_preds.shape[1])], axis=-1)
                kps_list.append(kps.reshape(kps.shape[0], -1, 2)[keep])
        scores = np.vstack(scores_list)
        if scores.size == 0:
            return np.zeros((0, 1)), None, None
        return scores, np.vstack(boxes_list), np.vstack(kps_list) if self.has_kps else None

    # ------------------------------------------------------------------ recognition

    def embed(self, image: np.ndarray, face: Face, channel_order: str = "rgb") -> np.ndarray:
        """The raw ArcFace vector of ``face`` (float32, not normalised)."""
        if self.recognizer is None:
            raise CheckpointError(f"the model pack in '{self.detector.path.parent}' has no ArcFace recognizer "
                                  "(glintr100.onnx or w600k_r50.onnx)")
        if face.kps is None:
            raise CheckpointError(f"'{self.detector.path.name}' gives no face landmarks; use a detector with keypoints")
        matrix = similarity_transform(face.kps, ARCFACE_TEMPLATE * (self.rec_size / 112.0))
        crop = warp.warp_affine(_model_channels(image, channel_order), matrix, self.rec_size, self.rec_size)
        blob = ((crop.astype(np.float32) - np.float32(REC_MEAN)) * np.float32(1.0 / REC_STD)).transpose(2, 0, 1)[None]
        return self.recognizer.session.run(None, {self.recognizer.input.name: blob})[0].reshape(-1).astype(np.float32)

    def largest_face_embedding(self, image: np.ndarray, channel_order: str = "rgb") -> np.ndarray | None:
        """StableAnimator's reference embedding: the largest detected face (area), or None."""
        faces = self.detect(image, channel_order)
        if not faces:
            return None
        largest = sorted(faces, key=lambda f: f.area)[-1]
        return self.embed(image, largest, channel_order)


@dataclass
class FaceEmbeddings:
    vectors: np.ndarray  # float32 [N, EMBEDDING_SIZE]
    faceless: list[int]  # images without a face: their rows are zeros (StableAnimator's fallback)


def largest_face_embeddings(analysis: FaceAnalysis, images: np.ndarray, channel_order: str = "rgb") -> FaceEmbeddings:
    """Per uint8 RGB image, the raw ArcFace vector of its largest face, or zeros where there is none."""
    rows, faceless = [], []
    for index, image in enumerate(images):
        vector = analysis.largest_face_embedding(image, channel_order)
        if vector is None:
            faceless.append(index)
            vector = np.zeros(EMBEDDING_SIZE, np.float32)
        rows.append(vector)
    return FaceEmbeddings(np.stack(rows).astype(np.float32), faceless)


def _model_channels(image: np.ndarray, channel_order: str) -> np.ndarray:
    if channel_order not in CHANNEL_ORDERS:
        raise InputError("channel_order", f"'{channel_order}' is unknown", " or ".join(CHANNEL_ORDERS))
    return np.ascontiguousarray(image[..., ::-1]) if channel_order == "bgr" else image


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, shift) taking ``src`` onto ``dst`` (Umeyama); 2x3."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    covariance = dst_c.T @ src_c / len(src)
    d = np.ones(2)
    if np.linalg.det(covariance) < 0:
        d[1] = -1
    u, s, vt = np.linalg.svd(covariance)
    rotation = u @ np.diag(d) @ vt
    variance = src_c.var(axis=0).sum()
    scale = (s @ d) / variance if variance > 0 else 1.0
    matrix = np.zeros((2, 3))
    matrix[:, :2] = rotation * scale
    matrix[:, 2] = dst_mean - scale * (rotation @ src_mean)
    return matrix


# ----------------------------------------------------------------------------- masks

MASK_MODES = ("boxes", "landmark_hull")


@dataclass
class FaceMasks:
    masks: np.ndarray  # float32 [N,H,W], 1 = face
    faceless: list[int]  # frames in which the detector found no face


def face_masks(analysis: FaceAnalysis, frames: np.ndarray, mode: str, grow_pixels: int = 0, feather_pixels: int = 0,
               channel_order: str = "rgb", pose_keypoint=None, ctx=None) -> FaceMasks:
    """Face masks of uint8 RGB frames ``[N,H,W,3]``.

    ``boxes``: StableAnimator's masks (``box_mask``). ``landmark_hull``: the hull of the 68 DWPose face points
    of ``pose_keypoint`` (a POSE_KEYPOINT value, one frame per image) when given, else of each detected
    face's outline; grown by ``grow_pixels`` and feathered by ``feather_pixels`` either way.
    """
    if mode not in MASK_MODES:
        raise InputError("mode", f"'{mode}' is unknown", " or ".join(MASK_MODES))
    height, width = frames.shape[1:3]
    landmarks = None
    if mode == "landmark_hull" and pose_keypoint is not None:
        landmarks = pose_face_points(pose_keypoint, len(frames), width, height)
    masks, faceless = [], []
    for index, frame in enumerate(frames):
        if ctx is not None:
            ctx.check_interrupt()
        if landmarks is not None:
            masks.append(hull_mask(width, height, landmarks[index]))
        else:
            found = analysis.detect(frame, channel_order)
            if not found:
                faceless.append(index)
            masks.append(box_mask(width, height, found) if mode == "boxes"
                         else hull_mask(width, height, [face_outline_points(f) for f in found]))
        if ctx is not None:
            ctx.report(index + 1, len(frames))
    result = feather(grow(np.stack(masks), grow_pixels), feather_pixels)
    return FaceMasks(np.ascontiguousarray(result, np.float32), faceless)


def pose_face_points(pose_keypoint, count: int, width: int, height: int) -> list[list[np.ndarray]]:
    """Per frame of a POSE_KEYPOINT value, the visible DWPose face points of every person on a
    ``width`` x ``height`` pixel grid."""
    poses = from_pose_keypoint(pose_keypoint, "pose_keypoint")
    if len(poses) != count:
        raise InputError("pose_keypoint", f"has {len(poses)} frames for {count} images", "one pose frame per image")
    out = []
    for pose in poses:
        pose = pose.rescaled(width, height)
        out.append([points[scores >= 0.3] for points, scores in zip(pose.keypoints[:, FACE], pose.scores[:, FACE])])
    return out


def box_mask(width: int, height: int, faces: list[Face]) -> np.ndarray:
    """StableAnimator's face mask: every face box filled with 1, or the whole frame when there is none."""
    if not faces:
        return np.ones((height, width), np.float32)
    mask = np.zeros((height, width), np.float32)
    for face in faces:
        x1, y1, x2, y2 = (int(v) for v in face.bbox[:4])
        left, right = max(min(x1, x2), 0), min(max(x1, x2), width - 1)
        top, bottom = max(min(y1, y2), 0), min(max(y1, y2), height - 1)
        if left <= right and top <= bottom:
            mask[top:bottom + 1, left:right + 1] = 1.0
    return mask


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Convex hull (monotone chain), counter-clockwise, of ``[N,2]`` points."""
    pts = sorted(set(map(tuple, np.asarray(points, np.float64))))
    if len(pts) <= 2:
        return np.array(pts)

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower, upper = [], []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return np.array(lower[:-1] + upper[:-1])


def hull_mask(width: int, height: int, landmark_sets: list[np.ndarray]) -> np.ndarray:
    """1 inside the convex hull of each landmark set (pixels), 0 elsewhere."""
    canvas = np.zeros((height, width, 3), np.uint8)
    for points in landmark_sets:
        if len(points) < 3:
            continue
        hull = np.rint(convex_hull(points)).astype(np.int64)
        drawing.fill_convex_poly(canvas, hull, (255, 255, 255))
    return (canvas[..., 0] > 0).astype(np.float32)


def face_outline_points(face: Face) -> np.ndarray:
    """Points outlining a detected face when no dense landmarks are given: its 5 keypoints and the
    ellipse inscribed in its box."""
    x1, y1, x2, y2 = face.bbox[:4]
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    ellipse = np.stack([(x1 + x2) / 2 + (x2 - x1) / 2 * np.cos(angles), (y1 + y2) / 2 + (y2 - y1) / 2 * np.sin(angles)], 1)
    return ellipse if face.kps is None else np.vstack([ellipse, face.kps])


def grow(masks: np.ndarray, pixels: int) -> np.ndarray:
    """Dilate (``pixels`` > 0) or erode (< 0) ``[N,H,W]`` masks by an octagon of that radius."""
    import torch
    import torch.nn.functional as F

    if pixels == 0:
        return masks
    x = torch.from_numpy(np.ascontiguousarray(masks, np.float32))[:, None]
    sign = 1.0 if pixels > 0 else -1.0
    x = x * sign
    cross = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0]])
    for step in range(abs(pixels)):
        if step % 2:
            x = F.max_pool2d(x, 3, stride=1, padding=1)
        else:  # a 4-neighbour step; alternating with squares gives an octagon, close to a disk
            padded = F.pad(x, (1, 1, 1, 1), value=float("-inf"))
            patches = F.unfold(padded, 3)[:, cross.flatten().bool()]
            x = patches.max(dim=1).values.view_as(x)
    return (x * sign)[:, 0].numpy()


def feather(masks: np.ndarray, pixels: int) -> np.ndarray:
    """Soften mask edges with a Gaussian blur of standard deviation ``pixels / 2``."""
    import torch
    import torch.nn.functional as F

    if pixels <= 0:
        return masks
    sigma = pixels / 2.0
    radius = int(np.ceil(3 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    x = torch.from_numpy(np.ascontiguousarray(masks, np.float32))[:, None]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
    return x[:, 0].clamp(0, 1).numpy()
