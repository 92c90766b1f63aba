"""`prepare animate-anyone` with the pack's DWPose renderer, on the tiny DWPose ONNX graphs: pose videos
drawn as AnimateAnyone was trained on, models found through the registry, a meta file the datasets read."""

import json

import numpy as np
import pytest

from comfyui_animate_suite import cli
from comfyui_animate_suite.pipelines.animate_anyone.training_data import AnimateAnyoneClips
from comfyui_animate_suite.core.video import DecodeOptions, read_frames, write_video
from comfyui_animate_suite.pose.training import build_pose_renderer
from tiny_models import pose as tiny_pose

# The tiny graphs see a person where the first channel they are fed is > 200. AnimateAnyone feeds DWPose
# BGR frames, so a person must be bright in blue; a red one stays invisible to it.
BLUE, RED = (40, 40, 255), (255, 40, 40)
BACKGROUND = 60
MARGIN = 6  # joint radius 4 and limb half-width 4 around keypoints, which all lie inside the person's box
# 640x512 frames: AnimateAnyone's 512-short-side canvas is the frame itself, so colours arrive unscaled.
BOXES = [(60, 40, 200, 400), (90, 60, 250, 440), (120, 50, 280, 430)]
SECOND_PERSON = (400, 100, 560, 460)  # in the detector's right half


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    tiny_pose.build_dwpose(root / "dwpose" / "yzd-v")  # one sub-folder down, as users group model files
    return root


def frames_of(people, height=512, width=640):
    """One frame per entry: a list of (box, colour) people on a dark background."""
    frames = np.full((len(people), height, width, 3), BACKGROUND, np.uint8)
    for frame, persons in zip(frames, people):
        for box, colour in persons:
            tiny_pose.draw_person(frame, *box, color=colour)
    return frames


def drawn_extent(pose: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(pose.any(axis=-1))
    return xs.min(), ys.min(), xs.max(), ys.max()


def within(extent, box) -> bool:
    (left, top, right, bottom), (x1, y1, x2, y2) = extent, box
    return x1 - MARGIN <= left and right <= x2 + MARGIN and y1 - MARGIN <= top and bottom <= y2 + MARGIN


def test_pose_images_are_the_best_person_drawn_in_animateanyones_style(models_dir):
    renderer = build_pose_renderer({"models_dir": str(models_dir), "device": "cpu"})
    people = [[(box, BLUE)] for box in BOXES] + [[(BOXES[0], BLUE), (SECOND_PERSON, BLUE)], [(BOXES[0], RED)]]
    frames = frames_of(people)
    poses = renderer(frames)
    assert poses.shape == frames.shape and poses.dtype == np.uint8
    extents = [drawn_extent(pose) for pose in poses[:4]]
    assert all(within(extent, box) for extent, box in zip(extents, BOXES))
    assert len(set(extents[:3])) == 3  # the drawing follows the person
    # Two people: only the best one is drawn, as AnimateAnyone's renderer does (controlnet_aux draws both).
    assert within(extents[3], BOXES[0]) != within(extents[3], SECOND_PERSON)
    assert not poses[4].any()  # nobody seen: a black pose frame
    for pose in poses[:4]:
        colours = {tuple(int(c) for c in colour) for colour in np.unique(pose.reshape(-1, 3), axis=0)}
        # Moore-AnimateAnyone's drawing: limbs at 60% (the first limb's red 255 -> 153), joints at full
        # colour (the nose: red), hand joints blue, face points white.
        assert {(153, 0, 0), (255, 0, 0), (0, 0, 255), (255, 255, 255)} <= colours, sorted(colours)[:8]


def write_clips(folder, count=2, frames=4, height=96, width=128):
    """Clips with a blue person walking right, in what becomes the detector's left half."""
    folder.mkdir(parents=True)
    boxes = []
    for index in range(count):
        clip_boxes = [(8 + 4 * f + 2 * index, 12, 40 + 4 * f + 2 * index, 84) for f in range(frames)]
        write_video(frames_of([[(box, BLUE)] for box in clip_boxes], height, width), folder / f"dance{index}.mp4", fps=8)
        boxes.append(clip_boxes)
    return boxes


def test_prepare_writes_pose_videos_of_the_clips_and_a_meta_file_the_dataset_reads(models_dir, tmp_path, capsys):
    videos = tmp_path / "ubc_fashion"
    boxes = write_clips(videos)
    assert cli.main(["prepare", "animate-anyone", str(videos), "--models-dir", str(models_dir), "--device", "cpu"]) == 0
    meta = json.loads((tmp_path / "ubc_fashion_meta.json").read_text())
    assert [entry["kps_path"] for entry in meta] == [str(tmp_path / "ubc_fashion_dwpose" / f"dance{i}.mp4") for i in (0, 1)]
    for entry, clip_boxes in zip(meta, boxes):
        poses, _ = read_frames(entry["kps_path"], DecodeOptions())
        assert poses.shape == (4, 96, 128, 3)
        for pose, (x1, y1, x2, y2) in zip(poses, clip_boxes):
            inside = pose[y1:y2 + 1, x1:x2 + 1]
            outside = pose.copy()
            outside[max(0, y1 - 4):y2 + 5, max(0, x1 - 4):x2 + 5] = 0
            assert inside.max() > 100 and outside.max() < 40  # a skeleton on the person, black elsewhere
    dataset = AnimateAnyoneClips([tmp_path / "ubc_fashion_meta.json"], 32, 32, n_sample_frames=3, clip_size=16)
    sample = dataset.sample(1, np.random.default_rng(0))
    assert sample["pose"].shape == (3, 3, 32, 32) and sample["pose"].max() > 0.3


def test_prepare_names_the_missing_pose_models(tmp_path, capsys):
    write_clips(tmp_path / "clips", count=1, frames=2)
    assert cli.main(["prepare", "animate-anyone", str(tmp_path / "clips"), "--models-dir", str(tmp_path / "models")]) == 2
    error = capsys.readouterr().err
    assert "yolox_l.onnx" in error and str(tmp_path / "models" / "dwpose") in error
    with pytest.raises(Exception, match="when_no_person"):
        build_pose_renderer({"models_dir": str(tmp_path), "when_no_person": "guess"})
