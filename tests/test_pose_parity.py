"""DWPose parity: the fixture's ONNX files through our loaders reproduce the reference outputs.

``../shared/parity/dwpose`` holds two synthetic models in the released files' layout, input images
and what comfyui_controlnet_aux, Moore-AnimateAnyone and StableAnimator produced from them (see its
README). Every setting comes from its ``manifest.json``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from comfyui_animate_suite.pose import align, detector, dwpose, estimator, keypoints, openpose_json, render

KEYPOINT_TOL = 1e-3  # pixels
NORMALIZED_TOL = 1e-5
SCORE_TOL = 1e-5


@pytest.fixture(scope="module")
def fixture(shared_dir):
    root = shared_dir / "parity" / "dwpose"
    if not (root / "manifest.json").is_file():
        pytest.skip("../shared/parity/dwpose is absent")
    return root, json.loads((root / "manifest.json").read_text())


def _channels(text: str) -> str:
    """'BGR (cvtColor RGB2BGR)' -> 'bgr'."""
    return text.split()[0].lower()


def _settings(manifest: dict, convention: str, when_no_person: str) -> dwpose.ExtractionSettings:
    s = manifest["settings"]
    det_cfg, pose_cfg = s["detector"], s["pose"]
    det_settings = detector.DetectorSettings(
        input_size=tuple(det_cfg["letterbox"]), pad_value=det_cfg["pad_value"], strides=tuple(det_cfg["strides"]),
        nms_iou=det_cfg["nms_thr"], nms_score=det_cfg["nms_score_thr"], keep_score=det_cfg["final_score_thr"])
    pose_settings = estimator.PoseSettings(
        input_wh=tuple(pose_cfg["input_wh"]), bbox_padding=pose_cfg["bbox_padding"], mean=tuple(pose_cfg["mean"]),
        std=tuple(pose_cfg["std"]), simcc_split_ratio=pose_cfg["simcc_split_ratio"])
    if convention == "moore":
        channels, resolution = _channels(s["moore"]["input_channels"]), s["moore"]["detect_resolution"]
    elif convention == "stableanimator":
        channels, resolution = _channels(s["stableanimator"]["input_channels"]), 0
    else:
        channels, resolution = "rgb", 0  # the node converts the IMAGE tensor back to RGB uint8
    return dwpose.ExtractionSettings(channels, resolution, when_no_person, det_settings, pose_settings)


@pytest.fixture(scope="module")
def model(fixture):
    root, manifest = fixture
    assert sorted(manifest["models"]) == ["dw-ll_ucoco_384.onnx", "yolox_l.onnx"]
    return dwpose.DWPose.from_files(root / "yolox_l.onnx", root / "dw-ll_ucoco_384.onnx", device="cpu")


def _image(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


_extractions: dict = {}


def _extract(model, fixture, name, convention):
    """Extraction of one fixture image (cached: several tests compare different parts of it)."""
    root, manifest = fixture
    key = (str(root), name, convention)
    if key not in _extractions:
        # controlnet_aux finds nobody in an empty frame; Moore and StableAnimator run the whole image then.
        no_person = "empty" if convention == "comfy" else "whole_image"
        image = _image(root / "images" / f"{name}.png")[None]
        _extractions[key] = model(image, _settings(manifest, convention, no_person))
    return _extractions[key]


def _image_names(manifest):
    return list(manifest["images"])


CONVENTIONS = ("comfy", "moore", "stableanimator")


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_boxes_and_raw_keypoints_match(model, fixture, convention):
    root, manifest = fixture
    for name, info in manifest["images"].items():
        result = _extract(model, fixture, name, convention)
        expected = np.load(root / convention / f"{name}_keypoints.npz")
        boxes = result.boxes[0]
        assert len(boxes) == info["boxes_kept"][convention], name
        np.testing.assert_allclose(boxes, expected["det_boxes"].reshape(-1, 4), atol=KEYPOINT_TOL, err_msg=name)
        if "raw_keypoints" not in expected.files:
            assert result.frames[0].num_people == 0, f"{name}: controlnet_aux finds nobody without a box"
            continue
        np.testing.assert_allclose(result.raw_keypoints[0], expected["raw_keypoints"], atol=KEYPOINT_TOL, err_msg=name)
        np.testing.assert_allclose(result.raw_scores[0], expected["raw_scores"], atol=SCORE_TOL, err_msg=name)
        if "keypoints" in expected.files:
            frame = result.frames[0]
            np.testing.assert_allclose(frame.keypoints, expected["keypoints"], atol=KEYPOINT_TOL, err_msg=name)
            np.testing.assert_allclose(frame.scores, expected["scores"], atol=SCORE_TOL, err_msg=name)
            np.testing.assert_array_equal(frame.scores[:, 1], expected["scores"][:, 1])  # neck 0/1, exact
            np.testing.assert_allclose(frame.keypoints[:, :18], expected["openpose18_keypoints"], atol=KEYPOINT_TOL)


def test_moore_detects_on_the_rounded_512_canvas(model, fixture):
    root, manifest = fixture
    for name in _image_names(manifest):
        expected = np.load(root / "moore" / f"{name}_keypoints.npz")
        frame = _extract(model, fixture, name, "moore").frames[0]
        assert [frame.height, frame.width] == expected["detect_input_hw"].tolist(), name


def test_stableanimator_pose_dict_matches(model, fixture):
    root, manifest = fixture
    for name in _image_names(manifest):
        expected = np.load(root / "stableanimator" / f"{name}_keypoints.npz")
        frame = _extract(model, fixture, name, "stableanimator").frames[0]
        normalized = frame.normalized()
        people = frame.num_people
        np.testing.assert_allclose(normalized[:, keypoints.BODY].reshape(people * 18, 2),
                                   expected["pose_bodies_candidate"], atol=NORMALIZED_TOL, err_msg=name)
        subset = np.where(frame.scores[:, keypoints.BODY] > 0.3, np.arange(people * 18).reshape(people, 18), -1)
        np.testing.assert_array_equal(subset, expected["pose_bodies_subset"])
        hands = np.vstack([normalized[:, keypoints.LEFT_HAND], normalized[:, keypoints.RIGHT_HAND]])
        np.testing.assert_allclose(hands, expected["pose_hands"], atol=NORMALIZED_TOL, err_msg=name)
        np.testing.assert_allclose(normalized[:, keypoints.FACE], expected["pose_faces"], atol=NORMALIZED_TOL)
        np.testing.assert_allclose(frame.scores[:, keypoints.FACE], expected["pose_faces_score"], atol=SCORE_TOL)


def test_controlnet_aux_pose_keypoint_json_matches(model, fixture):
    root, manifest = fixture
    for name in _image_names(manifest):
        ours = openpose_json.to_pose_keypoint(_extract(model, fixture, name, "comfy").frames)
        reference = json.loads((root / "comfy" / f"{name}_pose_keypoint.json").read_text())
        assert len(ours) == len(reference) == 1
        for frame, expected in zip(ours, reference):
            assert (frame["canvas_width"], frame["canvas_height"]) == (expected["canvas_width"], expected["canvas_height"])
            assert len(frame["people"]) == len(expected["people"]), name
            for person, expected_person in zip(frame["people"], expected["people"]):
                for key in openpose_json.PART_KEYS:
                    if expected_person[key] is None:
                        assert person[key] is None, (name, key)
                        continue
                    got, want = np.array(person[key]), np.array(expected_person[key])
                    assert got.shape == want.shape, (name, key)
                    np.testing.assert_array_equal(got[2::3], want[2::3])  # 1.0 / 0 flags, exact
                    np.testing.assert_allclose(got, want, atol=KEYPOINT_TOL, err_msg=f"{name} {key}")


def _assert_same_image(ours: np.ndarray, path, max_diff: int = 0, max_pixels: int = 0):
    expected = np.asarray(Image.open(path).convert("RGB"))
    assert ours.shape == expected.shape, path
    diff = np.abs(ours.astype(int) - expected.astype(int))
    changed = int((diff.max(-1) > 0).sum())
    assert int(diff.max()) <= max_diff and changed <= max_pixels, f"{path.name}: max diff {diff.max()}, {changed} pixels"


def test_rendered_images_match_each_convention(model, fixture):
    root, manifest = fixture
    resolution = manifest["settings"]["comfy_node"]["resolution"]
    moore = manifest["settings"]["moore"]
    reference_side = manifest["settings"]["stableanimator"]["ref_w"]
    for name in _image_names(manifest):
        comfy_frame = _extract(model, fixture, name, "comfy").frames[0]
        # controlnet_aux's up-scale runs through Intel IPP's cubic resize, whose float rounding is not
        # published: our float32 Keys kernel may differ by one grey level at a handful of edge pixels.
        _assert_same_image(render.render_controlnet_aux(comfy_frame, resolution=resolution),
                           root / "comfy" / f"{name}_pose.png", max_diff=1, max_pixels=20)
        moore_frame = _extract(model, fixture, name, "moore").frames[0]
        assert moore["image_resolution"] == moore["detect_resolution"]
        _assert_same_image(render.render_animateanyone(moore_frame, resolution=moore["detect_resolution"]),
                           root / "moore" / f"{name}_pose.png")
        sa_frame = _extract(model, fixture, name, "stableanimator").frames[0]
        ours = render.render_stableanimator(sa_frame.normalized(), sa_frame.scores, sa_frame.width, sa_frame.height,
                                            reference_side=reference_side)
        _assert_same_image(ours, root / "stableanimator" / f"{name}_pose.png")


def test_stableanimator_alignment_matches(model, fixture):
    root, manifest = fixture
    settings = _settings(manifest, "stableanimator", "whole_image")
    numbers = manifest["alignment"]
    expected = np.load(root / "align" / "alignment.npz")
    reference = model(_image(root / numbers["ref"])[None], settings).frames[0]
    count = len(numbers["frames"])
    driving = np.stack([_image(root / "align" / "driving" / f"frame_{i}.png") for i in range(count)])
    frames = model(driving, settings).frames
    aligned, fit = align.fit_to_reference(reference, frames)
    assert fit.joints == numbers["ref_keypoint_id"] == expected["ref_keypoint_id"].tolist()
    assert fit.frames_used == numbers["frames_used_in_fit"]
    np.testing.assert_allclose(fit.driving_y, expected["polyfit_x"], atol=NORMALIZED_TOL)
    np.testing.assert_allclose(fit.reference_y, expected["polyfit_y"], atol=NORMALIZED_TOL)
    for key in ("ax", "ay", "bx", "by"):
        assert getattr(fit, key) == pytest.approx(numbers[key], abs=1e-6), key
    for i in range(count):
        people = len(aligned[i])
        body = aligned[i][:, keypoints.BODY].reshape(people * 18, 2)
        np.testing.assert_allclose(body, expected[f"frame{i}_aligned_bodies_candidate"], atol=NORMALIZED_TOL)
        np.testing.assert_allclose(aligned[i][:, keypoints.FACE], expected[f"frame{i}_aligned_faces"], atol=NORMALIZED_TOL)
        hands = np.vstack([aligned[i][:, keypoints.LEFT_HAND], aligned[i][:, keypoints.RIGHT_HAND]])
        np.testing.assert_allclose(hands, expected[f"frame{i}_aligned_hands"], atol=NORMALIZED_TOL)
        ours = render.render_stableanimator(aligned[i], frames[i].scores, reference.width, reference.height,
                                            reference_side=manifest["settings"]["stableanimator"]["ref_w"])
        _assert_same_image(ours, root / "align" / "poses" / f"frame_{i}.png")
