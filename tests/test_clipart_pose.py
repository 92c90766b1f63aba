"""Pose-driven clipart: retargeting OpenPose body joints onto clipart rigs, the node and the CLI."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from comfyui_animate_suite.core.errors import InputError
from comfyui_animate_suite.pose import openpose_json
from comfyui_animate_suite.pose.keypoints import FramePose
from comfyui_animate_suite.svg import retarget
from comfyui_animate_suite.svg.animate import (ClipartAnimation, animation_from_record, animation_svg, load_clipart,
                                               motion_record, render_animation)
from comfyui_animate_suite.svg.export import motion_json, parse_motion_json
from comfyui_animate_suite.svg.skeleton import bone_lengths
from pose_driving_testlib import STANDING, dance, dancer, pose_frame

REPO = Path(__file__).resolve().parents[1]
GINGERBREAD = REPO / "examples" / "gingerbread.svg"
# The team's data: ../shared next to the checkout (or two levels up from a worktree under wt/).
SHARED = next((p for p in (REPO.parent / "shared", REPO.parent.parent / "shared") if p.is_dir()), REPO.parent / "shared")
SHARED_CLIPART = SHARED / "data" / "clipart"
J = {name: index for index, name in enumerate(retarget.JOINTS)}
def _angle(vector) -> np.ndarray:
    return np.arctan2(vector[..., 1], vector[..., 0])


def _wrapped(a) -> np.ndarray:
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi


@pytest.fixture(scope="module")
def gingerbread():
    return load_clipart(GINGERBREAD)


@pytest.fixture(scope="module")
def man_dance():
    path = SHARED_CLIPART / "man_dance" / "man_dance_scaled.svg"
    if not path.is_file():
        pytest.skip(f"{path} not present (AniClipart's man_dance in the team data)")
    return load_clipart(path)


def _settings(**changes):
    return retarget.RetargetSettings(**{"fps": 12.0, "smoothing": 0, **changes})


# ----------------------------------------------------------------------------- the map


def test_automatic_map_of_gingerbread_joints_a_limb_at_the_neck_and_hips(gingerbread):
    mapping = retarget.auto_map(gingerbread.rig.keypoints.numpy(), gingerbread.rig.bones)
    named = {k: retarget.JOINTS[j] for k, j in mapping.items()}
    assert named == {0: "nose", 1: "neck", 2: "mid_hip", 3: "right_shoulder", 4: "right_wrist", 5: "left_shoulder",
                     6: "left_wrist", 7: "right_knee", 8: "right_ankle", 9: "left_knee", 10: "left_ankle"}


def test_automatic_map_of_aniclipart_rig_with_a_torso_cycle(man_dance):
    mapping = retarget.auto_map(man_dance.rig.keypoints.numpy(), man_dance.rig.bones)
    named = {k: retarget.JOINTS[j] for k, j in mapping.items()}
    # AniClipart's side files: 2-3-5 is the arm on the picture's left, 1-4 the other; 7-9-11 and 6-8-10 the legs.
    assert named == {1: "left_shoulder", 2: "right_shoulder", 3: "right_elbow", 4: "left_wrist", 5: "right_wrist",
                     6: "left_hip", 7: "right_hip", 8: "left_knee", 9: "right_knee", 10: "left_ankle", 11: "right_ankle"}


def test_map_text_round_trip_and_errors():
    text = retarget.map_text({0: J["nose"], 3: J["right_elbow"]})
    assert retarget.parse_map(text, 5) == {0: J["nose"], 3: J["right_elbow"]}
    assert retarget.parse_map("1 4  # OpenPose index\n2 Left-Wrist", 5) == {1: 4, 2: J["left_wrist"]}
    for bad, needle in (("1 elbow", "joint 'elbow'"), ("9 nose", "keypoint 9"), ("1 nose\n1 neck", "twice"),
                        ("", "maps no keypoint"), ("nose 1", "line 1")):
        with pytest.raises(InputError, match=needle):
            retarget.parse_map(bad, 5)


def test_non_human_skeleton_asks_for_a_map():
    keypoints = np.array([[100, 100], [140, 100], [180, 110], [60, 100.0]])
    bones = np.array([[0, 1], [1, 2], [0, 3]])
    with pytest.raises(InputError, match="map"):
        retarget.auto_map(keypoints, bones)
    mapping = {0: J["left_shoulder"], 1: J["left_elbow"], 2: J["left_wrist"]}
    joints = np.stack([np.r_[dancer(a), STANDING[8:9] * 0 + STANDING[[8, 11]].mean(0, keepdims=True)] for a in (0, 1)])
    seen = np.ones(joints.shape[:2], bool)
    poses = retarget.retarget(keypoints, bones, mapping, joints, seen, _settings(follow="pose"))
    bone = poses[:, 2] - poses[:, 1]
    driver = joints[:, J["left_wrist"]] - joints[:, J["left_elbow"]]
    assert np.allclose(_wrapped(_angle(bone) - _angle(driver)), 0, atol=1e-9)


# ----------------------------------------------------------------------------- retargeting


def _animate(clipart, frames, **changes):
    return retarget.animate_from_pose(clipart.rig, frames, None, _settings(**changes), clipart.name)


@pytest.mark.parametrize("follow", ["pose", "motion"])
def test_bone_lengths_are_kept(gingerbread, follow):
    animation = _animate(gingerbread, dance(), follow=follow)
    rig = gingerbread.rig
    lengths = bone_lengths(animation.keypoints, rig.bones)
    assert torch.allclose(lengths, bone_lengths(rig.keypoints, rig.bones).expand_as(lengths), atol=1e-9)
    assert (animation.keypoints - rig.keypoints).abs().max() > 10  # it really moved


def test_bone_lengths_kept_with_a_rigid_torso_cycle(man_dance):
    animation = _animate(man_dance, dance())
    rig = man_dance.rig
    lengths = bone_lengths(animation.keypoints, rig.bones)
    assert torch.allclose(lengths, bone_lengths(rig.keypoints, rig.bones).expand_as(lengths), atol=1e-9)


def test_joints_follow_the_driving_angles(gingerbread):
    frames = dance()
    animation = _animate(gingerbread, frames, follow="pose")
    poses = animation.keypoints.numpy()
    joints = np.stack([f.keypoints[0, :18] for f in frames])
    for clip_bone, driver_bone in (((3, 4), ("right_shoulder", "right_wrist")), ((5, 6), ("left_shoulder", "left_wrist")),
                                   ((7, 8), ("right_knee", "right_ankle")), ((1, 0), ("neck", "nose"))):
        clip = _angle(poses[:, clip_bone[1]] - poses[:, clip_bone[0]])
        driver = _angle(joints[:, J[driver_bone[1]]] - joints[:, J[driver_bone[0]]])
        assert np.allclose(_wrapped(clip - driver), 0, atol=1e-9), clip_bone
    # The arm swings up by the driver's 1.2 rad (shoulder) + 1.2 rad (elbow) at the middle of the clip.
    arm = _angle(poses[:, 6] - poses[:, 5])
    assert abs(_wrapped(arm[12] - arm[0])) > 1.0


def test_motion_mode_adds_the_drivers_changes_to_the_drawn_pose(man_dance):
    frames = dance()
    animation = _animate(man_dance, frames, follow="motion")
    poses = animation.keypoints.numpy()
    assert np.allclose(poses[0], man_dance.rig.keypoints.numpy(), atol=1e-9)  # frame 0 is the artwork
    joints = np.stack([f.keypoints[0, :18] for f in frames])
    clip = _angle(poses[:, 9] - poses[:, 7])  # right hip -> right knee
    driver = _angle(joints[:, J["right_knee"]] - joints[:, J["right_hip"]])
    assert np.allclose(_wrapped((clip - clip[0]) - (driver - driver[0])), 0, atol=1e-9)
    # The body follows the driver sideways, scaled to the figure's size.
    shift = poses[:, 6:8].mean(1) - poses[0, 6:8].mean(0)
    assert shift[6, 0] > 1.0 and shift[18, 0] < -1.0


def test_frames_without_a_person_are_interpolated_or_held(gingerbread):
    angles = np.linspace(0.0, 1.2, 10)
    frames = [pose_frame(dancer(a)) for a in angles]
    for gap in (4, 5, 6):
        frames[gap] = pose_frame(None)
    results = {mode: _animate(gingerbread, frames, no_person=mode) for mode in retarget.NO_PERSON}
    arm = {mode: _angle(a.keypoints.numpy()[:, 6] - a.keypoints.numpy()[:, 5]) for mode, a in results.items()}
    filled = np.unwrap(arm["interpolate"])
    assert np.allclose(np.diff(filled[3:8]), (filled[7] - filled[3]) / 4, atol=1e-9)  # linear across the gap
    assert np.allclose(arm["hold"][4:7], arm["hold"][3], atol=1e-12)  # the last seen pose held
    assert results["hold"].motion["frames_without_person"] == [4, 5, 6]
    # A clip that starts without a person holds the first seen pose.
    late = _animate(gingerbread, [pose_frame(None)] * 2 + frames[2:])
    assert torch.allclose(late.keypoints[0], late.keypoints[2])


def test_a_joint_missing_in_some_frames_is_filled(gingerbread):
    frames = [pose_frame(dancer(a)) for a in np.linspace(0, 1, 7)]
    frames[3].scores[0, J["left_wrist"]] = 0.05
    poses = _animate(gingerbread, frames).keypoints.numpy()
    wrist = np.unwrap(_angle(poses[:, 6] - poses[:, 5]))
    assert abs(wrist[3] - (wrist[2] + wrist[4]) / 2) < 1e-9


def test_loop_closes_the_clip(gingerbread):
    """A dance cut mid-cycle (1.3 swings): looped, the step from the last frame to the first is no bigger
    than the clip's own steps."""
    phase = 2 * np.pi * 1.3 * np.arange(48) / 48
    frames = [pose_frame(dancer(0.8 * math.sin(p), 0.3 * math.sin(p), (25 * math.sin(p), 0))) for p in phase]
    open_clip = _animate(gingerbread, frames).keypoints.numpy()
    looped = _animate(gingerbread, frames, loop=True).keypoints.numpy()

    def worst_step(poses):
        return np.abs(np.diff(poses, axis=0)).max()

    def closing_gap(poses):
        return np.abs(poses[0] - poses[-1]).max()

    assert closing_gap(open_clip) > 3 * worst_step(open_clip)
    assert closing_gap(looped) <= worst_step(open_clip)
    assert closing_gap(looped) < closing_gap(open_clip) / 5
    assert np.allclose(looped[0], open_clip[0])
    lengths = bone_lengths(torch.from_numpy(looped), gingerbread.rig.bones)
    assert torch.allclose(lengths, bone_lengths(gingerbread.rig.keypoints, gingerbread.rig.bones).expand_as(lengths))


