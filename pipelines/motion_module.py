"""The AnimateDiff-style motion module ("Vanilla" temporal transformer) shared by AnimateAnyone and EasyAnimate v1.

Key names follow the released files (AnimateAnyone's ``motion_module.pth``, EasyAnimate's
``easyanimate_v1_mm.safetensors``): ``temporal_transformer.{norm,proj_in,proj_out}``,
``transformer_blocks.N.attention_blocks.{0,1}.{to_q,to_k,to_v,to_out.0,pos_encoder.pe}``,
``norms.{0,1}``, ``ff.net.{0.proj,2}``, ``ff_norm``.

It takes either layout its hosts use: UNet feature maps with the frames folded into the batch,
``(batch * frames, channels, height, width)`` (AnimateAnyone), or DiT tokens
``(batch, frames * height * width, channels)`` (EasyAnimate). Every pixel attends across the frames of
its window; with EasyAnimate's "grid" option (``VanillaGrid``) a temporal sequence is all frames of one
``block_size`` x ``block_size`` cell of tokens, ordered (frame, row, column), and the sinusoidal frame
encoding is added before the fold, so the tokens of a cell share it (sides must be multiples of the cell).

What the hosts share besides the network: ``parse_motion_settings`` (a reference's ``motion_module_kwargs``),
``initialise_motion_modules`` (the weights training starts from without a motion-module file) and
``is_motion_module_key`` (which state-dict keys and parameters are the motion module's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

UNET_MOTION_KEY = "motion_modules."  # AnimateDiff UNets (AnimateAnyone): ``*.motion_modules.N.*``
DIT_MOTION_KEY = "temporal"  # EasyAnimate keeps every key with it (``*.attn_temporal.temporal_transformer.*``)
TEMPORAL_SELF = "Temporal_Self"  # the only attention block type of the released modules
ANIMATEDIFF_OPTIONS = ("num_attention_heads", "num_transformer_block", "attention_block_types",
                       "temporal_position_encoding", "temporal_position_encoding_max_len", "temporal_attention_dim_div")


def is_motion_module_key(key: str, marker: str) -> bool:
    """Whether a state-dict or parameter name lies in a motion module; ``marker`` is how the host names
    them (``UNET_MOTION_KEY`` or ``DIT_MOTION_KEY``)."""
    return marker in key


@dataclass(frozen=True)
class MotionSettings:
    """``motion_module_kwargs`` of a motion module (``parse_motion_settings`` reads the references' dicts)."""

    num_attention_heads: int = 8
    num_transformer_block: int = 1
    attention_block_types: tuple[str, ...] = ("Temporal_Self", "Temporal_Self")
    temporal_position_encoding: bool = True
    temporal_position_encoding_max_len: int = 32
    temporal_attention_dim_div: int = 1
    norm_num_groups: int = 32
    grid: bool = False  # EasyAnimate's VanillaGrid
    block_size: int = 1  # the grid cell's side (used only with grid)

    @property
    def cell(self) -> int:
        """Side of the token cell that shares one temporal sequence (1 without the grid)."""
        return self.block_size if self.grid else 1


MOTION_OPTIONS = tuple(f.name for f in fields(MotionSettings) if f.name != "grid")


def parse_motion_settings(options: Mapping[str, Any], *, default_max_len: int, grid: bool = False,
                          only_animatediff_options: bool = False, block_count: int | None = None,
                          position_encoding_required: bool = False) -> tuple[MotionSettings, list[str]]:
    """A reference's ``motion_module_kwargs`` -> the settings and what in it is unsupported (empty when
    nothing is). The hosts differ in what they accept:

    - ``default_max_len``: the frame table's length when the dict does not give it;
    - ``grid``: a ``VanillaGrid`` module (its ``block_size`` defaults to 2);
    - ``only_animatediff_options``: read AnimateDiff's six options and ignore other keys, instead of reading
      every ``MotionSettings`` option and refusing unknown keys;
    - ``block_count``: how many ``Temporal_Self`` blocks are required (None: any number);
    - ``position_encoding_required``: refuse ``temporal_position_encoding=false``.
    """
    readable = ANIMATEDIFF_OPTIONS if only_animatediff_options else MOTION_OPTIONS
    given = {key: value for key, value in options.items() if key in readable}
    blocks = tuple(given.pop("attention_block_types", MotionSettings.attention_block_types))
    problems = []
    if any(kind != TEMPORAL_SELF for kind in blocks) or block_count not in (None, len(blocks)):
        problems.append(f"attention_block_types={list(blocks)!r}")
    if position_encoding_required and not given.get("temporal_position_encoding", True):
        problems.append(f"temporal_position_encoding={given['temporal_position_encoding']!r}")
    if not only_animatediff_options:
        problems += [f"unknown option '{key}'" for key in sorted(set(options) - set(readable))]
    given.setdefault("temporal_position_encoding_max_len", default_max_len)
    given.setdefault("block_size", 2 if grid else 1)
    values = {key: bool(value) if key == "temporal_position_encoding" else int(value) for key, value in given.items()}
    return MotionSettings(attention_block_types=blocks, grid=grid, **values), problems


def sinusoid_table(max_len: int, dim: int) -> torch.Tensor:
    """The fixed sin/cos frame table ``[1, max_len, dim]`` (sin on even channels) added before temporal attention."""
    position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
    frequencies = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(1, max_len, dim)
    table[0, :, 0::2] = torch.sin(position * frequencies)
    table[0, :, 1::2] = torch.cos(position * frequencies)
    return table


class PositionalEncoding(nn.Module):
    def __init__(self, dim: int, max_len: int):
        super().__init__()
        # Persistent: the released files carry the table, so it is loaded (and checked) like a weight.
        self.register_buffer("pe", sinusoid_table(max_len, dim))

    @property
    def max_len(self) -> int:
        return self.pe.shape[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(..., frames, dim)``. ComfyUI's partial loading leaves buffers of weightless modules
        on the offload device: the table follows ``x``."""
        return x + self.pe[:, : x.shape[-2]].to(device=x.device, dtype=x.dtype)


class TemporalAttention(nn.Module):
    """Multi-head self-attention along the frame axis (PyTorch SDPA), over token cells with the grid."""

    def __init__(self, dim: int, heads: int, head_dim: int, settings: MotionSettings):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.block_size = settings.cell
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim)])
        self.pos_encoder = (PositionalEncoding(dim, settings.temporal_position_encoding_max_len)
                            if settings.temporal_position_encoding else None)

    def fold(self, x: torch.Tensor, frames: int, height: int, width: int) -> torch.Tensor:
        """``[(b f), (h w), c]`` -> temporal sequences ``[(b h/n w/n), (f n n), c]`` (n: the cell side)."""
        batch = x.shape[0] // frames
        x = x.unflatten(0, (batch, frames)).transpose(1, 2)  # b (h w) f c
        if self.pos_encoder is not None:
            x = self.pos_encoder(x)
        n = self.block_size
        x = x.reshape(batch, height // n, n, width // n, n, frames, x.shape[-1])
        x = x.permute(0, 1, 3, 5, 2, 4, 6)  # b h' w' f n m c
        return x.reshape(batch * (height // n) * (width // n), frames * n * n, x.shape[-1])

    def unfold(self, x: torch.Tensor, frames: int, height: int, width: int) -> torch.Tensor:
        """Inverse of ``fold``: ``[(b h/n w/n), (f n n), c]`` -> ``[(b f), (h w), c]``."""
        n = self.block_size
        batch = x.shape[0] // ((height // n) * (width // n))
        x = x.reshape(batch, height // n, width // n, frames, n, n, x.shape[-1])
        x = x.permute(0, 3, 1, 4, 2, 5, 6)  # b f h' n w' m c
        return x.reshape(batch * frames, height * width, x.shape[-1])

    def forward(self, x: torch.Tensor, frames: int, height: int, width: int) -> torch.Tensor:
        """``x``: ``[(b f), (h w), c]`` -> same shape."""
        if self.pos_encoder is not None and frames > self.pos_encoder.max_len:
            raise ValueError(f"{frames} frames in one window; the motion module handles at most {self.pos_encoder.max_len}")
        sequences = self.fold(x, frames, height, width)
        q, k, v = (layer(sequences).unflatten(-1, (self.heads, -1)).transpose(1, 2)
                   for layer in (self.to_q, self.to_k, self.to_v))
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
        return self.unfold(self.to_out[0](out), frames, height, width)


class TemporalTransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int, settings: MotionSettings):
        super().__init__()
        from diffusers.models.attention import FeedForward

        kinds = settings.attention_block_types
        self.attention_blocks = nn.ModuleList([TemporalAttention(dim, heads, head_dim, settings) for _ in kinds])
        self.norms = nn.ModuleList([nn.LayerNorm(dim) for _ in kinds])
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.ff_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, frames: int, height: int, width: int) -> torch.Tensor:
        for attention, norm in zip(self.attention_blocks, self.norms):
            x = attention(norm(x), frames, height, width) + x
        return self.ff(self.ff_norm(x)) + x


class TemporalTransformer(nn.Module):
    """GroupNorm (per frame) -> proj_in -> temporal blocks -> proj_out, plus the residual."""

    def __init__(self, channels: int, settings: MotionSettings):
        super().__init__()
        heads = settings.num_attention_heads
        head_dim = channels // heads // settings.temporal_attention_dim_div
        inner = heads * head_dim
        self.norm = nn.GroupNorm(settings.norm_num_groups, channels, eps=1e-6, affine=True)
        self.proj_in = nn.Linear(channels, inner)
        self.transformer_blocks = nn.ModuleList(
            [TemporalTransformerBlock(inner, heads, head_dim, settings) for _ in range(settings.num_transformer_block)])
        self.proj_out = nn.Linear(inner, channels)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """Feature maps ``x``: ``(b f, c, h, w)``."""
        batch_frames, channels, height, width = x.shape
        hidden = self.norm(x).permute(0, 2, 3, 1).reshape(batch_frames, height * width, channels)
        hidden = self._mix(hidden, frames, height, width)
        return hidden.reshape(batch_frames, height, width, channels).permute(0, 3, 1, 2) + x

    def forward_tokens(self, x: torch.Tensor, frames: int, height: int, width: int) -> torch.Tensor:
        """Tokens ``x``: ``[(b f), (h w), c]``."""
        hidden = self.norm(x.transpose(1, 2)).transpose(1, 2)
        return self._mix(hidden, frames, height, width) + x

    def _mix(self, hidden: torch.Tensor, frames: int, height: int, width: int) -> torch.Tensor:
        hidden = self.proj_in(hidden)
        for block in self.transformer_blocks:
            hidden = block(hidden, frames, height, width)
        return self.proj_out(hidden)


class MotionModule(nn.Module):
    """One "Vanilla" motion module; only ``temporal_transformer`` holds weights."""

    def __init__(self, channels: int, settings: MotionSettings):
        super().__init__()
        self.temporal_transformer = TemporalTransformer(channels, settings)

    def forward(self, x: torch.Tensor, frames: int, height: int | None = None, width: int | None = None) -> torch.Tensor:
        """Feature maps ``(b f, c, h, w)``, or tokens ``[b, (f h w), c]`` with the token grid's ``height``/``width``."""
        if x.dim() == 4:
            return self.temporal_transformer(x, frames)
        batch, tokens, channels = x.shape
        folded = x.reshape(batch * frames, tokens // frames, channels)
        return self.temporal_transformer.forward_tokens(folded, frames, height, width).reshape(batch, tokens, channels)


@torch.no_grad()
def initialise_motion_modules(model: nn.Module, seed: int) -> list[str]:
    """Give every ``MotionModule`` of ``model`` (built on the meta device or left uninitialised) the weights
    AnimateDiff starts from: PyTorch's default initialisation drawn from ``seed`` (the global random state is
    left as it was), ``proj_out`` zeroed so each module starts as the identity, and the sinusoidal frame
    tables. The modules are allocated anew on the CPU. Returns their state-dict keys."""
    keys = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name, module in model.named_modules():
            if isinstance(module, MotionModule):
                _initialise(module)
                keys += [f"{name}.{key}" for key in module.state_dict()]
    return keys


def _initialise(module: MotionModule) -> None:
    module.to_empty(device="cpu")
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.LayerNorm, nn.GroupNorm)):
            layer.reset_parameters()
        elif isinstance(layer, PositionalEncoding):
            _, max_len, dim = layer.pe.shape
            layer.pe.copy_(sinusoid_table(max_len, dim))
    nn.init.zeros_(module.temporal_transformer.proj_out.weight)
    nn.init.zeros_(module.temporal_transformer.proj_out.bias)
