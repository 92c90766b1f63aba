"""The text-guided nodes under the ComfyUI stand-in, run inside torch.inference_mode as ComfyUI runs nodes."""

from __future__ import annotations

import shutil

import pytest
import torch

from aniclipart_standin_rig import small_figure
from tiny_models.aniclipart_t2v import build_t2v_folder

CHOICE = "diffusers/text-to-video-ms-1.7b"


@pytest.fixture(scope="module")
def prior_in_models(comfy, tmp_path_factory):
    folder = build_t2v_folder(tmp_path_factory.mktemp("t2v") / "tiny")
    target = comfy.models / "diffusers" / "text-to-video-ms-1.7b"
    target.parent.mkdir(exist_ok=True)
    shutil.copytree(folder, target)
    return target


@pytest.fixture(scope="module")
def loaded_prior(comfy, prior_in_models):
    with torch.inference_mode():
        (prior,) = comfy.runtime.execute_node("AnimateSuiteLoadT2VPrior", model=CHOICE, precision="auto")
    return prior


def test_loader_lists_the_folder_and_gives_each_module_a_patcher(node_class, prior_in_models, loaded_prior):
    choices = node_class("AnimateSuiteLoadT2VPrior").INPUT_TYPES()["required"]["model"][0]
    assert CHOICE in choices
    modules = [loaded_prior.prior.unet, loaded_prior.prior.vae, loaded_prior.prior.text_encoder]
    assert [p.model for p in loaded_prior.patchers] == modules
    assert loaded_prior.dtype == torch.float32


def test_animate_node_returns_frames_and_motion_under_inference_mode(comfy, loaded_prior):
    rig = small_figure()
    with torch.inference_mode():
        frames, motion = comfy.runtime.execute_node(
            "AnimateSuiteClipartTextAnimate", clipart=rig, prior=loaded_prior, prompt="A figure dances.",
            preset="fast", seed=2, iterations=2, guidance_scale=50.0,
        )
    assert frames.shape == (16, rig.height, rig.width, 3) and frames.dtype == torch.float32
    assert motion.settings.iterations == 2 and motion.settings.num_frames == 16
    assert torch.equal(motion.control_points[:, 0], rig.keypoints)
    assert not torch.equal(motion.control_points[:, 1:], motion.control_points[:, :1].expand(-1, 3, -1))


def test_animate_node_reports_bad_input_by_name(comfy, loaded_prior):
    errors = comfy.module("pipelines.errors")
    with pytest.raises(Exception) as raised:
        comfy.runtime.execute_node(
            "AnimateSuiteClipartTextAnimate", clipart=small_figure(), prior=loaded_prior, prompt="",
            preset="aniclipart", seed=0, iterations=1, guidance_scale=50.0,
        )
    cause = raised.value if isinstance(raised.value, errors.InputError) else raised.value.__cause__
    assert isinstance(cause, errors.InputError) and cause.input_name == "prompt"


def test_loader_refuses_folder_names_outside_the_models(comfy, prior_in_models):
    errors = comfy.module("pipelines.errors")
    with pytest.raises(Exception) as raised:
        comfy.runtime.execute_node("AnimateSuiteLoadT2VPrior", model="diffusers/../x", precision="auto")
    cause = raised.value if isinstance(raised.value, errors.AnimateSuiteError) else raised.value.__cause__
    assert isinstance(cause, (errors.InputError, errors.ModelNotFoundError))


class _InferenceTensorRig:
    """A rig whose render multiplies by a tensor made under inference mode (autograd refuses it)."""

    def __init__(self):
        self.base = small_figure()
        self.width, self.height, self.keypoints, self.bones = 64, 64, self.base.keypoints, self.base.bones
        with torch.inference_mode():
            self.tint = torch.full((64, 64, 3), 0.5)

    def render(self, poses):
        return self.base.render(poses) * self.tint


def test_a_rig_built_under_inference_mode_is_a_clear_error(comfy, loaded_prior):
    errors = comfy.module("pipelines.errors")
    with pytest.raises(Exception) as raised, torch.inference_mode():
        comfy.runtime.execute_node(
            "AnimateSuiteClipartTextAnimate", clipart=_InferenceTensorRig(), prior=loaded_prior, prompt="A jump.",
            preset="fast", seed=0, iterations=1, guidance_scale=50.0,
        )
    cause = raised.value if isinstance(raised.value, errors.InputError) else raised.value.__cause__
    assert isinstance(cause, errors.InputError) and cause.input_name == "clipart"
