"""AniClipart parity, the text-guided units: the trajectory MLP (part of unit 3) and SDS (5).

Everything is loaded from ``../shared/parity/aniclipart/`` through the pack's real loaders (the ``t2v/``
folder through ``load_t2v_prior``, ``mlp_state_dict.pt`` strictly with the reference key names), and
every setting is read from its ``manifest.json``. Tolerances are the fixture README's. The Bézier
initialisation, sampling, frame order and the skeleton loss are the SVG core's, checked in
``test_clipart_parity.py``.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from comfyui_animate_suite.core import checkpoints
from comfyui_animate_suite.core.errors import CheckpointMismatchError
from comfyui_animate_suite.pipelines.aniclipart import loading, sds
from comfyui_animate_suite.pipelines.aniclipart.models import TrajectoryMLP

MLP_TOLERANCE = 1e-5  # px
LATENT_TOLERANCE = 1e-5
EPS_TOLERANCE = 1e-4
GRAD_Z_TOLERANCE = 2e-3
LOSS_RELATIVE = 1e-5
VIDEO_GRAD_RELATIVE = 2e-4


@pytest.fixture(scope="module")
def fixture(shared_dir):
    folder = shared_dir / "parity" / "aniclipart"
    if not (folder / "manifest.json").is_file():
        pytest.skip("no AniClipart parity fixture in ../shared/parity/aniclipart")
    return folder, json.loads((folder / "manifest.json").read_text())


def _load(folder, name):
    path = folder / name
    if not path.is_file():
        pytest.skip(f"the fixture has no {name}")
    return torch.load(path, weights_only=True)


def _max_abs(a, b):
    return (torch.as_tensor(a).double() - torch.as_tensor(b).double()).abs().max().item()


# ---------------------------------------------------------------- unit 3: the MLP


@pytest.fixture(scope="module")
def reference_mlp(fixture):
    folder, manifest = fixture
    mlp_data = _load(folder, "mlp.pt")
    settings = manifest["settings"]
    trajectory = TrajectoryMLP(mlp_data["init_points"].reshape(-1, 4, 2), settings["inter_dim"],
                               settings["normalize_input"], settings["fix_start_points"])
    assert trajectory.mlp.pos_encoder.dropout.p == manifest["mlp"]["dropout_p"]
    state_dict = checkpoints.load_state_dict(folder / "mlp_state_dict.pt")
    checkpoints.load_into_module(trajectory.mlp, state_dict, folder / "mlp_state_dict.pt", "PointMLP")
    return trajectory.eval(), mlp_data


def test_reference_state_dict_has_exactly_our_key_names(fixture, reference_mlp):
    folder, _ = fixture
    trajectory, _ = reference_mlp
    reference_keys = set(torch.load(folder / "mlp_state_dict.pt", weights_only=True))
    assert set(trajectory.mlp.state_dict()) == reference_keys
    broken = {k: v for k, v in torch.load(folder / "mlp_state_dict.pt", weights_only=True).items() if k != "embedding.weight"}
    with pytest.raises(CheckpointMismatchError, match="embedding.weight"):
        checkpoints.load_into_module(trajectory.mlp, broken, "broken.pt", "PointMLP")


def test_mlp_input_and_eval_offsets(fixture, reference_mlp):
    _, manifest = fixture
    trajectory, mlp_data = reference_mlp
    assert manifest["mlp"]["input_dim"] == trajectory.initial.numel()
    assert _max_abs(trajectory.mlp_input(), mlp_data["mlp_input_normalized"] if manifest["settings"]["normalize_input"]
                    else mlp_data["mlp_input"]) <= 1e-7
    with torch.no_grad():
        assert _max_abs(trajectory.mlp(trajectory.mlp_input()), mlp_data["delta_eval"]) <= MLP_TOLERANCE
        assert _max_abs(trajectory.mlp(mlp_data["mlp_input"]), mlp_data["delta_eval_unnormalized_input"]) <= MLP_TOLERANCE
        controls = trajectory()
    assert controls.dtype == torch.float64
    assert _max_abs(controls, mlp_data["control_points"]) <= MLP_TOLERANCE
    assert _max_abs(controls, _load(fixture[0], "trajectories.pt")["ctrl_mlp"]) <= MLP_TOLERANCE


class _KeepMask(torch.nn.Module):
    """Dropout with a given keep-mask (the reference's draw), scaled as nn.Dropout does."""

    def __init__(self, mask, p):
        super().__init__()
        self.mask, self.p = mask, p

    def forward(self, x):
        return x * self.mask / (1 - self.p)


def test_train_mode_offsets_with_the_recorded_dropout(fixture, reference_mlp):
    trajectory, mlp_data = reference_mlp
    encoder = trajectory.mlp.pos_encoder
    original = encoder.dropout
    encoder.dropout = _KeepMask(mlp_data["dropout_keep_mask"], mlp_data["dropout_p"])
    try:
        with torch.no_grad():
            delta = trajectory.mlp(trajectory.mlp_input())
    finally:
        encoder.dropout = original
    assert _max_abs(delta, mlp_data["delta_train"]) <= MLP_TOLERANCE


# ---------------------------------------------------------------- unit 5: SDS


@pytest.fixture(scope="module")
def sds_run(fixture):
    folder, manifest = fixture
    if "sds" not in manifest or not (folder / "sds.pt").is_file():
        pytest.skip("this fixture has no SDS unit")
    saved = torch.load(folder / "sds.pt", weights_only=True)
    prior = loading.load_t2v_prior(folder / "t2v", torch.float32)
    uncond_ids, cond_ids = sds.tokenize_prompt(prior.tokenizer, manifest["sds"]["caption"])
    embeddings = sds.embed_token_ids(prior.text_encoder, saved["uncond_input_ids"], saved["cond_input_ids"])
    settings = sds.SDSSettings(guidance_scale=manifest["settings"]["guidance_scale"],
                               timestep_low=manifest["settings"]["sds_timestep_low"])
    loss_fn = sds.VideoSDS(prior.unet, prior.vae, prior.scheduler, embeddings, settings)

    low_res = saved["video_lowres"].clone().requires_grad_(True)
    factor = manifest["settings"]["render_size_h"] // low_res.shape[-2]
    video = low_res.repeat_interleave(factor, -1).repeat_interleave(factor, -2)
    assert video.shape[0] == manifest["settings"]["batch_size"]
    noise = sds.SDSNoise(saved["timestep"], saved["eps"], saved["vae_sample_noise"])
    loss, latents, guidance = loss_fn(video, noise)
    loss.backward()
    return SimpleNamespace(saved=saved, prior=prior, uncond_ids=uncond_ids, cond_ids=cond_ids, embeddings=embeddings,
                           settings=settings, loss_fn=loss_fn, low_res=low_res, loss=loss, latents=latents,
                           guidance=guidance)


def test_sds_prompt_tokens_and_embeddings(sds_run):
    saved = sds_run.saved
    assert torch.equal(sds_run.uncond_ids, saved["uncond_input_ids"])
    assert torch.equal(sds_run.cond_ids, saved["cond_input_ids"])
    assert _max_abs(sds_run.embeddings, saved["text_embeddings"]) <= LATENT_TOLERANCE


def test_sds_timestep_draw_semantics(sds_run, fixture):
    _, manifest = fixture
    call = manifest["sds"]["randint_call"]
    expected = (call["low"], call["high"])
    assert sds.timestep_bounds(sds_run.settings, manifest["settings"]["timesteps"]) == expected
    assert sds_run.loss_fn.bounds == expected
    assert expected[0] <= manifest["sds"]["timestep"] < expected[1]


def test_sds_latents_noise_prediction_and_gradient(sds_run):
    saved = sds_run.saved
    assert _max_abs(sds_run.latents, saved["latent_z"]) <= LATENT_TOLERANCE
    assert _max_abs(torch.cat([sds_run.guidance.noisy_latents] * 2), saved["unet_input"]) <= LATENT_TOLERANCE
    assert _max_abs(sds_run.prior.scheduler.alphas_cumprod[saved["timestep"]], saved["alphas_cumprod_t"]) <= 1e-7
    assert _max_abs(sds_run.guidance.eps_uncond, saved["eps_uncond"]) <= EPS_TOLERANCE
    assert _max_abs(sds_run.guidance.eps_cond, saved["eps_cond"]) <= EPS_TOLERANCE
    assert _max_abs(sds_run.guidance.gradient, saved["grad_z"]) <= GRAD_Z_TOLERANCE
    assert saved["guidance_scale"] == sds_run.settings.guidance_scale


def test_sds_loss_and_gradient_through_the_video(sds_run, fixture):
    folder, _ = fixture
    saved = sds_run.saved
    assert abs(sds_run.loss.item() - saved["loss"].item()) <= LOSS_RELATIVE * abs(saved["loss"].item())
    expected = torch.load(folder / "sds_grad_video_lowres.pt", weights_only=True)
    assert _max_abs(sds_run.low_res.grad, expected) <= VIDEO_GRAD_RELATIVE * expected.abs().max().item()