def test_smoothing_removes_jitter(gingerbread):
    rng = np.random.default_rng(0)
    frames = [pose_frame(dancer(0.6) + rng.normal(0, 4, (18, 2))) for _ in range(30)]
    rough = _animate(gingerbread, frames, smoothing=0).keypoints.numpy()
    smooth = _animate(gingerbread, frames, smoothing=3, sigma=2.0).keypoints.numpy()

    def jitter(poses):
        return np.abs(np.diff(poses, axis=0)).mean()

    assert jitter(smooth) < 0.5 * jitter(rough)


def test_non_finite_joints_count_as_not_seen(gingerbread):
    frames = [pose_frame(dancer(a)) for a in np.linspace(0, 1, 5)]
    frames[2].keypoints[0, [J["left_wrist"], J["neck"], J["right_hip"]]] = np.nan
    frames[3].scores[0, J["left_elbow"]] = np.inf
    for smoothing in (0, 2):
        poses = _animate(gingerbread, frames, smoothing=smoothing).keypoints
        assert torch.isfinite(poses).all()


def test_best_person_drives_and_no_person_at_all_is_an_error(gingerbread):
    crowd = pose_frame(dancer(1.0))
    other = pose_frame(dancer(-0.5), score=0.4)
    two = FramePose(400, 600, np.concatenate([other.keypoints, crowd.keypoints]), np.concatenate([other.scores, crowd.scores]))
    alone = _animate(gingerbread, [crowd, crowd]).keypoints
    assert torch.allclose(_animate(gingerbread, [two, two]).keypoints, alone)
    with pytest.raises(InputError, match="no person"):
        _animate(gingerbread, [pose_frame(None)] * 3)


