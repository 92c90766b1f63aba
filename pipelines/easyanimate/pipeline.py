"""EasyAnimate text-to-video: v1 (PixArt-alpha + motion module) and v5.1 (diffusers' EasyAnimate model).

Both follow their reference pipelines step for step (v1: EasyAnimate's ``EasyAnimatePipeline`` at the
last v1 commit; v5.1: diffusers' ``EasyAnimatePipeline``) and stage their modules one at a time: the
text encoder (the largest part of v1) for encoding only, then the transformer for sampling, then the
VAE for decoding, so ComfyUI can offload each in turn.

Noise is drawn on the CPU from ``seed`` (``torch.Generator("cpu")``, float32), so a seed gives the
same video on any device. Frames come back as float32 ``[F, H, W, 3]`` in 0..1 on the CPU.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch

from ...core.context import RunContext
from ...core.errors import InputError
from ...core.images import round_to_multiple
from ...core.latent_preview import latent_preview
from .. import sd_vae
from . import schedulers
from .loading import EasyAnimateV1, EasyAnimateV51

# v1 defaults: EasyAnimate's predict_t2v.py at the last v1 commit (80 frames at 12 fps, 512x512).
V1_NEGATIVE_PROMPT = ("Strange motion trajectory, a poor composition and deformed video, worst quality, "
                      "normal quality, low quality, low resolution, duplicate and ugly")
V1_FRAMES, V1_FPS, V1_STEPS, V1_GUIDANCE, V1_SEED, V1_SIZE = 80, 12.0, 30, 6.0, 43, 512
V1_MAX_SEQUENCE_LENGTH = 120  # T5 tokens, padded and truncated
# v5.1 defaults: diffusers' EasyAnimatePipeline / EasyAnimate's predict_t2v.py for v5.1.
V51_NEGATIVE_PROMPT = "Twisted body, limb deformities, text captions, comic, static, ugly, error, messy code."
V51_FPS = 8.0
V51_MAX_SEQUENCE_LENGTH = 256  # Qwen2-VL tokens
V51_SIZE_MULTIPLE = 16


@dataclass
class VideoRequest:
    prompt: str
    negative_prompt: str | None = None  # None: the version's own default (V1_/V51_NEGATIVE_PROMPT)
    width: int = V1_SIZE
    height: int = V1_SIZE
    frames: int = V1_FRAMES
    steps: int = V1_STEPS
    guidance: float = V1_GUIDANCE
    seed: int = V1_SEED
    sampler: str = schedulers.V1_DEFAULT_SAMPLER


@dataclass
class VideoResult:
    frames: torch.Tensor  # [F, H, W, 3] float32 in 0..1, CPU
    latents: torch.Tensor  # final latents before decoding
    fps: float


def check_request(request: VideoRequest, size_multiple: int, max_frames: int) -> None:
    """Refuse what the model cannot do, naming the input and a value that works."""
    for name in ("width", "height"):
        value = getattr(request, name)
        if value < size_multiple or value % size_multiple:
            suggestion = round_to_multiple(value, size_multiple)
            raise InputError(name, f"{value} does not fit this model's latent grid.",
                             f"a multiple of {size_multiple}, e.g. {suggestion}")
    if not 1 <= request.frames <= max_frames:
        raise InputError("frames", f"{request.frames} frames are out of range.", f"1 to {max_frames}")
    if request.steps < 1:
        raise InputError("steps", f"is {request.steps}.", "at least 1")
    if request.guidance < 0:
        raise InputError("guidance", f"is {request.guidance}.", "0 or more (1 turns guidance off)")
    if not 0 <= request.seed < 2**64:
        raise InputError("seed", f"{request.seed} is out of range.", "0 to 2^64-1")


def _negative_prompt(request: VideoRequest, version_default: str) -> str:
    return version_default if request.negative_prompt is None else request.negative_prompt


def initial_noise(shape: tuple[int, ...], seed: int) -> tuple[torch.Tensor, torch.Generator]:
    """Standard normal noise from a CPU generator (device independent); the generator goes on for Euler A."""
    generator = torch.Generator("cpu").manual_seed(seed)
    return torch.randn(shape, generator=generator, dtype=torch.float32), generator


def step_kwargs(scheduler, generator: torch.Generator) -> dict:
    """``eta=0`` for DDIM and the generator for ancestral samplers, as diffusers pipelines pass them."""
    parameters = inspect.signature(scheduler.step).parameters
    kwargs = {}
    if "eta" in parameters:
        kwargs["eta"] = 0.0
    if "generator" in parameters:
        kwargs["generator"] = generator
    return kwargs


def classifier_free_guidance(prediction: torch.Tensor, guidance: float) -> torch.Tensor:
    uncond, cond = prediction.chunk(2)
    return uncond + guidance * (cond - uncond)


# ----------------------------------------------------------------------------- v1


def v1_size_multiple(model: EasyAnimateV1) -> int:
    """Image sides must be multiples of VAE factor x patch x motion-module cell (8 x 2 x 2 = 32)."""
    return vae_scale_factor(model.vae) * model.transformer.grid_multiple


def vae_scale_factor(vae) -> int:
    return 2 ** (len(vae.config.block_out_channels) - 1)


def encode_t5(tokenizer, text_encoder, prompts: list[str], ctx: RunContext,
              max_length: int = V1_MAX_SEQUENCE_LENGTH) -> tuple[torch.Tensor, torch.Tensor]:
    """T5 last hidden states ``[N, max_length, C]`` and keep masks, EasyAnimate v1's way.

    Captions are lower-cased and stripped (EasyAnimate's caption cleaning needs bs4/ftfy and, as in a
    reference install without them, is not applied), padded and truncated to ``max_length`` tokens.
    """
    texts = [prompt.lower().strip() for prompt in prompts]
    tokens = tokenizer(texts, padding="max_length", max_length=max_length, truncation=True,
                       add_special_tokens=True, return_tensors="pt")
    ids, mask = tokens.input_ids.to(ctx.device), tokens.attention_mask.to(ctx.device)
    with torch.no_grad():
        embeds = text_encoder(ids, attention_mask=mask)[0]
    return embeds.to(ctx.dtype), mask


def v1_activation_bytes(request: VideoRequest, model: EasyAnimateV1, dtype: torch.dtype) -> int:
    """A rough peak activation estimate for one transformer call, so ComfyUI frees room first."""
    config = model.transformer.config
    tokens = 2 * request.frames * (request.height // 8 // config.patch_size) * (request.width // 8 // config.patch_size)
    return tokens * config.inner_dim * torch.finfo(dtype).bits // 8 * 12


def generate_v1(model: EasyAnimateV1, request: VideoRequest, ctx: RunContext,
                noise: torch.Tensor | None = None) -> VideoResult:
    """EasyAnimate v1 text-to-video. ``noise`` ``[1, 4, F, H/8, W/8]`` replaces the seeded draw."""
    check_request(request, v1_size_multiple(model), model.transformer.motion_config.temporal_position_encoding_max_len)
    scheduler = schedulers.v1_scheduler(request.sampler)
    guided = request.guidance > 1.0

    ctx.stage(model.text_encoder)
    prompts = [_negative_prompt(request, V1_NEGATIVE_PROMPT), request.prompt] if guided else [request.prompt]
    context, mask = encode_t5(model.tokenizer, model.text_encoder, prompts, ctx)

    factor = vae_scale_factor(model.vae)
    shape = (1, model.transformer.config.in_channels, request.frames, request.height // factor, request.width // factor)
    drawn, generator = initial_noise(shape, request.seed)
    latents = (drawn if noise is None else noise).to(ctx.device, ctx.dtype) * scheduler.init_noise_sigma

    ctx.stage(model.transformer, memory_required=v1_activation_bytes(request, model, ctx.dtype))
    latents = sample_v1(model, scheduler, latents, context, mask, request, ctx, generator)

    frames = sd_vae.decode_frames(model.vae, latents, ctx, dtype=None, rescale_in_float32=False)
    return VideoResult(frames=frames, latents=latents, fps=V1_FPS)


def sample_v1(model: EasyAnimateV1, scheduler, latents: torch.Tensor, context: torch.Tensor, mask: torch.Tensor,
              request: VideoRequest, ctx: RunContext, generator: torch.Generator) -> torch.Tensor:
    scheduler.set_timesteps(request.steps, device=ctx.device)
    extra = step_kwargs(scheduler, generator)
    guided = request.guidance > 1.0
    timesteps = scheduler.timesteps
    for index, t in enumerate(timesteps):
        ctx.check_interrupt()
        model_input = torch.cat([latents] * 2) if guided else latents
        model_input = scheduler.scale_model_input(model_input, t)
        timestep = t[None].to(ctx.device).expand(model_input.shape[0])
        with torch.no_grad():
            prediction = model.transformer(model_input, timestep, context, mask)
        if guided:
            prediction = classifier_free_guidance(prediction, request.guidance)
        if model.transformer.config.learned_sigma:
            prediction = prediction.chunk(2, dim=1)[0]
        latents = scheduler.step(prediction, t, latents, **extra, return_dict=False)[0]
        ctx.report(index + 1, len(timesteps), lambda: latent_preview(latents, frame_dim=2, latent_format="normalized"))
    return latents


# ----------------------------------------------------------------------------- v5.1


def encode_qwen(tokenizer, text_encoder, prompts: list[str], ctx: RunContext,
                max_length: int = V51_MAX_SEQUENCE_LENGTH) -> tuple[torch.Tensor, torch.Tensor]:
    """Qwen2-VL's second-to-last hidden states of the chat-formatted prompts, as diffusers encodes them."""
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": [{"type": "text", "text": prompt}]}],
                                           tokenize=False, add_generation_prompt=True) for prompt in prompts]
    tokens = tokenizer(text=texts, padding="max_length", max_length=max_length, truncation=True,
                       return_attention_mask=True, padding_side="right", return_tensors="pt")
    ids, mask = tokens.input_ids.to(ctx.device), tokens.attention_mask.to(ctx.device)
    with torch.no_grad():
        hidden = text_encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-2]
    return hidden.to(ctx.dtype), mask


