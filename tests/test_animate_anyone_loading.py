"""Loading AnimateAnyone's released files: every key lands, mixed-up or broken files get clear errors."""

import shutil

import pytest
import torch

from comfyui_animate_suite.pipelines.animate_anyone import loading
from comfyui_animate_suite.pipelines.animate_anyone.loading import AnimateAnyoneFiles, load_models
from comfyui_animate_suite.core.errors import CheckpointError, CheckpointMismatchError, ModelNotFoundError
from tiny_models import animate_anyone as tiny
from tiny_models import save_weights


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return tiny.make_release(tmp_path_factory.mktemp("animate_anyone_release"))


@pytest.fixture
def copy_of(release, tmp_path):
    def make() -> AnimateAnyoneFiles:
        folder = tmp_path / "release"
        shutil.copytree(release.denoising_unet.parent, folder)
        return AnimateAnyoneFiles.in_folder(folder)

    return make


def test_every_file_loads_exactly_into_its_module(release):
    models = load_models(release)
    files = {
        "reference_net": [release.reference_unet],
        "denoising_unet": [release.denoising_unet, release.motion_module],
        "pose_guider": [release.pose_guider],
    }
    for name, paths in files.items():
        saved = {}
        for path in paths:
            saved.update(torch.load(path, weights_only=True))
        state = models.modules()[name].state_dict()
        assert set(state) == set(saved), name
        assert all(torch.equal(state[key], saved[key]) for key in saved), name
    encoder = torch.load(release.image_encoder / "pytorch_model.bin", weights_only=True)
    encoder_state = models.image_encoder.state_dict()
    assert all(torch.equal(encoder_state[k], v) for k, v in encoder.items() if k in encoder_state)
    assert set(encoder) - set(encoder_state) <= {"vision_model.embeddings.position_ids"}
    assert models.scheduler_config["prediction_type"] == "v_prediction"
    assert models.denoising_unet.max_frames == tiny.MAX_WINDOW  # the folder's own config was used


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_precision_is_applied_to_every_module(release, dtype):
    models = load_models(release, dtype=dtype)
    for name, module in models.modules().items():
        assert {p.dtype for p in module.parameters()} == {dtype}, name


def test_shipped_configs_are_used_without_a_config_in_the_weights_folder(copy_of):
    files = copy_of()
    (files.denoising_unet.parent / "unet_config.json").unlink()
    with pytest.raises(CheckpointMismatchError, match="wrong shape"):
        loading.load_reference_net(files.reference_unet, loading.AnimateAnyoneConfig.for_weights(files.denoising_unet.parent))


@pytest.mark.parametrize("role, wrong", [("reference_unet", "denoising_unet"), ("motion_module", "pose_guider"),
                                         ("denoising_unet", "motion_module"), ("pose_guider", "reference_unet")])
def test_a_mixed_up_file_is_named(copy_of, role, wrong):
    files = copy_of()
    setattr(files, role, getattr(files, wrong))
    with pytest.raises(CheckpointError, match=f"is AnimateAnyone's {wrong}.pth, not its {role}.pth"):
        load_models(files)


def test_missing_and_unexpected_keys_are_listed(copy_of):
    files = copy_of()
    state = torch.load(files.pose_guider, weights_only=True)
    state.pop("blocks.3.weight")
    state["blocks.9.weight"] = torch.zeros(1)
    save_weights(state, files.pose_guider)
    with pytest.raises(CheckpointMismatchError) as info:
        load_models(files)
    assert info.value.missing == ["blocks.3.weight"] and info.value.unexpected == ["blocks.9.weight"]
    assert "pose_guider.pth" in str(info.value) and "PoseGuider" in str(info.value)


def test_motion_module_keys_must_all_land(copy_of):
    files = copy_of()
    state = torch.load(files.motion_module, weights_only=True)
    save_weights({k: v for k, v in state.items() if not k.startswith("mid_block.")}, files.motion_module)
    with pytest.raises(CheckpointMismatchError, match="mid_block.motion_modules.0"):
        load_models(files)


def test_truncated_and_pickled_files_are_refused(copy_of):
    files = copy_of()
    data = files.reference_unet.read_bytes()
    files.reference_unet.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_models(files)
    torch.save({"weights": torch.zeros(1), "note": ValueError("code")}, files.pose_guider)
    with pytest.raises(CheckpointError, match="weights_only"):
        loading.load_pose_guider(files.pose_guider, loading.AnimateAnyoneConfig.for_weights(files.pose_guider.parent))


def test_missing_image_encoder_weights_say_where_they_were_looked_for(copy_of):
    files = copy_of()
    (files.image_encoder / "pytorch_model.bin").unlink()
    with pytest.raises(ModelNotFoundError, match="pytorch_model.bin"):
        loading.load_image_encoder(files.image_encoder)


def test_image_encoder_from_a_single_clip_vision_file(copy_of, tmp_path, monkeypatch):
    """A file in ComfyUI's clip_vision folder: no config beside it, so the shipped ViT-L/14 config applies;
    a full CLIP checkpoint (text tower too) is reduced to its vision tower."""
    files = copy_of()
    state = torch.load(files.image_encoder / "pytorch_model.bin", weights_only=True)
    state["text_model.embeddings.token_embedding.weight"] = torch.zeros(4, 8)
    state["logit_scale"] = torch.zeros(())
    single = save_weights(state, tmp_path / "clip_vision" / "clip-vit-tiny.bin")
    with pytest.raises(CheckpointMismatchError, match="ViT-L/14"):
        loading.load_image_encoder(single)  # the tiny file does not fit ViT-L/14
    configs = tmp_path / "configs"
    configs.mkdir()
    tiny._write_json(configs / loading.IMAGE_ENCODER_CONFIG, tiny.IMAGE_ENCODER_CONFIG)
    monkeypatch.setattr(loading, "CONFIG_DIR", configs)
    encoder = loading.load_image_encoder(single)
    expected = loading.load_image_encoder(files.image_encoder)
    pixels = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(encoder(pixel_values=pixels).image_embeds, expected(pixel_values=pixels).image_embeds)


@pytest.mark.parametrize("layout", ["ldm", "old_diffusers"])
def test_vae_single_files_in_other_key_layouts(copy_of, tmp_path, monkeypatch, layout):
    files = copy_of()
    folder_vae = loading.load_vae(files.vae)
    state = folder_vae.state_dict()
    if layout == "ldm":
        converted = tiny.to_ldm_vae(state)
        path = save_weights(converted, tmp_path / "vae" / "vae-ft-mse-tiny.safetensors")
        configs = tmp_path / "configs"
        configs.mkdir()
        tiny._write_json(configs / loading.VAE_CONFIG, tiny.VAE_CONFIG)
        monkeypatch.setattr(loading, "CONFIG_DIR", configs)
    else:
        old_names = {".to_q.": ".query.", ".to_k.": ".key.", ".to_v.": ".value.", ".to_out.0.": ".proj_attn."}
        renamed = {}
        for key, value in state.items():
            for new, old in old_names.items():
                key = key.replace(new, old)
            renamed[key] = value
        path = save_weights(renamed, files.vae / "diffusion_pytorch_model.safetensors")
    vae = loading.load_vae(path)
    for key, value in folder_vae.state_dict().items():
        assert torch.equal(vae.state_dict()[key], value), key
