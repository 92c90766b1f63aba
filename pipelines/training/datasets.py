"""What training datasets share: reading frames and images, crops and resizes, listing files, picking frames.

A dataset has ``__len__`` and ``sample(item, rng)``: item ``item`` drawn with the sample's own ``numpy``
generator (see ``sampling.py``), so the frames and crops chosen depend only on the run's seed and the
sample's stream position. Frames are decoded with ``core/video.py``. Each method's datasets live beside it:
``pipelines/animate_anyone/training_data.py`` (video + pose-video pairs), ``pipelines/easyanimate/training_data.py``
(captioned clips and images).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ...core.errors import AnimateSuiteError, InputError
from ...core.images import CLIP_MEAN, CLIP_STD, resize_batch
from ...core import video

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


class DatasetError(AnimateSuiteError):
    """A dataset file is missing, unreadable or inconsistent. The message names the file."""


# --- frames -------------------------------------------------------------------------------------------


def read_frames_at(path: Path, indices: Sequence[int]) -> np.ndarray:
    try:
        return video.read_frames_at(path, indices)
    except (InputError, OSError, ValueError) as error:
        raise DatasetError(f"could not read frames {list(indices)[:4]}... of '{path}': {error}") from None
    except Exception as error:  # PyAV raises its own error classes for damaged files
        raise DatasetError(f"could not decode '{path}': {error}") from None


def frame_count(path: Path) -> int:
    try:
        return video.count_frames(path)
    except Exception as error:
        raise DatasetError(f"could not read '{path}': {error}") from None


def read_image(path: Path) -> np.ndarray:
    from PIL import Image

    from ...core.images import pil_to_uint8

    try:
        with Image.open(path) as image:
            return pil_to_uint8(image)
    except Exception as error:
        raise DatasetError(f"could not read image '{path}': {error}") from None


def to_float(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``[N,H,W,3]`` -> float ``[N,H,W,3]`` in 0..1."""
    return torch.from_numpy(np.array(frames, dtype=np.uint8)).float().div_(255.0)


def video_to_uint8(frames: torch.Tensor) -> np.ndarray:
    return (frames.clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()


def to_channels_first(frames: torch.Tensor, normalize: bool) -> torch.Tensor:
    """float ``[N,H,W,3]`` in 0..1 -> ``[N,3,H,W]``, in -1..1 when ``normalize``."""
    frames = frames.permute(0, 3, 1, 2).contiguous()
    return frames * 2.0 - 1.0 if normalize else frames


@dataclass(frozen=True)
class Crop:
    top: int
    left: int
    height: int
    width: int

    def apply(self, frames: np.ndarray) -> np.ndarray:
        return frames[:, self.top:self.top + self.height, self.left:self.left + self.width]


def random_resized_crop(height: int, width: int, scale: Sequence[float], ratio: Sequence[float],
                        rng: np.random.Generator) -> Crop:
    """The crop of torchvision's ``RandomResizedCrop``: area fraction in ``scale``, width/height in ``ratio``.

    Ten tries at a random area and log-uniform aspect; if none fits, the largest central crop whose
    aspect is clamped to ``ratio``.
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        crop_w = int(round(math.sqrt(target_area * aspect)))
        crop_h = int(round(math.sqrt(target_area / aspect)))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            return Crop(int(rng.integers(0, height - crop_h + 1)), int(rng.integers(0, width - crop_w + 1)), crop_h, crop_w)
    in_ratio = width / height
    if in_ratio < min(ratio):
        crop_w, crop_h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        crop_h, crop_w = height, int(round(height * max(ratio)))
    else:
        crop_w, crop_h = width, height
    return Crop((height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w)


def center_crop(height: int, width: int, crop_h: int, crop_w: int) -> Crop:
    return Crop((height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w)


def resize(frames: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """float ``[N,H,W,3]`` resized to exactly ``width`` x ``height`` (bilinear, antialiased when shrinking)."""
    return resize_batch(frames, width, height, mode="stretch")


def resize_shortest_side(frames: torch.Tensor, side: int) -> torch.Tensor:
    """Shortest side to ``side``, the other to ``int(side * long / short)`` (torchvision's ``Resize(int)``)."""
    _, height, width, _ = frames.shape
    if height <= width:
        return resize(frames, max(side, int(side * width / height)), side)
    return resize(frames, side, max(side, int(side * height / width)))


def clip_preprocess(frame: np.ndarray, size: int = 224) -> torch.Tensor:
    """``CLIPImageProcessor`` defaults on one uint8 ``[H,W,3]`` frame -> ``[3,size,size]``.

    Shortest side to ``size`` (bicubic), centre crop, OpenAI CLIP mean/std.
    """
    from PIL import Image

    image = Image.fromarray(frame)
    scale = size / min(image.size)
    resized = image.resize((max(size, round(image.width * scale)), max(size, round(image.height * scale))),
                           Image.BICUBIC)
    left, top = (resized.width - size) // 2, (resized.height - size) // 2
    pixels = np.asarray(resized.crop((left, top, left + size, top + size)), dtype=np.float32) / 255.0
    mean, std = np.asarray(CLIP_MEAN, np.float32), np.asarray(CLIP_STD, np.float32)
    return torch.from_numpy(((pixels - mean) / std).transpose(2, 0, 1).copy())


# --- listing files and picking frames ---------------------------------------------------------------


def read_json_list(path: Path, key: str) -> list:
    if not path.is_file():
        raise DatasetError(f"{key}: '{path}' does not exist")
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetError(f"{key}: '{path}' is not readable JSON ({error})") from None
    if not isinstance(entries, list):
        raise DatasetError(f"{key}: '{path}' holds {type(entries).__name__}, not a list of entries")
    return entries


def missing_files_error(source: str, missing: list[str]) -> DatasetError:
    shown = "; ".join(missing[:5]) + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else "")
    return DatasetError(f"{len(missing)} file(s) listed in {source} do not exist: {shown}")


def clip_indices(length: int, n_frames: int, stride: int, rng: np.random.Generator) -> list[int]:
    """``n_frames`` indices spread evenly over a window of ``(n_frames - 1) * stride + 1`` frames (or the whole
    video when shorter) starting at a random frame."""
    window = min(length, (n_frames - 1) * stride + 1)
    start = int(rng.integers(0, length - window + 1))
    return np.linspace(start, start + window - 1, n_frames, dtype=int).tolist()
