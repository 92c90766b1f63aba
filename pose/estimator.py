"""DWPose whole-body estimator (``dw-ll_ucoco_384.onnx``): top-down crops and SimCC decoding.

For each person box: centre and 1.25x size, widened to the model's 3:4 aspect, cut out with an
affine warp (OpenCV-exact bilinear) to 288x384, normalised with the ImageNet mean/std in the channel
order fed. The model returns SimCC vectors per keypoint (x at 2x, y at 2x resolution); the keypoint
is the argmax bin / 2, its score the smaller of the two maxima (location -1 when the score is <= 0),
mapped back with ``kp / input_size * scale + centre - scale / 2``. The dtype of every step follows
the reference code, so results agree to float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from . import warp

INPUT_WH = (288, 384)
BBOX_PADDING = 1.25
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)
SIMCC_SPLIT_RATIO = 2.0


@dataclass(frozen=True)
class PoseSettings:
    input_wh: tuple[int, int] = INPUT_WH
    bbox_padding: float = BBOX_PADDING
    mean: tuple[float, float, float] = MEAN
    std: tuple[float, float, float] = STD
    simcc_split_ratio: float = SIMCC_SPLIT_RATIO


def box_center_scale(box: np.ndarray, padding: float) -> tuple[np.ndarray, np.ndarray]:
    """(x1, y1, x2, y2) -> centre and padded (w, h), in the box's dtype."""
    x1, y1, x2, y2 = np.hsplit(box[None, :], [1, 2, 3])
    center = np.hstack([x1 + x2, y1 + y2]) * 0.5
    scale = np.hstack([x2 - x1, y2 - y1]) * padding
    return center[0], scale[0]


def fix_aspect_ratio(scale: np.ndarray, aspect_ratio: float) -> np.ndarray:
    """Grow (w, h) to ``w / h == aspect_ratio``."""
    w, h = np.hsplit(scale, [1])
    return np.where(w > h * aspect_ratio, np.hstack([w, w / aspect_ratio]), np.hstack([h * aspect_ratio, h]))


def crop_matrix(center: np.ndarray, scale: np.ndarray, output_wh: tuple[int, int]) -> np.ndarray:
    """Affine matrix taking the (centre, scale) box onto the model input, from three float32 points."""
    dst_w, dst_h = output_wh
    src_dir = np.array([0.0, scale[0] * -0.5])
    dst_dir = np.array([0.0, dst_w * -0.5])
    src = np.zeros((3, 2), np.float32)
    src[0, :] = center
    src[1, :] = center + src_dir
    src[2, :] = _third_point(src[0, :], src[1, :])
    dst = np.zeros((3, 2), np.float32)
    dst[0, :] = [dst_w * 0.5, dst_h * 0.5]
    dst[1, :] = np.array([dst_w * 0.5, dst_h * 0.5]) + dst_dir
    dst[2, :] = _third_point(dst[0, :], dst[1, :])
    return warp.affine_from_points(src, dst)


def _third_point(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    direction = a - b
    return b + np.r_[-direction[1], direction[0]]


def crop_person(image: np.ndarray, box, settings: PoseSettings = PoseSettings()):
    """One model input ``[3,h,w]`` float32 for ``box`` on ``image`` (uint8 HWC), with its centre and scale."""
    center, scale = box_center_scale(np.array(box), settings.bbox_padding)
    w, h = settings.input_wh
    scale = fix_aspect_ratio(scale, w / h)
    crop = warp.warp_affine(image, crop_matrix(center, scale, (w, h)), w, h)
    table = _normalization_table(settings.mean, settings.std)
    return np.stack([np.take(table[c], crop[..., c]) for c in range(3)]), center, scale


@lru_cache(maxsize=8)
def _normalization_table(mean: tuple, std: tuple) -> np.ndarray:
    """``(pixel - mean) / std`` in float64, stored as float32, for every channel and byte value: the
    reference's normalisation as a lookup."""
    return ((np.arange(256)[None, :] - np.array(mean)[:, None]) / np.array(std)[:, None]).astype(np.float32)


def decode_simcc(simcc_x: np.ndarray, simcc_y: np.ndarray, split_ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """SimCC ``[N,K,Wx]``/``[N,K,Wy]`` -> locations ``[N,K,2]`` in input pixels and scores ``[N,K]`` (float32)."""
    n, k, _ = simcc_x.shape
    flat_x = simcc_x.reshape(n * k, -1)
    flat_y = simcc_y.reshape(n * k, -1)
    locs = np.stack((np.argmax(flat_x, axis=1), np.argmax(flat_y, axis=1)), axis=-1).astype(np.float32)
    scores = np.minimum(np.amax(flat_x, axis=1), np.amax(flat_y, axis=1))
    locs[scores <= 0.0] = -1
    locs /= split_ratio
    return locs.reshape(n, k, 2), scores.reshape(n, k)


def to_image_coordinates(locs: np.ndarray, center: np.ndarray, scale: np.ndarray, input_wh) -> np.ndarray:
    return locs / input_wh * scale + center - scale / 2
