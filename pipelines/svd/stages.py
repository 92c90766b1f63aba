"""The stages every SVD-family method samples with (SVD img2vid and StableAnimator, which is SVD-xt based).

1. CLIP image embedding: the image at the encoder's size (Gaussian pre-blur, then bicubic), CLIP
   normalisation (``clip_image_embedding``);
2. conditioning latents: the noise-augmented image through the VAE, latent mode, not scaled
   (``encode_noised_image``);
3. UNet micro-conditioning ``[fps - 1, motion_bucket_id, noise_aug_strength]`` (``time_ids``), guidance
   rising linearly from the first frame to the last (``frame_guidance``, ``guided``), v-prediction with
   EDM preconditioning (``scale_model_input``, ``v_prediction_x0``) and the Euler step (``euler_step``);
4. decoding ``decode_chunk_size`` frames at a time, halving the chunk after a GPU out-of-memory
   (``decode_frames``; ``none_if_out_of_memory`` is the retry StableAnimator's face optimisation uses too).

Memory estimates (``unet_memory``, ``vae_memory``) are ComfyUI's own for SVD. The sampling loop itself (steps,
progress, interruption, previews) is ``samplers.py``. What differs between the methods (each one's denoiser:
windows or tiles, pose and face conditioning; sigmas; how latents are unscaled) stays in each method's pipeline.
"""

from __future__ import annotations

import inspect
from typing import Callable, Sequence, TypeVar

import torch
import torch.nn.functional as F

from ...core.context import RunContext

T = TypeVar("T")


