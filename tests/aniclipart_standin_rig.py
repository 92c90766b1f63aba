"""A stand-in for the SVG rig in the text-guided tests: every keypoint drawn as a soft coloured disc.

It has the ``ClipartRig`` interface (``width``, ``height``, ``keypoints``, ``bones``, ``render``) and is
smooth in the keypoint positions, so gradients reach the trajectories wherever a disc is.
"""

from __future__ import annotations

import torch

PALETTE = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.6, 0.9], [0.2, 0.8, 0.2], [0.9, 0.7, 0.1], [0.5, 0.2, 0.7]])


class DiscRig:
    def __init__(self, keypoints, bones, width: int = 64, height: int = 64, radius: float = 5.0):
        self.keypoints = torch.as_tensor(keypoints, dtype=torch.float64)
        self.bones = torch.as_tensor(bones, dtype=torch.long).reshape(-1, 2)
        self.width, self.height, self.radius = width, height, radius
        self.colours = PALETTE[torch.arange(len(self.keypoints)) % len(PALETTE)]
        self.render_calls = 0

    def render(self, poses: torch.Tensor) -> torch.Tensor:
        """[P, K, 2] -> [P, H, W, 3]: white canvas, each disc multiplies in its colour (soft edge)."""
        self.render_calls += 1
        ys, xs = torch.meshgrid(torch.arange(self.height, dtype=poses.dtype) + 0.5,
                                torch.arange(self.width, dtype=poses.dtype) + 0.5, indexing="ij")
        dx = xs[None, None] - poses[..., 0, None, None]
        dy = ys[None, None] - poses[..., 1, None, None]
        coverage = torch.sigmoid(self.radius - torch.sqrt(dx**2 + dy**2 + 1e-6))  # [P, K, H, W]
        ink = coverage[..., None] * (1 - self.colours.to(poses.dtype))[None, :, None, None]
        return torch.prod(1 - ink, dim=1).float()


def small_figure(width: int = 64, height: int = 64) -> DiscRig:
    """Five keypoints: a body with two arms and two legs."""
    keypoints = [[32.0, 20.0], [22.0, 30.0], [42.0, 30.0], [26.0, 48.0], [38.0, 48.0]]
    bones = [[0, 1], [0, 2], [0, 3], [0, 4]]
    return DiscRig(keypoints, bones, width, height)
