"""EasyAnimate v1's 3D transformer: PixArt-alpha's DiT with a temporal motion module in every block.

Plain PyTorch, with the parameter names of the released files, so the PixArt diffusers folder's
``transformer/diffusion_pytorch_model.safetensors`` and ``easyanimate_v1_mm.safetensors`` load into
``EasyAnimateV1Transformer`` with every key accounted for:

- PixArt keys (``pos_embed.proj``, ``adaln_single.*``, ``caption_projection.*``,
  ``transformer_blocks.{i}.{attn1,attn2,ff,scale_shift_table}``, ``scale_shift_table``, ``proj_out``);
- motion-module keys, all under ``transformer_blocks.{i}.attn_temporal.temporal_transformer.``
  (``norm``, ``proj_in``, ``transformer_blocks.0.{attention_blocks.{0,1},norms.{0,1},ff,ff_norm}``,
  ``proj_out``), including the persistent ``pos_encoder.pe`` tables.

Data flow of one block (tokens ``b (f h w) c``): adaLN-single modulated norm1 -> spatial
self-attention per frame -> gated residual -> motion module (own residual) -> cross-attention to the
T5 tokens on the un-normalised stream -> modulated norm2 -> GELU(tanh) feed-forward -> gated residual.

Parameters and buffers held outside leaf layers (``scale_shift_table``, ``pos_encoder.pe``) are moved
to the activations' device where they are used: ComfyUI's partial loading streams leaf layers only and
leaves those on the offload device.

The motion module's "grid" attention: every temporal sequence is all F frames of one 2x2 cell of
tokens, ordered (frame, row, column); the sinusoidal frame encoding is added before the fold, so the
four tokens of a cell share it. Token grids must therefore have even sides (images a multiple of 32).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ...core.errors import CheckpointError

# Motion module layout used by v1's released file (config/easyanimate_video_motion_module_v1.yaml).
SUPPORTED_MOTION_MODULES = ("VanillaGrid", "Vanilla")


@dataclass(frozen=True)
class TransformerConfig:
    """The PixArt-alpha transformer fields EasyAnimate v1 uses (from ``transformer/config.json``)."""

    num_attention_heads: int
    attention_head_dim: int
    in_channels: int
    out_channels: int
    num_layers: int
    cross_attention_dim: int
    caption_channels: int
    sample_size: int
    patch_size: int
    norm_eps: float = 1e-6
    attention_bias: bool = True

    @property
    def inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    @property
    def learned_sigma(self) -> bool:
        """PixArt predicts noise and variance; only the noise half is used for sampling."""
        return self.out_channels == 2 * self.in_channels

    @classmethod
    def from_pixart(cls, config: Mapping[str, Any], source: str = "transformer/config.json") -> "TransformerConfig":
        expected = {"norm_type": "ada_norm_single", "activation_fn": "gelu-approximate", "norm_elementwise_affine": False,
                    "only_cross_attention": False, "double_self_attention": False, "num_vector_embeds": None}
        wrong = [f"{key}={config.get(key)!r} (expected {value!r})" for key, value in expected.items()
                 if config.get(key, value) != value]
        if config.get("sample_size") == 128:
            wrong.append("sample_size=128 (PixArt 1024 models need resolution conditioning, which EasyAnimate v1 never used)")
        missing = [key for key in ("num_attention_heads", "attention_head_dim", "in_channels", "num_layers",
                                   "cross_attention_dim", "caption_channels", "sample_size", "patch_size") if key not in config]
        if wrong or missing:
            problems = ", ".join(wrong + [f"no '{key}'" for key in missing])
            raise CheckpointError(f"{source} is not a PixArt-alpha transformer EasyAnimate v1 builds on: {problems}.")
        return cls(
            num_attention_heads=int(config["num_attention_heads"]),
            attention_head_dim=int(config["attention_head_dim"]),
            in_channels=int(config["in_channels"]),
            out_channels=int(config.get("out_channels") or config["in_channels"]),
            num_layers=int(config["num_layers"]),
            cross_attention_dim=int(config["cross_attention_dim"]),
            caption_channels=int(config["caption_channels"]),
            sample_size=int(config["sample_size"]),
            patch_size=int(config["patch_size"]),
            norm_eps=float(config.get("norm_eps", 1e-6)),
            attention_bias=bool(config.get("attention_bias", True)),
        )


@dataclass(frozen=True)
class MotionModuleConfig:
    """EasyAnimate's ``transformer_additional_kwargs`` for a motion-module transformer."""

    num_attention_heads: int = 8
    num_transformer_block: int = 1
    attention_block_types: tuple[str, ...] = ("Temporal_Self", "Temporal_Self")
    temporal_position_encoding: bool = True
    temporal_position_encoding_max_len: int = 4096
    temporal_attention_dim_div: int = 1
    block_size: int = 2
    grid: bool = True
    norm_num_groups: int = 32

    @classmethod
    def from_additional_kwargs(cls, kwargs: Mapping[str, Any], source: str = "motion module config") -> "MotionModuleConfig":
        expected = {"basic_block_type": "motionmodule", "patch_3d": False, "fake_3d": False,
                    "time_position_encoding_before_transformer": False}
        wrong = [f"{key}={kwargs.get(key)!r}" for key, value in expected.items() if kwargs.get(key, value) != value]
        module_type = kwargs.get("motion_module_type", "VanillaGrid")
        if module_type not in SUPPORTED_MOTION_MODULES:
            wrong.append(f"motion_module_type={module_type!r}")
        options = dict(kwargs.get("motion_module_kwargs") or {})
        block_types = tuple(options.pop("attention_block_types", cls.attention_block_types))
        if any(kind != "Temporal_Self" for kind in block_types):
            wrong.append(f"attention_block_types={list(block_types)!r}")
        unknown = set(options) - {f.name for f in cls.__dataclass_fields__.values()}
        if wrong or unknown:
            problems = ", ".join(wrong + [f"unknown option '{key}'" for key in sorted(unknown)])
            raise CheckpointError(f"{source} describes a transformer EasyAnimate v1 does not use: {problems}.")
        grid = module_type == "VanillaGrid"
        return cls(attention_block_types=block_types, grid=grid,
                   block_size=int(options.pop("block_size", 2 if grid else 1)), **options)


