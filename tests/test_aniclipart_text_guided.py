"""Text-guided AniClipart on real rigs: the rig's render path, the loop end to end with the tiny prior,
and ``python -m comfyui_animate_suite clipart INPUT.svg --prompt ...``.

The rigs are the pack's example and the AniClipart samples in ``../shared/data/clipart`` (those tests
skip when it is absent), loaded on a 64-pixel canvas to keep the tiny prior quick.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

import clipart_testlib as lib
from clipart_testlib import example_clipart, shared_clipart, tiny_prior, tiny_t2v_folder  # noqa: F401  (fixtures)
from comfyui_animate_suite import cli
from comfyui_animate_suite.pipelines.aniclipart import sds
from comfyui_animate_suite.pipelines.aniclipart.text_guided import (
    MotionObjective, TextGuidedSettings, animate_clipart, initial_trajectory,
)
from comfyui_animate_suite.svg.animate import load_clipart, render_animation
from comfyui_animate_suite.svg.document import parse_svg
from comfyui_animate_suite.svg.raster import rasterise
from comfyui_animate_suite.svg.rig import build_rig
from comfyui_animate_suite.svg.skeleton import skeleton_length_loss
from comfyui_animate_suite.svg.trajectories import CLIP_MARGIN, init_bezier

CANVAS = 64
PROMPT = "A man is boxing."
QUICK = TextGuidedSettings(iterations=2, num_frames=8, loop_num=2)
RASTER_TOLERANCE = 0.01  # a frame's chords are chosen for the whole batch, so pixels differ within this


@pytest.fixture(scope="module")
def example():
    return example_clipart(CANVAS)


@pytest.fixture(scope="module")
def layered(shared_clipart):
    if "man_boxing2" not in shared_clipart:
        pytest.skip("the layered sample man_boxing2 is absent")
    clipart = load_clipart(lib.art_path("man_boxing2"), CANVAS)
    assert len(clipart.rig.layers) > 1
    return clipart


# ----------------------------------------------------------------------------- the rig's render path


def test_render_at_rest_is_the_artwork_and_differentiable(example):
    rig = example.rig
    artwork = rasterise(rig.layout, rig.rest_points, None, (1.0, 1.0, 1.0))
    assert torch.equal(rig.render(rig.keypoints[None]), artwork)
    assert (artwork < 0.5).any(), "the artwork is blank"
    poses = (rig.keypoints + torch.linspace(-2, 2, rig.num_keypoints, dtype=torch.float64)[:, None])[None]
    poses = poses.repeat(2, 1, 1).requires_grad_(True)
    frames = rig.render(poses)
    assert frames.shape == (2, CANVAS, CANVAS, 3)
    (frames * torch.rand_like(frames)).sum().backward()
    assert poses.grad.abs().amax(dim=-1).gt(0).all(), "some keypoint does not reach the pixels"


def test_a_rig_built_under_inference_mode_is_copied_for_autograd(example):
    with torch.inference_mode():
        rig = load_clipart(lib.EXAMPLES / "gingerbread.svg", CANVAS).rig
    poses = rig.keypoints.clone()[None].requires_grad_(True)
    with pytest.raises(RuntimeError, match="Inference tensors"):
        rig.render(poses + 1).sum().backward()
    copy = rig.to("cpu")
    tensors = [copy.rest_points, copy.keypoints, copy.layout.group_fill, copy.layout.segment_points]
    tensors += [t for layer in copy.layers for t in (layer.bary, layer.face_index, layer.solver.step_one)]
    assert not any(t.is_inference() for t in tensors)
    copy.render(poses + 1).sum().backward()
    assert poses.grad.abs().max() > 0


def test_every_layer_of_a_layered_rig_passes_the_gradient_on(layered, tiny_prior):
    rig = layered.rig
    settings = TextGuidedSettings(num_frames=8, loop_num=2, augment=False, skeleton_weight=0.0)
    trajectory = initial_trajectory(rig, settings, 0, torch.device("cpu"))
    embeddings = sds.embed_token_ids(tiny_prior.text_encoder, *sds.tokenize_prompt(tiny_prior.tokenizer, PROMPT))
    loss_fn = sds.VideoSDS(tiny_prior.unet, tiny_prior.vae, tiny_prior.scheduler, embeddings, settings.sds())
    objective = MotionObjective(rig, trajectory, loss_fn, settings, torch.device("cpu"))
    poses = objective.poses()
    poses.retain_grad()
    loss = loss_fn(objective.render(poses).permute(0, 3, 1, 2).unsqueeze(0),
                   objective.noise(torch.Generator().manual_seed(0)), objective.frame_index)[0]
    loss.backward()
    for layer in rig.layers:
        assert poses.grad[1:, layer.keypoint_index].abs().max() > 0, f"no gradient reaches layer '{layer.name}'"


# ----------------------------------------------------------------------------- the loop end to end


@pytest.mark.parametrize("which", ["example", "layered"])
def test_text_guided_animation_of_a_real_clipart(which, request, tiny_prior):
    clipart = request.getfixturevalue(which)
    rig = clipart.rig
    animation, result = animate_clipart(clipart, tiny_prior, PROMPT, QUICK, seed=3, fps=10.0)
    assert animation.rig is rig and animation.fps == 10.0 and animation.num_frames == QUICK.num_frames
    assert torch.equal(animation.keypoints, result.poses[result.frame_to_pose])
    assert torch.equal(animation.keypoints[0], rig.keypoints)  # fixed start
    assert torch.equal(animation.points()[0], rig.rest_points)
    assert (animation.keypoints[1] - rig.keypoints).abs().max() > 1e-3, "the motion does not move"
    frames = render_animation(animation)
    assert (frames - result.frames).abs().max() <= RASTER_TOLERANCE
    assert (frames[0] - rig.render(rig.keypoints[None])[0]).abs().max() <= RASTER_TOLERANCE
    assert animation.motion["mode"] == "text-guided" and animation.motion["prompt"] == PROMPT


def test_a_keypoint_near_the_border_still_starts_at_rest():
    drawing = parse_svg('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64">'
                        '<rect x="0" y="16" width="64" height="32" fill="#a33"/></svg>', CANVAS)
    keypoints = np.array([[2.0, 32.0], [32.0, 32.0], [61.0, 30.0]])
    rig = build_rig(drawing, keypoints, np.array([[0, 1], [1, 2]]))
    assert init_bezier(keypoints, 0.01, CANVAS, CANVAS, seed=0)[0, 0, 0] == CLIP_MARGIN  # AniClipart clips it
    controls = initial_trajectory(rig, QUICK, 0, torch.device("cpu"))()
    assert torch.equal(controls[:, 0], rig.keypoints)


def test_skeleton_loss_without_bones_is_zero():
    poses = torch.rand(3, 1, 2, dtype=torch.float64, requires_grad=True)
    loss = skeleton_length_loss(poses, np.zeros((0, 2), np.int64), torch.zeros(0))
    loss.backward()
    assert loss.item() == 0 and torch.equal(poses.grad, torch.zeros_like(poses))


# ----------------------------------------------------------------------------- the clipart command


def test_clipart_command_with_a_prompt_writes_the_clip(tiny_t2v_folder, tmp_path, capsys):
    models = tmp_path / "models"
    shutil.copytree(tiny_t2v_folder, models / "diffusers" / "text-to-video-ms-1.7b")
    out = tmp_path / "boxing.gif"
    status = cli.main(["clipart", str(lib.EXAMPLES / "gingerbread.svg"), "--prompt", PROMPT, "--out", str(out),
                       "--models-dir", str(models), "--preset", "fast", "--iterations", "1", "--canvas", str(CANVAS),
                       "--frames", "8", "--size", "96"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "text-guided motion: step 1/1" in captured.err and "8 frames" in captured.out
    with Image.open(out) as gif:
        # Pillow merges repeated frames (the clip turns around on a repeated pose) into longer ones.
        durations = [frame.info["duration"] for frame in ImageSequence.Iterator(gif)]
        assert gif.size == (96, 96) and 1 < len(durations) <= 8
        assert sum(durations) == pytest.approx(8 * 125, abs=10 * len(durations))  # 8 fps (AniClipart's), in 1/100 s
    motion = tmp_path / "boxing.json"
    assert cli.main(["clipart", str(lib.EXAMPLES / "gingerbread.svg"), "--prompt", PROMPT, "--out", str(motion),
                     "--models-dir", str(models), "--preset", "fast", "--iterations", "1", "--canvas", str(CANVAS),
                     "--frames", "8", "--free-start", "--seed", "5"]) == 0
    assert '"mode":"text-guided"' in motion.read_text() and '"fix_start_points":false' in motion.read_text()


def test_clipart_command_without_the_prior_is_one_clear_line(tmp_path, capsys):
    status = cli.main(["clipart", str(lib.EXAMPLES / "gingerbread.svg"), "--prompt", PROMPT,
                       "--out", str(tmp_path / "x.gif"), "--models-dir", str(tmp_path), "--canvas", str(CANVAS)])
    assert status == 2
    assert capsys.readouterr().err.startswith("error: ") and not (tmp_path / "x.gif").exists()
