"""AnimateAnyone sampling: reference image + pose frames -> video frames.

Follows Moore-AnimateAnyone's ``Pose2VideoPipeline`` (``pipeline_pose2vid_long.py``):

1. CLIP image embedding of the reference resized to 224x224 (the unconditional embedding is zeros).
2. Reference latents: the reference resized to width x height (Lanczos), VAE mean x 0.18215.
3. ReferenceNet, once per job (timestep 0): the self-attention inputs of its transformer blocks.
4. PoseGuider features of every pose frame resized to width x height (Lanczos, 0..1), once per job.
5. DDIM (v-prediction, zero-SNR, trailing) over context windows (the "uniform" schedule of
   ``core/frame_windows.py``); per window the unconditional and conditional halves run as one batch; overlapping predictions are averaged.
   Without guidance (guidance <= 1) the reference sums overlapping predictions instead of averaging
   them; that is kept so results match it (use overlap 0 or guidance > 1 to avoid it).
6. VAE decoding one frame at a time.

Width and height are rounded down to multiples of 8, as the reference's image processor does.
Pose frames and the reference of another size are stretched to width x height, as the reference does,
unless ``fit`` asks to centre-crop or pad them to the target aspect first. An alpha channel is dropped
(the colour channels are used as they are), as the reference's ``convert("RGB")`` does.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from ...core.context import RunContext
from ...core.errors import InputError
from ...core.frame_windows import UNIFORM, WindowBlend
from ...core.images import CLIP_MEAN, CLIP_STD, check_image_batch, to_uint8
from ...core.latent_preview import latent_preview
from .. import sd_vae
from .loading import AnimateAnyoneModels
from .reference_attention import reading_reference, record_reference_features
from .settings import FITS, AnimateAnyoneSettings

VAE_FACTOR = 8
CLIP_SIZE = 224
POSE_BATCH = 8


@dataclass
class AnimateAnyoneResult:
    frames: torch.Tensor  # (frames, height, width, 3) float32 in 0..1, CPU
    latents: torch.Tensor  # (1, 4, frames, height/8, width/8) float32, CPU: the final latents before decoding


# ----------------------------------------------------------------------------- inputs


def _pil_frames(images, input_name: str) -> list:
    """IMAGE batch, PIL image or list of PIL images -> RGB PIL images (alpha dropped)."""
    from PIL import Image

    if isinstance(images, Image.Image):
        images = [images]
    if isinstance(images, (list, tuple)) and all(isinstance(i, Image.Image) for i in images):
        if not images:
            raise InputError(input_name, "has no frames", "at least one image")
        return [image.convert("RGB") for image in images]
    frames = to_uint8(check_image_batch(images, input_name))
    return [Image.fromarray(frame) for frame in frames]


def _fit(image, width: int, height: int, fit: str):
    """Centre-crop or pad ``image`` to the aspect of ``width`` x ``height`` (stretch: unchanged)."""
    from PIL import Image

    w, h = image.size
    if fit == "stretch" or w * height == h * width:
        return image
    if fit == "crop":
        crop_w, crop_h = min(w, round(h * width / height)), min(h, round(w * height / width))
        left, top = (w - crop_w) // 2, (h - crop_h) // 2
        return image.crop((left, top, left + crop_w, top + crop_h))
    canvas_w, canvas_h = max(w, round(h * width / height)), max(h, round(w * height / width))
    canvas = Image.new("RGB", (canvas_w, canvas_h))
    canvas.paste(image, ((canvas_w - w) // 2, (canvas_h - h) // 2))
    return canvas


def _pixels(image, width: int, height: int) -> torch.Tensor:
    """PIL -> ``(3, H, W)`` in 0..1 after a Lanczos resize, as diffusers' ``VaeImageProcessor``."""
    from PIL import Image

    array = np.asarray(image.resize((width, height), resample=Image.LANCZOS), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1)


def _clip_pixels(image) -> torch.Tensor:
    """PIL -> ``(1, 3, 224, 224)`` CLIP input: bicubic 224x224, OpenAI mean/std (``CLIPImageProcessor``)."""
    from PIL import Image

    array = (np.asarray(image.resize((CLIP_SIZE, CLIP_SIZE), resample=Image.BICUBIC), dtype=np.float64) / 255.0)
    array = (array.astype(np.float32) - np.float32(CLIP_MEAN)) / np.float32(CLIP_STD)
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0)


