"""StableAnimator: animate a reference person along pose frames on SVD-xt, keeping the face's identity.

Follows ``InferenceAnimationPipeline`` (and, with face optimisation, ``InferenceAnimationProPipeline``)
of Francis-Rings/StableAnimator, with these differences, all on inputs where the reference fails:
- guidance exactly 1.0 on every frame runs the conditional pass only (the reference crashes);
- a clip shorter than ``tile_size`` is one tile (the reference raises);
- frames whose face mask is empty are left out of the face loss (the reference stops);
- decoding halves ``decode_chunk_size`` after a GPU out-of-memory (the reference stops).

The SVD stages (CLIP and VAE encoding, time ids, guidance, the v-prediction Euler step, decoding) are
SVD's own (``pipelines/svd/stages.py``), and so is the sampling loop (``pipelines/svd/samplers.py``, Euler over
the sigmas of diffusers' ``EulerDiscreteScheduler``): this module's ``_TiledDenoiser`` is one step's work.

Inputs are ComfyUI-style tensors: IMAGE ``[N, H, W, 3]`` in 0..1 and MASK ``[N, H, W]``.
- ``reference``: the person, any size. Its CLIP embedding is taken from it as it is; the VAE latent
  from it scaled to width x height (stretched, as the reference pipeline does).
- ``poses``: pose images in StableAnimator's drawing convention, on the reference's canvas (the same
  aspect ratio; any size), scaled to width x height.
- ``face_embedding``: the raw (not normalised) 512-d ArcFace embedding of the reference's largest face,
  ``[512]`` or ``[1, 512]``. None or all zeros means no face: zeros are used, as the reference does.
- ``face_masks`` (one per pose frame, on the pose canvas) and ``reference_face_mask`` (on the
  reference): face boxes for face optimisation, taken as the bounding box of values > 0.5.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from ...core import images as image_ops
from ...core.context import RunContext
from ...core.errors import InputError
from ...core.frame_windows import FRAME_TILES, WindowBlend, tile_length
from ..svd import samplers, stages
from . import hjb
from .hjb import FaceOptimization
from .loading import StableAnimatorModels

log = logging.getLogger("animate_suite.stable_animator")

SIZE_MULTIPLE = 64
VAE_DOWNSCALE = 8  # pixels per latent along each side
CLIP_SIZE = 224  # the reference resizes to 224 whatever the encoder's configured size


@dataclass
class AnimationSettings:
    width: int = 512
    height: int = 512
    steps: int = 25
    min_guidance_scale: float = 3.0  # first frame
    max_guidance_scale: float = 3.0  # last frame; linear in between
    fps: int = 7  # the UNet is conditioned on fps - 1
    motion_bucket_id: float = 127.0
    noise_aug_strength: float = 0.02
    tile_size: int = 16
    tile_overlap: int = 4
    decode_chunk_size: int = 4
    seed: int = 0


@dataclass
class AnimationInputs:
    reference: torch.Tensor
    poses: torch.Tensor
    face_embedding: torch.Tensor | None = None
    face_masks: torch.Tensor | None = None
    reference_face_mask: torch.Tensor | None = None


@dataclass
class AnimationResult:
    frames: torch.Tensor  # IMAGE [F, H, W, 3], float32 0..1, CPU
    latents: torch.Tensor  # final latents [1, F, 4, H/8, W/8], before decoding
    refined_steps: int = 0  # denoising steps whose x0 the face optimisation refined
    warnings: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- input checks


def _check_settings(settings: AnimationSettings) -> None:
    for name in ("width", "height"):
        value = getattr(settings, name)
        if value < SIZE_MULTIPLE or value % SIZE_MULTIPLE:
            raise InputError(name, f"is {value}", f"a multiple of {SIZE_MULTIPLE} (the UNet halves the latent three times)")
    for name in ("steps", "decode_chunk_size"):
        if getattr(settings, name) < 1:
            raise InputError(name, f"is {getattr(settings, name)}", "at least 1")
    if settings.min_guidance_scale < 0 or settings.max_guidance_scale < 0:
        raise InputError("guidance", f"is {settings.min_guidance_scale}..{settings.max_guidance_scale}", "0 or more")


def _warn(warnings: list[str], message: str) -> None:
    log.warning("StableAnimator: %s", message)
    warnings.append(message)


def _prepare_frames(inputs: AnimationInputs, settings: AnimationSettings, warnings: list[str]):
    """Reference (original size), reference and poses at width x height ([N, 3, H, W] in 0..1), pose canvas size."""
    reference = image_ops.check_image_batch(inputs.reference, "reference_image")
    if reference.shape[0] != 1:
        raise InputError("reference_image", f"has {reference.shape[0]} images", "one reference image")
    poses = image_ops.check_image_batch(inputs.poses, "pose_frames")
    reference_hw, pose_hw = tuple(reference.shape[1:3]), tuple(poses.shape[1:3])
    if hjb.aspect_differs(pose_hw, reference_hw):
        raise InputError(
            "pose_frames", f"are {pose_hw[1]}x{pose_hw[0]} but the reference image is {reference_hw[1]}x{reference_hw[0]}",
            "poses drawn on the reference's canvas (the same aspect ratio), i.e. aligned to the reference")
    size = (settings.height, settings.width)
    if hjb.aspect_differs(reference_hw, size):
        _warn(warnings, f"the reference is {reference_hw[1]}x{reference_hw[0]} and the output {size[1]}x{size[0]}: "
                        "reference and poses are stretched to the output size, as StableAnimator does; "
                        "pick a width/height with the reference's aspect ratio to avoid it")

    def at_output_size(batch):
        return image_ops.resize_batch(batch, settings.width, settings.height, "stretch").permute(0, 3, 1, 2)

    return reference.permute(0, 3, 1, 2), at_output_size(reference), at_output_size(poses), pose_hw


def _face_embedding(embedding, warnings: list[str]) -> tuple[torch.Tensor, bool]:
    """[1, 512] float32 and whether it holds a face."""
    if embedding is None:
        _warn(warnings, "no face embedding: identity comes from the CLIP image embedding only "
                        "(zeros are used, as StableAnimator does when it finds no face)")
        return torch.zeros(1, 512), False
    embedding = torch.as_tensor(embedding).detach().float().cpu()
    if embedding.shape[-1:] != (512,) or embedding.numel() != 512:
        raise InputError("face_embeds", f"has shape {tuple(embedding.shape)}",
                         "one 512-d ArcFace (antelopev2/glintr100) embedding, [512] or [1, 512]")
    embedding = embedding.reshape(1, 512)
    if not embedding.abs().sum():
        _warn(warnings, "no face was found in the reference (the face embedding is all zeros): "
                        "identity comes from the CLIP image embedding only")
        return embedding, False
    if abs(float(embedding.norm()) - 1.0) < 0.1:
        _warn(warnings, "the face embedding has length 1: StableAnimator expects the raw (not normalised) ArcFace embedding")
    return embedding, True


def _face_boxes(models, inputs, settings, hjb_settings, has_face, reference_hw, pose_hw, frames, warnings):
    """Per-frame target boxes and the reference box when face optimisation can run, else None (with a warning)."""
    if not hjb_settings.enabled:
        return None
    if hjb_settings.start_step > hjb_settings.end_step:
        raise InputError("hjb_start_step", f"is after hjb_end_step ({hjb_settings.start_step} > {hjb_settings.end_step})",
                         "a start step at or before the end step")
    missing = [reason for reason, absent in (
        ("no face embedder was loaded (glintr100_torch.pth in the loader)", models.face_embedder is None),
        ("there is no face in the reference", not has_face),
        ("face_masks is not connected", inputs.face_masks is None),
        ("reference_face_mask is not connected", inputs.reference_face_mask is None),
    ) if absent]
    if missing:
        _warn(warnings, "face optimisation (HJB) is off: " + "; ".join(missing) + ".")
        return None
    masks = _mask_batch(inputs.face_masks, "face_masks")
    if masks.shape[0] != frames:
        raise InputError("face_masks", f"has {masks.shape[0]} masks for {frames} pose frames", "one face mask per pose frame")
    target_boxes = hjb.mask_boxes(masks, "face_masks", pose_hw, "the pose frames", (settings.height, settings.width))
    reference_mask = _mask_batch(inputs.reference_face_mask, "reference_face_mask")
    if reference_mask.shape[0] != 1:
        raise InputError("reference_face_mask", f"has {reference_mask.shape[0]} masks", "one mask of the reference image")
    reference_box = hjb.mask_boxes(reference_mask, "reference_face_mask", reference_hw, "the reference image", reference_hw)[0]
    if reference_box is None:
        _warn(warnings, "face optimisation (HJB) is off: reference_face_mask is empty (no face in the reference).")
        return None
    empty = [i for i, box in enumerate(target_boxes) if box is None]
    if len(empty) == frames:
        _warn(warnings, "face optimisation (HJB) is off: every face mask is empty.")
        return None
    if empty:
        _warn(warnings, f"frames {empty} have an empty face mask; they are left out of the face loss.")
    return target_boxes, reference_box


def _mask_batch(mask, input_name: str) -> torch.Tensor:
    if not isinstance(mask, torch.Tensor) or mask.ndim not in (2, 3):
        raise InputError(input_name, f"is {type(mask).__name__} {tuple(getattr(mask, 'shape', ()))}", "a MASK [N, H, W]")
    return (mask[None] if mask.ndim == 2 else mask).float().cpu()


# ----------------------------------------------------------------------------- conditioning


def _encoder_states(models: StableAnimatorModels, reference, face_embedding, ctx: RunContext):
    """(uncond, cond) encoder hidden states [1, 1 + 4, D]: CLIP token then face tokens; uncond is zeros."""
    ctx.stage(models.image_encoder, models.face_encoder)
    clip = stages.clip_image_embedding(models.image_encoder, reference * 2.0 - 1.0, CLIP_SIZE, image_ops.CLIP_MEAN,
                                       image_ops.CLIP_STD, ctx, ctx.dtype)
    face_tokens = models.face_encoder(face_embedding.to(ctx.device, clip.dtype), clip)
    cond = torch.cat([clip, face_tokens], dim=1)
    return torch.zeros_like(cond), cond


# ----------------------------------------------------------------------------- the pipeline


def draw_noise(settings: AnimationSettings, num_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(noise augmentation [1, 3, H, W], initial noise [1, tile, 4, H/8, W/8]) from the seed, on CPU.

    Drawn in this order from one CPU generator, as the reference does, so a seed gives the same
    video on every device.
    """
    generator = torch.Generator("cpu").manual_seed(settings.seed)
    tile = tile_length(settings.tile_size, num_frames)
    latent_hw = (settings.height // VAE_DOWNSCALE, settings.width // VAE_DOWNSCALE)
    noise_aug = torch.randn((1, 3, settings.height, settings.width), generator=generator)
    noise = torch.randn((1, tile, 4, *latent_hw), generator=generator)
    return noise_aug, noise


class _Progress:
    """Units of work done so far, reported to the context (tiles, HJB iterations, decode chunks)."""

    def __init__(self, ctx: RunContext, total: int):
        self.ctx, self.total, self.done = ctx, total, 0

    def advance(self, preview_fn=None) -> None:
        self.done += 1
        self.ctx.report(self.done, self.total, preview_fn)


def animate(models: StableAnimatorModels, inputs: AnimationInputs, settings: AnimationSettings,
            face_optimization: FaceOptimization | None = None, ctx: RunContext | None = None) -> AnimationResult:
    """Generate the video; see the module docstring for the inputs."""
    ctx = ctx or RunContext()
    face_optimization = face_optimization or FaceOptimization(enabled=False)
    warnings: list[str] = []
    _check_settings(settings)
    reference, reference_at_size, poses, pose_canvas_hw = _prepare_frames(inputs, settings, warnings)
    num_frames = poses.shape[0]
    tiles = FRAME_TILES.windows(num_frames, tile_length(settings.tile_size, num_frames), settings.tile_overlap)
    face_embedding, has_face = _face_embedding(inputs.face_embedding, warnings)
    boxes = _face_boxes(models, inputs, settings, face_optimization, has_face,
                        tuple(reference.shape[-2:]), pose_canvas_hw, num_frames, warnings)
    noise_aug, noise = draw_noise(settings, num_frames)

    with torch.no_grad():
        states = _encoder_states(models, reference, face_embedding, ctx)
        image_latents = stages.encode_noised_image(models.vae, reference_at_size * 2.0 - 1.0, noise_aug,
                                                   settings.noise_aug_strength, ctx).to(ctx.dtype)
        face_loss = None
        if boxes is not None:
            ctx.stage(models.face_embedder)
            reference_embedding = hjb.reference_face_embedding(models.face_embedder, reference, boxes[1])
            face_loss = hjb.FaceIdentityLoss(models.vae, models.face_embedder, boxes[0], reference_embedding,
                                             settings.decode_chunk_size, ctx.check_interrupt)
        else:
            face_optimization = FaceOptimization(enabled=False)
        refined = sum(face_optimization.refines(i) for i in range(settings.steps))
        decode_chunks = -(-num_frames // settings.decode_chunk_size)
        progress = _Progress(ctx, settings.steps * len(tiles) + refined * face_optimization.iterations + decode_chunks)
        latents, refined_steps = _denoise(models, poses, image_latents, states, noise, tiles, settings, face_optimization,
                           face_loss, ctx, progress, warnings)
        frames = _decode(models.vae, latents, settings.decode_chunk_size, ctx, progress)
    return AnimationResult(frames, latents.float().cpu(), refined_steps, warnings)


def _denoise(models, poses, image_latents, states, noise, tiles, settings, face_optimization, face_loss,
             ctx: RunContext, progress: _Progress, warnings: list[str]) -> tuple[torch.Tensor, int]:
    """Tiled, guided Euler sampling; returns the final latents [1, F, 4, h, w] and how many steps HJB refined."""
    from diffusers import EulerDiscreteScheduler

    num_frames = poses.shape[0]
    scheduler = EulerDiscreteScheduler.from_config(models.scheduler_config)
    scheduler.set_timesteps(settings.steps, device=ctx.device)
    latents = noise.to(ctx.device, ctx.dtype) * scheduler.init_noise_sigma
    latents = latents.repeat(1, num_frames // noise.shape[1] + 1, 1, 1, 1)[:, :num_frames]
    guidance = stages.frame_guidance(settings.min_guidance_scale, settings.max_guidance_scale, num_frames)
    refinement = _FaceRefinement(models, face_loss, face_optimization, settings, ctx, progress, warnings)
    denoiser = _TiledDenoiser(models, (poses * 2.0 - 1.0).to(ctx.device, ctx.dtype), image_latents, states,
                              scheduler.timesteps, guidance.to(ctx.device, latents.dtype), tiles, settings, refinement,
                              ctx, progress)
    reporter = samplers.step_reporter(ctx, lambda index: (progress.done, progress.total))
    latents = samplers.sample("euler", denoiser, latents, scheduler.sigmas, callback=reporter)
    return latents, refinement.refined_steps


class _TiledDenoiser:
    """StableAnimator's pose net and UNet as a denoiser ``x0 = D(x, sigma)`` for the SVD samplers (Euler).

    One call is one step: the UNet predicts v for every frame tile (``FRAME_TILES``), the conditional and the
    unconditional predictions are each blended in a ``WindowBlend`` and then guided; x0 (float32) is then
    refined against the face loss on the steps face optimisation asks for. ``x`` stays in the compute dtype.
    """

    def __init__(self, models, poses, image_latents, states, timesteps, guidance, tiles, settings,
                 refinement: "_FaceRefinement", ctx: RunContext, progress: _Progress):
        num_frames = poses.shape[0]
        self.models, self.poses, self.tiles, self.ctx, self.progress = models, poses, tiles, ctx, progress
        self.image_latents = image_latents.unsqueeze(1).repeat(1, num_frames, 1, 1, 1)
        self.uncond_states, self.cond_states = states
        self.timesteps = timesteps  # the scheduler's, one per step
        self.time_ids = stages.time_ids(settings.fps, settings.motion_bucket_id, settings.noise_aug_strength,
                                        ctx.dtype, ctx.device)
        self.guidance = guidance.view(1, -1, 1, 1, 1)
        self.with_uncond = bool((guidance != 1.0).any())  # exactly 1 everywhere is the conditional prediction alone
        self.weights = FRAME_TILES.weights(tiles[0], num_frames, settings.tile_overlap)
        latent_hw = (settings.height // VAE_DOWNSCALE, settings.width // VAE_DOWNSCALE)
        self.unet_memory = stages.unet_memory(len(tiles[0]), latent_hw, ctx.dtype)
        self.refinement = refinement
        self.step = 0  # the Euler sampler calls the denoiser once per step

    def __call__(self, latents: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self.ctx.stage(self.models.unet, self.models.pose_net, memory_required=self.unet_memory)
        v = self._predict(stages.scale_model_input(latents, sigma), self.timesteps[self.step])
        x0 = stages.v_prediction_x0(v, latents.to(torch.float32), sigma)
        x0 = self.refinement(self.step, x0)
        self.step += 1
        return x0

    def _predict(self, scaled: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        models = self.models
        cond_input = torch.cat([scaled, self.image_latents], dim=2)
        uncond_input = torch.cat([scaled, torch.zeros_like(self.image_latents)], dim=2)
        cond, uncond = WindowBlend(scaled, frame_dim=1), WindowBlend(scaled, frame_dim=1)
        for tile in self.tiles:
            self.ctx.check_interrupt()
            pose_latents = models.pose_net(self.poses[tile])
            if self.with_uncond:  # the unconditional pass has neither pose nor face, CLIP or image latents
                uncond.add(tile, models.unet(uncond_input[:, tile], timestep, self.uncond_states, self.time_ids,
                                             return_dict=False)[0], self.weights)
            cond.add(tile, models.unet(cond_input[:, tile], timestep, self.cond_states, self.time_ids, pose_latents,
                                       return_dict=False)[0], self.weights)
            self.progress.advance()
        v = cond.average()
        if self.with_uncond:
            v = stages.guided(uncond.average(), v, self.guidance)
        return v


class _FaceRefinement:
    """x0 refined by HJB on the steps face optimisation asks for; off (with a warning) after a GPU out-of-memory."""

    def __init__(self, models, face_loss, face_optimization: FaceOptimization, settings: AnimationSettings,
                 ctx: RunContext, progress: _Progress, warnings: list[str]):
        self.models, self.face_loss, self.face_optimization = models, face_loss, face_optimization
        self.steps, self.chunk_size = settings.steps, settings.decode_chunk_size
        self.ctx, self.progress, self.warnings = ctx, progress, warnings
        self.refined_steps = 0

    def __call__(self, step: int, x0: torch.Tensor) -> torch.Tensor:
        optimization = self.face_optimization
        if not optimization.refines(step):
            return x0
        refined = _refine(self.models, x0, self.face_loss, optimization.step_learning_rate(step, self.steps),
                          optimization.iterations, self.chunk_size, self.ctx, self.progress)
        if refined is None:
            _warn(self.warnings, f"face optimisation (HJB) ran out of GPU memory at step {step} and is off from here on; "
                                 "lower decode_chunk_size or the resolution to keep it, or turn it off")
            self.progress.total -= sum(optimization.refines(j) for j in range(step, self.steps)) * optimization.iterations
            self.face_optimization = FaceOptimization(enabled=False)
            return x0
        self.refined_steps += 1
        return refined


def _refine(models, x0, face_loss, learning_rate, iterations, chunk_size, ctx: RunContext, progress: _Progress):
    """HJB: the predicted x0 optimised against the face loss (float32, gradients on); None if out of GPU memory."""
    # float32 decoding of a chunk; the backward pass roughly triples it
    memory = 3 * stages.vae_memory((x0.shape[-2] * VAE_DOWNSCALE, x0.shape[-1] * VAE_DOWNSCALE), chunk_size, torch.float32)
    ctx.stage(models.vae, models.face_embedder, memory_required=memory)

    def on_iteration(iteration, loss_value):
        log.debug("StableAnimator face optimisation: iteration %d, face loss %.5f", iteration, loss_value)
        progress.advance()

    def optimise():
        with hjb.autograd_enabled(models.vae, models.face_embedder):
            return hjb.refine_x0(x0, face_loss.backward, learning_rate, iterations, on_iteration)

    return stages.none_if_out_of_memory(optimise)


def _decode(vae, latents, chunk_size, ctx: RunContext, progress: _Progress) -> torch.Tensor:
    """Latents [1, F, 4, h, w] -> IMAGE [F, H, W, 3]; the decoder mixes frames within a chunk."""
    # Unscaled as the reference does: cast to the VAE's dtype, then times 1 / scaling factor.
    unscaled = latents.flatten(0, 1).to(stages.module_dtype(vae)) * (1 / vae.config.scaling_factor)
    start, planned = progress.done, -(-unscaled.shape[0] // chunk_size)

    def report(done: int, total: int) -> None:
        nonlocal planned
        progress.total += total - planned  # more chunks after an out-of-memory halved them
        planned, progress.done = total, start + done - 1
        progress.advance()

    return stages.decode_frames(vae, unscaled, chunk_size, ctx, report)
