"""The text-guided optimisation loop on a real rig: schedule, progress with previews, staging,
interruption, results, bad input, and the prompt half of the ``clipart`` command."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil

import numpy as np
import pytest
import torch

from clipart_testlib import example_clipart, tiny_prior, tiny_t2v_folder  # noqa: F401  (fixtures)
from comfyui_animate_suite.pipelines.aniclipart import prompt_cli
from comfyui_animate_suite.pipelines.aniclipart.models import PointMLP
from comfyui_animate_suite.pipelines.aniclipart.text_guided import (
    PRESETS, TextGuidedSettings, animate_from_text, learning_rate_factor, settings_for,
)
from comfyui_animate_suite.core.context import RunContext
from comfyui_animate_suite.core.errors import InputError, ModelNotFoundError

QUICK = TextGuidedSettings(iterations=3, num_frames=8, loop_num=2)
PROMPT = "A figure jumps."
CANVAS = 64
RASTER_TOLERANCE = 0.01  # a frame's chords are chosen for the whole batch, so pixels differ within this


@pytest.fixture(scope="module")
def clipart():
    return example_clipart(CANVAS)


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


def test_optimisation_reports_previews_stages_and_returns_the_motion(tiny_prior, clipart):
    rig = clipart.rig
    recorder = Recorder()
    ctx = RunContext(progress=recorder.progress, stager=recorder, wants_preview=True)
    result = animate_from_text(rig, tiny_prior, PROMPT, QUICK, seed=4, ctx=ctx)

    assert recorder.steps == [(1, 3), (2, 3), (3, 3)]
    assert all(p is not None and p.size == (2 * rig.width, rig.height) for p in recorder.previews)
    assert recorder.staged[0] == ["CLIPTextModel"]
    assert recorder.staged[1:] == [["UNet3DConditionModel", "AutoencoderKL"]] * 3
    assert all(memory > 0 for memory in recorder.memory[1:])  # activation estimate for ComfyUI's manager

    assert result.frames.shape == (8, CANVAS, CANVAS, 3) and result.frames.dtype == torch.float32
    assert 0 <= result.frames.min() and result.frames.max() <= 1
    assert result.frame_to_pose.tolist() == [0, 1, 1, 0, 0, 1, 1, 0]
    assert torch.equal(result.control_points[:, 0], rig.keypoints)  # fixed start points
    assert torch.equal(result.poses[0], rig.keypoints)
    artwork = rig.render(rig.keypoints[None])[0]
    assert (result.frames[0] - artwork).abs().max() <= RASTER_TOLERANCE  # frame 0 = the artwork
    assert (result.frames[1] - artwork).abs().max() > 0.1
    assert len(result.losses) == 3 and all(math.isfinite(x) for x in result.losses)
    assert set(result.mlp_state_dict) == set(PointMLP(4 * rig.num_keypoints).state_dict())
    trajectories = json.loads(json.dumps(result.trajectories()))
    assert trajectories["loop_num"] == 2 and len(trajectories["control_points"]) == rig.num_keypoints


def test_the_seed_decides_the_motion(tiny_prior, clipart):
    runs = [animate_from_text(clipart.rig, tiny_prior, PROMPT, replace_iterations(1), seed=s) for s in (1, 1, 2)]
    assert torch.equal(runs[0].control_points, runs[1].control_points)
    assert not torch.equal(runs[0].control_points, runs[2].control_points)


def replace_iterations(count):
    return TextGuidedSettings(iterations=count, num_frames=8, loop_num=2)


def test_interruption_stops_the_loop(tiny_prior, clipart, monkeypatch):
    from comfyui_animate_suite.svg.rig import ClipartRig

    renders = []
    render = ClipartRig.render
    monkeypatch.setattr(ClipartRig, "render", lambda rig, poses: renders.append(1) or render(rig, poses))
    calls = []

    def interrupt():
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("cancelled")

    with pytest.raises(KeyboardInterrupt):
        animate_from_text(clipart.rig, tiny_prior, PROMPT, replace_iterations(10), ctx=RunContext(check_interrupt=interrupt))
    assert len(renders) == 1


def _on_a_60_wide_canvas(rig):
    return dataclasses.replace(rig, drawing=dataclasses.replace(rig.drawing, width=60))


def _with_a_bone_to_nowhere(rig):
    return dataclasses.replace(rig, bones=np.array([[0, 99]]))


@pytest.mark.parametrize("change_rig, prompt, settings, input_name", [
    (None, "   ", QUICK, "prompt"),
    (_on_a_60_wide_canvas, PROMPT, QUICK, "clipart"),
    (_with_a_bone_to_nowhere, PROMPT, QUICK, "clipart"),
    (None, PROMPT, TextGuidedSettings(num_frames=6, loop_num=2), "num_frames"),
    (None, PROMPT, TextGuidedSettings(iterations=0), "iterations"),
])
def test_bad_inputs_name_the_input(tiny_prior, clipart, change_rig, prompt, settings, input_name):
    rig = change_rig(clipart.rig) if change_rig else clipart.rig
    with pytest.raises(InputError) as error:
        animate_from_text(rig, tiny_prior, prompt, settings)
    assert error.value.input_name == input_name


def _cli_args(*argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--fps", type=float, default=None)
    parser.add_argument("--free-start", action="store_true")
    parser.add_argument("--device", default=None)
    prompt_cli.add_prompt_arguments(parser)
    return parser.parse_args(list(argv))


def test_cli_prompt_run_finds_the_prior_in_the_models_folder(tiny_t2v_folder, clipart, tmp_path, capsys):
    (tmp_path / "diffusers").mkdir()
    shutil.copytree(tiny_t2v_folder, tmp_path / "diffusers" / "text-to-video-ms-1.7b")
    args = _cli_args("--models-dir", str(tmp_path), "--prompt", PROMPT, "--preset", "fast", "--iterations", "1")
    animation = prompt_cli.run_prompt(args, clipart)
    assert animation.num_frames == PRESETS["fast"].num_frames and animation.fps == 8.0
    assert animation.motion["settings"]["iterations"] == 1 and animation.motion["prompt"] == PROMPT
    assert "step 1/1" in capsys.readouterr().err


def test_cli_without_the_prior_says_where_to_put_it(clipart, tmp_path):
    args = _cli_args("--models-dir", str(tmp_path), "--prompt", PROMPT)
    with pytest.raises(ModelNotFoundError, match="text-to-video-ms-1.7b.*huggingface.co/ali-vilab"):
        prompt_cli.run_prompt(args, clipart)