def test_animation_works_with_render_svg_and_motion_json(gingerbread):
    animation = _animate(gingerbread, dance(6), smoothing=2)
    assert isinstance(animation, ClipartAnimation) and animation.num_frames == 6 and animation.fps == 12.0
    frames = render_animation(animation, 64)
    assert frames.shape == (6, 64, 64, 3) and (frames[0] - frames[3]).abs().mean() > 1e-3
    assert animation_svg(animation).count("<animate ") > 0
    record = parse_motion_json(motion_json(motion_record(animation)))
    replay = animation_from_record(gingerbread.drawing, record)
    assert torch.allclose(replay.keypoints, animation.keypoints, atol=1e-4)
    assert record.motion["mode"] == "pose" and record.motion["map"]["4"] == "right_wrist"


def test_120_frames_take_seconds_on_cpu(man_dance):
    frames = dance(120)
    started = time.perf_counter()
    animation = _animate(man_dance, frames, smoothing=2)
    animation.points()
    elapsed = time.perf_counter() - started
    assert animation.num_frames == 120
    assert elapsed < 20, f"{elapsed:.1f} s for retargeting and deforming 120 frames"


# ----------------------------------------------------------------------------- node and CLI


def test_node_takes_pose_keypoint_and_returns_the_map(gingerbread, comfy):
    node = comfy.module("nodes.clipart_pose").AnimateSuiteAnimateClipartFromPose
    value = openpose_json.to_pose_keypoint(dance(8))
    animation, fps, used = node.execute(gingerbread, value, 10.0, 1, True)
    assert animation.num_frames == 8 and fps == 10.0 and "4 right_wrist" in used
    edited = used.replace("4 right_wrist", "4 left_wrist").replace("6 left_wrist", "6 right_wrist")
    swapped, _, used_again = node.execute(gingerbread, value, 10.0, 1, True, map=edited)
    assert "4 left_wrist" in used_again and not torch.allclose(swapped.keypoints, animation.keypoints)
    with pytest.raises(comfy.module("core.errors").InputError, match="map"):
        node.execute(gingerbread, value, 10.0, 1, True, map="4 wrist")


