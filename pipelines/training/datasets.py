"""Training datasets: what files they list, which frames a sample takes, and how frames are cropped.

Every dataset has ``sample(item, rng)``: item ``item`` drawn with the sample's own ``numpy`` generator
(see ``sampling.py``), so the frames and crops chosen depend only on the run's seed and the sample's
stream position. Frames are decoded with ``core/video.py``.

AnimateAnyone (Moore-AnimateAnyone ``src/dataset/dance_{image,video}.py``): one or more meta JSON files,
each a list of ``{"video_path": ..., "kps_path": ...}`` (a video and its rendered pose video with the
same frame count; ``tools/extract_meta_info.py`` / our ``prepare`` command write them).
- stage 1 (``AnimateAnyoneFramePairs``): a reference frame and a target frame at least ``sample_margin``
  frames apart, the pose frame of the target, one random resized crop shared by all three.
- stage 2 (``AnimateAnyoneClips``): ``n_sample_frames`` frames spaced ``sample_rate`` apart from a random
  start (fewer spacing when the video is short), their pose frames, a random reference frame.

EasyAnimate v1 (``easyanimate/data/dataset_{video,image_video}.py``, README "Training"):
- JSON: ``[{"file_path": "videos/00000001.mp4", "text": "...", "type": "video"}, ...]`` (``type`` may be
  ``image``; without a type the file suffix decides);
- CSV with ``file_path,text[,type]`` columns, or WebVid's ``videoid,name`` columns (file ``<videoid>.mp4``).
``file_path`` is relative to ``data.root`` when one is given.
"""

from __future__ import annotations

import csv
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


# --- AnimateAnyone ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PosePair:
    video: Path
    pose: Path


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


def _missing_files_error(source: str, missing: list[str]) -> DatasetError:
    shown = "; ".join(missing[:5]) + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else "")
    return DatasetError(f"{len(missing)} file(s) listed in {source} do not exist: {shown}")


def read_pose_meta(meta_paths: Sequence[str | Path]) -> list[PosePair]:
    """The video + pose-video pairs of AnimateAnyone meta JSON files; every listed file must exist."""
    pairs, missing = [], []
    for meta_path in meta_paths:
        meta_path = Path(meta_path)
        for number, entry in enumerate(read_json_list(meta_path, "data.meta_paths")):
            if not isinstance(entry, dict) or not {"video_path", "kps_path"} <= set(entry):
                raise DatasetError(f"entry {number} of '{meta_path}' is not {{\"video_path\": ..., \"kps_path\": ...}}")
            pair = PosePair(Path(entry["video_path"]), Path(entry["kps_path"]))
            missing += [f"'{p}' (entry {number}, {k})" for k, p in (("video_path", pair.video), ("kps_path", pair.pose))
                        if not p.exists()]
            pairs.append(pair)
    if missing:
        raise _missing_files_error("data.meta_paths", missing)
    if not pairs:
        raise DatasetError(f"data.meta_paths: {', '.join(map(str, meta_paths))} list no videos")
    return pairs


class _PoseVideos:
    """Shared by both stages: the pairs, their frame counts, frame reading and the shared crop."""

    def __init__(self, meta_paths, width: int, height: int, crop_scale, crop_ratio, clip_size: int = 224):
        self.pairs = read_pose_meta(meta_paths)
        self.width, self.height = width, height
        self.crop_scale, self.crop_ratio = tuple(crop_scale), tuple(crop_ratio)
        self.clip_size = clip_size

    def __len__(self) -> int:
        return len(self.pairs)

    def length_of(self, pair: PosePair) -> int:
        frames, poses = frame_count(pair.video), frame_count(pair.pose)
        if frames != poses:
            raise DatasetError(f"'{pair.video}' has {frames} frames but its pose video '{pair.pose}' has {poses}; "
                               "render the pose video again from this video")
        return frames

    def read(self, pair: PosePair, video_indices: list[int], pose_indices: list[int]) -> tuple[np.ndarray, np.ndarray]:
        frames = read_frames_at(pair.video, video_indices)
        poses = read_frames_at(pair.pose, pose_indices)
        if poses.shape[1:3] != frames.shape[1:3]:  # a pose video rendered at another size: bring it to the video's
            poses = video_to_uint8(resize(to_float(poses), frames.shape[2], frames.shape[1]))
        return frames, poses

    def crop_and_resize(self, frames: np.ndarray, crop: Crop, normalize: bool) -> torch.Tensor:
        return to_channels_first(resize(to_float(crop.apply(frames)), self.width, self.height), normalize)

    def crop_for(self, frames: np.ndarray, rng: np.random.Generator) -> Crop:
        return random_resized_crop(frames.shape[1], frames.shape[2], self.crop_scale, self.crop_ratio, rng)


