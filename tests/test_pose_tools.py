"""OpenPose JSON round trips, alignment to a reference, smoothing and canvas fitting."""

from __future__ import annotations

import json

import numpy as np
import pytest

from comfyui_animate_suite.core.errors import InputError
from comfyui_animate_suite.pose import align, openpose_json
from comfyui_animate_suite.pose.keypoints import FramePose

rng = np.random.default_rng(7)


def _person(width=448, height=640, visible=0.9) -> tuple[np.ndarray, np.ndarray]:
    points = np.stack([rng.uniform(0.3, 0.7, 134) * width, rng.uniform(0.15, 0.85, 134) * height], 1)
    scores = np.full(134, visible)
    scores[16] = 0.1  # right ear hidden, as in the parity fixture
    return points, scores


# ----------------------------------------------------------------------------- JSON


def test_pose_keypoint_keeps_raw_scores_and_the_openpose_fields():
    points, scores = _person()
    scores[30] = 0.25  # a face point below 0.3
    frame = FramePose(448, 640, points[None], scores[None])
    value = openpose_json.to_pose_keypoint([frame])
    person = value[0]["people"][0]
    body = np.array(person["pose_keypoints_2d"]).reshape(18, 3)
    np.testing.assert_allclose(body[0, :2], points[0])
    assert body[16].tolist() == [0.0, 0.0, 0.0] and body[0, 2] == 1.0
    face = np.array(person["face_keypoints_2d"]).reshape(70, 3)
    assert face[6].tolist() == [0.0, 0.0, 0.0]  # face point 6 = index 30
    np.testing.assert_allclose(face[68, :2], points[14])  # controlnet_aux appends both eyes
    back = openpose_json.from_pose_keypoint(json.loads(json.dumps(value)))[0]
    np.testing.assert_allclose(back.keypoints, frame.keypoints)
    np.testing.assert_allclose(back.scores, frame.scores)


def test_pose_keypoint_from_another_pack_is_rebuilt_from_openpose_fields():
    body = [[100.0 + i, 200.0 + i, 1.0] for i in range(18)]
    body[3] = [0.0, 0.0, 0.0]
    value = [{"people": [{"pose_keypoints_2d": sum(body, []), "face_keypoints_2d": None,
                          "hand_left_keypoints_2d": [5.0, 6.0, 1.0] * 21, "hand_right_keypoints_2d": None}],
              "canvas_width": 512, "canvas_height": 768}]
    frame = openpose_json.from_pose_keypoint(value)[0]
    assert (frame.width, frame.height, frame.num_people) == (512, 768, 1)
    np.testing.assert_allclose(frame.keypoints[0, 5], [105.0, 205.0])
    assert frame.scores[0, 3] == 0.0 and frame.scores[0, 5] == 1.0
    np.testing.assert_allclose(frame.keypoints[0, 92], [5.0, 6.0])
    assert frame.scores[0, 24:92].sum() == 0  # no face given


def test_normalised_coordinates_from_other_packs_are_scaled_to_the_canvas():
    value = {"people": [{"pose_keypoints_2d": [0.5, 0.25, 1.0] * 18}], "canvas_width": 200, "canvas_height": 400}
    frame = openpose_json.from_pose_keypoint(value)[0]
    np.testing.assert_allclose(frame.keypoints[0, 0], [100.0, 100.0])


@pytest.mark.parametrize("bad", [[], "text", [{"people": []}], [{"people": [], "canvas_width": 0, "canvas_height": 5}],
                                 [{"people": [{"pose_keypoints_2d": [1.0, 2.0]}], "canvas_width": 5, "canvas_height": 5}]])
def test_malformed_pose_keypoint_names_the_input(bad):
    with pytest.raises(InputError, match="pose_keypoint"):
        openpose_json.from_pose_keypoint(bad)


def test_json_files_round_trip(tmp_path):
    points, scores = _person()
    value = openpose_json.to_pose_keypoint([FramePose(448, 640, points[None], scores[None]), FramePose(448, 640)])
    path = tmp_path / "poses.json"
    openpose_json.save(value, path)
    assert openpose_json.load(path) == json.loads(json.dumps(value))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="bad.json"):
        openpose_json.load(tmp_path / "bad.json")


# ----------------------------------------------------------------------------- alignment


def _driving(reference: FramePose, scale: float, shift, frames: int = 4, size=(512, 768)):
    """The reference person scaled and shifted (in pixels of a driving video of another size), with a
    little motion of the arms per frame."""
    out = []
    for t in range(frames):
        points = reference.keypoints[0] * scale + np.array(shift)
        points[[3, 4, 6, 7]] += 4.0 * t  # arms move; the fitted joints do not
        out.append(FramePose(size[0], size[1], points[None], reference.scores.copy()))
    return out


