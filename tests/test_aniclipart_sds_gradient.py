"""The SDS gradient that reaches the trajectories is the formula's, and a step moves the trajectories.

A tiny random UNet3D / CLIP / VAE is saved as a diffusers folder and loaded through the real loader; the
frames are the pack's example clipart, deformed by ARAP and rasterised (canvas 64 to stay quick). The
independent computation below
repeats every frame explicitly, noises the latents by formula, runs the UNet once per condition and
backpropagates ``(1 - alphas_cumprod[t]) (eps_hat - eps)`` from the latents by hand.
"""

from __future__ import annotations

import copy

import pytest
import torch

from clipart_testlib import example_clipart, tiny_prior, tiny_t2v_folder  # noqa: F401  (fixtures)
from comfyui_animate_suite.pipelines.aniclipart import sds
from comfyui_animate_suite.pipelines.aniclipart.models import TrajectoryMLP
from comfyui_animate_suite.pipelines.aniclipart.text_guided import (
    ADAM_BETAS, ADAM_EPS, MotionObjective, TextGuidedSettings, initial_trajectory,
)
from comfyui_animate_suite.core.errors import AnimateSuiteError
from comfyui_animate_suite.svg.trajectories import bezier_poses

PROMPT = "A figure waves its arms."
FIXED_TIMESTEP = 600
DROPOUT_SEED = 7
CANVAS = 64


@pytest.fixture(scope="module")
def embeddings(tiny_prior):
    return sds.embed_token_ids(tiny_prior.text_encoder, *sds.tokenize_prompt(tiny_prior.tokenizer, PROMPT))


@pytest.fixture(scope="module")
def rig():
    return example_clipart(CANVAS).rig


def _objective(rig, tiny_prior, embeddings, settings, seed=0):
    trajectory = initial_trajectory(rig, settings, seed, torch.device("cpu"))
    loss_fn = sds.VideoSDS(tiny_prior.unet, tiny_prior.vae, tiny_prior.scheduler, embeddings, settings.sds())
    return MotionObjective(rig, trajectory, loss_fn, settings, torch.device("cpu"))


def _fixed_noise(objective, seed=1):
    noise = objective.noise(torch.Generator().manual_seed(seed))
    noise.timestep = torch.tensor([FIXED_TIMESTEP])
    return noise


