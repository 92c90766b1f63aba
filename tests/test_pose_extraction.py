"""DWPose extraction end to end on the tiny ONNX graphs: boxes, keypoints, layout, batching, errors."""

from __future__ import annotations

import numpy as np
import pytest

from comfyui_animate_suite.core.errors import CheckpointError, InputError, ModelNotFoundError
from comfyui_animate_suite.pose import dwpose, keypoints, sessions
from tiny_models import pose as tiny


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    return tiny.build_dwpose(tmp_path_factory.mktemp("dwpose"))


@pytest.fixture(scope="module")
def model(model_files):
    return dwpose.DWPose.from_files(*model_files, device="cpu")


def _frames(*people_per_frame, size=(480, 640)):
    frames = np.zeros((len(people_per_frame),) + size + (3,), np.uint8)
    frames[:] = 60  # a dark background: letterbox padding (114) and background stay below the threshold
    for frame, people in zip(frames, people_per_frame):
        for box in people:
            tiny.draw_person(frame, *box)
    return frames


def _crop_pixel(box) -> float:
    """Image pixels per crop pixel for ``box``: the reference's 1.25 padding and 3:4 aspect fix."""
    w, h = (box[2] - box[0]) * 1.25, (box[3] - box[1]) * 1.25
    return max(w, h * 0.75) / 288.0


LEFT, RIGHT = (60, 40, 200, 400), (400, 100, 560, 460)


def test_boxes_keypoints_and_scores_follow_the_people(model):
    result = model(_frames([LEFT, RIGHT]))
    frame = result.frames[0]
    assert frame.num_people == 2 and (frame.width, frame.height) == (640, 480)
    # r = 1 for 640x480, so the letterbox is the frame itself: boxes are the inclusive pixel extents,
    # left person first (objectness 0.9 beats 0.8).
    np.testing.assert_allclose(result.boxes[0], [LEFT, RIGHT], atol=1e-3)
    for person, box in enumerate((LEFT, RIGHT)):
        expected = tiny.expected_keypoints(*box)
        scores = result.raw_scores[0][person]
        shown = tiny.CONF > 0
        # SimCC bins are half crop pixels; the warp's edge blur moves an extent by up to a crop pixel.
        tolerance = 1.25 * _crop_pixel(box)
        np.testing.assert_allclose(result.raw_keypoints[0][person][shown], expected[shown], atol=tolerance)
        # the score is the Gaussian peak sampled at the nearest bin: between conf * exp(-1/32) and conf
        assert np.all(scores[shown] <= tiny.CONF[shown] + 1e-6)
        assert np.all(scores[shown] >= tiny.CONF[shown] * np.exp(-1 / 32) - 1e-6)
        assert scores[100] <= 0  # the negative-score hand point stays negative (location -1 before mapping)


def test_layout_inserts_the_neck_and_reorders_to_openpose(model):
    result = model(_frames([LEFT]))
    raw, raw_scores = result.raw_keypoints[0][0], result.raw_scores[0][0]
    frame = result.frames[0]
    # OpenPose-18 body from COCO indices (written out here, independently of the code under test).
    coco_for_openpose = {0: 0, 2: 6, 3: 8, 4: 10, 5: 5, 6: 7, 7: 9, 8: 12, 9: 14, 10: 16, 11: 11, 12: 13,
                         13: 15, 14: 2, 15: 1, 16: 4, 17: 3}
    for openpose, coco in coco_for_openpose.items():
        np.testing.assert_allclose(frame.keypoints[0, openpose], raw[coco])
        assert frame.scores[0, openpose] == pytest.approx(raw_scores[coco])
    np.testing.assert_allclose(frame.keypoints[0, 1], (raw[5] + raw[6]) / 2)  # neck between the shoulders
    assert frame.scores[0, 1] == 1.0  # both shoulders above 0.3
    # feet, face and hands keep COCO-WholeBody order, shifted by the inserted neck
    np.testing.assert_allclose(frame.keypoints[0, 18:], raw[17:])
    assert frame.scores[0, 17] < 0.3 and frame.scores[0, 16] < 0.3  # COCO ears 3, 4 -> OpenPose 17, 16


def test_neck_score_is_zero_when_a_shoulder_is_hidden():
    raw = np.zeros((1, 133, 2))
    scores = np.full((1, 133), 0.9, np.float32)
    scores[0, 6] = 0.2
    _, layout_scores = keypoints.to_openpose_layout(raw, scores)
    assert layout_scores[0, 1] == 0.0


