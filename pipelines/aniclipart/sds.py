"""Score Distillation Sampling with a text-to-video prior, as AniClipart's ``SDSVideoLoss``.

For a rendered clip ``x`` (values 0..1): ``z = scaling_factor * VAE.encode(2x - 1).sample()`` per frame,
arranged (B, C, F, h, w); one timestep ``t`` per clip drawn as ``randint(low, min(cap, T) - 1)``
(50..948 for the released schedule); ``z_t = add_noise(z, eps, t)``; the UNet predicts the noise
without and with the caption; ``eps_hat = eps_u + guidance (eps_c - eps_u)``;
``grad = (1 - alphas_cumprod[t]) (eps_hat - eps)``; the loss ``0.5 sum((z - sg(z - grad))^2) / B`` has
the value ``0.5 sum(grad^2) / B`` and the gradient ``grad / B`` w.r.t. ``z``. Only the VAE is
differentiated through; the UNet runs without gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...core.errors import AnimateSuiteError


@dataclass(frozen=True)
class SDSSettings:
    guidance_scale: float = 50.0
    timestep_low: int = 50
    timestep_cap: int = 950  # AniClipart avoids the noisiest timesteps: t < min(cap, T) - 1


@dataclass
class SDSNoise:
    """The random draws of one SDS evaluation (saved by the parity fixture, drawn by the loop)."""

    timestep: torch.Tensor  # [B] long
    noise: torch.Tensor  # eps, [B, C, F, h, w]
    posterior_noise: torch.Tensor  # VAE posterior sample noise, [B * F, C, h, w]


def timestep_bounds(settings: SDSSettings, num_train_timesteps: int) -> tuple[int, int]:
    """``(low, high)`` of ``torch.randint``: timesteps drawn are low .. high - 1."""
    return settings.timestep_low, min(settings.timestep_cap, num_train_timesteps) - 1


def draw_noise(latent_shape, bounds: tuple[int, int], generator: torch.Generator | None = None) -> SDSNoise:
    """Draws in the reference's order: posterior sample, timestep, then the diffusion noise (on CPU)."""
    batch, channels, frames, height, width = latent_shape
    posterior_noise = torch.randn(batch * frames, channels, height, width, generator=generator)
    timestep = torch.randint(bounds[0], bounds[1], (batch,), generator=generator, dtype=torch.long)
    noise = torch.randn(latent_shape, generator=generator)
    return SDSNoise(timestep, noise, posterior_noise)


def embed_token_ids(text_encoder, uncond_ids: torch.Tensor, cond_ids: torch.Tensor,
                    device: torch.device | None = None) -> torch.Tensor:
    """Text embeddings [2, L, D]: the empty prompt first, then the caption (computed on ``device``)."""
    device = device or next(text_encoder.parameters()).device
    with torch.no_grad():
        uncond = text_encoder(uncond_ids.to(device))[0]
        cond = text_encoder(cond_ids.to(device))[0]
    return torch.cat([uncond, cond])


