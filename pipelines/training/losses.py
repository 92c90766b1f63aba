"""The diffusion training recipes as pure functions.

AnimateAnyone (Moore-AnimateAnyone ``train_stage_{1,2}.py``): DDPM forward process on a diffusers-style
schedule (``scaled_linear`` betas 0.00085..0.012, rescaled to zero terminal SNR), v-prediction target,
noise offset 0.05, Min-SNR-gamma 5 loss weights, 10% unconditional batches.

EasyAnimate v1 (``scripts/train_t2v_lora.py``, ``train_t2iv.py``): the improved-DDPM hybrid loss of a
model that predicts epsilon and a learned variance (PixArt's 8 output channels): ``mse(eps) + vb``,
where ``vb`` is the variational bound (in bits) of the learned variance with the mean detached.

Schedules are float32 like diffusers' ``DDIMScheduler`` (what AnimateAnyone trains with); the IDDPM
schedule is float64 like improved-diffusion, and its per-timestep coefficients are taken in the compute
dtype when used, as there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...core.errors import InputError

BETA_SCHEDULES = ("linear", "scaled_linear")


def make_betas(num_train_timesteps: int, beta_start: float, beta_end: float, schedule: str) -> torch.Tensor:
    """float32 betas: ``linear`` in beta, ``scaled_linear`` linear in sqrt(beta) (Stable Diffusion's)."""
    if schedule == "linear":
        return torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float32)
    if schedule == "scaled_linear":
        return torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float32) ** 2
    raise InputError("noise.beta_schedule", f"'{schedule}' is unknown", "one of " + ", ".join(BETA_SCHEDULES))


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Betas whose last step has alpha_bar = 0 (Lin et al. 2023, "Common diffusion noise schedules are flawed").

    sqrt(alpha_bar) is shifted so its last value is 0 and scaled so its first value is unchanged.
    """
    alphas_bar_sqrt = torch.cumprod(1.0 - betas, dim=0).sqrt()
    first, last = alphas_bar_sqrt[0].clone(), alphas_bar_sqrt[-1].clone()
    alphas_bar_sqrt = (alphas_bar_sqrt - last) * first / (first - last)
    alphas_bar = alphas_bar_sqrt**2
    alphas = torch.cat([alphas_bar[:1], alphas_bar[1:] / alphas_bar[:-1]])
    return 1.0 - alphas


def _per_sample(values: torch.Tensor, timesteps: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``values[timesteps]`` shaped ``[B, 1, 1, ...]`` to broadcast over ``like``, in its dtype/device."""
    picked = values.to(device=like.device)[timesteps.to(like.device)].to(like.dtype)
    return picked.reshape(-1, *([1] * (like.ndim - 1)))


