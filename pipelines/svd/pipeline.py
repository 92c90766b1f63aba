"""SVD img2vid: one photo in, frames out.

Stages (each stages only the module it uses, so a run fits where one stage's weights fit):
1. image encoder: the photo at 224x224 (antialiased) -> CLIP image embedding;
2. VAE encoder: the photo (+ ``noise_aug_strength`` noise) -> conditioning latents;
3. UNet: Karras-sigma sampling with per-frame linear guidance ``min_guidance -> max_guidance``,
   micro-conditioned on ``fps - 1``, ``motion_bucket_id`` and ``noise_aug_strength`` as in the
   reference; clips longer than the model's native frame count are sampled in overlapping windows
   whose predictions are blended with linear ramps;
4. VAE decoder: latents -> frames, ``decode_chunk_size`` frames at a time (halved automatically
   after a GPU out-of-memory).

With ``sampler="euler"`` and default settings the frames equal diffusers'
``StableVideoDiffusionPipeline`` for the same image, size and seed (tests check fp32 CPU parity).
Random numbers come from a CPU generator, so a seed gives the same clip on any device.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F

from ...core import images as image_ops
from ...core.context import RunContext
from ...core.errors import InputError
from . import samplers
from .loading import SVDComponents

RESIZE_MODES = image_ops.RESIZE_MODES
ORIENTATIONS = ("auto", "as set")


@dataclass(frozen=True)
class MotionPreset:
    """What a motion preset sets. Bucket and noise raise motion; a lower max guidance frees it."""

    motion_bucket_id: int
    noise_aug_strength: float
    max_guidance: float


# The reference defaults are "normal"; the others move along the two knobs that raise motion
# (motion_bucket_id, noise_aug_strength) and loosen guidance as motion grows, which keeps strong
# motion from freezing into the photo and still clips from drifting away from it.
MOTION_PRESETS: dict[str, MotionPreset] = {
    "still": MotionPreset(20, 0.0, 2.5),
    "gentle": MotionPreset(70, 0.01, 3.0),
    "normal": MotionPreset(127, 0.02, 3.0),
    "strong": MotionPreset(190, 0.05, 2.5),
    "extreme": MotionPreset(255, 0.1, 2.0),
}
MOTIONS = ("custom",) + tuple(MOTION_PRESETS)

# Preview colours of SD-family latents (scaled latent space), as ComfyUI's SD1.5 latent format has them.
_LATENT_RGB = torch.tensor([[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350],
                            [-0.2829, 0.1762, 0.2721], [-0.2120, -0.2616, -0.7177]])
# Below this many latent pixels per UNet call (frames x h x w), running the unconditional and the
# conditional pass as one batch is faster; above it, two passes halve the activation memory.
_BATCHED_GUIDANCE_LIMIT = 16 * 64 * 64


@dataclass
class SVDSettings:
    width: int = 1024
    height: int = 576
    resize_mode: str = "crop"
    orientation: str = "auto"  # auto: swap width/height to match the photo (portrait or landscape)
    num_frames: int = 0  # 0: the model's own (14 svd, 25 svd_xt)
    steps: int = 25
    motion_bucket_id: int = 127
    fps: int = 7
    noise_aug_strength: float = 0.02
    min_guidance: float = 1.0
    max_guidance: float = 3.0
    seed: int = 0
    decode_chunk_size: int = 8  # 0: all frames at once
    sampler: str = "euler"
    motion: str = "custom"  # a MOTION_PRESETS name overrides bucket, noise and max guidance
    context_frames: int = 0  # window length for long clips; 0: the model's own frame count
    context_overlap: int = 4

    def resolved(self) -> "SVDSettings":
        """The settings with the motion preset applied."""
        if self.motion == "custom":
            return self
        if self.motion not in MOTION_PRESETS:
            raise InputError("motion", f"'{self.motion}' is unknown", "one of " + ", ".join(MOTIONS))
        preset = MOTION_PRESETS[self.motion]
        return dataclasses.replace(self, motion_bucket_id=preset.motion_bucket_id,
                                   noise_aug_strength=preset.noise_aug_strength, max_guidance=preset.max_guidance)


# ----------------------------------------------------------------------------- checks and sizes


def _check(settings: SVDSettings, native_frames: int) -> None:
    def need(ok: bool, name: str, value, expected: str):
        if not ok:
            raise InputError(name, f"is {value}", expected)

    need(settings.resize_mode in RESIZE_MODES, "resize_mode", repr(settings.resize_mode), "one of " + ", ".join(RESIZE_MODES))
    need(settings.orientation in ORIENTATIONS, "orientation", repr(settings.orientation), "one of " + ", ".join(ORIENTATIONS))
    need(settings.sampler in samplers.SAMPLERS, "sampler", repr(settings.sampler), "one of " + ", ".join(samplers.SAMPLERS))
    need(8 <= settings.width <= 4096 and 8 <= settings.height <= 4096, "width/height",
         f"{settings.width}x{settings.height}", "8..4096 pixels per side")
    need(settings.num_frames >= 0, "frames", settings.num_frames, "0 (the model's own) or more")
    need(1 <= settings.steps <= 500, "steps", settings.steps, "1..500")
    need(0 <= settings.motion_bucket_id <= 1023, "motion_bucket_id", settings.motion_bucket_id, "0..255 (trained range; up to 1023 accepted)")
    need(1 <= settings.fps <= 120, "fps", settings.fps, "1..120")
    need(0.0 <= settings.noise_aug_strength <= 10.0, "noise_aug_strength", settings.noise_aug_strength, "0..10 (0.02 is the reference)")
    need(0.0 <= settings.min_guidance <= 50 and 0.0 <= settings.max_guidance <= 50, "min/max guidance",
         f"{settings.min_guidance}/{settings.max_guidance}", "0..50")
    need(settings.decode_chunk_size >= 0, "decode_chunk_size", settings.decode_chunk_size, "0 (all) or more")
    window = settings.context_frames or native_frames
    need(window >= 2, "context_frames", settings.context_frames, "0 (the model's frame count) or 2 or more")
    if (settings.num_frames or native_frames) > window:
        need(0 <= settings.context_overlap < window, "context_overlap", settings.context_overlap,
             f"0..{window - 1} (less than the window of {window} frames)")


def target_size(image_width: int, image_height: int, settings: SVDSettings, multiple: int) -> tuple[int, int]:
    """(width, height) of the clip: oriented like the photo when asked, snapped to the model's grid."""
    width, height = settings.width, settings.height
    if settings.orientation == "auto" and (image_width > image_height) != (width > height) and image_width != image_height:
        width, height = height, width
    return image_ops.round_to_multiple(width, multiple), image_ops.round_to_multiple(height, multiple)


