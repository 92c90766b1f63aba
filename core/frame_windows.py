"""Which frames each denoising pass sees when a clip is longer than the model's window, and how the
overlapping predictions are blended. Three named schedules, one per method that follows its reference:

- ``"overlapping"`` (SVD): contiguous windows ``[start, end)`` of ``length`` frames, ``length - overlap``
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

import torch

from .errors import InputError


def overlapping_windows(total: int, length: int, overlap: int) -> list[tuple[int, int]]:
    """Frame ranges [start, end) of ``length`` frames overlapping by at least ``overlap``, covering ``total``."""
    if total <= length:
        return [(0, total)]
    stride = length - overlap
    starts = list(range(0, total - length, stride)) + [total - length]
    return [(start, start + length) for start in starts]


def ramp_weights(start: int, end: int, total: int, overlap: int) -> torch.Tensor:
    """Blend weights of window [start, end): linear ramps where it overlaps a neighbour, 1 elsewhere."""
    length = end - start
    k = torch.arange(length, dtype=torch.float32)
    weights = torch.ones(length)
    if start > 0:
        weights = torch.minimum(weights, (k + 1) / (overlap + 1))
    if end < total:
        weights = torch.minimum(weights, (length - k) / (overlap + 1))
    return weights


def uniform_windows(num_frames: int, size: int, overlap: int = 4, stride: int = 1,
                    closed_loop: bool = True) -> list[list[int]]:
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


def equal_weights(length: int, device=None) -> torch.Tensor:
    """The "uniform" schedule's blend: every position counts once."""
    return torch.ones(length, device=device)


def tile_length(tile_size: int, num_frames: int) -> int:
    """Frames per tile: ``tile_size``, or all frames for a clip shorter than that (one tile)."""
    return min(tile_size, num_frames)


def frame_tiles(num_frames: int, tile_size: int, tile_overlap: int) -> list[list[int]]:
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


def tile_weights(length: int, device=None) -> torch.Tensor:
    """Triangular blending weights over a tile's positions, e.g. 1/8, 3/8, 5/8, 7/8, 7/8, ... for 8."""
    weights = (torch.arange(length, device=device) + 0.5) * 2.0 / length
    return torch.minimum(weights, 2 - weights)


# name -> (windows(num_frames, window, overlap), blend weights); each method calls its own pair directly.
WINDOW_SCHEDULES = {
    "overlapping": (overlapping_windows, ramp_weights),
    "uniform": (uniform_windows, equal_weights),
    "frame_tiles": (frame_tiles, tile_weights),
}
