"""The DWPose, pose-tool and face nodes inside the ComfyUI stand-in, with the tiny ONNX models."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import torch

from tiny_models import pose as tiny

LEFT, RIGHT = (60, 40, 200, 400), (400, 100, 560, 460)


@pytest.fixture(scope="module")
def dwpose_files(comfy):
    folder = comfy.models / "dwpose"
    tiny.build_dwpose(folder)
    return folder


@pytest.fixture(scope="module")
def face_pack(comfy):
    return tiny.build_face_pack(comfy.models / "insightface" / "buffalo_l")


@pytest.fixture
def errors(comfy):
    return comfy.module("core.errors")


def _images(*people_per_frame, size=(480, 640), channels=3) -> torch.Tensor:
    frames = np.full((len(people_per_frame),) + size + (3,), 60, np.uint8)
    for frame, people in zip(frames, people_per_frame):
        for box in people:
            tiny.draw_person(frame, *box)
    images = torch.from_numpy(frames).float() / 255.0
    if channels == 1:
        images = images[..., :1]
    elif channels == 4:
        images = torch.cat([images, torch.ones_like(images[..., :1])], -1)
    return images


def _estimate(node_class, dwpose, images, convention="stableanimator", **options):
    settings = dict(body=True, hands=True, face=True, width=0, height=0)
    settings.update(options)
    return node_class("AnimateSuiteDWPoseEstimator").execute(dwpose, images, convention, **settings).result


@pytest.fixture(scope="module")
def dwpose(comfy, dwpose_files):
    cls = comfy.package.NODE_CLASS_MAPPINGS["AnimateSuiteDWPoseLoader"]
    return cls.execute("yolox_l.onnx", "dw-ll_ucoco_384.onnx", "cpu")[0]


def test_loader_lists_the_default_names_and_loads_from_the_dwpose_folder(node_class, dwpose):
    choices = node_class("AnimateSuiteDWPoseLoader").INPUT_TYPES()["required"]["detector"][0]
    assert "yolox_l.onnx" in choices and "dw-ll_ucoco_384.onnx" in choices
    assert dwpose.detector.path.name == "yolox_l.onnx"


def test_estimator_outputs_pose_images_and_pose_keypoint(node_class, dwpose, caplog):
    images = _images([LEFT, RIGHT], [], [LEFT], [])
    with caplog.at_level(logging.WARNING, logger="animate_suite"):
        pose_images, pose_keypoint = _estimate(node_class, dwpose, images)
    assert tuple(pose_images.shape) == (4, 480, 640, 3) and pose_images.dtype == torch.float32
    assert [len(f["people"]) for f in pose_keypoint] == [2, 0, 1, 0]
    assert all((f["canvas_width"], f["canvas_height"]) == (640, 480) for f in pose_keypoint)
    assert "no person found in 2 of 4 frames (0-based): 1, 3" in caplog.text
    person = pose_keypoint[0]["people"][0]
    assert len(person["pose_keypoints_2d"]) == 54
    assert len(person["animate_suite_wholebody"]) == 134 * 3
    assert not pose_images[1].any() and pose_images[0].any()


@pytest.mark.parametrize("convention, shape", [("animateanyone", (512, 704)), ("controlnet_aux", (512, 683)),
                                               ("stableanimator", (480, 640))])
def test_estimator_sizes_per_convention(node_class, dwpose, convention, shape):
    pose_images, pose_keypoint = _estimate(node_class, dwpose, _images([LEFT]), convention)
    assert tuple(pose_images.shape[1:3]) == shape
    assert (pose_keypoint[0]["canvas_width"], pose_keypoint[0]["canvas_height"]) == (640, 480)
    resized, _ = _estimate(node_class, dwpose, _images([LEFT]), convention, width=320, height=0)
    assert tuple(resized.shape[1:3]) == (240, 320)


@pytest.mark.parametrize("channels", [1, 4])
def test_grey_and_alpha_images_are_accepted(node_class, dwpose, channels):
    pose_images, pose_keypoint = _estimate(node_class, dwpose, _images([LEFT], channels=channels))
    assert pose_images.shape[-1] == 3
    # grey: all channels bright, so the person is still found; alpha is dropped
    assert len(pose_keypoint[0]["people"]) == 1


def test_bad_images_give_input_errors(node_class, dwpose, errors):
    with pytest.raises(errors.InputError, match="empty batch"):
        _estimate(node_class, dwpose, torch.zeros(0, 64, 64, 3))
    with pytest.raises(errors.InputError, match="at most 8192 pixels"):
        _estimate(node_class, dwpose, torch.zeros(1, 8, 16384, 3))
    with pytest.raises(errors.InputError, match="channels"):
        _estimate(node_class, dwpose, torch.zeros(1, 8, 8, 2))


def test_missing_model_file_names_the_folders(node_class, comfy, errors):
    with pytest.raises(errors.ModelNotFoundError, match="dwpose"):
        node_class("AnimateSuiteDWPoseLoader").execute("missing.onnx", "dw-ll_ucoco_384.onnx", "cpu")


def test_model_dir_reads_files_from_a_registered_folder_key(node_class, comfy, dwpose_files, tmp_path, errors):
    ckpts = tmp_path / "aux_ckpts"
    target = ckpts / "yzd-v" / "DWPose"
    target.mkdir(parents=True)
    for name in ("yolox_l.onnx", "dw-ll_ucoco_384.onnx"):
        shutil.copy(dwpose_files / name, target / name)
    comfy.folder_paths.add_model_folder_path("aux_ckpts", str(ckpts))  # what an extra_model_paths.yaml key does
    loader = node_class("AnimateSuiteDWPoseLoader")
    model = loader.execute("yolox_l.onnx", "dw-ll_ucoco_384.onnx", "cpu", model_dir="aux_ckpts/yzd-v/DWPose")[0]
    assert model.pose.path.parent == target
    with pytest.raises(errors.InputError, match="leaves the 'aux_ckpts' folder"):
        loader.execute("yolox_l.onnx", "dw-ll_ucoco_384.onnx", "cpu", model_dir="aux_ckpts/../../etc")
    with pytest.raises(errors.InputError, match="not a model folder ComfyUI knows"):
        loader.execute("yolox_l.onnx", "dw-ll_ucoco_384.onnx", "cpu", model_dir="/etc")


def test_render_align_smooth_and_fit_nodes(node_class, dwpose):
    _, reference = _estimate(node_class, dwpose, _images([LEFT]))
    _, driving = _estimate(node_class, dwpose, _images([(80, 100, 180, 300)], [(90, 110, 190, 310)], [(85, 120, 185, 320)]))
    aligned = node_class("AnimateSuiteAlignPose").execute(reference, driving, "global")[0]
    assert len(aligned) == 3 and aligned[0]["canvas_width"] == 640
    smoothed = node_class("AnimateSuiteSmoothPose").execute(aligned, 1, 1.0)[0]
    fitted = node_class("AnimateSuiteFitPose").execute(smoothed, 512, 512, "pad")[0]
    assert (fitted[0]["canvas_width"], fitted[0]["canvas_height"]) == (512, 512)
    images = node_class("AnimateSuiteRenderPose").execute(fitted, "stableanimator", True, True, True, 0, 0)[0]
    assert tuple(images.shape) == (3, 512, 512, 3) and images.any()


def test_render_node_accepts_another_packs_pose_keypoint(node_class):
    body = sum([[100.0 + 10 * i, 200.0 + 5 * i, 1.0] for i in range(18)], [])
    value = [{"people": [{"pose_keypoints_2d": body, "face_keypoints_2d": None,
                          "hand_left_keypoints_2d": None, "hand_right_keypoints_2d": None}],
              "canvas_width": 512, "canvas_height": 512}]
    images = node_class("AnimateSuiteRenderPose").execute(value, "controlnet_aux", True, True, True, 0, 0)[0]
    assert tuple(images.shape) == (1, 512, 512, 3) and images.any()


def test_pose_json_save_and_load(node_class, comfy, dwpose, errors):
    _, pose_keypoint = _estimate(node_class, dwpose, _images([LEFT], []))
    result = node_class("AnimateSuiteSavePoseJSON").execute(pose_keypoint, "tests/poses")
    name = result.ui["text"][0]
    saved = comfy.output / "tests" / name
    assert saved.is_file() and json.loads(saved.read_text()) == json.loads(json.dumps(pose_keypoint))
    shutil.copy(saved, comfy.input / "walk.json")
    assert "walk.json" in node_class("AnimateSuiteLoadPoseJSON").INPUT_TYPES()["required"]["file"][0]
    loaded = node_class("AnimateSuiteLoadPoseJSON").execute("walk.json")[0]
    assert loaded == json.loads(saved.read_text())
    with pytest.raises(errors.InputError, match="outside ComfyUI's input folder"):
        node_class("AnimateSuiteLoadPoseJSON").execute("../output/tests/" + name)
    with pytest.raises(errors.InputError, match="filename_prefix"):
        node_class("AnimateSuiteSavePoseJSON").execute(pose_keypoint, "../../escape")


def test_face_nodes(node_class, comfy, face_pack):
    analysis = node_class("AnimateSuiteFaceAnalysisLoader").execute("buffalo_l", "cpu")[0]
    frames = np.full((2, 480, 640, 3), 40, np.uint8)
    tiny.draw_face(frames[0], 100, 80, 220, 240)
    images = torch.from_numpy(frames).float() / 255.0
    masks = node_class("AnimateSuiteFaceMask").execute(analysis, images, "boxes", 0, 0, "rgb")[0]
    assert tuple(masks.shape) == (2, 480, 640)
    assert masks[0, 80:241, 100:221].min() == 1 and masks[0].sum() == 121 * 161
    assert masks[1].min() == 1  # no face: the whole frame, as StableAnimator does
    hull = node_class("AnimateSuiteFaceMask").execute(analysis, images, "landmark_hull", 4, 2, "rgb")[0]
    assert 0 < hull[0].sum() and hull[1].sum() == 0
    embeds = node_class("AnimateSuiteFaceEmbedding").execute(analysis, images, "rgb")[0]
    assert tuple(embeds.shape) == (2, 512) and embeds.dtype == torch.float32
    assert embeds[0].abs().sum() > 0 and embeds[1].abs().sum() == 0


def test_face_mask_hull_from_dwpose_points(node_class, comfy, face_pack, dwpose):
    analysis = node_class("AnimateSuiteFaceAnalysisLoader").execute("buffalo_l", "cpu")[0]
    images = _images([LEFT])
    _, pose_keypoint = _estimate(node_class, dwpose, images)
    mask = node_class("AnimateSuiteFaceMask").execute(analysis, images, "landmark_hull", 0, 0, "rgb", pose_keypoint)[0]
    face = np.array(pose_keypoint[0]["people"][0]["animate_suite_wholebody"]).reshape(134, 3)[24:92]
    inside = face[face[:, 2] >= 0.3, :2]
    lo, hi = inside.min(0), inside.max(0)
    ys, xs = np.nonzero(mask[0].numpy())
    assert xs.min() >= np.floor(lo[0]) - 1 and xs.max() <= np.ceil(hi[0]) + 1
    assert ys.min() >= np.floor(lo[1]) - 1 and ys.max() <= np.ceil(hi[1]) + 1
    assert mask[0].sum() > 100