def context_windows(total: int, length: int, overlap: int) -> list[tuple[int, int]]:
    """Frame ranges [start, end) of ``length`` frames overlapping by at least ``overlap``, covering ``total``."""
    if total <= length:
        return [(0, total)]
    stride = length - overlap
    starts = list(range(0, total - length, stride)) + [total - length]
    return [(start, start + length) for start in starts]


def _window_weights(start: int, end: int, total: int, overlap: int) -> torch.Tensor:
    """Blend weights: linear ramps where a window overlaps a neighbour, 1 elsewhere."""
    length = end - start
    k = torch.arange(length, dtype=torch.float32)
    weights = torch.ones(length)
    if start > 0:
        weights = torch.minimum(weights, (k + 1) / (overlap + 1))
    if end < total:
        weights = torch.minimum(weights, (length - k) / (overlap + 1))
    return weights


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


def _module_dtype(module: torch.nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype


def encode_image(image_encoder, pixels: torch.Tensor, feature_config: Mapping, ctx: RunContext) -> torch.Tensor:
    """Pixels in [-1, 1] ``[1,3,H,W]`` -> CLIP image embedding ``[1,1,D]`` (float32)."""
    size = int(image_encoder.config.image_size)
    clip_in = (resize_antialiased(pixels, (size, size)) + 1.0) / 2.0
    mean = torch.tensor(feature_config["image_mean"], dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(feature_config["image_std"], dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1)
    clip_in = (clip_in - mean) / std
    ctx.stage(image_encoder)
    embeds = image_encoder(clip_in.to(device=ctx.device, dtype=_module_dtype(image_encoder))).image_embeds
    return embeds.float().unsqueeze(1)


# ----------------------------------------------------------------------------- stage 2: conditioning latents


def encode_latents(vae, pixels: torch.Tensor, ctx: RunContext) -> torch.Tensor:
    """Noised pixels ``[1,3,H,W]`` -> VAE latent mode ``[1,4,h,w]`` (not scaled, as SVD was trained)."""
    ctx.stage(vae, memory_required=_vae_memory(pixels.shape[-2:], 1, _module_dtype(vae)))
    return vae.encode(pixels.to(device=ctx.device, dtype=_module_dtype(vae))).latent_dist.mode().float()


def _vae_memory(pixel_size, frames: int, dtype: torch.dtype) -> int:
    height, width = pixel_size
    return int(frames * (height // 8) * (width // 8) * 2178 * 64 * torch.finfo(dtype).bits // 8)


# ----------------------------------------------------------------------------- stage 3: sampling


class _GuidedDenoiser:
    """The UNet as a denoiser ``x0 = D(x, sigma)`` with v-prediction, per-frame guidance and windows."""

    def __init__(self, unet, embeds, image_latents, time_ids, guidance, windows, overlap, ctx):
        self.unet, self.ctx = unet, ctx
        self.dtype = _module_dtype(unet)
        self.embeds, self.image_latents, self.time_ids = embeds, image_latents, time_ids
        self.guidance = guidance  # [F] or None when guidance is off
        self.windows, self.overlap = windows, overlap
        length = windows[0][1] - windows[0][0]
        self.batched = length * image_latents.shape[-2] * image_latents.shape[-1] <= _BATCHED_GUIDANCE_LIMIT

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        model_input = x / ((sigma**2 + 1) ** 0.5)
        timestep = (0.25 * sigma.log()).to(self.ctx.device)
        total = x.shape[1]
        if len(self.windows) == 1:
            v = self._predict(model_input, timestep, 0, total)
        else:
            v = torch.zeros_like(x)
            weight_sum = torch.zeros(total, device=x.device)
            for start, end in self.windows:
                self.ctx.check_interrupt()
                weights = _window_weights(start, end, total, self.overlap).to(x.device)
                v[:, start:end] += self._predict(model_input[:, start:end], timestep, start, end) * weights.view(1, -1, 1, 1, 1)
                weight_sum[start:end] += weights
            v = v / weight_sum.view(1, -1, 1, 1, 1)
        return v * (-sigma / (sigma**2 + 1) ** 0.5) + (x / (sigma**2 + 1))

    def _unet(self, sample, embeds, time_ids, timestep):
        out = self.unet(sample.to(self.dtype), timestep, encoder_hidden_states=embeds.to(self.dtype),
                        added_time_ids=time_ids.to(self.dtype), return_dict=False)[0]
        return out.float()

    def _predict(self, x: torch.Tensor, timestep, start: int, end: int) -> torch.Tensor:
        image_latents = self.image_latents[:, start:end]
        cond = torch.cat([x, image_latents], dim=2)
        if self.guidance is None:
            return self._unet(cond, self.embeds, self.time_ids, timestep)
        uncond = torch.cat([x, torch.zeros_like(image_latents)], dim=2)
        no_embeds = torch.zeros_like(self.embeds)
        if self.batched:
            both = self._unet(torch.cat([uncond, cond]), torch.cat([no_embeds, self.embeds]),
                              torch.cat([self.time_ids, self.time_ids]), timestep)
            v_uncond, v_cond = both.chunk(2)
        else:
            v_uncond = self._unet(uncond, no_embeds, self.time_ids, timestep)
            v_cond = self._unet(cond, self.embeds, self.time_ids, timestep)
        guidance = self.guidance[start:end].view(1, -1, 1, 1, 1)
        return v_uncond + guidance * (v_cond - v_uncond)


def _unet_memory(frames: int, h: int, w: int, dtype: torch.dtype) -> int:
    # ComfyUI's estimate for UNet activations (area x dtype size x 0.01 MB), with SVD's extra factor.
    return int(frames * h * w * (torch.finfo(dtype).bits // 8) * 0.015 * 1024 * 1024)


def latent_preview(latents: torch.Tensor):
    """A cheap RGB preview of one latent frame ``[4,h,w]`` (linear map of SD-family latents)."""
    from PIL import Image

    rgb = torch.einsum("chw,cr->hwr", latents.float().cpu(), _LATENT_RGB)
    rgb = ((rgb + 1.0) / 2.0).clamp(0, 1).mul(255).round().to(torch.uint8).numpy()
    return Image.fromarray(rgb)


def sample_latents(unet, embeds, image_latents, settings: SVDSettings, scheduler_config: Mapping,
                   frames: int, native_frames: int, generator: torch.Generator, ctx: RunContext) -> torch.Tensor:
    """Denoise random latents ``[1,F,4,h,w]`` conditioned on the photo; returns scaled latents."""
    _, channels, h, w = image_latents.shape
    sigmas, noise_scale = samplers.schedule(scheduler_config, settings.steps)
    latents = torch.randn((1, frames, channels, h, w), generator=generator, dtype=torch.float32)
    latents = (latents * noise_scale).to(ctx.device)
    time_ids = torch.tensor([[settings.fps - 1, settings.motion_bucket_id, settings.noise_aug_strength]],
                            dtype=torch.float32, device=ctx.device)
    guidance = None
    if max(settings.min_guidance, settings.max_guidance) > 1:
        guidance = torch.linspace(settings.min_guidance, settings.max_guidance, frames).to(ctx.device)
    window = settings.context_frames or native_frames
    windows = context_windows(frames, window, settings.context_overlap)
    repeated = image_latents.unsqueeze(1).repeat(1, frames, 1, 1, 1)
    denoiser = _GuidedDenoiser(unet, embeds.to(ctx.device), repeated, time_ids, guidance, windows,
                               settings.context_overlap, ctx)
    frames_per_call = (windows[0][1] - windows[0][0]) * (2 if guidance is not None and denoiser.batched else 1)
    ctx.stage(unet, memory_required=_unet_memory(frames_per_call, h, w, _module_dtype(unet)))

    def on_step(index, x, denoised):
        ctx.check_interrupt()
        ctx.report(index + 1, settings.steps, lambda: latent_preview(denoised[0, denoised.shape[1] // 2]))

    return samplers.sample(settings.sampler, denoiser, latents, sigmas, generator, on_step)


# ----------------------------------------------------------------------------- stage 4: decoding


def decode_latents(vae, latents: torch.Tensor, chunk_size: int, ctx: RunContext) -> torch.Tensor:
    """Scaled latents ``[1,F,4,h,w]`` -> frames ``[F,H,W,3]`` in 0..1 (float32, CPU)."""
    frames = latents.shape[1]
    chunk_size = chunk_size or frames
    while True:
        try:
            return _decode_chunks(vae, latents, chunk_size, ctx)
        except torch.cuda.OutOfMemoryError:
            if chunk_size == 1:
                raise
        # Retried outside the except block so the failed chunk's tensors are freed first.
        chunk_size = max(1, chunk_size // 2)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _decode_chunks(vae, latents: torch.Tensor, chunk_size: int, ctx: RunContext) -> torch.Tensor:
    flat = latents.flatten(0, 1) / vae.config.scaling_factor
    dtype = _module_dtype(vae)
    ctx.stage(vae, memory_required=_vae_memory((flat.shape[-2] * 8, flat.shape[-1] * 8), chunk_size, dtype))
    takes_frames = "num_frames" in inspect.signature(vae.decode).parameters
    chunks = range(0, flat.shape[0], chunk_size)
    decoded = []
    for done, start in enumerate(chunks, 1):
        ctx.check_interrupt()
        chunk = flat[start:start + chunk_size].to(device=ctx.device, dtype=dtype)
        kwargs = {"num_frames": chunk.shape[0]} if takes_frames else {}
        decoded.append(vae.decode(chunk, **kwargs).sample.float().cpu())
        ctx.report(done, len(chunks))
    frames = torch.cat(decoded)
    return (frames * 0.5 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).contiguous()


# ----------------------------------------------------------------------------- the whole run


def _size_multiple(parts: SVDComponents) -> int:
    vae_scale = 2 ** (len(parts.vae.config.block_out_channels) - 1)
    return vae_scale * 2 ** (len(parts.unet.config.block_out_channels) - 1)


@torch.no_grad()
def generate(parts: SVDComponents, image: torch.Tensor, settings: SVDSettings, ctx: RunContext | None = None) -> torch.Tensor:
    """The photo (IMAGE ``[1,H,W,3]`` or ``[H,W,3]`` in 0..1) -> frames ``[F,H,W,3]`` in 0..1 on CPU."""
    ctx = ctx or RunContext()
    settings = settings.resolved()
    native = parts.num_frames
    _check(settings, native)
    image = image_ops.check_image_batch(image, "image")
    if image.shape[0] != 1:
        raise InputError("image", f"has {image.shape[0]} images", "one image (pick one, e.g. with ComfyUI's Image From Batch)")
    width, height = target_size(image.shape[2], image.shape[1], settings, _size_multiple(parts))
    resized = image_ops.resize_batch(image, width, height, settings.resize_mode)
    pixels = (resized.permute(0, 3, 1, 2) * 2.0 - 1.0).to(ctx.device)
    frames = settings.num_frames or native
    generator = torch.Generator("cpu").manual_seed(int(settings.seed))

    embeds = encode_image(parts.image_encoder, pixels, parts.feature_extractor_config, ctx)
    noise = torch.randn(pixels.shape, generator=generator, dtype=torch.float32).to(ctx.device)
    image_latents = encode_latents(parts.vae, pixels + settings.noise_aug_strength * noise, ctx)
    latents = sample_latents(parts.unet, embeds, image_latents, settings, parts.scheduler_config,
                             frames, native, generator, ctx)
    return decode_latents(parts.vae, latents, settings.decode_chunk_size, ctx)
