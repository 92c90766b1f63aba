"""The Stable Diffusion VAE (diffusers' ``AutoencoderKL``, e.g. sd-vae-ft-mse) as AnimateAnyone, EasyAnimate v1 and
the trainer use it: latents are the posterior scaled by ``LATENT_SCALE`` (the methods hard-code it rather than
read the VAE's config), and videos are decoded one frame per VAE call.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.context import RunContext

LATENT_SCALE = 0.18215


def encode_mean(vae: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """Pixels ``[N, 3, H, W]`` in -1..1 -> latents: the posterior's mean, scaled."""
    return vae.encode(pixels).latent_dist.mean * LATENT_SCALE


def encode_posterior(vae: nn.Module, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels ``[N, 3, H, W]`` in -1..1 -> the posterior's mean and standard deviation (float32, unscaled),
    for ``scaled_sample``."""
    posterior = vae.encode(pixels).latent_dist
    return posterior.mean.float(), posterior.std.float()


def scaled_sample(mean: torch.Tensor, std: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """A draw from the posterior with the caller's ``noise``, scaled."""
    return (mean + std * noise) * LATENT_SCALE


def decode_frames(vae: nn.Module, latents: torch.Tensor, ctx: RunContext, dtype: torch.dtype | None,
                  rescale_in_float32: bool) -> torch.Tensor:
    """Latents ``[1, 4, F, h, w]`` -> frames ``[F, H, W, 3]`` float32 in 0..1 on the CPU, one frame per VAE call
    (progress reported and interruption checked per frame). The VAE reads ``dtype`` (None: its weights' dtype once
    staged); its -1..1 output is mapped to 0..1 in float32 (AnimateAnyone) or in its own dtype before the cast
    (EasyAnimate v1, as its reference)."""
    ctx.stage(vae)
    dtype = dtype or next(vae.parameters()).dtype
    count = latents.shape[2]
    frames = []
    for index in range(count):
        ctx.check_interrupt()
        z = (latents[:, :, index] / LATENT_SCALE).to(ctx.device, dtype)
        with torch.no_grad():
            image = vae.decode(z).sample
        if rescale_in_float32:
            image = image.float()
        frames.append((image / 2 + 0.5).clamp(0, 1)[0].permute(1, 2, 0).float().cpu())
        ctx.report(index + 1, count)
    return torch.stack(frames)
