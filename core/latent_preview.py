"""Cheap RGB previews of latents while sampling (the image ComfyUI shows under the progress bar).

One function for every method: ``latent_preview(latents, frame_dim, latent_format)`` shows the middle
frame of a batch-first latent video, mapped to RGB by its latent format:
- ``"sd"``: SD-family VAE latents (4 channels: SD1.5, SVD, AnimateAnyone, StableAnimator), through the
  linear latent-to-RGB map ComfyUI's SD1.5 latent format uses, then ``(rgb + 1) / 2``;
- ``"normalized"``: latents without a colour table (EasyAnimate's): the first three channels as RGB,
  each stretched to its own min..max.
"""

from __future__ import annotations

import torch

# Linear map from SD-VAE latents (scaled or not, the preview is rough) to RGB in -1..1: one row per channel.
SD_LATENT_RGB = torch.tensor([[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350],
                              [-0.2829, 0.1762, 0.2721], [-0.2120, -0.2616, -0.7177]])
LATENT_RGB_TABLES = {"sd": SD_LATENT_RGB}
LATENT_FORMATS = (*LATENT_RGB_TABLES, "normalized")


def latent_preview(latents: torch.Tensor, frame_dim: int, latent_format: str = "sd"):
    """The middle frame of ``latents`` (batch first; frames at ``frame_dim``, channels at the other of 1, 2) as PIL."""
    from PIL import Image

    if frame_dim not in (1, 2):
        raise ValueError(f"frame_dim is {frame_dim}; latents are [B, F, C, h, w] (1) or [B, C, F, h, w] (2)")
    frame = latents[0].select(frame_dim - 1, latents.shape[frame_dim] // 2)
    return Image.fromarray(latent_frame_rgb(frame, latent_format).numpy())


def latent_frame_rgb(frame: torch.Tensor, latent_format: str = "sd") -> torch.Tensor:
    """One latent frame ``[C, h, w]`` -> uint8 RGB ``[h, w, 3]`` on the CPU."""
    frame = frame.float().cpu()
    if latent_format == "normalized":
        colours = frame[:3]
        low = colours.amin(dim=(1, 2), keepdim=True)
        high = colours.amax(dim=(1, 2), keepdim=True)
        return ((colours - low) / (high - low + 1e-6) * 255).round().byte().permute(1, 2, 0)
    if latent_format not in LATENT_RGB_TABLES:
        raise ValueError(f"latent format '{latent_format}' is unknown; one of {', '.join(LATENT_FORMATS)}")
    rgb = torch.einsum("chw,cr->hwr", frame, LATENT_RGB_TABLES[latent_format])
    return ((rgb + 1.0) / 2.0).clamp(0, 1).mul(255).round().byte()