@dataclass(frozen=True)
class NoiseSchedule:
    """alpha_bar per training timestep, float32."""

    alphas_cumprod: torch.Tensor

    @classmethod
    def create(cls, num_train_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012,
               beta_schedule: str = "scaled_linear", zero_terminal_snr: bool = False) -> "NoiseSchedule":
        betas = make_betas(num_train_timesteps, beta_start, beta_end, beta_schedule)
        if zero_terminal_snr:
            betas = rescale_zero_terminal_snr(betas)
        return cls(torch.cumprod(1.0 - betas, dim=0))

    @property
    def num_train_timesteps(self) -> int:
        return self.alphas_cumprod.shape[0]

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) noise."""
        alpha_bar = _per_sample(self.alphas_cumprod, timesteps, x0)
        return alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise

    def velocity(self, x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The v-prediction target: sqrt(alpha_bar) noise - sqrt(1 - alpha_bar) x0."""
        alpha_bar = _per_sample(self.alphas_cumprod, timesteps, x0)
        return alpha_bar.sqrt() * noise - (1 - alpha_bar).sqrt() * x0

    def target(self, prediction_type: str, x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        if prediction_type == "epsilon":
            return noise
        if prediction_type == "v_prediction":
            return self.velocity(x0, noise, timesteps)
        raise InputError("noise.prediction_type", f"'{prediction_type}' is unknown", "epsilon or v_prediction")

    def snr(self, timesteps: torch.Tensor) -> torch.Tensor:
        """alpha_bar / (1 - alpha_bar) per sample, float32 (0 at a zero-terminal-SNR last step)."""
        alpha_bar = self.alphas_cumprod.to(timesteps.device)[timesteps].float()
        return alpha_bar / (1 - alpha_bar)


def offset_noise(noise: torch.Tensor, offset: torch.Tensor, strength: float) -> torch.Tensor:
    """``noise + strength * offset``; ``offset`` holds one value per sample and channel (``[B, C, 1, ...]``)."""
    if offset.shape != noise.shape[:2] + (1,) * (noise.ndim - 2):
        raise ValueError(f"offset shape {tuple(offset.shape)} does not fit noise {tuple(noise.shape)}")
    return noise + strength * offset


def min_snr_weights(snr: torch.Tensor, gamma: float, prediction_type: str) -> torch.Tensor:
    """Min-SNR-gamma loss weights (Hang et al. 2023): ``min(snr, gamma) / snr``.

    For v-prediction the effective SNR is ``snr + 1``. Written as ``min(gamma / snr, 1)`` so a zero
    SNR (the zero-terminal step) gives weight 1, the limit, instead of 0/0.
    """
    if prediction_type == "v_prediction":
        snr = snr + 1
    elif prediction_type != "epsilon":
        raise InputError("noise.prediction_type", f"'{prediction_type}' is unknown", "epsilon or v_prediction")
    return torch.clamp(gamma / snr, max=1.0)


def weighted_mse(prediction: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error per sample (over all non-batch dims), times ``weights``, averaged over the batch."""
    per_sample = F.mse_loss(prediction.float(), target.float(), reduction="none").flatten(1).mean(dim=1)
    if weights is not None:
        per_sample = per_sample * weights
    return per_sample.mean()


def drop_condition(uniform_draw: float, ratio: float) -> bool:
    """A condition is dropped when its uniform [0, 1) draw falls under ``ratio``."""
    return uniform_draw < ratio


# --- EasyAnimate v1: improved-DDPM hybrid loss with learned variance -------------------------------


@dataclass(frozen=True)
class IDDPMSchedule:
    """improved-diffusion's Gaussian diffusion terms, float64, indexed by training timestep."""

    betas: torch.Tensor
    alphas_cumprod: torch.Tensor
    alphas_cumprod_prev: torch.Tensor
    posterior_log_variance_clipped: torch.Tensor
    posterior_mean_coef1: torch.Tensor
    posterior_mean_coef2: torch.Tensor

    @classmethod
    def linear(cls, num_train_timesteps: int = 1000, beta_start: float = 0.0001, beta_end: float = 0.02) -> "IDDPMSchedule":
        """The ``linear`` schedule of improved-diffusion, scaled so its shape is the same for any step count."""
        scale = 1000 / num_train_timesteps
        betas = torch.linspace(scale * beta_start, scale * beta_end, num_train_timesteps, dtype=torch.float64)
        return cls.from_betas(betas)

    @classmethod
    def from_betas(cls, betas: torch.Tensor) -> "IDDPMSchedule":
        betas = betas.to(torch.float64)
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        alphas_cumprod_prev = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])
        posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        # The posterior variance is 0 at t = 0; its log is clipped to the value at t = 1.
        clipped = torch.cat([posterior_variance[1:2], posterior_variance[1:]]).log()
        return cls(
            betas=betas,
            alphas_cumprod=alphas_cumprod,
            alphas_cumprod_prev=alphas_cumprod_prev,
            posterior_log_variance_clipped=clipped,
            posterior_mean_coef1=betas * alphas_cumprod_prev.sqrt() / (1.0 - alphas_cumprod),
            posterior_mean_coef2=(1.0 - alphas_cumprod_prev) * (1.0 - betas).sqrt() / (1.0 - alphas_cumprod),
        )

    @property
    def num_train_timesteps(self) -> int:
        return self.betas.shape[0]

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return (_per_sample(self.alphas_cumprod.sqrt(), timesteps, x0) * x0
                + _per_sample((1.0 - self.alphas_cumprod).sqrt(), timesteps, x0) * noise)

    def posterior_mean(self, x0: torch.Tensor, x_t: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return (_per_sample(self.posterior_mean_coef1, timesteps, x_t) * x0
                + _per_sample(self.posterior_mean_coef2, timesteps, x_t) * x_t)

    def predict_x0(self, x_t: torch.Tensor, eps: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return (_per_sample((1.0 / self.alphas_cumprod).sqrt(), timesteps, x_t) * x_t
                - _per_sample((1.0 / self.alphas_cumprod - 1).sqrt(), timesteps, x_t) * eps)


def gaussian_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))), elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _approx_standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log P(x) of data quantised to 256 levels in [-1, 1] under N(mean, exp(log_scale)^2), elementwise.

    The two end bins take the whole tails. improved-diffusion's decoder term at t = 0.
    """
    centered = x - mean
    inv_std = torch.exp(-log_scale)
    cdf_plus = _approx_standard_normal_cdf(inv_std * (centered + 1.0 / 255.0))
    cdf_min = _approx_standard_normal_cdf(inv_std * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_cdf_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_cdf_delta))


def _mean_over_sample(values: torch.Tensor) -> torch.Tensor:
    return values.flatten(1).mean(dim=1)


def iddpm_hybrid_loss(model_output: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor, noise: torch.Tensor,
                      timesteps: torch.Tensor, schedule: IDDPMSchedule) -> dict[str, torch.Tensor]:
    """Per-sample ``mse``, ``vb`` and ``loss = mse + vb`` for an eps + learned-range-variance model.

    ``model_output`` has twice the channels of ``x0``: predicted noise, then the variance interpolation
    value v in [-1, 1] (log variance = (v+1)/2 log(beta) + (1-(v+1)/2) log(posterior variance)).
    The vb term sees the predicted noise detached, so it only trains the variance.
    """
    channels = x0.shape[1]
    if model_output.shape[1] != 2 * channels or model_output.shape[2:] != x0.shape[2:]:
        raise ValueError(f"model output {tuple(model_output.shape)} is not eps + variance for {tuple(x0.shape)}")
    model_output, x0, x_t, noise = model_output.float(), x0.float(), x_t.float(), noise.float()
    eps, variance_value = model_output[:, :channels], model_output[:, channels:]

    min_log = _per_sample(schedule.posterior_log_variance_clipped, timesteps, x_t)
    max_log = _per_sample(schedule.betas.log(), timesteps, x_t)
    fraction = (variance_value + 1) / 2
    model_log_variance = fraction * max_log + (1 - fraction) * min_log
    model_mean = schedule.posterior_mean(schedule.predict_x0(x_t, eps.detach(), timesteps), x_t, timesteps)

    true_mean = schedule.posterior_mean(x0, x_t, timesteps)
    kl = _mean_over_sample(gaussian_kl(true_mean, min_log, model_mean, model_log_variance)) / math.log(2.0)
    decoder_nll = -_mean_over_sample(
        discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_log_variance)) / math.log(2.0)
    vb = torch.where(timesteps.to(kl.device) == 0, decoder_nll, kl)
    mse = _mean_over_sample((noise - eps) ** 2)
    return {"mse": mse, "vb": vb, "loss": mse + vb}
