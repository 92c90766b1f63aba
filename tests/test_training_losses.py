"""The loss recipes against independent computations: float64 NumPy written from the papers, and
diffusers' own schedulers (a separate implementation of the same DDPM arithmetic)."""

import math

import numpy as np
import pytest
import torch

from comfyui_animate_suite.pipelines.training import losses


def numpy_scaled_linear_zero_snr(n=1000, start=0.00085, end=0.012):
    """Lin et al. 2023, Algorithm 1, in float64."""
    betas = np.linspace(start**0.5, end**0.5, n) ** 2
    alphas_bar_sqrt = np.sqrt(np.cumprod(1 - betas))
    first, last = alphas_bar_sqrt[0], alphas_bar_sqrt[-1]
    alphas_bar_sqrt = (alphas_bar_sqrt - last) * first / (first - last)
    return alphas_bar_sqrt**2  # alpha_bar


def test_zero_terminal_snr_schedule_matches_the_paper_and_diffusers():
    from diffusers import DDIMScheduler

    ours = losses.NoiseSchedule.create(1000, 0.00085, 0.012, "scaled_linear", zero_terminal_snr=True).alphas_cumprod
    expected = numpy_scaled_linear_zero_snr()
    np.testing.assert_allclose(ours.double().numpy(), expected, rtol=2e-5, atol=1e-7)
    assert ours[-1].item() == pytest.approx(0.0, abs=1e-12)  # zero terminal SNR
    plain = losses.NoiseSchedule.create(1000, 0.00085, 0.012, "scaled_linear", zero_terminal_snr=False).alphas_cumprod
    assert ours[0].item() == pytest.approx(plain[0].item(), rel=1e-6)  # first step unchanged
    reference = DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              rescale_betas_zero_snr=True, prediction_type="v_prediction", timestep_spacing="trailing")
    torch.testing.assert_close(ours, reference.alphas_cumprod, rtol=1e-6, atol=1e-7)


def test_linear_betas_and_unknown_schedule():
    betas = losses.make_betas(10, 0.1, 0.2, "linear")
    np.testing.assert_allclose(betas.numpy(), np.linspace(0.1, 0.2, 10), rtol=1e-6)
    with pytest.raises(Exception, match="beta_schedule"):
        losses.make_betas(10, 0.1, 0.2, "cosine")


def test_noising_and_velocity_target_match_independent_formulas_and_diffusers():
    from diffusers import DDIMScheduler

    schedule = losses.NoiseSchedule.create(1000, 0.00085, 0.012, "scaled_linear", zero_terminal_snr=True)
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 4, 2, 5, 5, generator=generator)
    noise = torch.randn(3, 4, 2, 5, 5, generator=generator)
    timesteps = torch.tensor([0, 417, 999])
    alpha_bar = numpy_scaled_linear_zero_snr()[timesteps.numpy()].reshape(-1, 1, 1, 1, 1)
    x0_np, noise_np = x0.double().numpy(), noise.double().numpy()
    np.testing.assert_allclose(schedule.add_noise(x0, noise, timesteps).numpy(),
                               np.sqrt(alpha_bar) * x0_np + np.sqrt(1 - alpha_bar) * noise_np, atol=1e-5)
    velocity = schedule.target("v_prediction", x0, noise, timesteps)
    np.testing.assert_allclose(velocity.numpy(), np.sqrt(alpha_bar) * noise_np - np.sqrt(1 - alpha_bar) * x0_np, atol=1e-5)
    # at the zero-SNR step the input is pure noise and the target is -x0
    torch.testing.assert_close(velocity[2], -x0[2], rtol=1e-5, atol=1e-5)
    reference = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, rescale_betas_zero_snr=True)
    torch.testing.assert_close(velocity, reference.get_velocity(x0, noise, timesteps), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(schedule.target("epsilon", x0, noise, timesteps), noise)


def test_min_snr_weights_for_epsilon_and_v_prediction():
    schedule = losses.NoiseSchedule.create(1000, 0.00085, 0.012, "scaled_linear", zero_terminal_snr=True)
    timesteps = torch.tensor([0, 10, 100, 500, 900, 999])
    alpha_bar = numpy_scaled_linear_zero_snr()[timesteps.numpy()]
    with np.errstate(divide="ignore"):
        snr = alpha_bar / (1 - alpha_bar)
    np.testing.assert_allclose(schedule.snr(timesteps).numpy(), snr, rtol=5e-5)
    gamma = 5.0
    expected_v = np.minimum(snr + 1, gamma) / (snr + 1)
    np.testing.assert_allclose(losses.min_snr_weights(schedule.snr(timesteps), gamma, "v_prediction").numpy(),
                               expected_v, rtol=5e-5)
    eps = losses.min_snr_weights(schedule.snr(timesteps), gamma, "epsilon").numpy()
    np.testing.assert_allclose(eps[:-1], np.minimum(snr[:-1], gamma) / snr[:-1], rtol=5e-5)
    assert eps[-1] == 1.0  # snr 0: the limit of min(snr, gamma)/snr, not 0/0
    assert expected_v[0] < 0.01 and expected_v[-1] == 1.0  # clean steps are down-weighted


def test_weighted_mse_and_noise_offset():
    generator = torch.Generator().manual_seed(1)
    prediction, target = torch.randn(3, 4, 2, 3, 3, generator=generator), torch.randn(3, 4, 2, 3, 3, generator=generator)
    weights = torch.tensor([0.5, 1.0, 2.0])
    per_sample = ((prediction - target) ** 2).double().numpy().reshape(3, -1).mean(axis=1)
    assert losses.weighted_mse(prediction, target, weights).item() == pytest.approx((per_sample * [0.5, 1, 2]).mean(), rel=1e-6)
    assert losses.weighted_mse(prediction, target).item() == pytest.approx(per_sample.mean(), rel=1e-6)
    offset = torch.randn(3, 4, 1, 1, 1, generator=generator)
    shifted = losses.offset_noise(target, offset, 0.05)
    np.testing.assert_allclose((shifted - target).numpy(), np.broadcast_to(0.05 * offset.numpy(), target.shape), atol=1e-6)
    with pytest.raises(ValueError):
        losses.offset_noise(target, torch.randn(3, 4), 0.05)


def test_condition_drop_rate():
    rng = np.random.default_rng(0)
    draws = rng.random(20000)
    rate = np.mean([losses.drop_condition(d, 0.1) for d in draws])
    assert abs(rate - 0.1) < 4 * math.sqrt(0.1 * 0.9 / 20000)


# --- EasyAnimate: improved-DDPM hybrid loss ----------------------------------------------------------


def numpy_iddpm_terms(output, x0, x_t, noise, t, n=1000):
    """improved-diffusion's eps + learned-range-variance losses, float64, from the paper's definitions."""
    scale = 1000 / n
    betas = np.linspace(scale * 0.0001, scale * 0.02, n)
    ab = np.cumprod(1 - betas)
    ab_prev = np.append(1.0, ab[:-1])
    post_var = betas * (1 - ab_prev) / (1 - ab)
    post_log = np.log(np.append(post_var[1], post_var[1:]))
    coef1, coef2 = betas * np.sqrt(ab_prev) / (1 - ab), (1 - ab_prev) * np.sqrt(1 - betas) / (1 - ab)
    channels = x0.shape[1]
    results = []
    for b in range(x0.shape[0]):
        tb = t[b]
        eps, v = output[b, :channels], output[b, channels:]
        log_var = (v + 1) / 2 * np.log(betas[tb]) + (1 - (v + 1) / 2) * post_log[tb]
        pred_x0 = np.sqrt(1 / ab[tb]) * x_t[b] - np.sqrt(1 / ab[tb] - 1) * eps
        model_mean = coef1[tb] * pred_x0 + coef2[tb] * x_t[b]
        true_mean = coef1[tb] * x0[b] + coef2[tb] * x_t[b]
        kl = 0.5 * (-1 + log_var - post_log[tb] + np.exp(post_log[tb] - log_var) + (true_mean - model_mean) ** 2 * np.exp(-log_var))
        if tb == 0:
            def cdf(z):
                return 0.5 * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z**3)))
            inv = np.exp(-0.5 * log_var)
            plus, minus = cdf(inv * (x0[b] - model_mean + 1 / 255)), cdf(inv * (x0[b] - model_mean - 1 / 255))
            logp = np.where(x0[b] < -0.999, np.log(np.maximum(plus, 1e-12)),
                            np.where(x0[b] > 0.999, np.log(np.maximum(1 - minus, 1e-12)), np.log(np.maximum(plus - minus, 1e-12))))
            vb = -logp.mean() / np.log(2)
        else:
            vb = kl.mean() / np.log(2)
        mse = ((noise[b] - eps) ** 2).mean()
        results.append((mse, vb))
    return np.array(results)


