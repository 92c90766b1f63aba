"""AniClipart's frame augmentation, in plain PyTorch (no torchvision).

Before the SDS loss the rendered clip gets one random perspective warp (corners moved inwards by up to
``distortion`` of the half size, uncovered area filled white) and then one random square crop covering
``crop_scale`` of the area, resized back to the frame size. The same draw applies to every frame, as
torchvision's ``RandomPerspective(distortion_scale=0.5, p=1, fill=1)`` + ``RandomResizedCrop(scale=(0.4, 1),
ratio=(1, 1))`` do on a batch. Both steps are bilinear and differentiable w.r.t. the frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

CROP_ATTEMPTS = 10


def _randint(low: int, high: int, generator: torch.Generator | None) -> int:
    return int(torch.randint(low, high, (1,), generator=generator).item())


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return float(torch.empty(1).uniform_(low, high, generator=generator).item())


def random_perspective_corners(width: int, height: int, distortion: float, generator=None):
    """(source corners, moved corners), each [top-left, top-right, bottom-right, bottom-left] in pixels."""
    dx, dy = int(distortion * (width // 2)), int(distortion * (height // 2))
    moved = [
        [_randint(0, dx + 1, generator), _randint(0, dy + 1, generator)],
        [_randint(width - dx - 1, width, generator), _randint(0, dy + 1, generator)],
        [_randint(width - dx - 1, width, generator), _randint(height - dy - 1, height, generator)],
        [_randint(0, dx + 1, generator), _randint(height - dy - 1, height, generator)],
    ]
    source = [[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]]
    return source, moved


def homography(from_points, to_points) -> torch.Tensor:
    """[3, 3] projective map taking each of the four ``from_points`` to the matching ``to_points``."""
    rows, targets = [], []
    for (x, y), (u, v) in zip(from_points, to_points):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        targets += [u, v]
    solution = torch.linalg.solve(torch.tensor(rows, dtype=torch.float64), torch.tensor(targets, dtype=torch.float64))
    return torch.cat([solution, solution.new_ones(1)]).reshape(3, 3)


def warp_perspective(frames: torch.Tensor, source, moved, fill: float = 1.0) -> torch.Tensor:
    """Warp [N, C, H, W] so the corners at ``source`` land on ``moved``; uncovered pixels become ``fill``."""
    _, _, height, width = frames.shape
    to_source = homography(moved, source).to(device=frames.device, dtype=frames.dtype)
    ys, xs = torch.meshgrid(
        torch.arange(height, device=frames.device, dtype=frames.dtype) + 0.5,
        torch.arange(width, device=frames.device, dtype=frames.dtype) + 0.5,
        indexing="ij",
    )
    pixels = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1) @ to_source.T
    sampled_xy = pixels[..., :2] / pixels[..., 2:]
    grid = sampled_xy / sampled_xy.new_tensor([width / 2, height / 2]) - 1.0
    grid = grid.unsqueeze(0).expand(frames.shape[0], -1, -1, -1)
    coverage = torch.ones_like(frames[:, :1])
    warped = F.grid_sample(torch.cat([frames, coverage], 1), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # Sampled colours are already weighted by coverage; only the uncovered rest is filled. (torchvision
    # multiplies by coverage once more, which draws a dark seam along the warped border.)
    image, coverage = warped[:, :-1], warped[:, -1:]
    return image + (1.0 - coverage) * fill


def random_crop_box(height: int, width: int, scale=(0.4, 1.0), ratio=(1.0, 1.0), generator=None):
    """(top, left, crop_height, crop_width) covering a random ``scale`` of the area at a random aspect ``ratio``."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(CROP_ATTEMPTS):
        target_area = area * _uniform(scale[0], scale[1], generator)
        aspect = math.exp(_uniform(log_ratio[0], log_ratio[1], generator))
        crop_w = int(round(math.sqrt(target_area * aspect)))
        crop_h = int(round(math.sqrt(target_area / aspect)))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            return _randint(0, height - crop_h + 1, generator), _randint(0, width - crop_w + 1, generator), crop_h, crop_w
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side, side


def resized_crop(frames: torch.Tensor, box) -> torch.Tensor:
    """Crop [N, C, H, W] to ``box`` and resize (bilinear) back to H x W."""
    top, left, crop_h, crop_w = box
    size = frames.shape[-2:]
    crop = frames[..., top:top + crop_h, left:left + crop_w]
    return F.interpolate(crop, size=size, mode="bilinear", align_corners=False)


@dataclass(frozen=True)
class FrameAugmentation:
    distortion: float = 0.5
    crop_scale: tuple[float, float] = (0.4, 1.0)
    fill: float = 1.0

    def __call__(self, frames: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One random perspective warp and crop, shared by all frames [N, C, H, W] (values 0..1)."""
        _, _, height, width = frames.shape
        source, moved = random_perspective_corners(width, height, self.distortion, generator)
        warped = warp_perspective(frames, source, moved, self.fill)
        return resized_crop(warped, random_crop_box(height, width, self.crop_scale, (1.0, 1.0), generator))