def test_cli_drives_clipart_from_openpose_json(tmp_path, capsys):
    from comfyui_animate_suite.cli import main

    poses = tmp_path / "poses.json"
    openpose_json.save(openpose_json.to_pose_keypoint(dance(6)), poses)
    motion = tmp_path / "clip.json"
    assert main(["clipart", str(GINGERBREAD), "--pose", str(poses), "--fps", "8", "--loop", "--out", str(motion)]) == 0
    document = json.loads(motion.read_text())
    assert document["num_frames"] == 6 and document["fps"] == 8.0 and document["motion"]["loop"] is True
    gif = tmp_path / "clip.gif"
    assert main(["clipart", str(GINGERBREAD), "--pose", str(poses), "--frames", "4", "--size", "48", "--out", str(gif)]) == 0
    from PIL import Image

    assert Image.open(gif).n_frames == 4
    mapping = tmp_path / "map.txt"
    mapping.write_text("1 neck\n3 right_shoulder\n4 right_wrist\n")
    assert main(["clipart", str(GINGERBREAD), "--pose", str(poses), "--map", str(mapping), "--out", str(motion)]) == 0
    assert json.loads(motion.read_text())["motion"]["map"] == {"1": "neck", "3": "right_shoulder", "4": "right_wrist"}


def test_cli_bad_pose_input_is_one_line(tmp_path, capsys):
    import subprocess
    import sys

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    for pose in (bad, tmp_path / "missing.json"):
        result = subprocess.run([sys.executable, "-m", "comfyui_animate_suite", "clipart", str(GINGERBREAD), "--pose",
                                 str(pose), "--out", str(tmp_path / "x.gif")], capture_output=True, text=True, timeout=120)
        assert result.returncode != 0 and "Traceback" not in result.stderr
        assert "--pose" in result.stderr.strip().splitlines()[-1]


