"""Which frames each denoising pass sees when a clip is longer than the model's window, and how the
overlapping predictions are blended. Three named schedules (``WINDOW_SCHEDULES``), one per method that
follows its reference; every schedule is a ``WindowSchedule`` of two functions with one signature each:
``windows(num_frames, size, overlap) -> [[frame index, ...], ...]`` and
``weights(window, num_frames, overlap) -> one blend weight per frame of the window``. A sampler adds each
window's prediction to a ``WindowBlend`` and takes the weighted average from it.

- ``"overlapping"`` (SVD): contiguous windows of ``size`` frames, ``size - overlap``
  apart, the last one ending at the final frame; blended with ``ramp_weights``: linear ramps
  ``1/(overlap+1), 2/(overlap+1), ...`` where a window has a neighbour, 1 elsewhere.
- ``"uniform"`` (AnimateAnyone, the reference's "uniform" context schedule): windows of ``size`` frames
  start every ``size - overlap`` frames; with ``closed_loop`` they run past the end and wrap to the
  start, e.g. 64 frames, size 24, overlap 4: ``[0..23], [20..43], [40..63], [60..63, 0..19]``.
  ``stride`` > 1 adds passes over every 2nd, 4th, ... frame (at most as many levels as the video is
  longer than a window, in powers of two). Blended with equal weights (a plain average).
- ``"frame_tiles"`` (StableAnimator): every tile holds frame 0 (closest to the reference) and
  ``tile_size - 1`` consecutive frames; tiles start ``tile_size - tile_overlap`` frames apart and a last
  tile ending at the final frame is appended when needed. Blended with ``tile_weights``: a triangle
  over the tile's positions (frame 0 included).

A clip no longer than the window is one window in every schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .errors import InputError


Window = list[int]  # frame indices, in the order the model sees them


def overlapping_windows(num_frames: int, size: int, overlap: int) -> list[Window]:
    """Contiguous windows of ``size`` frames overlapping by at least ``overlap``, the last ending at the final frame."""
    if num_frames <= size:
        return [list(range(num_frames))]
    stride = size - overlap
    starts = list(range(0, num_frames - size, stride)) + [num_frames - size]
    return [list(range(start, start + size)) for start in starts]


def ramp_weights(window: Sequence[int], num_frames: int, overlap: int) -> torch.Tensor:
    """Linear ramps where a contiguous window overlaps a neighbour, 1 elsewhere."""
    start, end = window[0], window[-1] + 1
    length = end - start
    k = torch.arange(length, dtype=torch.float32)
    weights = torch.ones(length)
    if start > 0:
        weights = torch.minimum(weights, (k + 1) / (overlap + 1))
    if end < num_frames:
        weights = torch.minimum(weights, (length - k) / (overlap + 1))
    return weights


def uniform_windows(num_frames: int, size: int, overlap: int = 4, stride: int = 1,
                    closed_loop: bool = True) -> list[Window]:
    """Frame indices of each window of the "uniform" schedule (see the module docstring)."""
    if num_frames <= size:
        return [list(range(num_frames))]
    if not 0 <= overlap < size:
        raise ValueError(f"context overlap {overlap} must be at least 0 and less than the window size {size}")
    levels = min(stride, math.ceil(math.log2(num_frames / size)) + 1)
    windows = []
    for level in range(levels):
        step = 1 << level
        end = num_frames + (0 if closed_loop else -overlap)
        for start in range(0, end, size * step - overlap):
            windows.append([index % num_frames for index in range(start, start + size * step, step)])
    return windows


def equal_weights(window: Sequence[int], num_frames: int, overlap: int) -> torch.Tensor:
    """The "uniform" schedule's blend: every position counts once (a plain average)."""
    return torch.ones(len(window))


def tile_length(tile_size: int, num_frames: int) -> int:
    """Frames per tile: ``tile_size``, or all frames for a clip shorter than that (one tile)."""
    return min(tile_size, num_frames)


def frame_tiles(num_frames: int, tile_size: int, tile_overlap: int) -> list[Window]:
    """Frame indices of each tile; frame 0 is in every tile (see the module docstring)."""
    if tile_size < 2:
        raise InputError("tile_size", f"is {tile_size}", "at least 2 (frame 0 plus one more frame per tile)")
    if num_frames <= tile_size:
        return [list(range(num_frames))]
    if not 1 <= tile_overlap < tile_size:
        raise InputError("tile_overlap", f"is {tile_overlap} with tile_size {tile_size}",
                         "1 to tile_size - 1 (0 would leave frames between tiles uncovered)")
    stride = tile_size - tile_overlap
    tiles = [[0, *range(start + 1, min(start + tile_size, num_frames))]
             for start in range(0, num_frames - tile_size + 1, stride)]
    if tiles[-1][-1] < num_frames - 1:
        tiles.append([0, *range(num_frames - tile_size + 1, num_frames)])
    return tiles


def tile_weights(window: Sequence[int], num_frames: int, overlap: int) -> torch.Tensor:
    """A triangle over the tile's positions, e.g. 1/8, 3/8, 5/8, 7/8, 7/8, ... for 8 frames."""
    length = len(window)
    weights = (torch.arange(length) + 0.5) * 2.0 / length
    return torch.minimum(weights, 2 - weights)


@dataclass(frozen=True)
class WindowSchedule:
    windows: Callable[[int, int, int], list[Window]]
    weights: Callable[[Sequence[int], int, int], torch.Tensor]


OVERLAPPING = WindowSchedule(overlapping_windows, ramp_weights)
UNIFORM = WindowSchedule(uniform_windows, equal_weights)
FRAME_TILES = WindowSchedule(frame_tiles, tile_weights)
WINDOW_SCHEDULES = {"overlapping": OVERLAPPING, "uniform": UNIFORM, "frame_tiles": FRAME_TILES}


class WindowBlend:
    """The weighted average, frame by frame, of predictions made window by window.

    ``like`` gives the shape, dtype and device of the full prediction, ``frame_dim`` where its frames are.
    """

    def __init__(self, like: torch.Tensor, frame_dim: int):
        self.frame_dim = frame_dim
        self.total = torch.zeros_like(like)
        self.weight_sum = torch.zeros(like.shape[frame_dim], dtype=like.dtype, device=like.device)
        self._trailing = (1,) * (like.dim() - frame_dim - 1)

    def add(self, window: Sequence[int], prediction: torch.Tensor, weights: torch.Tensor) -> None:
        weights = weights.to(self.total.device)
        index = (slice(None),) * self.frame_dim + (list(window),)
        self.total[index] += prediction * weights.view(-1, *self._trailing)
        self.weight_sum[list(window)] += weights

    def average(self) -> torch.Tensor:
        return self.total / self.weight_sum.view(-1, *self._trailing)