def tokenize_prompt(tokenizer, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(uncond ids, cond ids), both padded to the tokenizer's length, the caption truncated to it."""
    cond = tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids
    uncond = tokenizer([""], padding="max_length", max_length=cond.shape[-1], return_tensors="pt").input_ids
    return uncond, cond


def encode_video(vae, video: torch.Tensor, posterior_noise: torch.Tensor,
                 frame_index: torch.Tensor | None = None) -> torch.Tensor:
    """Latents [B, C, F, h, w] (float32) of ``video`` [B, P, 3, H, W] in 0..1.

    With ``frame_index`` [F] the clip's frame f shows ``video[:, frame_index[f]]``: each distinct frame
    is encoded once (the VAE works frame by frame, so this equals encoding the repeated frames), and
    every output frame still gets its own posterior noise.
    """
    batch, distinct, channels, height, width = video.shape
    dtype = next(vae.parameters()).dtype
    pixels = (video * 2.0 - 1.0).reshape(batch * distinct, channels, height, width).to(dtype)
    posterior = vae.encode(pixels).latent_dist
    mean, std = posterior.mean, posterior.std
    if frame_index is not None:
        index = frame_index.to(mean.device)
        mean = mean.unflatten(0, (batch, distinct))[:, index].flatten(0, 1)
        std = std.unflatten(0, (batch, distinct))[:, index].flatten(0, 1)
    latents = mean + std * posterior_noise.to(device=mean.device, dtype=mean.dtype)
    latents = latents.unflatten(0, (batch, -1)).permute(0, 2, 1, 3, 4)
    return vae.config.scaling_factor * latents.float()


def guided_noise_prediction(unet, noisy_latents: torch.Tensor, timestep: torch.Tensor,
                            embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(eps_uncond, eps_cond) in float32; one UNet call on the doubled batch, uncond half first."""
    dtype = next(unet.parameters()).dtype
    batch = noisy_latents.shape[0]
    with torch.no_grad():
        sample = torch.cat([noisy_latents] * 2).to(dtype)
        timesteps = torch.cat([timestep] * 2).to(noisy_latents.device)
        context = embeddings.repeat_interleave(batch, 0).to(device=noisy_latents.device, dtype=dtype)
        prediction = unet(sample, timesteps, encoder_hidden_states=context).sample.float()
    eps_uncond, eps_cond = prediction.chunk(2)
    return eps_uncond, eps_cond


@dataclass
class SDSGuidance:
    """The prior's verdict on one clip: the SDS gradient and what it was made of (all float32)."""

    gradient: torch.Tensor
    noisy_latents: torch.Tensor
    eps_uncond: torch.Tensor
    eps_cond: torch.Tensor


def sds_gradient(unet, scheduler, latents: torch.Tensor, embeddings: torch.Tensor, noise: SDSNoise,
                 guidance_scale: float) -> SDSGuidance:
    """``(1 - alphas_cumprod[t]) (eps_hat - eps)`` for ``latents`` [B, C, F, h, w] (no gradient)."""
    device = latents.device
    timestep = noise.timestep.to(device)
    eps = noise.noise.to(device=device, dtype=torch.float32)
    with torch.no_grad():
        noisy = scheduler.add_noise(latents.detach(), eps, timestep)
        eps_uncond, eps_cond = guided_noise_prediction(unet, noisy, timestep, embeddings)
        eps_hat = eps_uncond + guidance_scale * (eps_cond - eps_uncond)
        weight = (1.0 - scheduler.alphas_cumprod.to(device)[timestep]).reshape(-1, 1, 1, 1, 1)
        gradient = weight * (eps_hat - eps)
    if not torch.isfinite(gradient).all():
        raise AnimateSuiteError(
            f"The video prior returned non-finite values at timestep {timestep.tolist()}. In fp16 the UNet can "
            "overflow: load the prior with precision bf16 or fp32."
        )
    return SDSGuidance(gradient, noisy, eps_uncond, eps_cond)


def sds_loss(latents: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """A loss whose gradient w.r.t. ``latents`` is ``gradient / B`` (its value is ``0.5 sum(grad^2) / B``)."""
    target = (latents - gradient).detach()
    return 0.5 * ((latents.float() - target) ** 2).sum() / latents.shape[0]


class VideoSDS:
    """The SDS loss of one prompt: holds the prior's UNet, VAE and schedule and the text embeddings."""

    def __init__(self, unet, vae, scheduler, embeddings: torch.Tensor, settings: SDSSettings = SDSSettings()):
        self.unet, self.vae, self.scheduler = unet, vae, scheduler
        self.embeddings = embeddings
        self.settings = settings
        self.bounds = timestep_bounds(settings, scheduler.config.num_train_timesteps)
        self.latent_channels = vae.config.latent_channels
        self.downscale = 2 ** (len(vae.config.block_out_channels) - 1)

    def memory_estimate(self, distinct: int, frames: int, height: int, width: int) -> int:
        """Rough bytes of activations for one step: the VAE encoder keeps its activations for the
        backward pass (about 40 full-resolution maps of its first width per frame); the UNet runs 2 x F
        frames at the latent size without gradient. A hint for ComfyUI's memory manager, not a bound."""
        vae_bytes = next(self.vae.parameters()).element_size()
        unet_bytes = next(self.unet.parameters()).element_size()
        vae = distinct * height * width * self.vae.config.block_out_channels[0] * 40 * vae_bytes
        latent_pixels = (height // self.downscale) * (width // self.downscale)
        unet = 2 * frames * latent_pixels * self.unet.config.block_out_channels[0] * 40 * unet_bytes
        return vae + unet

    def latent_shape(self, batch: int, frames: int, height: int, width: int) -> tuple[int, ...]:
        return (batch, self.latent_channels, frames, height // self.downscale, width // self.downscale)

    def __call__(self, video: torch.Tensor, noise: SDSNoise, frame_index: torch.Tensor | None = None):
        """(loss, latents, guidance) for ``video`` [B, P, 3, H, W]; the loss backpropagates into ``video``."""
        latents = encode_video(self.vae, video, noise.posterior_noise, frame_index)
        guidance = sds_gradient(self.unet, self.scheduler, latents, self.embeddings, noise, self.settings.guidance_scale)
        return sds_loss(latents, guidance.gradient), latents, guidance
