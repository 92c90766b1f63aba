"""EasyAnimate v1's training data (``easyanimate/data/dataset_{video,image_video}.py``, README "Training") and its
recipe section.

- JSON: ``[{"file_path": "videos/00000001.mp4", "text": "...", "type": "video"}, ...]`` (``type`` may be
  ``image``; without a type the file suffix decides);
- CSV with ``file_path,text[,type]`` columns, or WebVid's ``videoid,name`` columns (file ``<videoid>.mp4``).
``file_path`` is relative to ``data.root`` when one is given.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..training.datasets import (IMAGE_SUFFIXES, Crop, DatasetError, center_crop, clip_indices, frame_count,
                                 missing_files_error, read_frames_at, read_image, read_json_list, resize,
                                 resize_shortest_side, to_channels_first, to_float)


@dataclass
class EasyAnimateDataConfig:
    """The recipe's ``data`` section."""

    meta_path: str = ""
    root: Optional[str] = None
    batch_size: int = 2
    num_workers: int = 4
    video_size: int = 512
    image_size: int = 512
    sample_stride: int = 2
    sample_n_frames: int = 16
    video_crop: str = "center"  # "center" (train_t2v_lora) or "random" (train_t2iv)
    min_crop_f: float = 0.9
    max_crop_f: float = 1.0
    video_repeat: int = 0
    image_repeat_in_forward: int = 1
    text_drop_ratio: float = 0.0
    tokenizer_max_length: int = 120


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
        raise missing_files_error(f"'{meta_path}'", missing)
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
