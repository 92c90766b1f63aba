"""The text-guided optimisation loop: schedule, progress with previews, staging, interruption, results, CLI."""

from __future__ import annotations

import argparse
import json
import math
import shutil

import pytest
import torch

from aniclipart_standin_rig import DiscRig, small_figure
from comfyui_animate_suite import cli
from comfyui_animate_suite.pipelines.aniclipart import loading, prompt_cli
from comfyui_animate_suite.pipelines.aniclipart.models import PointMLP
from comfyui_animate_suite.pipelines.aniclipart.text_guided import (
    PRESETS, TextGuidedSettings, animate_from_text, learning_rate_factor, settings_for,
)
from comfyui_animate_suite.pipelines.context import RunContext
from comfyui_animate_suite.pipelines.errors import InputError, ModelNotFoundError
from tiny_models.aniclipart_t2v import build_t2v_folder

QUICK = TextGuidedSettings(iterations=3, num_frames=8, loop_num=2)
PROMPT = "A figure jumps."


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_t2v_folder(tmp_path_factory.mktemp("t2v") / "text-to-video-ms-1.7b")


@pytest.fixture(scope="module")
def prior(folder):
    return loading.load_t2v_prior(folder)


class Recorder:
    def __init__(self):
        self.steps, self.previews, self.staged, self.memory = [], [], [], []

    def progress(self, step, total, preview=None):
        self.steps.append((step, total))
        self.previews.append(preview)

    def stage(self, modules, memory_required=0):
        self.staged.append([type(m).__name__ for m in modules])
        self.memory.append(memory_required)


def test_learning_rate_schedule_is_aniclipart_s():
    settings = PRESETS["aniclipart"]
    lr = [settings.lr * learning_rate_factor(step, settings) for step in (0, 100, 500)]
    expected_100 = settings.lr / settings.lr_init * math.exp(0.8 * math.log(0.002) + 0.2 * math.log(0.0008))
    assert lr[0] == pytest.approx(0.0005) and lr[1] == pytest.approx(expected_100) and lr[2] == pytest.approx(0.002)
    assert lr[1] == pytest.approx(0.00416, abs=1e-5)


def test_presets_and_overrides():
    reference = PRESETS["aniclipart"]
    assert (reference.iterations, reference.num_frames, reference.loop_num, reference.guidance_scale) == (500, 24, 2, 50.0)
    assert (reference.lr, reference.skeleton_weight, reference.bezier_radius, reference.augment) == (0.005, 25.0, 0.01, True)
    fast = PRESETS["fast"]
    assert fast.iterations < reference.iterations and fast.num_frames < reference.num_frames
    assert settings_for("fast", iterations=None, guidance_scale=20.0) == TextGuidedSettings(
        iterations=fast.iterations, num_frames=fast.num_frames, lr_delay_steps=fast.lr_delay_steps, guidance_scale=20.0)
    with pytest.raises(InputError, match="preset"):
        settings_for("slowest")


def test_optimisation_reports_previews_stages_and_returns_the_motion(prior):
    rig = small_figure()
    recorder = Recorder()
    ctx = RunContext(progress=recorder.progress, stager=recorder, wants_preview=True)
    result = animate_from_text(rig, prior, PROMPT, QUICK, seed=4, ctx=ctx)

    assert recorder.steps == [(1, 3), (2, 3), (3, 3)]
    assert all(p is not None and p.size == (2 * rig.width, rig.height) for p in recorder.previews)
    assert recorder.staged[0] == ["CLIPTextModel"]
    assert recorder.staged[1:] == [["UNet3DConditionModel", "AutoencoderKL"]] * 3
    assert all(memory > 0 for memory in recorder.memory[1:])  # activation estimate for ComfyUI's manager

    assert result.frames.shape == (8, 64, 64, 3) and result.frames.dtype == torch.float32
    assert 0 <= result.frames.min() and result.frames.max() <= 1
    assert result.frame_to_pose.tolist() == [0, 1, 1, 0, 0, 1, 1, 0]
    assert torch.equal(result.control_points[:, 0], rig.keypoints)  # fixed start points
    assert torch.allclose(result.frames[0], rig.render(rig.keypoints[None])[0], atol=1e-6)  # frame 0 = the artwork
    assert len(result.losses) == 3 and all(math.isfinite(x) for x in result.losses)
    assert set(result.mlp_state_dict) == set(PointMLP(4 * len(rig.keypoints)).state_dict())
    trajectories = json.loads(json.dumps(result.trajectories()))
    assert trajectories["loop_num"] == 2 and len(trajectories["control_points"]) == len(rig.keypoints)


def test_the_seed_decides_the_motion(prior):
    runs = [animate_from_text(small_figure(), prior, PROMPT, replace_iterations(1), seed=s) for s in (1, 1, 2)]
    assert torch.equal(runs[0].control_points, runs[1].control_points)
    assert not torch.equal(runs[0].control_points, runs[2].control_points)


def replace_iterations(count):
    return TextGuidedSettings(iterations=count, num_frames=8, loop_num=2)


def test_interruption_stops_the_loop(prior):
    rig = small_figure()
    calls = []

    def interrupt():
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("cancelled")

    with pytest.raises(KeyboardInterrupt):
        animate_from_text(rig, prior, PROMPT, replace_iterations(10), ctx=RunContext(check_interrupt=interrupt))
    assert rig.render_calls == 1


@pytest.mark.parametrize("rig, prompt, settings, input_name", [
    (small_figure(), "   ", QUICK, "prompt"),
    (small_figure(60, 64), PROMPT, QUICK, "clipart"),
    (DiscRig([[1.0, 2.0]], [[0, 3]]), PROMPT, QUICK, "clipart"),
    (small_figure(), PROMPT, TextGuidedSettings(num_frames=6, loop_num=2), "num_frames"),
    (small_figure(), PROMPT, TextGuidedSettings(iterations=0), "iterations"),
])
def test_bad_inputs_name_the_input(prior, rig, prompt, settings, input_name):
    with pytest.raises(InputError) as error:
        animate_from_text(rig, prior, prompt, settings)
    assert error.value.input_name == input_name


def _cli_args(*argv):
    parser = argparse.ArgumentParser()
    cli.add_models_dir_argument(parser)
    prompt_cli.add_prompt_arguments(parser)
    return parser.parse_args(list(argv))


def test_cli_prompt_run_finds_the_prior_in_the_models_folder(folder, tmp_path, capsys):
    (tmp_path / "diffusers").mkdir()
    shutil.copytree(folder, tmp_path / "diffusers" / "text-to-video-ms-1.7b")
    args = _cli_args("--models-dir", str(tmp_path), "--prompt", PROMPT, "--sds-preset", "fast", "--iterations", "1")
    result = prompt_cli.run_prompt(args, small_figure())
    assert result.frames.shape[0] == PRESETS["fast"].num_frames
    assert result.settings.iterations == 1 and result.prompt == PROMPT
    assert "step 1/1" in capsys.readouterr().err


def test_cli_without_the_prior_says_where_to_put_it(tmp_path):
    args = _cli_args("--models-dir", str(tmp_path), "--prompt", PROMPT)
    with pytest.raises(ModelNotFoundError, match="text-to-video-ms-1.7b.*huggingface.co/ali-vilab"):
        prompt_cli.run_prompt(args, small_figure())