def test_global_fit_undoes_a_scale_and_shift_within_a_pixel():
    reference = FramePose(448, 640, *(a[None] for a in _person()))
    # Driving frames are a different size: the fit works in fractions of each image, so the
    # same fraction-space scale applies to x and y when the aspect ratios match.
    driving = _driving(reference, 1.2, (30.0, -40.0), size=(448, 640))
    aligned = align.align(reference, driving, "global")
    fitted_joints = list(align.FIT_JOINTS)
    for frame in aligned:
        assert (frame.width, frame.height) == (448, 640)
        error = np.abs(frame.keypoints[0, fitted_joints] - reference.keypoints[0, fitted_joints])
        assert error[reference.scores[0, fitted_joints] > 0.3].max() < 1.0


def test_fit_uses_single_person_frames_and_visible_reference_joints():
    reference = FramePose(448, 640, *(a[None] for a in _person()))
    driving = _driving(reference, 0.8, (10.0, 20.0), size=(448, 640))
    two = driving[1]
    driving[1] = FramePose(448, 640, np.stack([two.keypoints[0], two.keypoints[0] + 50]), np.stack([two.scores[0]] * 2))
    _, fit = align.fit_to_reference(reference, driving)
    assert fit.frames_used == [0, 2, 3]
    assert 16 not in fit.joints and fit.joints == [j for j in align.FIT_JOINTS if j != 16]
    assert fit.ay == pytest.approx(1 / 0.8) and fit.ax == pytest.approx(1 / 0.8)


def test_limb_retarget_gives_the_reference_bone_lengths():
    reference = FramePose(448, 640, *(a[None] for a in _person()))
    points = reference.keypoints[0].copy()
    points[3] = points[2] + (points[3] - points[2]) * 1.6  # a longer right upper arm in the driving pose
    driving = [FramePose(448, 640, points[None], reference.scores.copy())]
    aligned = align.align(reference, driving, "limbs")[0]
    for parent, child in align.BONES:
        if reference.scores[0, parent] > 0.3 and reference.scores[0, child] > 0.3:
            expected = np.linalg.norm(reference.keypoints[0, child] - reference.keypoints[0, parent])
            got = np.linalg.norm(aligned.keypoints[0, child] - aligned.keypoints[0, parent])
            assert got == pytest.approx(expected, abs=1e-6)
    direction = aligned.keypoints[0, 3] - aligned.keypoints[0, 2]
    original = points[3] - points[2]
    assert direction[0] * original[1] - direction[1] * original[0] == pytest.approx(0.0, abs=1e-6)  # same direction


def test_alignment_without_a_reference_person_is_a_clear_error():
    with pytest.raises(InputError, match="reference_pose"):
        align.align(FramePose(64, 64), [FramePose(64, 64)])
    reference = FramePose(448, 640, *(a[None] for a in _person()))
    with pytest.raises(InputError, match="driving_pose"):
        align.align(reference, [FramePose(448, 640)])


# ----------------------------------------------------------------------------- smoothing and fitting


def test_smoothing_removes_jitter_and_keeps_a_still_pose():
    points, scores = _person()
    still = [FramePose(448, 640, points[None], scores[None]) for _ in range(9)]
    for frame in align.smooth(still, radius=2):
        np.testing.assert_allclose(frame.keypoints, still[0].keypoints)
    noise = rng.normal(0, 3.0, (9, 134, 2))
    jittery = [FramePose(448, 640, (points + noise[t])[None], scores[None]) for t in range(9)]
    smoothed = align.smooth(jittery, radius=3, sigma=2.0)
    before = np.mean([np.abs(f.keypoints[0] - points)[scores > 0.3].mean() for f in jittery[3:6]])
    after = np.mean([np.abs(f.keypoints[0] - points)[scores > 0.3].mean() for f in smoothed[3:6]])
    assert after < 0.6 * before
    hidden = scores <= 0.3
    np.testing.assert_allclose(smoothed[4].keypoints[0][hidden], jittery[4].keypoints[0][hidden])


@pytest.mark.parametrize("mode, expected", [
    # 400x300 -> 200x200: crop scales to cover (267x200) and cuts 33 px on the left; pad scales to fit
    # (200x150) and adds 25 px on top
    ("crop", (100 * 267 / 400 - (267 - 200) // 2, 60 * 200 / 300)),
    ("pad", (100 * 0.5, 60 * 0.5 + 25)),
    ("stretch", (100 * 0.5, 60 * 200 / 300)),
])
def test_fit_canvas_moves_points_like_the_frames(mode, expected):
    kp = np.zeros((1, 134, 2))
    kp[0, 0] = (100.0, 60.0)
    kp[0, 1] = (5.0, 150.0)  # cut off by the crop
    scores = np.zeros((1, 134))
    scores[0, :2] = 0.9
    fitted = align.fit_canvas([FramePose(400, 300, kp, scores)], 200, 200, mode)[0]
    assert (fitted.width, fitted.height) == (200, 200)
    np.testing.assert_allclose(fitted.keypoints[0, 0], expected)
    assert (fitted.scores[0, 1] == 0.0) == (mode == "crop")
