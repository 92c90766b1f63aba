"""YOLOX person detector (``yolox_l.onnx``): letterbox input and box decoding exactly as DWPose does.

Pre-processing: scale by ``r = min(640/h, 640/w)`` with OpenCV's bilinear resize to
``(int(w*r), int(h*r))``, paste top-left on a 114-grey 640x640 canvas, float32 CHW, no normalisation.
Decoding: the raw YOLOX head (``[dx, dy, log w, log h, obj, 80 classes]`` per anchor, strides
8/16/32), score = obj * class, centre boxes to corners, divided by ``r``; NMS (IoU 0.45, score > 0.1,
legacy +1 areas) and finally score > 0.3 for the person class. NMS is class-aware, so other classes
never suppress a person: running it for class 0 alone gives the reference's person boxes in its order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import resize

INPUT_SIZE = (640, 640)
PAD_VALUE = 114
STRIDES = (8, 16, 32)
NMS_IOU = 0.45
NMS_SCORE = 0.1
KEEP_SCORE = 0.3
PERSON = 0


@dataclass(frozen=True)
class DetectorSettings:
    input_size: tuple[int, int] = INPUT_SIZE
    pad_value: int = PAD_VALUE
    strides: tuple[int, ...] = STRIDES
    nms_iou: float = NMS_IOU
    nms_score: float = NMS_SCORE
    keep_score: float = KEEP_SCORE


def letterbox(frames: np.ndarray, settings: DetectorSettings = DetectorSettings()) -> tuple[np.ndarray, float]:
    """uint8 ``[N,H,W,3]`` -> float32 ``[N,3,640,640]`` detector input and the scale ``r``."""
    _, height, width, _ = frames.shape
    in_h, in_w = settings.input_size
    ratio = min(in_h / height, in_w / width)
    new_w, new_h = int(width * ratio), int(height * ratio)
    inputs = np.full((len(frames), 3, in_h, in_w), settings.pad_value, np.float32)
    for i, frame in enumerate(frames):
        inputs[i, :, :new_h, :new_w] = resize.resize(frame, new_w, new_h, "linear").transpose(2, 0, 1)
    return inputs, ratio


def _anchor_grid(settings: DetectorSettings) -> tuple[np.ndarray, np.ndarray]:
    grids, strides = [], []
    in_h, in_w = settings.input_size
    for stride in settings.strides:
        xv, yv = np.meshgrid(np.arange(in_w // stride), np.arange(in_h // stride))
        grid = np.stack((xv, yv), 2).reshape(1, -1, 2)
        grids.append(grid)
        strides.append(np.full((*grid.shape[:2], 1), stride))
    return np.concatenate(grids, 1), np.concatenate(strides, 1)


def decode(raw: np.ndarray, ratio: float, settings: DetectorSettings = DetectorSettings()) -> list[np.ndarray]:
    """YOLOX outputs ``[N, anchors, 5+classes]`` -> per frame, person boxes ``[B,4]`` (x1,y1,x2,y2; float64)."""
    grids, strides = _anchor_grid(settings)
    if raw.ndim != 3 or raw.shape[1] != grids.shape[1] or raw.shape[2] < 6:
        raise ValueError(f"detector output has shape {tuple(raw.shape)}, expected [N, {grids.shape[1]}, 5+classes]")
    boxes_per_frame = []
    for output in raw:
        predictions = np.array(output[None], np.float32)
        predictions[..., :2] = (predictions[..., :2] + grids) * strides
        predictions[..., 2:4] = np.exp(predictions[..., 2:4]) * strides
        predictions = predictions[0]
        boxes = predictions[:, :4]
        scores = predictions[:, 4] * predictions[:, 5 + PERSON]
        corners = np.ones_like(boxes)
        corners[:, 0] = boxes[:, 0] - boxes[:, 2] / 2.0
        corners[:, 1] = boxes[:, 1] - boxes[:, 3] / 2.0
        corners[:, 2] = boxes[:, 0] + boxes[:, 2] / 2.0
        corners[:, 3] = boxes[:, 1] + boxes[:, 3] / 2.0
        corners /= ratio
        boxes_per_frame.append(_person_boxes(corners, scores, settings))
    return boxes_per_frame


def _person_boxes(boxes: np.ndarray, scores: np.ndarray, settings: DetectorSettings) -> np.ndarray:
    valid = scores > settings.nms_score
    if not valid.any():
        return np.zeros((0, 4))
    valid_boxes, valid_scores = boxes[valid], scores[valid]
    keep = nms(valid_boxes, valid_scores, settings.nms_iou)
    kept_boxes = valid_boxes[keep].astype(np.float64)
    kept_scores = valid_scores[keep].astype(np.float64)
    return kept_boxes[kept_scores > settings.keep_score]


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy NMS with the legacy ``+1`` pixel areas; indices in descending score order."""
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(int(i))
        xx1 = np.maximum(x1[i], x1[order[1:]])
        yy1 = np.maximum(y1[i], y1[order[1:]])
        xx2 = np.minimum(x2[i], x2[order[1:]])
        yy2 = np.minimum(y2[i], y2[order[1:]])
        w = np.maximum(0.0, xx2 - xx1 + 1)
        h = np.maximum(0.0, yy2 - yy1 + 1)
        inter = w * h
        overlap = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[np.where(overlap <= iou_threshold)[0] + 1]
    return keep
