"""StableAnimator's denoising UNet: SVD-xt's spatio-temporal UNet with two changes.

- Pose: PoseNet's latents are added to the output of ``conv_in`` (conditional pass only).
- Face identity: the encoder hidden states are ``[CLIP token | 4 face tokens]``. Every spatial
  cross-attention (``transformer_blocks.*.attn2``) attends to the CLIP token as usual and, through its
  own ``id_to_k``/``id_to_v`` projections, to the face tokens; the face result is rescaled to the mean
  and standard deviation of the CLIP result before the two are added (distribution-aware ID adapter).
  Temporal cross-attention sees only the first frame's CLIP token. Every other attention is plain
  scaled-dot-product attention (no xformers).

The released ``unet.pth`` is the state dict taken after the processors were installed, so it holds
``...attn2.processor.id_to_k.weight`` keys: install the processors before loading it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from diffusers.models.unets.unet_spatio_temporal_condition import UNetSpatioTemporalConditionModel
from torch import nn

FACE_TOKENS = 4
ALIGNMENT_EPS = 1e-5


def _attend(attn: Attention, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Multi-head softmax attention of [B, N, C] projections, back to [B, N, C]."""
    batch, _, inner_dim = key.shape
    head_dim = inner_dim // attn.heads

    def split(x):
        return x.view(batch, -1, attn.heads, head_dim).transpose(1, 2)

    out = F.scaled_dot_product_attention(split(query), split(key), split(value))
    return out.transpose(1, 2).reshape(batch, -1, inner_dim).to(query.dtype)


class IDCrossAttnProcessor(nn.Module):
    """Spatial cross-attention to the CLIP token plus distribution-aligned attention to the face tokens."""

    def __init__(self, hidden_size: int, cross_attention_dim: int, num_tokens: int = FACE_TOKENS, scale: float = 1.0):
        super().__init__()
        self.num_tokens = num_tokens
        self.scale = scale
        self.id_to_k = nn.Linear(cross_attention_dim, hidden_size, bias=False)
        self.id_to_v = nn.Linear(cross_attention_dim, hidden_size, bias=False)

    def forward(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor,
                attention_mask=None, temb=None) -> torch.Tensor:
        residual = hidden_states
        query = attn.to_q(hidden_states)
        encoder_hidden_states = encoder_hidden_states.to(hidden_states.dtype)
        context = encoder_hidden_states[:, : -self.num_tokens]
        face = encoder_hidden_states[:, -self.num_tokens:]

        out = _attend(attn, query, attn.to_k(context), attn.to_v(context))
        face_out = _attend(attn, query, self.id_to_k(face), self.id_to_v(face))
        out = out + self.scale * _align_distribution(face_out, out)

        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def _align_distribution(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``source`` shifted and scaled to ``target``'s per-sample mean and (unbiased) std over tokens x channels."""
    source_mean, source_std = source.mean(dim=(1, 2), keepdim=True), source.std(dim=(1, 2), keepdim=True)
    target_mean, target_std = target.mean(dim=(1, 2), keepdim=True), target.std(dim=(1, 2), keepdim=True)
    return (source - source_mean) * (target_std / (source_std + ALIGNMENT_EPS)) + target_mean


class CLIPTokenAttnProcessor(AttnProcessor2_0):
    """Temporal cross-attention: the face tokens are dropped, so only the CLIP token is attended to."""

    def __init__(self, num_tokens: int = FACE_TOKENS):
        super().__init__()
        self.num_tokens = num_tokens

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
        return super().__call__(attn, hidden_states, encoder_hidden_states[:, : -self.num_tokens], attention_mask, temb)


def _is_temporal(name: str) -> bool:
    return "temporal_transformer_blocks" in name


def install_processors(unet: UNetSpatioTemporalConditionModel) -> None:
    """StableAnimator's attention processors, as its inference scripts install them."""
    processors = {}
    for name, module in unet.named_modules():
        if not isinstance(module, Attention):
            continue
        key = f"{name}.processor"
        if name.endswith("attn2") and _is_temporal(name):
            processors[key] = CLIPTokenAttnProcessor()
        elif name.endswith("attn2"):
            processors[key] = IDCrossAttnProcessor(module.to_k.out_features, module.to_k.in_features)
        else:
            processors[key] = AttnProcessor2_0()
    unet.set_attn_processor(processors)


class StableAnimatorUNet(UNetSpatioTemporalConditionModel):
    """SVD's UNet whose forward also takes PoseNet latents, added after ``conv_in``."""

    def forward(self, sample, timestep, encoder_hidden_states, added_time_ids, pose_latents=None, return_dict=True):
        if pose_latents is None:
            return super().forward(sample, timestep, encoder_hidden_states, added_time_ids, return_dict=return_dict)
        # conv_in is called once per forward; a hook keeps the diffusers forward (and the state dict keys) unchanged.
        hook = self.conv_in.register_forward_hook(lambda _module, _inputs, output: output + pose_latents)
        try:
            return super().forward(sample, timestep, encoder_hidden_states, added_time_ids, return_dict=return_dict)
        finally:
            hook.remove()


def build_unet(config: dict) -> StableAnimatorUNet:
    """The UNet for ``config`` (an SVD UNet config) with StableAnimator's processors installed."""
    unet = StableAnimatorUNet.from_config(config)
    install_processors(unet)
    return unet
