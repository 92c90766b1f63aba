"""SVD img2vid: one photo in, frames out.

Stages (``stages.py``, shared with StableAnimator; each stages only the module it uses, so a run fits
where one stage's weights fit):
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
from dataclasses import dataclass
from typing import Mapping

import torch

from ...core import images as image_ops
from ...core.context import RunContext
from ...core.errors import InputError
from ...core.frame_windows import OVERLAPPING, WindowBlend
from . import samplers, stages
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


# ----------------------------------------------------------------------------- conditioning


def encode_image(image_encoder, pixels: torch.Tensor, feature_config: Mapping, ctx: RunContext) -> torch.Tensor:
    """Pixels in [-1, 1] ``[1,3,H,W]`` -> CLIP image embedding ``[1,1,D]`` (float32)."""
    ctx.stage(image_encoder)
    embeds = stages.clip_image_embedding(image_encoder, pixels, int(image_encoder.config.image_size),
                                         feature_config["image_mean"], feature_config["image_std"], ctx,
                                         stages.module_dtype(image_encoder))
    return embeds.float()


# ----------------------------------------------------------------------------- sampling


class _GuidedDenoiser:
    """The UNet as a denoiser ``x0 = D(x, sigma)`` with v-prediction, per-frame guidance and windows."""

    def __init__(self, unet, embeds, image_latents, time_ids, guidance, windows, overlap, ctx):
        self.unet, self.ctx = unet, ctx
        self.dtype = stages.module_dtype(unet)
        self.embeds, self.image_latents, self.time_ids = embeds, image_latents, time_ids
        self.guidance = guidance  # [F] or None when guidance is off
        self.windows, self.overlap = windows, overlap
        self.batched = len(windows[0]) * image_latents.shape[-2] * image_latents.shape[-1] <= _BATCHED_GUIDANCE_LIMIT

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        model_input = stages.scale_model_input(x, sigma)
        timestep = (0.25 * sigma.log()).to(self.ctx.device)
        total = x.shape[1]
        if len(self.windows) == 1:
            v = self._predict(model_input, timestep, 0, total)
        else:
            blend = WindowBlend(x, frame_dim=1)
            for window in self.windows:
                self.ctx.check_interrupt()
                start, end = window[0], window[-1] + 1
                blend.add(window, self._predict(model_input[:, start:end], timestep, start, end),
                          OVERLAPPING.weights(window, total, self.overlap))
            v = blend.average()
        return stages.v_prediction_x0(v, x, sigma)

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
        return stages.guided(v_uncond, v_cond, self.guidance[start:end].view(1, -1, 1, 1, 1))


def sample_latents(unet, embeds, image_latents, settings: SVDSettings, scheduler_config: Mapping,
                   frames: int, native_frames: int, generator: torch.Generator, ctx: RunContext) -> torch.Tensor:
    """Denoise random latents ``[1,F,4,h,w]`` conditioned on the photo; returns scaled latents."""
    _, channels, h, w = image_latents.shape
    sigmas, noise_scale = samplers.schedule(scheduler_config, settings.steps)
    latents = torch.randn((1, frames, channels, h, w), generator=generator, dtype=torch.float32)
    latents = (latents * noise_scale).to(ctx.device)
    time_ids = stages.time_ids(settings.fps, settings.motion_bucket_id, settings.noise_aug_strength,
                               torch.float32, ctx.device)
    guidance = None
    if max(settings.min_guidance, settings.max_guidance) > 1:  # as diffusers' SVD: guidance when the max is over 1
        guidance = stages.frame_guidance(settings.min_guidance, settings.max_guidance, frames).to(ctx.device)
    window = settings.context_frames or native_frames
    windows = OVERLAPPING.windows(frames, window, settings.context_overlap)
    repeated = image_latents.unsqueeze(1).repeat(1, frames, 1, 1, 1)
    denoiser = _GuidedDenoiser(unet, embeds.to(ctx.device), repeated, time_ids, guidance, windows,
                               settings.context_overlap, ctx)
    frames_per_call = len(windows[0]) * (2 if guidance is not None and denoiser.batched else 1)
    ctx.stage(unet, memory_required=stages.unet_memory(frames_per_call, (h, w), stages.module_dtype(unet)))
    reporter = samplers.step_reporter(ctx, lambda index: (index + 1, settings.steps))
    return samplers.sample(settings.sampler, denoiser, latents, sigmas, generator, reporter)


# ----------------------------------------------------------------------------- decoding


def decode_latents(vae, latents: torch.Tensor, chunk_size: int, ctx: RunContext) -> torch.Tensor:
    """Scaled latents ``[1,F,4,h,w]`` -> frames ``[F,H,W,3]`` in 0..1 (float32, CPU)."""
    return stages.decode_frames(vae, latents.flatten(0, 1) / vae.config.scaling_factor, chunk_size or latents.shape[1], ctx)


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
    image_latents = stages.encode_noised_image(parts.vae, pixels, noise, settings.noise_aug_strength, ctx).float()
    latents = sample_latents(parts.unet, embeds, image_latents, settings, parts.scheduler_config,
                             frames, native, generator, ctx)
    return decode_latents(parts.vae, latents, settings.decode_chunk_size, ctx)
