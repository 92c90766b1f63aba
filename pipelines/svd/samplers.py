"""Samplers over a Karras sigma schedule, for models wrapped as a denoiser ``denoise(x, sigma) -> x0``.

``x`` lives in the variance-exploding space ``x = x0 + sigma * noise`` (what diffusers' Euler
scheduler and k-diffusion use). ``euler`` reproduces diffusers' ``EulerDiscreteScheduler`` step for
step (same float32 sigmas, same arithmetic), so SVD with it matches ``StableVideoDiffusionPipeline``.
``euler_ancestral`` adds fresh noise each step (more variation, never converges to one answer);
``dpmpp_2m`` is a second-order multistep solver that gets closer to the exact ODE solution in the
same number of steps.

SVD and StableAnimator both sample here, each with its own denoiser (SVD: ``_GuidedDenoiser``, windows
blended after guidance; StableAnimator: ``_TiledDenoiser``, frame tiles blended before guidance, then face
optimisation of x0) and ``step_reporter`` for interruption, progress and previews after each step. ``euler``
keeps ``x`` in the dtype it comes in (StableAnimator's compute dtype) and steps in float32.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import torch

from ...core.context import RunContext
from ...core.errors import InputError
from ...core.latent_preview import latent_preview
from .stages import euler_step

SAMPLERS = ("euler", "euler_ancestral", "dpmpp_2m")

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepCallback = Callable[[int, torch.Tensor, torch.Tensor], None]  # (step index, x after the step, x0 estimate)


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """``steps`` sigmas from ``sigma_max`` down to ``sigma_min`` (Karras et al. 2022), then 0; float32."""
    ramp = np.linspace(0, 1, steps)
    min_inv_rho = sigma_min ** (1 / rho)
    max_inv_rho = sigma_max ** (1 / rho)
    sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
    return torch.from_numpy(np.concatenate([sigmas, [0.0]]).astype(np.float32))


def schedule(scheduler_config: Mapping, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(sigmas, initial noise scale) for a shipped/diffusers Euler scheduler config."""
    if steps < 1:
        raise InputError("steps", f"is {steps}", "1 or more")
    sigmas = karras_sigmas(steps, float(scheduler_config["sigma_min"]), float(scheduler_config["sigma_max"]))
    sigma_max = sigmas.max()
    # diffusers scales the first latents by sqrt(sigma_max^2 + 1) unless the spacing is linspace/trailing.
    spacing = scheduler_config.get("timestep_spacing", "leading")
    scale = sigma_max if spacing in ("linspace", "trailing") else (sigma_max**2 + 1) ** 0.5
    return sigmas, scale


def _euler(denoise, x, sigmas, generator, callback):
    for i in range(len(sigmas) - 1):
        sigma = sigmas[i]
        denoised = denoise(x, sigma)
        x = euler_step(x.to(torch.float32), denoised, sigma, sigmas[i + 1]).to(x.dtype)
        callback(i, x, denoised)
    return x


def _euler_ancestral(denoise, x, sigmas, generator, callback):
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(x, sigma)
        sigma_up = torch.minimum(sigma_next, (sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2) ** 0.5)
        sigma_down = (sigma_next**2 - sigma_up**2) ** 0.5
        x = euler_step(x, denoised, sigma, sigma_down)
        if sigma_next > 0:
            noise = torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x.device)
            x = x + noise * sigma_up
        callback(i, x, denoised)
    return x


def _dpmpp_2m(denoise, x, sigmas, generator, callback):
    def lam(sigma):  # log signal-to-noise ratio
        return -sigma.log()

    previous = None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(x, sigma)
        if sigma_next == 0:
            x = denoised
        else:
            h = lam(sigma_next) - lam(sigma)
            estimate = denoised
            if previous is not None:
                r = (lam(sigma) - lam(sigmas[i - 1])) / h
                estimate = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * previous
            x = (sigma_next / sigma) * x - torch.expm1(-h) * estimate
        previous = denoised
        callback(i, x, denoised)
    return x


_IMPLEMENTATIONS = {"euler": _euler, "euler_ancestral": _euler_ancestral, "dpmpp_2m": _dpmpp_2m}


def sample(name: str, denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
           generator: torch.Generator | None = None, callback: StepCallback | None = None) -> torch.Tensor:
    """Run sampler ``name`` from ``x`` (already scaled to the first sigma) down the schedule."""
    if name not in _IMPLEMENTATIONS:
        raise InputError("sampler", f"'{name}' is unknown", "one of " + ", ".join(SAMPLERS))
    return _IMPLEMENTATIONS[name](denoise, x, sigmas, generator, callback or (lambda *args: None))


def step_reporter(ctx: RunContext, position: Callable[[int], tuple[int, int]]) -> StepCallback:
    """A step callback: checks for interruption, then reports ``position(step index)`` = (done, total) to
    ``ctx`` with the step's x0 estimate (frames on dim 1) as the preview."""

    def on_step(index: int, x: torch.Tensor, denoised: torch.Tensor) -> None:
        ctx.check_interrupt()
        done, total = position(index)
        ctx.report(done, total, lambda: latent_preview(denoised, frame_dim=1))

    return on_step