# ----------------------------------------------------------------------------- embeddings


def timestep_sinusoid(timesteps: torch.Tensor, channels: int = 256) -> torch.Tensor:
    """PixArt's timestep features [cos, sin], computed in float32 like diffusers' ``Timesteps``."""
    half = channels // 2
    exponent = -math.log(10000) * torch.arange(0, half, dtype=torch.float32, device=timesteps.device)
    exponent = exponent / half
    angles = timesteps[:, None].float() * torch.exp(exponent)[None, :]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def sincos_position_table(dim: int, grid_h: int, grid_w: int, base_size: int, interpolation_scale: float,
                          device: torch.device | None = None) -> torch.Tensor:
    """PixArt's 2D sin-cos table ``[1, grid_h*grid_w, dim]`` (float32), row-major tokens.

    Coordinates are ``arange(n) / (n / base_size) / interpolation_scale`` in float32, the table is
    formed in float64 and rounded to float32, as the reference computes it. The first half of the
    channels encodes the column, the second half the row.
    """

    def coordinates(n: int) -> torch.Tensor:
        steps = torch.arange(n, dtype=torch.float32, device=device)
        steps = steps / torch.tensor(n / base_size, dtype=torch.float32, device=device)
        return steps / torch.tensor(interpolation_scale, dtype=torch.float32, device=device)

    def one_axis(positions: torch.Tensor, channels: int) -> torch.Tensor:
        omega = torch.arange(channels // 2, dtype=torch.float64, device=device) / (channels / 2.0)
        omega = 1.0 / 10000**omega
        angles = positions.reshape(-1).double()[:, None] * omega[None, :]
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)

    rows = coordinates(grid_h)[:, None].expand(grid_h, grid_w)
    cols = coordinates(grid_w)[None, :].expand(grid_h, grid_w)
    table = torch.cat([one_axis(cols, dim // 2), one_axis(rows, dim // 2)], dim=1)
    return table.float().unsqueeze(0)


def frame_position_table(dim: int, max_len: int) -> torch.Tensor:
    """The motion module's sinusoidal frame encoding ``[1, max_len, dim]`` (sin on even channels)."""
    position = torch.arange(max_len).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
    table = torch.zeros(1, max_len, dim)
    table[0, :, 0::2] = torch.sin(position * div_term)
    table[0, :, 1::2] = torch.cos(position * div_term)
    return table


class PatchEmbed(nn.Module):
    """Latent frames ``[N, C, H, W]`` -> tokens ``[N, (H/p)*(W/p), D]`` plus the 2D position table."""

    def __init__(self, in_channels: int, dim: int, patch_size: int, sample_size: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size, bias=True)
        self.dim = dim
        self.base_size = sample_size // patch_size
        self.interpolation_scale = max(sample_size // 64, 1)
        self._tables: dict[tuple, torch.Tensor] = {}

    def position_table(self, grid_h: int, grid_w: int, device: torch.device) -> torch.Tensor:
        key = (grid_h, grid_w, str(device))
        if key not in self._tables:
            self._tables[key] = sincos_position_table(self.dim, grid_h, grid_w, self.base_size,
                                                      self.interpolation_scale, device)
        return self._tables[key]

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        tokens = self.proj(latents)
        grid_h, grid_w = tokens.shape[-2:]
        tokens = tokens.flatten(2).transpose(1, 2)
        return (tokens + self.position_table(grid_h, grid_w, tokens.device)).to(tokens.dtype)


class MLP(nn.Module):
    """``linear_2(act(linear_1(x)))`` with the key names of diffusers' embedders."""

    def __init__(self, in_features: int, hidden: int, out_features: int, activation: str):
        super().__init__()
        self.linear_1 = nn.Linear(in_features, hidden)
        self.linear_2 = nn.Linear(hidden, out_features)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear_1(x)
        x = F.silu(x) if self.activation == "silu" else F.gelu(x, approximate="tanh")
        return self.linear_2(x)


class TimestepEmbedding(nn.Module):
    """Holds ``timestep_embedder`` (key prefix ``adaln_single.emb.timestep_embedder``)."""

    def __init__(self, dim: int, frequency_channels: int = 256):
        super().__init__()
        self.frequency_channels = frequency_channels
        self.timestep_embedder = MLP(frequency_channels, dim, dim, "silu")

    def forward(self, timesteps: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return self.timestep_embedder(timestep_sinusoid(timesteps, self.frequency_channels).to(dtype))


class AdaLayerNormSingle(nn.Module):
    """PixArt's adaLN-single: one timestep embedding, projected to the six modulations of every block."""

    def __init__(self, dim: int):
        super().__init__()
        self.emb = TimestepEmbedding(dim)
        self.linear = nn.Linear(dim, 6 * dim)

    def forward(self, timesteps: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        embedded = self.emb(timesteps, dtype)
        return self.linear(F.silu(embedded)), embedded


# ----------------------------------------------------------------------------- attention and feed-forward


class Attention(nn.Module):
    """Multi-head attention with ``to_q/to_k/to_v/to_out.0`` (scaled dot product, optional additive bias)."""

    def __init__(self, query_dim: int, heads: int, head_dim: int, context_dim: int | None = None,
                 qkv_bias: bool = True):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner, bias=qkv_bias)
        self.to_k = nn.Linear(context_dim or query_dim, inner, bias=qkv_bias)
        self.to_v = nn.Linear(context_dim or query_dim, inner, bias=qkv_bias)
        self.to_out = nn.ModuleList([nn.Linear(inner, query_dim)])

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        q, k, v = self._split(self.to_q(x)), self._split(self.to_k(context)), self._split(self.to_v(context))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.to_out[0](out.transpose(1, 2).flatten(2))


class GELUProjection(nn.Module):
    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x), approximate="tanh")


class GEGLUProjection(nn.Module):
    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden, gate = self.proj(x).chunk(2, dim=-1)
        return hidden * F.gelu(gate)


class FeedForward(nn.Module):
    """``net.0`` projection (GELU-tanh or GEGLU), ``net.1`` a no-op (dropout at training), ``net.2`` out."""

    def __init__(self, dim: int, gated: bool, mult: int = 4):
        super().__init__()
        inner = dim * mult
        projection = GEGLUProjection(dim, inner) if gated else GELUProjection(dim, inner)
        self.net = nn.ModuleList([projection, nn.Identity(), nn.Linear(inner, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


# ----------------------------------------------------------------------------- motion module


class FramePositionEncoding(nn.Module):
    """Holds ``pe`` ``[1, max_len, dim]``, a persistent buffer: the released file carries it."""

    def __init__(self, dim: int, max_len: int):
        super().__init__()
        self.register_buffer("pe", frame_position_table(dim, max_len))


class TemporalAttention(nn.Module):
    """Self-attention across frames, over 2x2 token cells when ``grid`` (EasyAnimate's VersatileAttention)."""

    def __init__(self, dim: int, heads: int, head_dim: int, config: MotionModuleConfig):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.grid = config.grid
        self.block_size = config.block_size if config.grid else 1
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim)])
        self.pos_encoder = (FramePositionEncoding(dim, config.temporal_position_encoding_max_len)
                            if config.temporal_position_encoding else None)

    def fold(self, x: torch.Tensor, frames: int, height: int, width: int) -> torch.Tensor:
        """``[(b f), (h w), c]`` -> temporal sequences ``[(b h/n w/n), (f n n), c]``."""
        batch = x.shape[0] // frames
        x = x.unflatten(0, (batch, frames)).transpose(1, 2)  # b (h w) f c
        if self.pos_encoder is not None:
            x = x + self.pos_encoder.pe[0, :frames].to(x.device)
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
        sequences = self.fold(x, frames, height, width)
        q, k, v = (layer(sequences).unflatten(-1, (self.heads, -1)).transpose(1, 2)
                   for layer in (self.to_q, self.to_k, self.to_v))
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
        return self.unfold(self.to_out[0](out), frames, height, width)


class TemporalTransformerBlock(nn.Module):
    def __init__(self, dim: int, config: MotionModuleConfig):
        super().__init__()
        head_dim = dim // config.num_attention_heads // config.temporal_attention_dim_div
        self.attention_blocks = nn.ModuleList(
            [TemporalAttention(dim, config.num_attention_heads, head_dim, config) for _ in config.attention_block_types])
        self.norms = nn.ModuleList([nn.LayerNorm(dim) for _ in config.attention_block_types])
        self.ff = FeedForward(dim, gated=True)
        self.ff_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, frames: int, height: int, width: int) -> torch.Tensor:
        for attention, norm in zip(self.attention_blocks, self.norms):
            x = attention(norm(x), frames, height, width) + x
        return self.ff(self.ff_norm(x)) + x


class TemporalTransformer(nn.Module):
    """GroupNorm -> proj_in -> temporal blocks -> proj_out, plus the residual."""

    def __init__(self, dim: int, config: MotionModuleConfig):
        super().__init__()
        self.norm = nn.GroupNorm(config.norm_num_groups, dim, eps=1e-6, affine=True)
        self.proj_in = nn.Linear(dim, dim)
        self.transformer_blocks = nn.ModuleList(
            [TemporalTransformerBlock(dim, config) for _ in range(config.num_transformer_block)])
        self.proj_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, frames: int, height: int, width: int) -> torch.Tensor:
        """``x``: ``[(b f), (h w), c]``."""
        hidden = self.norm(x.transpose(1, 2)).transpose(1, 2)
        hidden = self.proj_in(hidden)
        for block in self.transformer_blocks:
            hidden = block(hidden, frames, height, width)
        return self.proj_out(hidden) + x


class MotionModule(nn.Module):
    """EasyAnimate's VanillaTemporalModule (key prefix ``attn_temporal.temporal_transformer``)."""

    def __init__(self, dim: int, config: MotionModuleConfig):
        super().__init__()
        self.temporal_transformer = TemporalTransformer(dim, config)

    def forward(self, x: torch.Tensor, frames: int, height: int, width: int) -> torch.Tensor:
        """``x``: ``[b, (f h w), c]``."""
        batch, tokens, channels = x.shape
        out = self.temporal_transformer(x.reshape(batch * frames, tokens // frames, channels), frames, height, width)
        return out.reshape(batch, tokens, channels)


# ----------------------------------------------------------------------------- the 3D transformer


class TransformerBlock(nn.Module):
    """A PixArt block with the motion module between spatial self-attention and cross-attention."""

    def __init__(self, config: TransformerConfig, motion: MotionModuleConfig):
        super().__init__()
        dim = config.inner_dim
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=config.norm_eps)
        self.attn1 = Attention(dim, config.num_attention_heads, config.attention_head_dim, qkv_bias=config.attention_bias)
        self.attn_temporal = MotionModule(dim, motion)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=config.norm_eps)
        self.attn2 = Attention(dim, config.num_attention_heads, config.attention_head_dim,
                               context_dim=config.cross_attention_dim, qkv_bias=config.attention_bias)
        self.ff = FeedForward(dim, gated=False)
        self.scale_shift_table = nn.Parameter(torch.randn(6, dim) / dim**0.5)

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_bias: torch.Tensor | None,
                modulation: torch.Tensor, frames: int, height: int, width: int) -> torch.Tensor:
        batch = x.shape[0]
        table = self.scale_shift_table.to(modulation.device)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (
            table[None] + modulation.reshape(batch, 6, -1)).chunk(6, dim=1)
        normed = self.norm1(x) * (1 + scale_msa) + shift_msa
        per_frame = normed.reshape(batch * frames, -1, normed.shape[-1])
        x = gate_msa * self.attn1(per_frame).reshape(x.shape) + x
        x = self.attn_temporal(x, frames, height, width)
        x = self.attn2(x, context, context_bias) + x
        normed = self.norm2(x) * (1 + scale_mlp) + shift_mlp
        return gate_mlp * self.ff(normed) + x


