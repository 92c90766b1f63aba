"""PoseGuider: rendered pose frames -> features added to the denoising UNet's first layer.

A ControlNet-style conditioning embedding, per frame: 3x3 convs with SiLU, three stride-2 steps
(8x down, the latent size), and a last conv to the UNet's first width (``conv_out``, zero-initialised
in training). Keys: ``conv_in``, ``blocks.0..5``, ``conv_out``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PoseGuider(nn.Module):
    def __init__(self, embedding_channels: int, conditioning_channels: int = 3,
                 block_out_channels: tuple[int, ...] = (16, 32, 96, 256)):
        super().__init__()
        self.conv_in = nn.Conv2d(conditioning_channels, block_out_channels[0], kernel_size=3, padding=1)
        blocks = []
        for channels_in, channels_out in zip(block_out_channels[:-1], block_out_channels[1:]):
            blocks.append(nn.Conv2d(channels_in, channels_in, kernel_size=3, padding=1))
            blocks.append(nn.Conv2d(channels_in, channels_out, kernel_size=3, padding=1, stride=2))
        self.blocks = nn.ModuleList(blocks)
        self.conv_out = nn.Conv2d(block_out_channels[-1], embedding_channels, kernel_size=3, padding=1)

    def forward(self, poses: torch.Tensor) -> torch.Tensor:
        """``poses``: ``(frames, 3, H, W)`` in 0..1 -> ``(frames, embedding_channels, H/8, W/8)``."""
        x = F.silu(self.conv_in(poses))
        for block in self.blocks:
            x = F.silu(block(x))
        return self.conv_out(x)


def build_pose_guider(config: dict, embedding_channels: int) -> PoseGuider:
    return PoseGuider(
        embedding_channels,
        int(config.get("conditioning_channels", 3)),
        tuple(int(c) for c in config.get("block_out_channels", (16, 32, 96, 256))),
    )
