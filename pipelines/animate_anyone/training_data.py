"""AnimateAnyone's training data (Moore-AnimateAnyone ``src/dataset/dance_{image,video}.py``) and its recipe section.

One or more meta JSON files, each a list of ``{"video_path": ..., "kps_path": ...}`` (a video and its rendered
pose video with the same frame count; ``tools/extract_meta_info.py`` / our ``prepare`` command write them).
- stage 1 (``AnimateAnyoneFramePairs``): a reference frame and a target frame at least ``sample_margin``
  frames apart, the pose frame of the target, one random resized crop shared by all three.
- stage 2 (``AnimateAnyoneClips``): ``n_sample_frames`` frames spaced ``sample_rate`` apart from a random
  start (fewer spacing when the video is short), their pose frames, a random reference frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..training.datasets import (Crop, DatasetError, clip_indices, clip_preprocess, frame_count, missing_files_error,
                                 random_resized_crop, read_frames_at, read_json_list, resize, to_channels_first,
                                 to_float, video_to_uint8)


@dataclass
class AnimateAnyoneDataConfig:
    """The recipe's ``data`` section."""

    meta_paths: list = field(default_factory=list)
    width: int = 768
    height: int = 768
    batch_size: int = 4
    num_workers: int = 4
    sample_margin: int = 30  # stage 1: frames between reference and target
    n_sample_frames: int = 24  # stage 2
    sample_rate: int = 4  # stage 2: frame stride
    crop_scale: list = field(default_factory=lambda: [0.9, 1.0])
    crop_ratio: list = field(default_factory=lambda: [0.9, 1.0])
    clip_size: int = 224


@dataclass(frozen=True)
class PosePair:
    video: Path
    pose: Path


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
        raise missing_files_error("data.meta_paths", missing)
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


def reference_and_target_indices(length: int, margin: int, rng: np.random.Generator) -> tuple[int, int]:
    """Stage 1: the target is at least ``margin`` frames after the reference, else before, else anywhere."""
    margin = min(margin, length)
    reference = int(rng.integers(0, length))
    if reference + margin < length:
        return reference, int(rng.integers(reference + margin, length))
    if reference - margin > 0:
        return reference, int(rng.integers(0, reference - margin + 1))
    return reference, int(rng.integers(0, length))


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
