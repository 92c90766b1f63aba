"""Per-keypoint looping cubic Bézier trajectories, initialised and sampled as AniClipart does.

Keypoint k moves along the cubic Bézier ``P_k0..P_k3`` with ``P_k0`` its rest position. ``segment_len``
poses are sampled along every curve; the clip plays them forwards then backwards (``loop_num`` 1) and
that twice (``loop_num`` >= 2, which AniClipart never repeats more often, so loop_num 3 gives 16 frames).
Precision follows the reference: control points in float64, sampling times and Bernstein weights in
float32.
"""

from __future__ import annotations

import random
from typing import Sequence

import torch

DRAWS_PER_KEYPOINT = 6  # p1.x, p1.y, p2.x, p2.y, p3.x, p3.y
BORDER = 5.0  # control points are kept this far inside the canvas


def draw_uniforms(seed: int, count: int) -> list[float]:
    """``count`` draws of Python's ``random.random()`` from ``seed`` (AniClipart's source of randomness)."""
    rng = random.Random(seed)
    return [rng.random() for _ in range(count)]


def initial_controls(keypoints: torch.Tensor, radius: float, width: int, height: int,
                     draws: Sequence[float]) -> torch.Tensor:
    """[K, 4, 2] float64 control points: each point a random step of ``radius`` from the previous one.

    ``draws`` holds ``6 K`` uniforms in [0, 1), per keypoint in the order p1.x, p1.y, p2.x, p2.y, p3.x, p3.y.
    """
    start = torch.as_tensor(keypoints, dtype=torch.float64)
    count = start.shape[0] * DRAWS_PER_KEYPOINT
    if len(draws) != count:
        raise ValueError(f"{start.shape[0]} keypoints need {count} draws, got {len(draws)}")
    uniforms = torch.tensor(list(draws), dtype=torch.float64).reshape(-1, 3, 2)
    points = [start]
    for step in range(3):
        points.append(points[-1] + radius * (uniforms[:, step] - 0.5))
    controls = torch.stack(points, dim=1)
    controls[..., 0] = controls[..., 0].clip(BORDER, width - BORDER)
    controls[..., 1] = controls[..., 1].clip(BORDER, height - BORDER)
    return controls


def segment_length(num_frames: int, loop_num: int) -> int:
    """How many distinct poses a clip of ``num_frames`` samples along each curve."""
    return num_frames if loop_num == 0 else num_frames // (2 * loop_num)


def sample_times(num_frames: int, loop_num: int) -> torch.Tensor:
    return torch.linspace(0, 1, segment_length(num_frames, loop_num), dtype=torch.float32)


def bezier_poses(controls: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """Keypoint positions [P, K, 2] at ``times`` [P] on the curves ``controls`` [K, 4, 2]."""
    t = times.to(torch.float32)
    rest = 1.0 - t
    weights = torch.stack([rest**3, 3 * rest**2 * t, 3 * rest * t**2, t**3], dim=1)  # float32, as the reference
    weights = weights.to(device=controls.device, dtype=controls.dtype)[:, :, None, None]
    points = controls.transpose(0, 1)[None]  # [1, 4, K, 2]
    terms = weights * points
    return ((terms[:, 0] + terms[:, 1]) + terms[:, 2]) + terms[:, 3]


def frame_to_pose(segment_len: int, loop_num: int) -> torch.Tensor:
    """For each output frame, which sampled pose it shows (turn-around poses are shown twice)."""
    order = list(range(segment_len))
    if loop_num > 0:
        order = order + order[::-1]
        if loop_num > 1:
            order = order + order
    return torch.tensor(order, dtype=torch.long)