def v51_latent_frames(frames: int, vae) -> int:
    return (frames - 1) // vae.temporal_compression_ratio + 1


def generate_v51(model: EasyAnimateV51, request: VideoRequest, ctx: RunContext,
                 noise: torch.Tensor | None = None) -> VideoResult:
    """EasyAnimate v5.1 text-to-video, as diffusers' ``EasyAnimatePipeline`` computes it.

    The VAE compresses time 4x: ``frames`` becomes ``(frames - 1) // 4 + 1`` latent frames, decoded
    to ``4 * (latent frames - 1) + 1`` frames (49 stays 49, 80 gives 77).
    """
    check_request(request, V51_SIZE_MULTIPLE, 4096)
    scheduler = schedulers.v51_scheduler(request.sampler, model.scheduler_config)
    guided = request.guidance > 1.0

    ctx.stage(model.text_encoder)
    prompts = [_negative_prompt(request, V51_NEGATIVE_PROMPT), request.prompt] if guided else [request.prompt]
    context, _ = encode_qwen(model.tokenizer, model.text_encoder, prompts, ctx)

    ratio = model.vae.spatial_compression_ratio
    shape = (1, model.transformer.config.in_channels, v51_latent_frames(request.frames, model.vae),
             request.height // ratio, request.width // ratio)
    drawn, generator = initial_noise(shape, request.seed)
    latents = (drawn if noise is None else noise).to(ctx.device, ctx.dtype)
    if hasattr(scheduler, "init_noise_sigma"):
        latents = latents * scheduler.init_noise_sigma

    ctx.stage(model.transformer)
    latents = sample_v51(model, scheduler, latents, context, request, ctx, generator)

    ctx.stage(model.vae)
    with torch.no_grad():
        video = model.vae.decode(latents.to(next(model.vae.parameters()).dtype) / model.vae.config.scaling_factor).sample
    frames = (video[0] / 2 + 0.5).clamp(0, 1).permute(1, 2, 3, 0).float().cpu()
    return VideoResult(frames=frames, latents=latents, fps=V51_FPS)


def sample_v51(model: EasyAnimateV51, scheduler, latents: torch.Tensor, context: torch.Tensor,
               request: VideoRequest, ctx: RunContext, generator: torch.Generator) -> torch.Tensor:
    from diffusers import FlowMatchEulerDiscreteScheduler

    if isinstance(scheduler, FlowMatchEulerDiscreteScheduler):
        scheduler.set_timesteps(request.steps, device=ctx.device, mu=1)
    else:
        scheduler.set_timesteps(request.steps, device=ctx.device)
    extra = step_kwargs(scheduler, generator)
    guided = request.guidance > 1.0
    timesteps = scheduler.timesteps
    latent_channels = model.vae.config.latent_channels
    for index, t in enumerate(timesteps):
        ctx.check_interrupt()
        model_input = torch.cat([latents] * 2) if guided else latents
        if hasattr(scheduler, "scale_model_input"):
            model_input = scheduler.scale_model_input(model_input, t)
        timestep = t.reshape(1).repeat(model_input.shape[0]).to(ctx.device, model_input.dtype)
        with torch.no_grad():
            prediction = model.transformer(model_input, timestep, encoder_hidden_states=context, return_dict=False)[0]
        if prediction.shape[1] != latent_channels:
            prediction = prediction.chunk(2, dim=1)[0]
        if guided:
            prediction = classifier_free_guidance(prediction, request.guidance)
        latents = scheduler.step(prediction, t, latents, **extra, return_dict=False)[0]
        ctx.report(index + 1, len(timesteps), lambda: latent_preview(latents, frame_dim=2, latent_format="normalized"))
    return latents
