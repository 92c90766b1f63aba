"""The text-guided nodes under the ComfyUI stand-in, run inside torch.inference_mode as ComfyUI runs nodes:
Load Clipart SVG -> Animate Clipart from Text -> Render Clipart Animation / Save Clipart SVG."""

from __future__ import annotations

import shutil

import pytest
import torch

from clipart_testlib import tiny_t2v_folder  # noqa: F401  (a fixture)

CHOICE = "diffusers/text-to-video-ms-1.7b"
EXAMPLE = "(pack example) gingerbread.svg"
CANVAS = 64


@pytest.fixture(scope="module")
def prior_in_models(comfy, tiny_t2v_folder):
    target = comfy.models / "diffusers" / "text-to-video-ms-1.7b"
    target.parent.mkdir(exist_ok=True)
    shutil.copytree(tiny_t2v_folder, target)
    return target


@pytest.fixture(scope="module")
def loaded_prior(comfy, prior_in_models):
    with torch.inference_mode():
        (prior,) = comfy.runtime.execute_node("AnimateSuiteLoadT2VPrior", model=CHOICE, precision="auto")
    return prior


@pytest.fixture(scope="module")
def clipart(comfy):
    with torch.inference_mode():
        clipart, _ = comfy.runtime.execute_node("AnimateSuiteLoadClipart", svg=EXAMPLE, canvas=CANVAS,
                                                keypoints="side files, else detect", complexity=0.5,
                                                max_tri_area=30.0, min_tri_angle=20.0)
    assert clipart.rig.keypoints.is_inference()  # as ComfyUI hands it over
    return clipart


def _animate(comfy, clipart, prior, **inputs):
    values = dict(clipart=clipart, prior=prior, prompt="A figure dances.", preset="fast", seed=2, iterations=1,
                  guidance_scale=50.0)
    values.update(inputs)
    with torch.inference_mode():
        return comfy.runtime.execute_node("AnimateSuiteClipartTextAnimate", **values)


def test_loader_lists_the_folder_and_gives_each_module_a_patcher(node_class, prior_in_models, loaded_prior):
    choices = node_class("AnimateSuiteLoadT2VPrior").INPUT_TYPES()["required"]["model"][0]
    assert CHOICE in choices
    modules = [loaded_prior.prior.unet, loaded_prior.prior.vae, loaded_prior.prior.text_encoder]
    assert [p.model for p in loaded_prior.patchers] == modules
    assert loaded_prior.dtype == torch.float32


def test_animate_node_returns_an_animation_that_renders_and_saves(comfy, clipart, loaded_prior, tmp_path):
    frames, animation, fps = _animate(comfy, clipart, loaded_prior)
    rig = clipart.rig
    assert frames.shape == (16, CANVAS, CANVAS, 3) and frames.dtype == torch.float32
    assert fps == 8.0 and animation.fps == 8.0 and animation.num_frames == 16
    assert animation.motion["mode"] == "text-guided" and animation.motion["settings"]["iterations"] == 1
    assert animation.rig is rig and animation.name == "gingerbread"
    assert torch.equal(animation.keypoints[0], rig.keypoints)  # fixed start: frame 0 is the artwork
    assert torch.equal(animation.points()[0], rig.rest_points)
    assert (animation.keypoints - rig.keypoints).abs().amax() > 1e-3

    with torch.inference_mode():
        images, alpha = comfy.runtime.execute_node("AnimateSuiteRenderClipart", animation=animation, size=96,
                                                   background="white")
    assert images.shape == (16, 96, 96, 3) and alpha.shape == (16, 96, 96)
    save = comfy.package.NODE_CLASS_MAPPINGS["AnimateSuiteSaveClipartSVG"]
    with torch.inference_mode():
        result = save.execute(animation, "clipart_text/run", 128, False, True)
    names = result.ui["text"]
    assert names[0].endswith(".svg") and any(name.endswith(".json") for name in names)
    motion_file = next(comfy.output.glob("clipart_text/*.json"))
    assert '"mode":"text-guided"' in motion_file.read_text()


def test_free_start_lets_the_first_pose_move(comfy, clipart, loaded_prior):
    _, animation, _ = _animate(comfy, clipart, loaded_prior, fps=12.0, fixed_start=False)
    assert animation.fps == 12.0 and animation.motion["settings"]["fix_start_points"] is False
    assert not torch.equal(animation.keypoints[0], clipart.rig.keypoints)


def test_animate_node_reports_bad_input_by_name(comfy, clipart, loaded_prior):
    errors = comfy.module("core.errors")
    with pytest.raises(Exception) as raised:
        _animate(comfy, clipart, loaded_prior, prompt="", preset="aniclipart")
    cause = raised.value if isinstance(raised.value, errors.InputError) else raised.value.__cause__
    assert isinstance(cause, errors.InputError) and cause.input_name == "prompt"


def test_loader_refuses_folder_names_outside_the_models(comfy, prior_in_models):
    errors = comfy.module("core.errors")
    with pytest.raises(Exception) as raised:
        comfy.runtime.execute_node("AnimateSuiteLoadT2VPrior", model="diffusers/../x", precision="auto")
    cause = raised.value if isinstance(raised.value, errors.AnimateSuiteError) else raised.value.__cause__
    assert isinstance(cause, (errors.InputError, errors.ModelNotFoundError))