def video_to_uint8(frames: torch.Tensor) -> np.ndarray:
    return (frames.clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()


def reference_and_target_indices(length: int, margin: int, rng: np.random.Generator) -> tuple[int, int]:
    """Stage 1: the target is at least ``margin`` frames after the reference, else before, else anywhere."""
    margin = min(margin, length)
    reference = int(rng.integers(0, length))
    if reference + margin < length:
        return reference, int(rng.integers(reference + margin, length))
    if reference - margin > 0:
        return reference, int(rng.integers(0, reference - margin + 1))
    return reference, int(rng.integers(0, length))


def clip_indices(length: int, n_frames: int, stride: int, rng: np.random.Generator) -> list[int]:
    """``n_frames`` indices spread evenly over a window of ``(n_frames - 1) * stride + 1`` frames (or the whole
    video when shorter) starting at a random frame."""
    window = min(length, (n_frames - 1) * stride + 1)
    start = int(rng.integers(0, length - window + 1))
    return np.linspace(start, start + window - 1, n_frames, dtype=int).tolist()


class AnimateAnyoneFramePairs(_PoseVideos):
    """Stage 1 samples: ``pixels`` [3,H,W] and ``reference`` [3,H,W] in -1..1, ``pose`` [3,H,W] in 0..1,
    ``clip_reference`` [3,224,224] (CLIP-normalised, from the uncropped reference frame)."""

    def __init__(self, meta_paths, width: int, height: int, sample_margin: int = 30,
                 crop_scale=(0.9, 1.0), crop_ratio=(0.9, 1.0), clip_size: int = 224):
        super().__init__(meta_paths, width, height, crop_scale, crop_ratio, clip_size)
        self.sample_margin = sample_margin

    def sample(self, item: int, rng: np.random.Generator) -> dict:
        pair = self.pairs[item]
        reference, target = reference_and_target_indices(self.length_of(pair), self.sample_margin, rng)
        frames, poses = self.read(pair, [reference, target], [target])
        crop = self.crop_for(frames, rng)
        images = self.crop_and_resize(frames, crop, normalize=True)
        return {
            "pixels": images[1],
            "pose": self.crop_and_resize(poses, crop, normalize=False)[0],
            "reference": images[0],
            "clip_reference": clip_preprocess(frames[0], self.clip_size),
            "path": str(pair.video),
        }


class AnimateAnyoneClips(_PoseVideos):
    """Stage 2 samples: ``pixels`` [F,3,H,W] in -1..1, ``pose`` [F,3,H,W] in 0..1, ``reference`` [3,H,W],
    ``clip_reference`` [3,224,224]."""

    def __init__(self, meta_paths, width: int, height: int, n_sample_frames: int = 24, sample_rate: int = 4,
                 crop_scale=(1.0, 1.0), crop_ratio=(0.9, 1.0), clip_size: int = 224):
        super().__init__(meta_paths, width, height, crop_scale, crop_ratio, clip_size)
        self.n_sample_frames, self.sample_rate = n_sample_frames, sample_rate

    def sample(self, item: int, rng: np.random.Generator) -> dict:
        pair = self.pairs[item]
        length = self.length_of(pair)
        indices = clip_indices(length, self.n_sample_frames, self.sample_rate, rng)
        reference = int(rng.integers(0, length))
        frames, poses = self.read(pair, indices + [reference], indices)
        crop = self.crop_for(frames, rng)
        images = self.crop_and_resize(frames, crop, normalize=True)
        return {
            "pixels": images[:-1],
            "pose": self.crop_and_resize(poses, crop, normalize=False),
            "reference": images[-1],
            "clip_reference": clip_preprocess(frames[-1], self.clip_size),
            "path": str(pair.video),
        }


# --- EasyAnimate --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MediaEntry:
    path: Path
    text: str
    kind: str  # "video" or "image"


def _kind_of(entry: dict, path: Path) -> str:
    declared = entry.get("type") or entry.get("data_type")
    if declared in ("video", "image"):
        return declared
    if declared:
        raise DatasetError(f"'{path}' has type '{declared}'; expected video or image")
    return "image" if path.suffix.lower() in IMAGE_SUFFIXES else "video"


def _read_csv(path: Path) -> list[dict]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DatasetError(f"data.meta_path: '{path}' is not a readable CSV file ({error})") from None


def read_media_meta(meta_path: str | Path, root: str | Path | None = None) -> list[MediaEntry]:
    """The clips and images listed in an EasyAnimate JSON or CSV file; every listed file must exist."""
    meta_path = Path(meta_path)
    if meta_path.suffix.lower() == ".csv":
        if not meta_path.is_file():
            raise DatasetError(f"data.meta_path: '{meta_path}' does not exist")
        rows = _read_csv(meta_path)
    else:
        rows = read_json_list(meta_path, "data.meta_path")
    base = Path(root) if root else None
    entries, missing = [], []
    for number, row in enumerate(rows):
        if isinstance(row, dict) and "file_path" in row and "text" in row:
            relative, text = row["file_path"], row["text"]
        elif isinstance(row, dict) and "videoid" in row and "name" in row:  # WebVid CSV
            relative, text = f"{row['videoid']}.mp4", row["name"]
        else:
            raise DatasetError(f"entry {number} of '{meta_path}' has neither file_path+text nor videoid+name")
        path = base / relative if base else Path(relative)
        if not path.exists():
            missing.append(f"'{path}' (entry {number})")
        entries.append(MediaEntry(path, str(text or ""), _kind_of(row, path)))
    if missing:
        raise _missing_files_error(f"'{meta_path}'", missing)
    if not entries:
        raise DatasetError(f"data.meta_path: '{meta_path}' lists no files")
    return entries


class EasyAnimateMedia:
    """Video clips and images with captions: ``pixels`` [F,3,H,W] in -1..1 (F = 1 for an image),
    ``text`` (empty with probability ``text_drop_ratio``), ``kind`` (video/image).

    Videos: ``video_crop="center"`` resizes the shortest side to ``video_size`` and centre-crops a square
    (``train_t2v_lora.py``'s dataset); ``"random"`` resizes the shortest side to 1.25 x ``video_size``, takes a
    random square of ``U(min_crop_f, max_crop_f)`` x the shortest side and resizes it to ``video_size``
    (``train_t2iv.py``'s). Images: random horizontal flip, shortest side to ``image_size``, centre crop.
    Each video entry appears ``1 + video_repeat`` times.
    """

    def __init__(self, meta_path, root=None, video_size: int = 512, image_size: int = 512, sample_stride: int = 2,
                 sample_n_frames: int = 16, video_crop: str = "center", min_crop_f: float = 0.9,
                 max_crop_f: float = 1.0, video_repeat: int = 0, text_drop_ratio: float = 0.0):
        listed = read_media_meta(meta_path, root)
        self.entries = listed + [e for e in listed if e.kind == "video"] * video_repeat
        self.video_size, self.image_size = video_size, image_size
        self.sample_stride, self.sample_n_frames = sample_stride, sample_n_frames
        self.video_crop, self.crop_range = video_crop, (min_crop_f, max_crop_f)
        self.text_drop_ratio = text_drop_ratio

    def __len__(self) -> int:
        return len(self.entries)

    def group_of(self, item: int) -> str:
        return self.entries[item].kind

    def sample(self, item: int, rng: np.random.Generator) -> dict:
        entry = self.entries[item]
        pixels = self._video(entry.path, rng) if entry.kind == "video" else self._image(entry.path, rng)
        text = "" if rng.random() < self.text_drop_ratio else entry.text
        return {"pixels": pixels, "text": text, "kind": entry.kind, "path": str(entry.path)}

    def _video(self, path: Path, rng: np.random.Generator) -> torch.Tensor:
        indices = clip_indices(frame_count(path), self.sample_n_frames, self.sample_stride, rng)
        frames = to_float(read_frames_at(path, indices))
        size = self.video_size
        if self.video_crop == "center":
            frames = resize_shortest_side(frames, size)
            crop = center_crop(frames.shape[1], frames.shape[2], size, size)
            return to_channels_first(crop.apply(frames).contiguous(), normalize=True)
        frames = resize_shortest_side(frames, int(size * 1.25))
        shortest = min(frames.shape[1:3])
        side = int(shortest * rng.uniform(*self.crop_range))
        top = int(rng.integers(0, frames.shape[1] - side + 1))
        left = int(rng.integers(0, frames.shape[2] - side + 1))
        frames = Crop(top, left, side, side).apply(frames).contiguous()
        return to_channels_first(resize(frames, size, size), normalize=True)

    def _image(self, path: Path, rng: np.random.Generator) -> torch.Tensor:
        image = to_float(read_image(path)[None])
        if rng.random() < 0.5:
            image = image.flip(2)
        image = resize_shortest_side(image, self.image_size)
        crop = center_crop(image.shape[1], image.shape[2], self.image_size, self.image_size)
        return to_channels_first(crop.apply(image).contiguous(), normalize=True)
