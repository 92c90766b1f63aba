"""AnimateDiff-v2 motion module ("Vanilla" temporal transformer) as AnimateAnyone's released file stores it.

Spatial layers work on frames folded into the batch, ``(batch * frames, channels, height, width)``;
a motion module unfolds them and lets every pixel attend across the frames of its window.
Key names follow ``motion_module.pth``: ``temporal_transformer.{norm,proj_in,proj_out}``,
``transformer_blocks.N.attention_blocks.{0,1}.{to_q,to_k,to_v,to_out.0,pos_encoder.pe}``,
``norms.{0,1}``, ``ff.net.{0.proj,2}``, ``ff_norm``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class MotionSettings:
    """``motion_module_kwargs`` of the reference's ``unet_additional_kwargs``."""

    num_attention_heads: int = 8
    num_transformer_block: int = 1
    temporal_position_encoding_max_len: int = 32
    temporal_attention_dim_div: int = 1
    norm_num_groups: int = 32

    @classmethod
    def from_kwargs(cls, kwargs: dict) -> "MotionSettings":
        blocks = tuple(kwargs.get("attention_block_types", ("Temporal_Self", "Temporal_Self")))
        if blocks != ("Temporal_Self", "Temporal_Self"):
            raise ValueError(f"motion modules with attention blocks {blocks} are not supported (only Temporal_Self x2)")
        if not kwargs.get("temporal_position_encoding", True):
            raise ValueError("motion modules without temporal position encoding are not supported")
        return cls(
            num_attention_heads=int(kwargs.get("num_attention_heads", 8)),
            num_transformer_block=int(kwargs.get("num_transformer_block", 1)),
            temporal_position_encoding_max_len=int(kwargs.get("temporal_position_encoding_max_len", 32)),
            temporal_attention_dim_div=int(kwargs.get("temporal_attention_dim_div", 1)),
        )


def sinusoid_table(max_len: int, dim: int) -> torch.Tensor:
    """The fixed sin/cos table ``[1, max_len, dim]`` AnimateDiff adds before temporal attention."""
    position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
    frequencies = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(1, max_len, dim)
    table[0, :, 0::2] = torch.sin(position * frequencies)
    table[0, :, 1::2] = torch.cos(position * frequencies)
    return table


class PositionalEncoding(nn.Module):
    def __init__(self, dim: int, max_len: int):
        super().__init__()
        # Persistent: the released file carries the table, so it is loaded (and checked) like a weight.
        self.register_buffer("pe", sinusoid_table(max_len, dim))

    @property
    def max_len(self) -> int:
        return self.pe.shape[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # A module with a buffer and no weights is not moved by ComfyUI's partial loading: follow x.
        return x + self.pe[:, : x.shape[1]].to(device=x.device, dtype=x.dtype)


class TemporalSelfAttention(nn.Module):
    """Multi-head self-attention along the frame axis (PyTorch SDPA)."""

    def __init__(self, dim: int, heads: int, head_dim: int, max_len: int):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim), nn.Dropout(0.0)])
        self.pos_encoder = PositionalEncoding(dim, max_len)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """``x``: ``(batch * frames, tokens, dim)`` -> same shape."""
        batch_frames, tokens, dim = x.shape
        batch = batch_frames // frames
        if frames > self.pos_encoder.max_len:
            raise ValueError(f"{frames} frames in one window; the motion module handles at most {self.pos_encoder.max_len}")
        sequences = x.view(batch, frames, tokens, dim).transpose(1, 2).reshape(batch * tokens, frames, dim)
        sequences = self.pos_encoder(sequences)
        q, k, v = (self._split_heads(layer(sequences)) for layer in (self.to_q, self.to_k, self.to_v))
        attended = F.scaled_dot_product_attention(q, k, v)
        attended = attended.transpose(1, 2).reshape(batch * tokens, frames, -1)
        attended = self.to_out[1](self.to_out[0](attended))
        return attended.view(batch, tokens, frames, dim).transpose(1, 2).reshape(batch_frames, tokens, dim)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        sequences, length, inner = x.shape
        return x.view(sequences, length, self.heads, inner // self.heads).transpose(1, 2)


class TemporalTransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int, max_len: int):
        super().__init__()
        from diffusers.models.attention import FeedForward

        self.attention_blocks = nn.ModuleList([TemporalSelfAttention(dim, heads, head_dim, max_len) for _ in range(2)])
        self.norms = nn.ModuleList([nn.LayerNorm(dim) for _ in range(2)])
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.ff_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        for attention, norm in zip(self.attention_blocks, self.norms):
            x = attention(norm(x), frames) + x
        return self.ff(self.ff_norm(x)) + x


class TemporalTransformer(nn.Module):
    def __init__(self, channels: int, settings: MotionSettings):
        super().__init__()
        heads = settings.num_attention_heads
        head_dim = channels // heads // settings.temporal_attention_dim_div
        inner = heads * head_dim
        max_len = settings.temporal_position_encoding_max_len
        self.norm = nn.GroupNorm(settings.norm_num_groups, channels, eps=1e-6, affine=True)
        self.proj_in = nn.Linear(channels, inner)
        self.transformer_blocks = nn.ModuleList(
            [TemporalTransformerBlock(inner, heads, head_dim, max_len) for _ in range(settings.num_transformer_block)]
        )
        self.proj_out = nn.Linear(inner, channels)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """``x``: ``(batch * frames, channels, height, width)``; the group norm is per frame."""
        residual = x
        batch_frames, channels, height, width = x.shape
        hidden = self.norm(x).permute(0, 2, 3, 1).reshape(batch_frames, height * width, channels)
        hidden = self.proj_in(hidden)
        for block in self.transformer_blocks:
            hidden = block(hidden, frames)
        hidden = self.proj_out(hidden)
        hidden = hidden.reshape(batch_frames, height, width, channels).permute(0, 3, 1, 2)
        return hidden + residual


class MotionModule(nn.Module):
    """One "Vanilla" motion module; only ``temporal_transformer`` holds weights."""

    def __init__(self, channels: int, settings: MotionSettings):
        super().__init__()
        self.temporal_transformer = TemporalTransformer(channels, settings)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        return self.temporal_transformer(x, frames)