class EasyAnimateV1Transformer(nn.Module):
    """Noise prediction for video latents ``[b, c, f, h, w]`` conditioned on T5 tokens and a timestep."""

    def __init__(self, config: TransformerConfig, motion: MotionModuleConfig):
        super().__init__()
        self.config = config
        self.motion_config = motion
        dim = config.inner_dim
        self.pos_embed = PatchEmbed(config.in_channels, dim, config.patch_size, config.sample_size)
        self.adaln_single = AdaLayerNormSingle(dim)
        self.caption_projection = MLP(config.caption_channels, dim, dim, "gelu_tanh")
        self.transformer_blocks = nn.ModuleList([TransformerBlock(config, motion) for _ in range(config.num_layers)])
        self.norm_out = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.scale_shift_table = nn.Parameter(torch.randn(2, dim) / dim**0.5)
        self.proj_out = nn.Linear(dim, config.patch_size * config.patch_size * config.out_channels)
        self.gradient_checkpointing = False

    def enable_gradient_checkpointing(self) -> None:
        """Recompute each block's activations in the backward pass (training only), as EasyAnimate does."""
        self.gradient_checkpointing = True

    @property
    def grid_multiple(self) -> int:
        """Latent sides must be multiples of this (patch size x the motion module's cell size)."""
        return self.config.patch_size * (self.motion_config.block_size if self.motion_config.grid else 1)

    def forward(self, latents: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                encoder_attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``latents`` ``[b, c, f, H, W]``, ``timestep`` ``[b]``, T5 states ``[b, L, C]`` with a 1/0 keep mask."""
        batch, channels, frames, latent_h, latent_w = latents.shape
        patch = self.config.patch_size
        height, width = latent_h // patch, latent_w // patch
        frames_first = latents.permute(0, 2, 1, 3, 4).reshape(batch * frames, channels, latent_h, latent_w)
        x = self.pos_embed(frames_first).reshape(batch, frames * height * width, -1)
        modulation, embedded_timestep = self.adaln_single(timestep, x.dtype)
        context_bias = None
        if encoder_attention_mask is not None:
            keep = encoder_attention_mask.to(encoder_hidden_states.dtype)
            context_bias = ((1 - keep) * -10000.0).to(x.dtype)[:, None, None, :]
        context = self.caption_projection(encoder_hidden_states)
        checkpointed = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for block in self.transformer_blocks:
            if checkpointed:
                x = checkpoint(block, x, context, context_bias, modulation, frames, height, width, use_reentrant=False)
            else:
                x = block(x, context, context_bias, modulation, frames, height, width)
        table = self.scale_shift_table.to(embedded_timestep.device)
        shift, scale = (table[None] + embedded_timestep[:, None]).chunk(2, dim=1)
        x = self.proj_out(self.norm_out(x) * (1 + scale) + shift)
        return self.unpatchify(x, frames, height, width)

    def unpatchify(self, x: torch.Tensor, frames: int, height: int, width: int) -> torch.Tensor:
        patch, out_channels = self.config.patch_size, self.config.out_channels
        x = x.reshape(-1, frames, height, width, patch, patch, out_channels)
        x = torch.einsum("nfhwpqc->ncfhpwq", x)
        return x.reshape(-1, out_channels, frames, height * patch, width * patch)


def is_motion_module_key(key: str) -> bool:
    """Keys the released ``easyanimate_v1_mm.safetensors`` carries (EasyAnimate keeps every 'temporal' key)."""
    return "temporal" in key