def test_batched_run_matches_one_frame_at_a_time_and_batches_the_pose_model(model, monkeypatch):
    frames = _frames([LEFT, RIGHT], [], [(100, 50, 250, 300)], [LEFT], [RIGHT], [(80, 60, 300, 420)])
    calls = {"detector": 0, "pose": 0}
    for name, onnx_model in (("detector", model.detector), ("pose", model.pose)):
        original = onnx_model.session.run

        def counted(*args, _original=original, _name=name, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(onnx_model.session, "run", counted, raising=False)
    batched = model(frames, chunk=16)
    assert calls == {"detector": len(frames), "pose": 1}  # released detector: fixed batch 1
    singles = [model(frames[i:i + 1]) for i in range(len(frames))]
    for i, single in enumerate(singles):
        np.testing.assert_array_equal(batched.frames[i].keypoints, single.frames[0].keypoints)
        np.testing.assert_array_equal(batched.frames[i].scores, single.frames[0].scores)
        np.testing.assert_array_equal(batched.boxes[i], single.boxes[0])
    assert [f.num_people for f in batched.frames] == [2, 0, 1, 1, 1, 1]


def test_a_dynamic_batch_detector_is_called_once_per_chunk(tmp_path):
    detector, pose = tiny.build_dwpose(tmp_path, detector_batch="batch")
    model = dwpose.DWPose.from_files(detector, pose, device="cpu")
    assert model.detector.input.fixed_batch is None
    seen = []
    original = model.detector.session.run
    model.detector.session = type("Counting", (), {"run": lambda self, names, feed: seen.append(len(feed["images"])) or original(names, feed)})()
    result = model(_frames([LEFT], [RIGHT], [], [LEFT, RIGHT], [LEFT]), chunk=4)
    assert seen == [4, 1]
    assert [f.num_people for f in result.frames] == [1, 1, 0, 2, 1]


def test_channel_order_is_respected(model):
    red = _frames([LEFT])  # the tiny models look at channel 0: red in RGB, blue in BGR
    assert model(red, dwpose.ExtractionSettings(channel_order="rgb")).frames[0].num_people == 1
    assert model(red, dwpose.ExtractionSettings(channel_order="bgr")).frames[0].num_people == 0


def test_no_person_gives_an_empty_pose_or_the_whole_image(model):
    empty = _frames([])
    assert model(empty).frames[0].num_people == 0
    whole = model(empty, dwpose.ExtractionSettings(when_no_person="whole_image"))
    assert whole.frames[0].num_people == 1  # the pose model ran on the whole image ...
    assert np.all(whole.frames[0].scores[0, 2:] <= 0)  # ... and found nothing on it (neck aside)


def test_animateanyone_preset_detects_on_the_512_canvas(model):
    frames = _frames([LEFT], size=(480, 640))
    frames[..., 2] = frames[..., 0]  # bright in channel 2 as well, which BGR order puts first
    result = model(frames, dwpose.PRESETS["animateanyone"])
    frame = result.frames[0]
    # 480 short side -> 512; 640 * 512/480 = 682.7 -> 704 (nearest multiple of 64)
    assert (frame.width, frame.height) == (704, 512)
    scale = np.array([704 / 640, 512 / 480])
    on_input = frame.rescaled(640, 480)
    expected = tiny.expected_keypoints(*LEFT)
    shown = (tiny.CONF > 0.3)
    coco_nose = 0
    assert on_input.keypoints[0, 0] == pytest.approx(expected[coco_nose], abs=2.0 * _crop_pixel(LEFT) + scale.max())
    np.testing.assert_allclose(on_input.keypoints[0, 24:][shown[23:]], expected[23:][shown[23:]],
                               atol=2.0 * _crop_pixel(LEFT) + 2.0)


def test_sessions_are_cached_between_runs(model_files):
    first = sessions.load(model_files[1], "pose", device="cpu")
    assert sessions.load(model_files[1], "pose", device="cpu").session is first.session
    assert sessions.choose_providers("cpu") == ["CPUExecutionProvider"]
    assert sessions.choose_providers("auto")[-1] == "CPUExecutionProvider"


# ----------------------------------------------------------------------------- bad input


def test_empty_and_malformed_frame_batches_are_refused(model):
    with pytest.raises(InputError, match="empty batch"):
        model(np.zeros((0, 64, 64, 3), np.uint8))
    with pytest.raises(InputError, match="uint8 RGB frames"):
        model(np.zeros((1, 64, 64), np.uint8))


def test_missing_and_wrong_onnx_files_give_clear_errors(model_files, tmp_path):
    detector, pose = model_files
    with pytest.raises(ModelNotFoundError, match="yzd-v/DWPose"):
        dwpose.DWPose.from_files(tmp_path / "yolox_l.onnx", pose, device="cpu")
    with pytest.raises(CheckpointError, match="is not a DWPose person detector"):
        dwpose.DWPose.from_files(pose, pose, device="cpu")
    with pytest.raises(CheckpointError, match="is not a DWPose pose model"):
        dwpose.DWPose.from_files(detector, detector, device="cpu")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not a protobuf" * 10)
    with pytest.raises(CheckpointError, match="could not be opened as an ONNX model"):
        dwpose.DWPose.from_files(broken, pose, device="cpu")


def test_missing_onnxruntime_says_what_to_install(monkeypatch):
    monkeypatch.setattr(sessions.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(sessions.OnnxRuntimeMissing, match="onnxruntime-gpu"):
        sessions.choose_providers("auto")


@pytest.mark.filterwarnings("ignore:Specified provider")
def test_cuda_is_preferred_and_a_failed_start_is_reported(model_files, monkeypatch, caplog):
    ort = sessions.onnxruntime_module()
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert sessions.choose_providers("auto") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert sessions.choose_providers("cpu") == ["CPUExecutionProvider"]
    with caplog.at_level("WARNING", logger="animate_suite"):
        model = sessions.load(model_files[0], "DWPose person detector", device="auto")
    assert model.providers == ["CPUExecutionProvider"]  # this onnxruntime has no CUDA
    assert "could not start CUDAExecutionProvider" in caplog.text