def _independent_gradients(tiny_prior, objective, noise, guidance, skeleton_weight):
    """d(loss)/d(MLP parameters), from the SDS formula and a per-bone skeleton loss, without our SDS code."""
    trajectory = copy.deepcopy(objective.trajectory)
    tokenizer, text_encoder = tiny_prior.tokenizer, tiny_prior.text_encoder
    ids = [tokenizer(text, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids for text in ("", PROMPT)]
    with torch.no_grad():
        uncond_text, cond_text = (text_encoder(i)[0] for i in ids)

    torch.manual_seed(DROPOUT_SEED)
    controls = trajectory()
    t = objective.times.double()[:, None, None]
    poses = sum(weight * controls[:, k] for k, weight in enumerate(((1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t**2, t**3)))
    frames = objective.rig.render(poses).permute(0, 3, 1, 2)[objective.frame_index]  # every output frame
    posterior = tiny_prior.vae.encode(frames * 2 - 1).latent_dist
    latents = (posterior.mean + posterior.std * noise.posterior_noise) * tiny_prior.vae.config.scaling_factor
    latents = latents.permute(1, 0, 2, 3).unsqueeze(0)

    alpha_bar = tiny_prior.scheduler.alphas_cumprod[FIXED_TIMESTEP].item()
    noisy = alpha_bar**0.5 * latents.detach() + (1 - alpha_bar) ** 0.5 * noise.noise
    timestep = torch.tensor([FIXED_TIMESTEP])
    with torch.no_grad():
        eps_uncond = tiny_prior.unet(noisy, timestep, encoder_hidden_states=uncond_text).sample
        eps_cond = tiny_prior.unet(noisy, timestep, encoder_hidden_states=cond_text).sample
    latent_gradient = (1 - alpha_bar) * (eps_uncond + guidance * (eps_cond - eps_uncond) - noise.noise)

    rest = objective.rig.keypoints.float()
    skeleton = sum(
        sum(((torch.linalg.norm(pose[a] - pose[b]).float() - torch.linalg.norm(rest[a] - rest[b])) ** 2
             for a, b in objective.rig.bones.tolist())) / len(objective.rig.bones)
        for pose in poses
    )
    parameters = list(trajectory.mlp.parameters())
    from_sds = torch.autograd.grad(latents, parameters, grad_outputs=latent_gradient, retain_graph=True, allow_unused=True)
    from_skeleton = torch.autograd.grad(skeleton_weight * skeleton, parameters, allow_unused=True)
    return [sum(g for g in pair if g is not None) if any(g is not None for g in pair) else None
            for pair in zip(from_sds, from_skeleton)], latent_gradient


def _mlp_gradients(objective):
    return [p.grad for p in objective.trajectory.mlp.parameters()]


@pytest.mark.parametrize("skeleton_weight", [0.0, 25.0])
def test_gradient_on_the_trajectory_parameters_is_the_sds_formula(rig, tiny_prior, embeddings, skeleton_weight):
    settings = TextGuidedSettings(num_frames=8, loop_num=2, augment=False, skeleton_weight=skeleton_weight)
    objective = _objective(rig, tiny_prior, embeddings, settings)
    noise = _fixed_noise(objective)
    torch.manual_seed(DROPOUT_SEED)
    loss, sds_loss, _, _ = objective(noise)
    loss.backward()
    expected, latent_gradient = _independent_gradients(tiny_prior, objective, noise, settings.guidance_scale, skeleton_weight)

    assert torch.isclose(sds_loss, 0.5 * (latent_gradient**2).sum(), rtol=1e-4)
    compared = 0
    for name, got, want in zip(dict(objective.trajectory.mlp.named_parameters()), _mlp_gradients(objective), expected):
        if want is None:  # the reference's unused embedding table gets no gradient
            assert got is None, name
            continue
        scale = want.abs().max().item()
        assert scale > 0, name
        assert (got - want).abs().max().item() <= 1e-4 * scale + 1e-7, name
        compared += 1
    assert compared == len(list(objective.trajectory.mlp.parameters())) - 1


def test_gradient_reaches_the_trajectories_through_arap_and_the_rasteriser(rig, tiny_prior, embeddings):
    # Without the skeleton term the trajectories reach the loss only through ARAP, the rasteriser and SDS.
    settings = TextGuidedSettings(num_frames=8, loop_num=2, augment=True, skeleton_weight=0.0)
    objective = _objective(rig, tiny_prior, embeddings, settings)
    optimizer = torch.optim.Adam(objective.trajectory.mlp.parameters(), lr=settings.lr, betas=ADAM_BETAS, eps=ADAM_EPS)
    with torch.no_grad():
        before = objective.trajectory().clone()
    captured = []

    def keep_controls(module, inputs, output):
        output.retain_grad()
        captured.append(output)

    hook = objective.trajectory.register_forward_hook(keep_controls)
    generator = torch.Generator().manual_seed(3)
    loss, _, skeleton_loss, _ = objective(objective.noise(generator), generator)
    loss.backward()
    hook.remove()
    (controls,) = captured
    assert skeleton_loss == 0
    assert controls.grad is not None and controls.grad[:, 1:].abs().max() > 0
    optimizer.step()
    with torch.no_grad():
        after = objective.trajectory()
        moved_frames = objective.render(bezier_poses(after, objective.times))
        frames_before = objective.render(bezier_poses(before, objective.times))
    moved = (after - before).abs()
    assert moved[:, 1:].max() > 1e-4
    assert torch.equal(after[:, 0], before[:, 0]) and torch.equal(after[:, 0], rig.keypoints)
    assert (moved_frames[1:] - frames_before[1:]).abs().max() > 0, "the step does not change the rendered clip"


def test_distinct_frames_are_encoded_once_with_identical_result(tiny_prior):
    video = torch.rand(1, 3, 3, 64, 64, requires_grad=True)
    index = torch.tensor([0, 1, 2, 2, 1, 0])
    noise = torch.randn(6, 4, 8, 8)
    once = sds.encode_video(tiny_prior.vae, video, noise, index)
    (grad_once,) = torch.autograd.grad(once.sum() + (once**2).sum(), video)
    repeated = sds.encode_video(tiny_prior.vae, video[:, index], noise)
    (grad_repeated,) = torch.autograd.grad(repeated.sum() + (repeated**2).sum(), video)
    assert once.shape == (1, 4, 6, 8, 8)
    assert torch.allclose(once, repeated, atol=1e-6)
    assert torch.allclose(grad_once, grad_repeated, atol=1e-5)


def test_sds_loss_value_and_gradient_per_clip():
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 4, 3, 2, 2, generator=generator).requires_grad_(True)
    gradient = torch.randn(2, 4, 3, 2, 2, generator=generator)
    loss = sds.sds_loss(latents, gradient)
    loss.backward()
    assert torch.isclose(loss, 0.5 * (gradient**2).sum() / 2)
    # The gradient is (latents - (latents - gradient)) / 2 in float32: exact up to the cancellation.
    assert torch.allclose(latents.grad, gradient / 2, rtol=0, atol=1e-6)


def test_timesteps_are_drawn_between_low_and_the_cap():
    settings = sds.SDSSettings(timestep_low=50)
    bounds = sds.timestep_bounds(settings, 1000)
    assert bounds == (50, 949)
    drawn = sds.draw_noise((20000, 1, 1, 1, 1), bounds, torch.Generator().manual_seed(0)).timestep
    assert drawn.min().item() == 50 and drawn.max().item() == 948
    assert sds.timestep_bounds(settings, 500) == (50, 499)


class _NanUNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, sample, timestep, encoder_hidden_states):
        return type("Output", (), {"sample": sample * float("nan")})()


def test_a_non_finite_prior_output_is_a_clear_error(tiny_prior):
    latents = torch.zeros(1, 4, 2, 8, 8)
    noise = sds.SDSNoise(torch.tensor([100]), torch.randn(1, 4, 2, 8, 8), torch.randn(2, 4, 8, 8))
    with pytest.raises(AnimateSuiteError, match="bf16 or fp32"):
        sds.sds_gradient(_NanUNet(), tiny_prior.scheduler, latents, torch.zeros(2, 77, 16), noise, 50.0)


def test_trajectory_starts_at_the_rest_pose():
    keypoints = torch.tensor([[10.0, 20.0], [30.0, 40.0]], dtype=torch.float64)
    initial = torch.stack([keypoints, keypoints + 1, keypoints + 2, keypoints + 3], dim=1)
    trajectory = TrajectoryMLP(initial)
    controls = trajectory()
    assert torch.equal(controls[:, 0], keypoints)
    assert not torch.equal(controls[:, 1:], initial[:, 1:])