def checked_settings(settings: AnimateAnyoneSettings, max_window: int) -> AnimateAnyoneSettings:
    """``settings`` with width and height rounded down to multiples of 8 (as the reference's image
    processor does), or an ``InputError`` naming the first unusable one."""
    for name in ("width", "height"):
        value = getattr(settings, name)
        if value < 64:
            raise InputError(name, f"is {value}.", "at least 64 (it is rounded down to a multiple of 8)")
    if settings.steps < 1:
        raise InputError("steps", f"is {settings.steps}.", "at least 1")
    if not 0 <= settings.guidance < float("inf"):
        raise InputError("guidance", f"is {settings.guidance}.", "0 or more (1 or less turns guidance off)")
    if not 1 <= settings.context_frames <= max_window:
        raise InputError("context_frames", f"is {settings.context_frames}.",
                         f"1 to {max_window} (the motion module's longest window)")
    if not 0 <= settings.context_overlap < settings.context_frames:
        raise InputError("context_overlap", f"is {settings.context_overlap}.",
                         f"0 to {settings.context_frames - 1} (less than context_frames)")
    if settings.context_stride < 1:
        raise InputError("context_stride", f"is {settings.context_stride}.", "1 or more")
    if settings.fit not in FITS:
        raise InputError("fit", f"'{settings.fit}' is unknown.", "one of " + ", ".join(FITS))
    return replace(settings, width=settings.width // VAE_FACTOR * VAE_FACTOR,
                   height=settings.height // VAE_FACTOR * VAE_FACTOR)


def estimated_memory_bytes(settings: AnimateAnyoneSettings, frames: int, dtype: torch.dtype) -> int:
    """A lower bound on what a job needs at once: the largest stage (the UNet over one context window
    with guidance, the pose guider over every frame, the VAE decoding one frame) plus the frames."""
    size = torch.finfo(dtype).bits // 8 if dtype.is_floating_point else 4
    pixels = settings.width * settings.height
    latent_pixels = pixels // (VAE_FACTOR * VAE_FACTOR)
    window = min(settings.context_frames, frames)
    unet = 2 * window * 320 * latent_pixels * size * 6
    pose_guider = frames * 16 * pixels * size
    vae = 128 * pixels * size * 4
    frame_batches = frames * pixels * 3 * 4 * 3
    return max(unet, pose_guider, vae) + frame_batches


def device_memory_bytes(device) -> int:
    """What a job may use on ``device``: the GPU's whole memory (models can be offloaded), else free RAM."""
    from ...core.errors import available_memory_bytes

    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_properties(device.index or 0).total_memory
    return available_memory_bytes()


def check_memory(settings: AnimateAnyoneSettings, frames: int, device, dtype: torch.dtype) -> None:
    """Refuse, before allocating anything, a job whose estimate exceeds the device's memory."""
    from ...core.errors import memory_refusal

    needed, available = estimated_memory_bytes(settings, frames, dtype), device_memory_bytes(device)
    if needed > available:
        raise memory_refusal("width/height", f"animating {frames} frames at {settings.width}x{settings.height}",
                             needed, available, "a smaller width/height, fewer context_frames or fewer pose frames")


def initial_noise(seed: int, frames: int, width: int, height: int) -> torch.Tensor:
    """The reference's initial latents for ``seed``: ``randn`` on the CPU, same on every device."""
    generator = torch.Generator("cpu").manual_seed(int(seed))
    return torch.randn((1, 4, frames, height // VAE_FACTOR, width // VAE_FACTOR), generator=generator)


def window_memory(frames: int, width: int, height: int, dtype: torch.dtype) -> int:
    """Bytes of activations to keep free for one UNet pass over ``frames`` (guidance halves included).

    ComfyUI's estimate for SD1.5 UNets (0.01 MiB per latent pixel per byte of dtype); the largest
    tensors of a pass (the top-level feed-forward, the skip connections) stay below it.
    """
    area = frames * (width // VAE_FACTOR) * (height // VAE_FACTOR)
    bytes_per_value = torch.finfo(dtype).bits // 8
    return int(area * bytes_per_value * 0.01 * 1024 * 1024)


# ----------------------------------------------------------------------------- stages


def encode_reference(models: AnimateAnyoneModels, reference, settings, ctx: RunContext):
    """CLIP image embedding ``(1, 1, D)`` and reference latents ``(1, 4, h, w)``."""
    ctx.stage(models.image_encoder)
    pixels = _clip_pixels(reference).to(ctx.device, ctx.dtype)
    embeds = models.image_encoder(pixel_values=pixels).image_embeds.unsqueeze(1)
    ctx.stage(models.vae)
    image = _pixels(reference, settings.width, settings.height).unsqueeze(0) * 2.0 - 1.0
    latents = sd_vae.encode_mean(models.vae, image.to(ctx.device, ctx.dtype))
    return embeds, latents


def encode_poses(models: AnimateAnyoneModels, poses: list, settings, ctx: RunContext) -> torch.Tensor:
    """PoseGuider features ``(1, C, F, h, w)`` of every pose frame."""
    ctx.stage(models.pose_guider)
    features = []
    for start in range(0, len(poses), POSE_BATCH):
        ctx.check_interrupt()
        batch = [_pixels(_fit(p, settings.width, settings.height, settings.fit), settings.width, settings.height)
                 for p in poses[start:start + POSE_BATCH]]
        features.append(models.pose_guider(torch.stack(batch).to(ctx.device, ctx.dtype)))
    return torch.cat(features).transpose(0, 1).unsqueeze(0)


def denoise(models: AnimateAnyoneModels, noise: torch.Tensor, embeds: torch.Tensor, features: dict,
            pose_features: torch.Tensor, settings: AnimateAnyoneSettings, ctx: RunContext) -> torch.Tensor:
    from diffusers import DDIMScheduler

    unet = models.denoising_unet
    scheduler = DDIMScheduler.from_config(models.scheduler_config)
    scheduler.set_timesteps(settings.steps, device=ctx.device)
    guided = settings.guidance > 1.0
    copies = 2 if guided else 1
    context = torch.cat([torch.zeros_like(embeds), embeds]) if guided else embeds
    pose_features = pose_features.repeat(copies, 1, 1, 1, 1)
    latents = noise.to(ctx.device, torch.float32) * scheduler.init_noise_sigma
    frames = latents.shape[2]
    windows = UNIFORM.windows(frames, settings.context_frames, settings.context_overlap, settings.context_stride)
    total = len(scheduler.timesteps) * len(windows)
    memory = window_memory(copies * len(windows[0]), settings.width, settings.height, ctx.dtype)
    with reading_reference(unet, features, guided):
        for step, t in enumerate(scheduler.timesteps):
            ctx.stage(unet, memory_required=memory)
            blend = WindowBlend(torch.zeros((copies, *latents.shape[1:]), device=latents.device), frame_dim=2)
            for index, window in enumerate(windows):
                ctx.check_interrupt()
                x = scheduler.scale_model_input(latents[:, :, window].repeat(copies, 1, 1, 1, 1), t)
                out = unet(x.to(ctx.dtype), t, context, pose_features[:, :, window]).float()
                blend.add(window, out, UNIFORM.weights(window, frames, settings.context_overlap))
                if index < len(windows) - 1:
                    ctx.report(step * len(windows) + index + 1, total)
            if guided:
                uncond, cond = blend.average().chunk(2)
                prediction = uncond + settings.guidance * (cond - uncond)
            else:  # the reference's unguided path sums overlapping windows (see the module docstring)
                prediction = blend.total
            result = scheduler.step(prediction, t, latents)
            latents = result.prev_sample
            ctx.report((step + 1) * len(windows), total, lambda: latent_preview(result.pred_original_sample, frame_dim=2))
    return latents


@torch.inference_mode()
def animate(models: AnimateAnyoneModels, reference_image, pose_frames, settings: AnimateAnyoneSettings | None = None,
            ctx: RunContext | None = None, noise: torch.Tensor | None = None) -> AnimateAnyoneResult:
    """Animate ``reference_image`` (IMAGE or PIL) along ``pose_frames`` (IMAGE batch or PIL list).

    The video has one frame per pose frame. ``noise`` replaces the seed's initial latents when given.
    """
    settings = settings or AnimateAnyoneSettings()
    ctx = ctx or RunContext()
    settings = checked_settings(settings, models.denoising_unet.max_frames)
    references = _pil_frames(reference_image, "reference_image")
    if len(references) != 1:
        raise InputError("reference_image", f"has {len(references)} images", "one image")
    poses = _pil_frames(pose_frames, "pose_frames")
    check_memory(settings, len(poses), ctx.device, ctx.dtype)
    reference = _fit(references[0], settings.width, settings.height, settings.fit)
    if noise is None:
        noise = initial_noise(settings.seed, len(poses), settings.width, settings.height)
    expected = (1, 4, len(poses), settings.height // VAE_FACTOR, settings.width // VAE_FACTOR)
    if tuple(noise.shape) != expected:
        raise InputError("noise", f"has shape {tuple(noise.shape)}", f"{expected} for these frames and size")

    embeds, reference_latents = encode_reference(models, reference, settings, ctx)
    ctx.stage(models.reference_net)
    features = record_reference_features(models.reference_net, reference_latents, embeds)
    pose_features = encode_poses(models, poses, settings, ctx)
    latents = denoise(models, noise, embeds, features, pose_features, settings, ctx)
    frames = sd_vae.decode_frames(models.vae, latents, ctx, dtype=ctx.dtype, rescale_in_float32=True)
    return AnimateAnyoneResult(frames=frames, latents=latents.float().cpu())

