"""Per-keypoint cubic Bézier trajectories, sampled and looped as AniClipart does.

Each keypoint k moves along a cubic with control points ``control[k] = (P0, P1, P2, P3)``; with a
fixed start P0 is the rest position, so the first pose is the input artwork. ``num_frames`` output
frames are made from ``segment_len`` unique poses: ``num_frames // (2 * loop_num)`` (all of
``num_frames`` when ``loop_num`` is 0), then mirrored once (``loop_num > 0``) and repeated once
more (``loop_num > 1``) -- so ``loop_num >= 3`` yields fewer than ``num_frames`` frames, exactly like
the reference.
"""

from __future__ import annotations

import random
from typing import Iterable, Iterator

import numpy as np
import torch

CLIP_MARGIN = 5.0


def _draw_source(draws: Iterable[float] | random.Random | None, seed: int) -> Iterator[float]:
    if draws is None:
        draws = random.Random(seed)
    if isinstance(draws, random.Random):
        generator = draws
        while True:
            yield generator.random()
    else:
        yield from (float(v) for v in draws)


def init_bezier(keypoints, radius: float, width: int, height: int,
                draws: Iterable[float] | random.Random | None = None, seed: int = 1000) -> torch.Tensor:
    """AniClipart's initial trajectories ``[K, 4, 2]`` (float64): per keypoint P1 = P0 + r (u - 1/2),
    P2 from P1, P3 from P2 (u drawn x then y), then all four points clipped to ``[5, W-5] x [5, H-5]``.

    ``draws`` gives the uniform numbers in order (a ``random.Random`` or a sequence); by default a
    ``random.Random(seed)``.
    """
    source = _draw_source(draws, seed)
    keypoints = np.asarray(keypoints, np.float64).reshape(-1, 2)
    control = np.zeros((len(keypoints), 4, 2))
    try:
        for k, start in enumerate(keypoints):
            control[k, 0] = start
            for step in (1, 2, 3):
                previous = control[k, step - 1]
                control[k, step, 0] = previous[0] + radius * (next(source) - 0.5)
                control[k, step, 1] = previous[1] + radius * (next(source) - 0.5)
    except StopIteration:
        raise ValueError(f"init_bezier needs {6 * len(keypoints)} draws") from None
    control[..., 0] = control[..., 0].clip(CLIP_MARGIN, width - CLIP_MARGIN)
    control[..., 1] = control[..., 1].clip(CLIP_MARGIN, height - CLIP_MARGIN)
    return torch.from_numpy(control)


def segment_length(num_frames: int, loop_num: int) -> int:
    return num_frames if loop_num == 0 else num_frames // (loop_num * 2)


def sample_times(num_frames: int, loop_num: int) -> torch.Tensor:
    """The float32 curve parameters of the unique poses (``torch.linspace(0, 1, segment_len)``)."""
    return torch.linspace(0, 1, segment_length(num_frames, loop_num))


def bezier_poses(control: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
    """Positions ``[T, K, 2]`` on the trajectories ``control [K, 4, 2]`` at parameters ``ts [T]``.

    The Bernstein weights are formed in the dtype of ``ts`` (float32 in AniClipart) and multiply the
    control points in theirs, as the reference does; differentiable w.r.t. ``control``.
    """
    t = ts.to(control.device).view(-1, 1, 1)
    u = 1.0 - t
    return (u ** 3 * control[:, 0] + 3 * u ** 2 * t * control[:, 1] + 3 * u * t ** 2 * control[:, 2]
            + t ** 3 * control[:, 3])


def frame_to_pose(num_poses: int, loop_num: int) -> torch.Tensor:
    """Which unique pose each output frame shows: poses, then mirrored (loop_num > 0), then doubled (> 1)."""
    frames = list(range(num_poses))
    if loop_num > 0:
        frames = frames + frames[::-1]
        if loop_num > 1:
            frames = frames + frames
    return torch.tensor(frames, dtype=torch.long)


def fix_start(control: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
    """Trajectories whose P0 is the rest pose (``fix_start_points``), differentiably for P1..P3."""
    return torch.cat([rest.to(control.dtype).unsqueeze(1), control[:, 1:]], dim=1)
