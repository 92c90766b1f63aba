"""Face detection, embeddings and masks with a tiny insightface-style model pack."""

from __future__ import annotations

import numpy as np
import pytest

from comfyui_animate_suite.core.errors import CheckpointError, InputError, ModelNotFoundError
from comfyui_animate_suite.pose import faces
from tiny_models import pose as tiny

BIG, SMALL = (100, 80, 220, 240), (400, 100, 460, 180)


@pytest.fixture(scope="module")
def analysis(tmp_path_factory):
    return faces.FaceAnalysis.from_folder(tiny.build_face_pack(tmp_path_factory.mktemp("buffalo_l")), device="cpu")


def _image(*boxes, size=(480, 640)):
    image = np.full(size + (3,), 40, np.uint8)
    for box in boxes:
        tiny.draw_face(image, *box)
    return image


def test_the_pack_is_sorted_into_detector_and_recognizer(analysis):
    assert analysis.detector.path.name == "det_10g.onnx"
    assert analysis.recognizer.path.name == "w600k_r50.onnx"  # 2d106det.onnx (192x192) is skipped


def test_detection_gives_boxes_scores_and_five_points(analysis):
    found = analysis.detect(_image(BIG, SMALL))
    assert [round(f.score, 2) for f in found] == list(tiny.FACE_SCORES)
    for face, box in zip(found, (BIG, SMALL)):
        # 640x480 fits the 640x640 input at scale 1: the box is the face's inclusive pixel extent
        np.testing.assert_allclose(face.bbox, box, atol=1e-3)
        x1, y1, x2, y2 = box
        expected = np.stack([x1 + tiny.FACE_POINTS[:, 0] * (x2 - x1), y1 + tiny.FACE_POINTS[:, 1] * (y2 - y1)], 1)
        np.testing.assert_allclose(face.kps, expected, atol=1e-3)


def test_detection_maps_back_from_the_letterbox(analysis):
    image = _image((200, 160, 440, 480), size=(960, 1280))  # scale 0.5 into the 640 input
    face = analysis.detect(image)[0]
    np.testing.assert_allclose(face.bbox, (200, 160, 440, 480), atol=2.0)


def test_embedding_is_the_largest_faces_raw_vector(analysis):
    both = analysis.largest_face_embedding(_image(BIG, SMALL))
    alone = analysis.largest_face_embedding(_image(BIG))
    np.testing.assert_array_equal(both, alone)
    assert both.shape == (512,) and abs(np.linalg.norm(both) - 1.0) > 0.5  # not normalised
    small = analysis.largest_face_embedding(_image(SMALL))
    assert not np.allclose(small, both)


def test_embedding_follows_the_face_not_its_position(analysis):
    here = analysis.largest_face_embedding(_image(BIG))
    shifted = analysis.largest_face_embedding(_image((137, 91, 257, 251)))
    cosine = here @ shifted / np.linalg.norm(here) / np.linalg.norm(shifted)
    assert cosine > 0.999


def test_no_face_gives_none(analysis):
    assert analysis.detect(_image()) == []
    assert analysis.largest_face_embedding(_image()) is None


def test_channel_order(analysis):
    image = _image(BIG)  # the tiny detector keys on channel 0; "bgr" hands it the texture channel instead
    np.testing.assert_allclose(analysis.detect(image, "rgb")[0].bbox, BIG, atol=1e-3)
    seen_as_bgr = analysis.detect(image, "bgr")
    assert len(seen_as_bgr) == 1 and seen_as_bgr[0].bbox[1] > BIG[1] + 100  # only the bright bottom rows


def test_box_mask_follows_stableanimator(analysis):
    image = _image(BIG, SMALL)
    mask = faces.box_mask(640, 480, analysis.detect(image))
    expected = np.zeros((480, 640), np.float32)
    for x1, y1, x2, y2 in (BIG, SMALL):
        expected[y1:y2 + 1, x1:x2 + 1] = 1.0
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(faces.box_mask(64, 32, []), np.ones((32, 64), np.float32))


def test_hull_mask_grow_and_feather():
    square = [np.array([[10.0, 10.0], [30.0, 10.0], [30.0, 30.0], [10.0, 30.0], [20.0, 20.0]])]
    mask = faces.hull_mask(64, 48, square)
    assert mask[10:31, 10:31].all() and mask.sum() == 21 * 21
    grown = faces.grow(mask[None], 3)[0]
    assert grown[7:34, 10:31].all() and not grown[5, 20] and grown.sum() > mask.sum()
    shrunk = faces.grow(mask[None], -3)[0]
    assert shrunk[13:28, 13:28].all() and shrunk.sum() < mask.sum()
    soft = faces.feather(mask[None], 6)[0]
    assert 0 < soft[20, 10] < 1 and soft[20, 20] > 0.99 and soft[0, 0] < 0.01


def test_face_masks_per_frame(analysis):
    frames = np.stack([_image(BIG), _image()])
    boxes = faces.face_masks(analysis, frames, "boxes")
    np.testing.assert_array_equal(boxes.masks[0], faces.box_mask(640, 480, analysis.detect(frames[0])))
    assert boxes.faceless == [1] and boxes.masks[1].min() == 1 and boxes.masks.dtype == np.float32
    hull = faces.face_masks(analysis, frames, "landmark_hull", 4, 2)
    outline = faces.hull_mask(640, 480, [faces.face_outline_points(f) for f in analysis.detect(frames[0])])
    np.testing.assert_array_equal(hull.masks, faces.feather(faces.grow(np.stack([outline, outline * 0]), 4), 2))
    with pytest.raises(InputError, match="mode"):
        faces.face_masks(analysis, frames, "ellipse")
    with pytest.raises(InputError, match="pose_keypoint"):
        faces.face_masks(analysis, frames, "landmark_hull", pose_keypoint=[{"people": [], "canvas_width": 640,
                                                                              "canvas_height": 480}])


def test_largest_face_embeddings_are_zeros_where_no_face_is_found(analysis):
    frames = np.stack([_image(BIG, SMALL), _image()])
    result = faces.largest_face_embeddings(analysis, frames)
    assert result.vectors.shape == (2, faces.EMBEDDING_SIZE) and result.vectors.dtype == np.float32
    np.testing.assert_array_equal(result.vectors[0], analysis.largest_face_embedding(frames[0]))
    assert result.faceless == [1] and not result.vectors[1].any()


def test_missing_or_incomplete_packs_are_clear(tmp_path):
    with pytest.raises(ModelNotFoundError, match="insightface"):
        faces.find_pack_models(tmp_path)
    tiny.build_arcface(tmp_path / "w600k_r50.onnx")
    with pytest.raises(CheckpointError, match="no SCRFD face detector"):
        faces.find_pack_models(tmp_path)


def test_similarity_transform_recovers_a_rotation_scale_and_shift():
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -5.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = tiny.FACE_POINTS.astype(np.float64) * 100
    dst = src @ (rotation * scale).T + shift
    matrix = faces.similarity_transform(src, dst)
    np.testing.assert_allclose(matrix[:, :2], rotation * scale, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)
