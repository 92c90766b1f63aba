"""Loading the ModelScope text-to-video prior from a diffusers folder: offline, strict, every file variant."""

from __future__ import annotations

import json
import shutil
import socket

import pytest
import torch
from safetensors.torch import load_file, save_file

from comfyui_animate_suite.core import model_registry
from comfyui_animate_suite.pipelines.aniclipart import loading
from comfyui_animate_suite.core.errors import CheckpointError, CheckpointMismatchError, ModelNotFoundError
from tiny_models.aniclipart_t2v import build_modules, build_t2v_folder, official_text_keys

SEED = 3


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return build_t2v_folder(tmp_path_factory.mktemp("t2v") / "text-to-video-ms-1.7b", seed=SEED)


@pytest.fixture(scope="module")
def expected_weights():
    unet, vae, text_encoder = build_modules(SEED)
    return {"unet": unet.state_dict(), "vae": vae.state_dict(), "text_encoder": official_text_keys(text_encoder.state_dict())}


@pytest.fixture
def copy_of(tiny_folder, tmp_path):
    def make():
        return shutil.copytree(tiny_folder, tmp_path / "text-to-video-ms-1.7b")

    return make


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access during an offline load")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _assert_same_weights(prior, expected):
    for name in ("unet", "vae"):
        got = getattr(prior, name).state_dict()
        assert set(got) == set(expected[name])
        assert all(torch.equal(got[key].float(), expected[name][key]) for key in got), name
    text = official_text_keys(prior.text_encoder.state_dict())
    assert all(torch.equal(text[key].float(), value) for key, value in expected["text_encoder"].items())


def test_tiny_folder_loads_offline_with_every_weight(tiny_folder, expected_weights, no_network):
    prior = loading.load_t2v_prior(tiny_folder)
    _assert_same_weights(prior, expected_weights)
    for module in (prior.unet, prior.vae, prior.text_encoder):
        assert not module.training and not any(p.requires_grad for p in module.parameters())
    ids = prior.tokenizer("a thing", padding="max_length", max_length=prior.tokenizer.model_max_length,
                          truncation=True).input_ids
    assert len(ids) == 77 and ids[0] == prior.tokenizer.bos_token_id and ids[-1] == prior.tokenizer.eos_token_id
    assert prior.scheduler.config.num_train_timesteps == 1000
    assert prior.scheduler.alphas_cumprod.shape == (1000,)


@pytest.mark.parametrize("fmt, variant", [("bin", None), ("bin", "fp16"), ("safetensors", "fp16")])
def test_bin_and_fp16_variant_files_load(tmp_path, expected_weights, fmt, variant):
    folder = build_t2v_folder(tmp_path / "t2v", seed=SEED, fmt=fmt, variant=variant)
    _assert_same_weights(loading.load_t2v_prior(folder), expected_weights)


def test_half_precision_prefers_the_fp16_variant(tmp_path):
    folder = tmp_path / "unet"
    folder.mkdir()
    for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors",
                 "diffusion_pytorch_model.bin"):
        (folder / name).write_bytes(b"")
    stems = loading.DIFFUSERS_WEIGHT_STEMS
    assert loading.weights_file(folder, stems, prefer_half=True).name == "diffusion_pytorch_model.fp16.safetensors"
    assert loading.weights_file(folder, stems, prefer_half=False).name == "diffusion_pytorch_model.safetensors"
    (folder / "diffusion_pytorch_model.safetensors").unlink()
    (folder / "diffusion_pytorch_model.fp16.safetensors").unlink()
    assert loading.weights_file(folder, stems, prefer_half=True).name == "diffusion_pytorch_model.bin"


def test_fp16_load_gives_fp16_modules(tiny_folder):
    prior = loading.load_t2v_prior(tiny_folder, torch.float16)
    assert {p.dtype for m in (prior.unet, prior.vae, prior.text_encoder) for p in m.parameters()} == {torch.float16}


def test_text_encoder_weights_in_either_transformers_naming(copy_of, expected_weights):
    folder = copy_of()
    path = folder / "text_encoder" / "model.safetensors"
    tensors = load_file(str(path))
    tensors = {key[len("text_model."):]: value for key, value in tensors.items()}  # transformers 5 naming
    tensors["embeddings.position_ids"] = torch.arange(77)[None]  # saved by transformers < 4.31
    save_file(tensors, str(path))
    _assert_same_weights(loading.load_t2v_prior(folder), expected_weights)


def test_early_diffusers_vae_attention_names_load(copy_of, expected_weights):
    folder = copy_of()
    path = folder / "vae" / "diffusion_pytorch_model.safetensors"
    renames = {".to_q.": ".query.", ".to_k.": ".key.", ".to_v.": ".value.", ".to_out.0.": ".proj_attn."}
    tensors = {}
    for key, value in load_file(str(path)).items():
        for new, old in renames.items():
            if "attentions" in key:
                key = key.replace(new, old)
        tensors[key] = value
    assert any(".query." in key for key in tensors)
    save_file(tensors, str(path))
    _assert_same_weights(loading.load_t2v_prior(folder), expected_weights)


def test_mismatched_weights_are_refused(copy_of):
    folder = copy_of()
    path = folder / "unet" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(str(path))
    tensors.pop(next(iter(tensors)))
    tensors["extra.weight"] = torch.zeros(1)
    save_file(tensors, str(path))
    with pytest.raises(CheckpointMismatchError, match="1 missing keys.*1 unexpected keys"):
        loading.load_t2v_prior(folder)


def test_wrong_pipeline_folder_is_a_clear_error(copy_of):
    folder = copy_of()
    index = json.loads((folder / "model_index.json").read_text())
    index["unet"] = ["diffusers", "UNet2DConditionModel"]
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="unet is UNet2DConditionModel, expected UNet3DConditionModel"):
        loading.load_t2v_prior(folder)


def test_missing_pieces_name_what_to_put_where(copy_of, tmp_path):
    with pytest.raises(ModelNotFoundError, match="nowhere"):
        loading.load_t2v_prior(tmp_path / "nowhere")
    folder = copy_of()
    (folder / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ModelNotFoundError, match="diffusion_pytorch_model.fp16.safetensors"):
        loading.load_t2v_prior(folder)
    (folder / "model_index.json").unlink()
    with pytest.raises(ModelNotFoundError, match="model_index.json"):
        loading.load_t2v_prior(folder)


def test_weights_loaded_under_inference_mode_stay_usable_by_autograd(tiny_folder):
    with torch.inference_mode():
        prior = loading.load_t2v_prior(tiny_folder)
    assert not any(p.is_inference() for p in prior.vae.parameters())
    video = torch.rand(1, 3, 16, 16, requires_grad=True)
    prior.vae.encode(video).latent_dist.mean.sum().backward()
    assert video.grad is not None


def test_registry_finds_the_prior_in_the_diffusers_folder(tiny_folder, tmp_path):
    (tmp_path / "diffusers").mkdir()
    shutil.copytree(tiny_folder, tmp_path / "diffusers" / "text-to-video-ms-1.7b")
    found = model_registry.require(model_registry.MODELSCOPE_T2V, "diffusers", model_registry.DirectoryLocator(tmp_path))
    assert found == tmp_path / "diffusers" / "text-to-video-ms-1.7b"
    assert loading.load_t2v_prior(found).source == found
