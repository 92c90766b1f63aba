"""PoseNet: a small strided conv stack that turns pose images into latents added after the UNet's conv_in."""

from __future__ import annotations

import torch
from torch import nn

# (in, out, kernel, stride) of the convolutions, each followed by SiLU; 8x downsampling in total.
_CONVS = ((3, 3, 3, 1), (3, 16, 4, 2), (16, 16, 3, 1), (16, 32, 4, 2),
          (32, 32, 3, 1), (32, 64, 4, 2), (64, 64, 3, 1), (64, 128, 3, 1))


class PoseNet(nn.Module):
    """Pose frames [F, 3, H, W] in [-1, 1] -> latents [F, channels, H/8, W/8].

    ``channels`` is the UNet's first block width (320 for SVD-xt).
    """

    def __init__(self, channels: int = 320):
        super().__init__()
        layers = []
        for in_channels, out_channels, kernel, stride in _CONVS:
            layers += [nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=1), nn.SiLU()]
        self.conv_layers = nn.Sequential(*layers)
        self.final_proj = nn.Conv2d(128, channels, kernel_size=1)
        self.scale = nn.Parameter(torch.full((1,), 2.0))

    def forward(self, poses: torch.Tensor) -> torch.Tensor:
        return self.final_proj(self.conv_layers(poses)) * self.scale
