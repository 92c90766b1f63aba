"""AniClipart's skeleton term: bones keep the lengths they have in the rest pose."""

from __future__ import annotations

import torch


def bone_lengths(points: torch.Tensor, bones: torch.Tensor) -> torch.Tensor:
    """Lengths [..., B] (float32, as the reference) of ``bones`` [B, 2] between ``points`` [..., K, 2]."""
    start = points[..., bones[:, 0], :]
    end = points[..., bones[:, 1], :]
    return torch.linalg.norm(start - end, dim=-1).float()


class SkeletonLoss:
    """Sum over sampled poses of the mean squared change of bone length (unweighted)."""

    def __init__(self, rest_keypoints: torch.Tensor, bones: torch.Tensor):
        self.bones = torch.as_tensor(bones, dtype=torch.long).reshape(-1, 2)
        # The reference measures the rest pose from float32 keypoints (as svglib parses them).
        self.rest_lengths = bone_lengths(torch.as_tensor(rest_keypoints).float(), self.bones)

    def __call__(self, poses: torch.Tensor) -> torch.Tensor:
        """``poses`` [P, K, 2]: the distinct sampled poses (not the looped output frames)."""
        if self.bones.numel() == 0:
            return poses.new_zeros((), dtype=torch.float32)
        lengths = bone_lengths(poses, self.bones.to(poses.device))
        squared = (lengths - self.rest_lengths.to(poses.device)) ** 2
        return squared.mean(dim=1).sum()
