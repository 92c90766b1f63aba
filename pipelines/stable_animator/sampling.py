"""Frame tiles, per-frame guidance and the v-prediction Euler step StableAnimator samples with."""

from __future__ import annotations

import torch

from ...core.errors import InputError


def tile_length(tile_size: int, num_frames: int) -> int:
    """Frames per tile: ``tile_size``, or all frames for a clip shorter than that (one tile)."""
    return min(tile_size, num_frames)


def frame_tiles(num_frames: int, tile_size: int, tile_overlap: int) -> list[list[int]]:
    """Frame indices of each tile. Frame 0 (closest to the reference) is in every tile.

    A tile holds frame 0 and ``tile_size - 1`` consecutive frames; consecutive tiles start
    ``tile_size - tile_overlap`` frames apart and a last tile ending at the final frame is appended
    when needed. A clip no longer than ``tile_size`` is one tile.
    """
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


def frame_guidance(min_scale: float, max_scale: float, num_frames: int) -> torch.Tensor:
    """Guidance per frame, [1, F, 1, 1, 1], rising linearly from the first frame to the last."""
    return torch.linspace(min_scale, max_scale, num_frames)[None, :, None, None, None]


def needs_unconditional(guidance: torch.Tensor) -> bool:
    """A guidance of exactly 1 everywhere is the conditional prediction alone."""
    return bool((guidance != 1.0).any())


def scale_model_input(sample: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return sample / ((sigma**2 + 1) ** 0.5)


def v_prediction_x0(model_output: torch.Tensor, sample: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The clean latents a v-prediction implies (EDM preconditioning, sigma_data = 1)."""
    return model_output * (-sigma / (sigma**2 + 1) ** 0.5) + (sample / (sigma**2 + 1))


def euler_step(sample: torch.Tensor, x0: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
    """One Euler step of the probability-flow ODE from ``sigma`` to ``sigma_next`` (no churn)."""
    derivative = (sample - x0) / sigma
    return sample + derivative * (sigma_next - sigma)