def test_iddpm_hybrid_loss_matches_an_independent_float64_computation():
    schedule = losses.IDDPMSchedule.linear(1000)
    generator = torch.Generator().manual_seed(3)
    x0 = torch.randn(4, 4, 2, 3, 3, generator=generator).clamp(-1.2, 1.2)
    noise = torch.randn(4, 4, 2, 3, 3, generator=generator)
    timesteps = torch.tensor([0, 1, 500, 999])
    x_t = schedule.add_noise(x0, noise, timesteps)
    output = torch.cat([noise + 0.3 * torch.randn(4, 4, 2, 3, 3, generator=generator),
                        torch.rand(4, 4, 2, 3, 3, generator=generator) * 2 - 1], dim=1)
    terms = losses.iddpm_hybrid_loss(output, x0, x_t, noise, timesteps, schedule)
    expected = numpy_iddpm_terms(output.double().numpy(), x0.double().numpy(), x_t.double().numpy(),
                                 noise.double().numpy(), timesteps.numpy())
    np.testing.assert_allclose(terms["mse"].numpy(), expected[:, 0], rtol=1e-5)
    np.testing.assert_allclose(terms["vb"].numpy(), expected[:, 1], rtol=2e-4, atol=1e-6)
    torch.testing.assert_close(terms["loss"], terms["mse"] + terms["vb"])


def test_iddpm_schedule_matches_diffusers_ddpm_linear_and_vb_trains_only_the_variance():
    from diffusers import DDPMScheduler

    schedule = losses.IDDPMSchedule.linear(1000)
    reference = DDPMScheduler(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear")
    torch.testing.assert_close(schedule.alphas_cumprod.float(), reference.alphas_cumprod, rtol=1e-5, atol=1e-7)

    x0 = torch.randn(2, 4, 1, 2, 2)
    noise = torch.randn_like(x0)
    timesteps = torch.tensor([3, 700])
    output = torch.randn(2, 8, 1, 2, 2, requires_grad=True)
    terms = losses.iddpm_hybrid_loss(output, x0, schedule.add_noise(x0, noise, timesteps), noise, timesteps, schedule)
    (grad,) = torch.autograd.grad(terms["vb"].sum(), output)
    assert grad[:, :4].abs().max() == 0  # the mean (eps) is detached in the vb term
    assert grad[:, 4:].abs().max() > 0
    with pytest.raises(ValueError):
        losses.iddpm_hybrid_loss(output[:, :6], x0, x0, noise, timesteps, schedule)
