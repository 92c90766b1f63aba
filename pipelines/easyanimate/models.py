"""EasyAnimate v1's 3D transformer: PixArt-alpha's DiT with a temporal motion module in every block.

Composed of diffusers' blocks (``AdaLayerNormSingle``, ``PixArtAlphaTextProjection``, ``Attention``,
``FeedForward``) and the pack's motion module (``pipelines/motion_module.py``, grid option on), with the
parameter names of the released files, so the PixArt diffusers folder's
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
The block itself stays ours: diffusers' ``BasicTransformerBlock`` has no place for the motion module
between its self- and cross-attention, nor for self-attention per frame.

Parameters and buffers held outside leaf layers (``scale_shift_table``, ``pos_encoder.pe``) are moved
to the activations' device where they are used: ComfyUI's partial loading streams leaf layers only and
leaves those on the offload device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ...core.errors import CheckpointError
from ..motion_module import MotionModule, MotionSettings, parse_motion_settings

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


def motion_settings(kwargs: Mapping[str, Any], source: str = "motion module config") -> MotionSettings:
    """The motion module of EasyAnimate's ``transformer_additional_kwargs`` (refuses what v1 does not use)."""
    expected = {"basic_block_type": "motionmodule", "patch_3d": False, "fake_3d": False,
                "time_position_encoding_before_transformer": False}
    wrong = [f"{key}={kwargs.get(key)!r}" for key, value in expected.items() if kwargs.get(key, value) != value]
    module_type = kwargs.get("motion_module_type", "VanillaGrid")
    if module_type not in SUPPORTED_MOTION_MODULES:
        wrong.append(f"motion_module_type={module_type!r}")
    settings, problems = parse_motion_settings(kwargs.get("motion_module_kwargs") or {},
                                               default_max_len=4096,  # EasyAnimate's default
                                               grid=module_type == "VanillaGrid")
    if wrong or problems:
        raise CheckpointError(f"{source} describes a transformer EasyAnimate v1 does not use: {', '.join(wrong + problems)}.")
    return settings


class PatchEmbed(nn.Module):
    """Latent frames ``[N, C, H, W]`` -> tokens ``[N, (H/p)*(W/p), D]`` plus PixArt's 2D sin-cos position table.

    Ours, not diffusers' ``PatchEmbed`` (same ``proj`` key and numbers): that one keeps its table as a buffer
    of this non-leaf module, which ComfyUI's partial loading leaves on the offload device, builds it at
    init for ``sample_size`` and rebuilds it on every call at other sizes; here it is built once per size
    and device (with diffusers' ``get_2d_sincos_pos_embed``).
    """

    def __init__(self, in_channels: int, dim: int, patch_size: int, sample_size: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size, bias=True)
        self.dim = dim
        self.base_size = sample_size // patch_size
        self.interpolation_scale = max(sample_size // 64, 1)
        self._tables: dict[tuple, torch.Tensor] = {}

    def position_table(self, grid_h: int, grid_w: int, device: torch.device) -> torch.Tensor:
        """``[1, grid_h*grid_w, D]`` float32, row-major tokens (formed in float64 as diffusers forms it)."""
        from diffusers.models.embeddings import get_2d_sincos_pos_embed

        key = (grid_h, grid_w, str(device))
        if key not in self._tables:
            table = get_2d_sincos_pos_embed(self.dim, (grid_h, grid_w), base_size=self.base_size,
                                            interpolation_scale=self.interpolation_scale, device=device,
                                            output_type="pt")
            self._tables[key] = table.float().unsqueeze(0)
        return self._tables[key]

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        tokens = self.proj(latents)
        grid_h, grid_w = tokens.shape[-2:]
        tokens = tokens.flatten(2).transpose(1, 2)
        return (tokens + self.position_table(grid_h, grid_w, tokens.device)).to(tokens.dtype)


# ----------------------------------------------------------------------------- the 3D transformer


class TransformerBlock(nn.Module):
    """A PixArt block with the motion module between spatial self-attention and cross-attention."""

    def __init__(self, config: TransformerConfig, motion: MotionSettings):
        super().__init__()
        from diffusers.models.attention import FeedForward
        from diffusers.models.attention_processor import Attention

        dim, heads, head_dim = config.inner_dim, config.num_attention_heads, config.attention_head_dim
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=config.norm_eps)
        self.attn1 = Attention(dim, heads=heads, dim_head=head_dim, bias=config.attention_bias)
        self.attn_temporal = MotionModule(dim, motion)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=config.norm_eps)
        self.attn2 = Attention(dim, cross_attention_dim=config.cross_attention_dim, heads=heads, dim_head=head_dim,
                               bias=config.attention_bias)
        self.ff = FeedForward(dim, activation_fn="gelu-approximate")
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
        x = self.attn2(x, encoder_hidden_states=context, attention_mask=context_bias) + x
        normed = self.norm2(x) * (1 + scale_mlp) + shift_mlp
        return gate_mlp * self.ff(normed) + x


class EasyAnimateV1Transformer(nn.Module):
    """Noise prediction for video latents ``[b, c, f, h, w]`` conditioned on T5 tokens and a timestep."""

    def __init__(self, config: TransformerConfig, motion: MotionSettings):
        super().__init__()
        from diffusers.models.embeddings import PixArtAlphaTextProjection
        from diffusers.models.normalization import AdaLayerNormSingle

        self.config = config
        self.motion_config = motion
        dim = config.inner_dim
        self.pos_embed = PatchEmbed(config.in_channels, dim, config.patch_size, config.sample_size)
        self.adaln_single = AdaLayerNormSingle(dim)
        self.caption_projection = PixArtAlphaTextProjection(config.caption_channels, dim)
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
        return self.config.patch_size * self.motion_config.cell

    def forward(self, latents: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                encoder_attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``latents`` ``[b, c, f, H, W]``, ``timestep`` ``[b]``, T5 states ``[b, L, C]`` with a 1/0 keep mask."""
        batch, channels, frames, latent_h, latent_w = latents.shape
        patch = self.config.patch_size
        height, width = latent_h // patch, latent_w // patch
        frames_first = latents.permute(0, 2, 1, 3, 4).reshape(batch * frames, channels, latent_h, latent_w)
        x = self.pos_embed(frames_first).reshape(batch, frames * height * width, -1)
        modulation, embedded_timestep = self.adaln_single(timestep, batch_size=batch, hidden_dtype=x.dtype)
        context_bias = None
        if encoder_attention_mask is not None:
            keep = encoder_attention_mask.to(encoder_hidden_states.dtype)
            context_bias = ((1 - keep) * -10000.0).to(x.dtype)[:, None, :]  # [b, 1, L], as diffusers' PixArt
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
