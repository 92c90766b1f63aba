"""AnimateAnyone nodes under the ComfyUI stand-in, on a tiny release placed in models/animate_anyone."""

import shutil

import numpy as np
import pytest
import torch

from tiny_models import animate_anyone as tiny

RELEASE = "tiny_aa_nodes"


@pytest.fixture(scope="module")
def release(comfy):
    folder = comfy.models / "animate_anyone" / RELEASE
    tiny.make_release(folder)
    yield folder
    shutil.rmtree(folder)  # other tests list models/animate_anyone


def _loader_inputs(**overrides):
    inputs = {
        "denoising_unet": f"{RELEASE}/denoising_unet.pth",
        "reference_unet": f"{RELEASE}/reference_unet.pth",
        "pose_guider": f"{RELEASE}/pose_guider.pth",
        "motion_module": f"{RELEASE}/motion_module.pth",
        "image_encoder": f"animate_anyone/{RELEASE}/image_encoder/pytorch_model.bin",
        "vae": f"animate_anyone/{RELEASE}/sd-vae-ft-mse/diffusion_pytorch_model.safetensors",
        "precision": "fp32",
    }
    inputs.update(overrides)
    return inputs


def _sampler_inputs(model, **overrides):
    generator = torch.Generator().manual_seed(0)
    inputs = dict(model=model, reference_image=torch.rand(1, 90, 70, 3, generator=generator),
                  pose_frames=torch.rand(5, 80, 64, 3, generator=generator), width=64, height=80, steps=2,
                  guidance=3.5, seed=1, context_frames=4, context_overlap=1, context_stride=1, fit="stretch")
    inputs.update(overrides)
    return inputs


def test_loader_lists_the_release_and_defaults_to_the_released_names(release, node_class):
    required = node_class("AnimateSuiteAnimateAnyoneLoader").INPUT_TYPES()["required"]
    for role in ("denoising_unet", "reference_unet", "pose_guider", "motion_module"):
        choices, options = required[role]
        assert options["default"] == f"{RELEASE}/{role}.pth" and options["default"] in choices
    assert required["image_encoder"][1]["default"] == f"animate_anyone/{RELEASE}/image_encoder/pytorch_model.bin"
    assert required["vae"][1]["default"].startswith(f"animate_anyone/{RELEASE}/sd-vae-ft-mse/")
    assert f"{RELEASE}/denoising_unet.pth" not in required["vae"][0]


def test_loader_and_sampler_make_frames_with_one_patcher_per_model(comfy, release, run_node):
    (model,) = run_node("AnimateSuiteAnimateAnyoneLoader", **_loader_inputs())
    assert len(model.patchers) == 5 and len({id(p.model) for p in model.patchers}) == 5
    assert model.dtype == torch.float32
    full_load = {type(p.model).__name__: p.animate_suite_full_load for p in model.patchers}
    assert full_load["CLIPVisionModelWithProjection"] is True  # never half-loaded (see the loader)
    frames, fps = run_node("AnimateSuiteAnimateAnyoneSampler", **_sampler_inputs(model, pose_fps=12.5))
    assert frames.shape == (5, 80, 64, 3) and frames.dtype == torch.float32 and frames.device.type == "cpu"
    assert fps == 12.5
    _, default_fps = run_node("AnimateSuiteAnimateAnyoneSampler", **_sampler_inputs(model, steps=1))
    assert default_fps == 24.0


def test_errors_reach_the_user_as_clear_messages(comfy, release, run_node):
    errors = comfy.module("core.errors")
    (model,) = run_node("AnimateSuiteAnimateAnyoneLoader", **_loader_inputs())
    with pytest.raises(Exception) as info:
        run_node("AnimateSuiteAnimateAnyoneSampler", **_sampler_inputs(model, pose_frames=torch.zeros(0, 80, 64, 3)))
    assert isinstance(info.value.__cause__, errors.InputError) and "pose_frames" in str(info.value.__cause__)
    with pytest.raises(Exception) as info:
        run_node("AnimateSuiteAnimateAnyoneLoader", **_loader_inputs(reference_unet=f"{RELEASE}/motion_module.pth"))
    assert isinstance(info.value.__cause__, errors.CheckpointError)
    assert "is AnimateAnyone's motion_module.pth, not its reference_unet.pth" in str(info.value.__cause__)
    with pytest.raises(Exception) as info:
        run_node("AnimateSuiteAnimateAnyoneLoader", **_loader_inputs(vae="checkpoints/../../x.safetensors"))
    assert isinstance(info.value.__cause__, errors.InputError) and "vae" in str(info.value.__cause__)
    with pytest.raises(Exception) as info:
        run_node("AnimateSuiteAnimateAnyoneLoader", **_loader_inputs(vae="vae/../../../etc/passwd"))
    assert isinstance(info.value.__cause__, errors.ModelNotFoundError)


def test_example_chain_on_the_reference_pose_video(comfy, release, run_node, shared_dir):
    """The example workflow's chain (Load Video -> sampler -> Save Animation mp4) on Moore-AnimateAnyone's
    own pose video and reference image, with the tiny models and a small size."""
    from PIL import Image

    data = shared_dir / "data" / "animate_anyone"
    shutil.copy(data / "anyone-video-2_kps.mp4", comfy.input / "anyone-video-2_kps.mp4")
    poses, fps, count = run_node("AnimateSuiteLoadVideo", video="anyone-video-2_kps.mp4", frame_cap=6, stride=1,
                                 skip_first=0, width=0, height=0, resize_mode="crop", folder_fps=8.0)
    assert poses.shape == (6, 768, 512, 3) and fps == pytest.approx(30.0)
    rgba = torch.from_numpy(np.array(Image.open(data / "anyone-2.png"))).float() / 255.0  # RGBA, as published
    (model,) = run_node("AnimateSuiteAnimateAnyoneLoader", **_loader_inputs())
    frames, out_fps = run_node("AnimateSuiteAnimateAnyoneSampler", **_sampler_inputs(
        model, reference_image=rgba[None], pose_frames=poses, width=64, height=96, pose_fps=fps))
    assert frames.shape == (6, 96, 64, 3) and out_fps == fps
    # Called directly: the runtime stand-in drops the ui part of a typed node's result.
    save = comfy.package.NODE_CLASS_MAPPINGS["AnimateSuiteSaveAnimation"]
    output = save.execute(images=frames, fps=out_fps, filename_prefix="tests/animate_anyone", format="mp4", loop=0, quality=80)
    assert output.ui["images"][0]["filename"].endswith(".mp4")