def module_dtype(module: torch.nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype


# ----------------------------------------------------------------------------- stage 1: image embedding


def resize_antialiased(pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Gaussian pre-blur (sigma = (factor - 1) / 2 per axis) then bicubic, as SVD's CLIP input is made."""
    height, width = pixels.shape[-2:]
    sigmas = [max((height / size[0] - 1.0) / 2.0, 0.001), max((width / size[1] - 1.0) / 2.0, 0.001)]
    kernels = [int(max(4.0 * s, 3)) | 1 for s in sigmas]  # odd kernel sizes
    blurred = _blur_axis(pixels, kernels[1], sigmas[1], dim=-1)
    blurred = _blur_axis(blurred, kernels[0], sigmas[0], dim=-2)
    return F.interpolate(blurred, size=size, mode="bicubic", align_corners=True)


def _blur_axis(pixels: torch.Tensor, size: int, sigma: float, dim: int) -> torch.Tensor:
    x = torch.arange(size, dtype=pixels.dtype, device=pixels.device) - size // 2
    kernel = torch.exp(-x.pow(2.0) / (2 * torch.tensor(sigma, dtype=pixels.dtype) ** 2))
    kernel = kernel / kernel.sum()
    channels = pixels.shape[1]
    pad = size // 2
    if dim == -1:
        padded = F.pad(pixels, (pad, pad, 0, 0), mode="reflect")
        weight = kernel.view(1, 1, 1, size)
    else:
        padded = F.pad(pixels, (0, 0, pad, pad), mode="reflect")
        weight = kernel.view(1, 1, size, 1)
    return F.conv2d(padded, weight.expand(channels, 1, *weight.shape[2:]), groups=channels)


def clip_image_embedding(image_encoder, pixels: torch.Tensor, size: int, mean: Sequence[float], std: Sequence[float],
                         ctx: RunContext, dtype: torch.dtype) -> torch.Tensor:
    """Pixels in [-1, 1] ``[1,3,H,W]`` -> CLIP image embedding ``[1,1,D]`` (the encoder's output dtype).

    The image is resized to ``size`` x ``size`` on the device it is on, then fed to the (staged) encoder
    on ``ctx.device`` in ``dtype``.
    """
    clip_in = (resize_antialiased(pixels, (size, size)) + 1.0) / 2.0
    mean = torch.tensor(mean, dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(std, dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1)
    clip_in = (clip_in - mean) / std
    return image_encoder(clip_in.to(device=ctx.device, dtype=dtype)).image_embeds.unsqueeze(1)


# ----------------------------------------------------------------------------- stage 2: conditioning latents


def encode_noised_image(vae, pixels: torch.Tensor, noise: torch.Tensor, strength: float, ctx: RunContext) -> torch.Tensor:
    """``pixels + strength * noise`` (``[1,3,H,W]`` in [-1, 1]) -> VAE latent mode ``[1,C,h,w]`` in the VAE's dtype.

    Not scaled by the VAE's scaling factor, as SVD was trained.
    """
    dtype = module_dtype(vae)
    ctx.stage(vae, memory_required=vae_memory(pixels.shape[-2:], 1, dtype))
    noised = pixels + strength * noise
    return vae.encode(noised.to(device=ctx.device, dtype=dtype)).latent_dist.mode()


# ----------------------------------------------------------------------------- stage 3: sampling


def time_ids(fps: int, motion_bucket_id: float, noise_aug_strength: float, dtype: torch.dtype,
             device) -> torch.Tensor:
    """The UNet's added time ids ``[1, 3]``: fps - 1, motion bucket, noise augmentation strength."""
    return torch.tensor([[fps - 1, motion_bucket_id, noise_aug_strength]], dtype=dtype, device=device)


def frame_guidance(min_scale: float, max_scale: float, num_frames: int) -> torch.Tensor:
    """Guidance per frame ``[F]``, rising linearly from the first frame to the last."""
    return torch.linspace(min_scale, max_scale, num_frames)


def guided(uncond: torch.Tensor, cond: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
    """Classifier-free guidance, ``guidance`` broadcast over the frames."""
    return uncond + guidance * (cond - uncond)


def scale_model_input(sample: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return sample / ((sigma**2 + 1) ** 0.5)


def v_prediction_x0(model_output: torch.Tensor, sample: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The clean latents a v-prediction implies (EDM preconditioning, sigma_data = 1)."""
    return model_output * (-sigma / (sigma**2 + 1) ** 0.5) + (sample / (sigma**2 + 1))


def euler_step(sample: torch.Tensor, x0: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
    """One Euler step of the probability-flow ODE from ``sigma`` to ``sigma_next`` (no churn)."""
    derivative = (sample - x0) / sigma
    return sample + derivative * (sigma_next - sigma)


def unet_memory(frames: int, latent_hw: Sequence[int], dtype: torch.dtype) -> int:
    """ComfyUI's activation estimate for SVD's UNet: 0.01 MiB x memory factor 2 per latent pixel and dtype byte."""
    return int(frames * latent_hw[0] * latent_hw[1] * (torch.finfo(dtype).bits // 8) * 0.01 * 2.0 * 1024 * 1024)


# ----------------------------------------------------------------------------- stage 4: decoding


def vae_memory(pixel_hw: Sequence[int], frames: int, dtype: torch.dtype) -> int:
    """ComfyUI's estimate for encoding or decoding ``frames`` SD-VAE frames of ``pixel_hw`` pixels."""
    height, width = pixel_hw
    return int(frames * (height // 8) * (width // 8) * 2178 * 64 * torch.finfo(dtype).bits // 8)


def decode_frames(vae, latents: torch.Tensor, chunk_size: int, ctx: RunContext,
                  report: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Unscaled latents ``[F,C,h,w]`` -> frames ``[F,H,W,3]`` in 0..1 (float32, CPU), ``chunk_size`` at a time.

    The chunk is halved after a GPU out-of-memory (down to 1). A decoder that takes ``num_frames`` (SVD's
    temporal decoder) gets each chunk's frame count. ``report(done, total)`` follows the chunks
    (default: ``ctx.report``).
    """
    report = report or ctx.report
    while chunk_size > 1:
        frames = none_if_out_of_memory(lambda: _decode_chunks(vae, latents, chunk_size, ctx, report))
        if frames is not None:
            return frames
        chunk_size //= 2
    return _decode_chunks(vae, latents, chunk_size, ctx, report)  # one frame at a time: nothing smaller to retry


def none_if_out_of_memory(attempt: Callable[[], T]) -> T | None:
    """``attempt()``, or None after a GPU out-of-memory, with the CUDA cache emptied for whatever runs next."""
    try:
        return attempt()
    except torch.cuda.OutOfMemoryError:
        pass
    # Emptied outside the except block, once the failed attempt's tensors (held by the traceback) are released.
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return None


def _decode_chunks(vae, latents: torch.Tensor, chunk_size: int, ctx: RunContext, report) -> torch.Tensor:
    dtype = module_dtype(vae)
    ctx.stage(vae, memory_required=vae_memory((latents.shape[-2] * 8, latents.shape[-1] * 8), chunk_size, dtype))
    takes_frames = "num_frames" in inspect.signature(vae.decode).parameters
    chunks = range(0, latents.shape[0], chunk_size)
    decoded = []
    for done, start in enumerate(chunks, 1):
        ctx.check_interrupt()
        chunk = latents[start:start + chunk_size].to(device=ctx.device, dtype=dtype)
        kwargs = {"num_frames": chunk.shape[0]} if takes_frames else {}
        decoded.append(vae.decode(chunk, **kwargs).sample.float().cpu())
        report(done, len(chunks))
    frames = torch.cat(decoded)
    return (frames * 0.5 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).contiguous()
