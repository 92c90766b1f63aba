"""StableAnimator nodes under the ComfyUI stand-in, on tiny models placed in ComfyUI's model folders."""

import logging

import pytest
import torch

from tiny_models import stable_animator as tiny

LOADER = "AnimateSuiteStableAnimatorLoader"
SAMPLER = "AnimateSuiteStableAnimatorSampler"
SIZE = 64
FRAMES = 2


BASE_FOLDER = "diffusers/tiny-stable-video-diffusion-img2vid-xt"
BASE_FILE = "svd_xt_tiny_stable_animator_base.safetensors"


@pytest.fixture(scope="module")
def base_config_root(tmp_path_factory):
    return tmp_path_factory.mktemp("svd-base-configs")


@pytest.fixture(scope="module")
def installed(comfy, base_config_root):
    """The tiny release in models/stable_animator; its SVD-xt base both as a diffusers folder in models/diffusers
    and as a single file in models/checkpoints (the two sources the SVD loader reads)."""
    tiny.write_weights(comfy.models / "stable_animator" / "Animation")
    tiny.write_svd_base(comfy.models / BASE_FOLDER)
    tiny.write_svd_base_single_file(comfy.models / "checkpoints" / BASE_FILE, base_config_root)
    return comfy


def _loader_inputs(face_embedder="Animation/glintr100_torch.pth", svd_base=BASE_FOLDER):
    return dict(unet="Animation/unet.pth", pose_net="Animation/pose_net.pth", face_encoder="Animation/face_encoder.pth",
                face_embedder=face_embedder, svd_base=svd_base, precision="auto")


def _sampler_inputs(model, **changes):
    generator = torch.Generator().manual_seed(0)
    masks = torch.zeros(FRAMES, SIZE, SIZE)
    masks[:, 8:40, 16:48] = 1
    inputs = dict(
        stable_animator=model, reference_image=torch.rand(1, SIZE, SIZE, 3, generator=generator),
        pose_frames=torch.rand(FRAMES, SIZE, SIZE, 3, generator=generator), width=SIZE, height=SIZE, steps=1,
        min_guidance_scale=3.0, max_guidance_scale=3.0, fps=7, motion_bucket_id=127, noise_aug_strength=0.02,
        tile_size=16, tile_overlap=4, decode_chunk_size=2, seed=1, face_optimization=True, hjb_start_step=0,
        hjb_end_step=20, hjb_iterations=1, hjb_learning_rate=0.1,
        face_embeds=torch.randn(1, 512, generator=generator) * 20, face_masks=masks, reference_face_mask=masks[:1],
    )
    inputs.update(changes)
    return inputs


@pytest.fixture(scope="module")
def model(installed):
    # ComfyUI runs every node under torch.inference_mode; so do these tests.
    with torch.inference_mode():
        return installed.runtime.execute_node(LOADER, **_loader_inputs())[0]


def test_loader_lists_the_files_and_wraps_every_model_in_a_patcher(installed, model, node_class):
    required = node_class(LOADER).INPUT_TYPES()["required"]
    assert "Animation/unet.pth" in required["unet"][0]
    assert required["face_embedder"][0][0] == "none"
    assert BASE_FOLDER in required["svd_base"][0] and BASE_FILE in required["svd_base"][0]
    models = model.models
    wrapped = {id(p.model) for p in model.patchers}
    for module in (models.unet, models.pose_net, models.face_encoder, models.image_encoder, models.vae, models.face_embedder):
        assert id(module) in wrapped
    assert len(model.patchers) == 6 and model.dtype == torch.float32


def test_sampler_animates_with_face_optimisation_under_inference_mode(installed, model, caplog):
    with caplog.at_level(logging.WARNING, logger="animate_suite"), torch.inference_mode():
        (refined,) = installed.runtime.execute_node(SAMPLER, **_sampler_inputs(model))
        (plain,) = installed.runtime.execute_node(SAMPLER, **_sampler_inputs(model, face_optimization=False))
    assert refined.shape == (FRAMES, SIZE, SIZE, 3) and refined.dtype == torch.float32
    assert 0 <= refined.min() and refined.max() <= 1
    assert not [r for r in caplog.records if "face optimisation" in r.getMessage()]
    assert (refined - plain).abs().max() > 1e-4, "face optimisation changed nothing"


def test_loader_without_face_embedder_skips_face_optimisation_with_a_warning(installed, caplog):
    with torch.inference_mode():
        model = installed.runtime.execute_node(LOADER, **_loader_inputs(face_embedder="none"))[0]
        assert model.models.face_embedder is None and len(model.patchers) == 5
        with caplog.at_level(logging.WARNING, logger="animate_suite"):
            installed.runtime.execute_node(SAMPLER, **_sampler_inputs(model))
    assert any("glintr100_torch.pth" in r.getMessage() for r in caplog.records)


def test_bad_inputs_raise_input_errors_naming_them(installed, model, node_class):
    input_error = installed.module("core.errors").InputError
    sampler = node_class(SAMPLER)
    with pytest.raises(input_error, match="'face_masks'"):
        sampler.execute(**_sampler_inputs(model, face_masks=torch.ones(FRAMES + 1, SIZE, SIZE)))
    with pytest.raises(input_error, match="'pose_frames'"):
        sampler.execute(**_sampler_inputs(model, pose_frames=torch.rand(FRAMES, SIZE, 2 * SIZE, 3)))
    with pytest.raises(input_error, match="'width'"):
        sampler.execute(**_sampler_inputs(model, width=100))
    with pytest.raises(input_error, match="'stable_animator'"):
        sampler.execute(**_sampler_inputs(object()))


def test_missing_model_file_says_where_it_looked(installed, node_class):
    not_found = installed.module("core.errors").ModelNotFoundError
    with pytest.raises(not_found, match="StableAnimator UNet"):
        node_class(LOADER).execute(**{**_loader_inputs(), "unet": "Animation/missing.pth"})


def test_svd_base_from_a_single_file_gives_the_same_models_and_video(installed, model, base_config_root, monkeypatch):
    # A single file carries no configs: the SVD loader reads the shipped ones, here the tiny base's.
    monkeypatch.setattr(installed.module("pipelines.svd.loading"), "CONFIGS_DIR", base_config_root)
    with torch.inference_mode():
        from_file = installed.runtime.execute_node(LOADER, **_loader_inputs(svd_base=BASE_FILE))[0]
        for name in ("vae", "image_encoder"):
            loaded, expected = getattr(from_file.models, name).state_dict(), getattr(model.models, name).state_dict()
            assert set(loaded) == set(expected) and all(torch.equal(loaded[k], expected[k]) for k in expected), name
        assert from_file.models.scheduler_config == model.models.scheduler_config
        (frames,) = installed.runtime.execute_node(SAMPLER, **_sampler_inputs(from_file, face_optimization=False))
        (reference,) = installed.runtime.execute_node(SAMPLER, **_sampler_inputs(model, face_optimization=False))
    # Equal weights; only float summation order may differ (the converter's tensors have another memory layout).
    assert torch.allclose(frames, reference, atol=1e-4)