def test_cli_runs_a_driving_video_through_dwpose(tmp_path):
    """Wiring of ``--pose video.mp4``: the frames are read and DWPose runs (the team's DWPose files are
    synthetic, so they find nobody and the command ends with the one-line no-person error); without the
    models the command names the missing file."""
    import subprocess
    import sys

    import numpy as np

    from comfyui_animate_suite.core import video

    models = SHARED / "parity" / "dwpose"
    if not (models / "yolox_l.onnx").is_file():
        pytest.skip("../shared/parity/dwpose is absent")
    clip = tmp_path / "driving.mp4"
    frames = np.full((4, 64, 48, 3), 255, np.uint8)
    frames[:, 10:50, 18:30] = 40
    video.write_video(frames, clip, 8.0)
    (tmp_path / "models" / "dwpose").mkdir(parents=True)
    for name in ("yolox_l.onnx", "dw-ll_ucoco_384.onnx"):
        (tmp_path / "models" / "dwpose" / name).symlink_to(models / name)
    command = [sys.executable, "-m", "comfyui_animate_suite", "clipart", str(GINGERBREAD), "--pose", str(clip),
               "--out", str(tmp_path / "x.json"), "--models-dir"]
    result = subprocess.run(command + [str(tmp_path / "models")], capture_output=True, text=True, timeout=300)
    assert "DWPose: 4 frames of driving.mp4" in result.stderr and "Traceback" not in result.stderr
    if result.returncode != 0:
        assert "no person" in result.stderr.strip().splitlines()[-1]
    else:
        assert json.loads((tmp_path / "x.json").read_text())["num_frames"] == 4
    missing = subprocess.run(command + [str(tmp_path / "nowhere")], capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0 and "yolox_l.onnx" in missing.stderr.strip().splitlines()[-1]


def test_node_chain_pose_json_to_gif_svg_and_lottie(comfy, run_node):
    """The example workflow's chain after DWPose, node to node in the ComfyUI runtime: Load Pose JSON ->
    Animate Clipart from Pose -> Render -> Save Animation, Save Clipart SVG, Save Clipart Lottie."""
    openpose_json.save(openpose_json.to_pose_keypoint(dance(10)), comfy.input / "dance_poses.json")
    (pose_keypoint,) = run_node("AnimateSuiteLoadPoseJSON", file="dance_poses.json")
    clipart, _ = run_node("AnimateSuiteLoadClipart", svg="(pack example) gingerbread.svg", canvas=256,
                          keypoints="side files, else detect", complexity=0.5, max_tri_area=30.0, min_tri_angle=20.0)
    animation, fps, used = run_node("AnimateSuiteAnimateClipartFromPose", clipart=clipart, pose_keypoint=pose_keypoint,
                                    fps=10.0, smoothing=2, loop=True)
    assert animation.num_frames == 10 and fps == 10.0 and "2 mid_hip" in used
    images, _ = run_node("AnimateSuiteRenderClipart", animation=animation, size=96, background="white")
    assert images.shape == (10, 96, 96, 3) and (images[0] - images[5]).abs().mean() > 1e-3
    nodes = comfy.package.NODE_CLASS_MAPPINGS
    saved = nodes["AnimateSuiteSaveAnimation"].execute(images, fps, "pose_chain/clip", "gif", 0, 85)
    svg = nodes["AnimateSuiteSaveClipartSVG"].execute(animation, "pose_chain/clip", 96, False, True)
    lottie_file = nodes["AnimateSuiteSaveClipartLottie"].execute(animation, "pose_chain/clip", 96, "lottie (dotLottie)", True)
    written = sorted(p.name for p in (comfy.output / "pose_chain").iterdir())
    assert any(n.endswith(".gif") for n in written) and any(n.endswith(".svg") for n in written)
    assert lottie_file.ui["text"][0] in written and svg.ui["clipart_svg"] and saved
