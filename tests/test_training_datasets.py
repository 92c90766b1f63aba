"""Training datasets and the sample stream: layouts, frame choice, crops, determinism, clear errors."""

import csv
import json
import math

import numpy as np
import pytest
import torch

from comfyui_animate_suite.pipelines.animate_anyone import training_data as pose_datasets
from comfyui_animate_suite.pipelines.easyanimate import training_data as media_datasets
from comfyui_animate_suite.pipelines.training import datasets, sampling
from comfyui_animate_suite.pipelines.training.datasets import DatasetError
from comfyui_animate_suite.core.video import write_video
from tiny_models import training as tiny


@pytest.fixture(scope="module")
def pose_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pose_data")
    tiny.write_pose_dataset(folder, count=2, frames=12, size=32)
    return folder


@pytest.fixture(scope="module")
def media_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("media_data")
    tiny.write_media_dataset(folder, frames=8, size=32, with_image=True)
    write_video(tiny.moving_square(6, 48, (200, 200, 40))[:, :32], folder / "wide.mp4", fps=8)  # 48x32
    return folder


# --- frame choice ------------------------------------------------------------------------------------


def test_stage1_reference_and_target_are_a_margin_apart():
    for seed in range(300):
        reference, target = pose_datasets.reference_and_target_indices(100, 30, np.random.default_rng(seed))
        assert 0 <= reference < 100 and 0 <= target < 100
        assert abs(target - reference) >= 30
    seen = {pose_datasets.reference_and_target_indices(10, 30, np.random.default_rng(s)) for s in range(100)}
    assert all(0 <= r < 10 and 0 <= t < 10 for r, t in seen)  # too short for the margin: any two frames


def test_stage2_clip_indices_use_the_stride_or_spread_over_a_short_video():
    for seed in range(50):
        indices = datasets.clip_indices(200, 24, 4, np.random.default_rng(seed))
        assert len(indices) == 24 and set(np.diff(indices)) == {4} and indices[-1] < 200
    short = datasets.clip_indices(50, 24, 4, np.random.default_rng(0))
    assert short[0] == 0 and short[-1] == 49 and len(short) == 24


def test_random_resized_crop_respects_area_and_aspect_ranges():
    for seed in range(200):
        crop = datasets.random_resized_crop(300, 200, (0.5, 1.0), (0.75, 1.33), np.random.default_rng(seed))
        assert 0 <= crop.top and crop.top + crop.height <= 300 and 0 <= crop.left and crop.left + crop.width <= 200
        assert 0.5 - 0.02 <= crop.height * crop.width / 60000 <= 1.0
        assert 0.75 - 0.02 <= crop.width / crop.height <= 1.33 + 0.02
    # no try can fit a 2:1 crop into a tall image: the central fallback clamps the aspect
    fallback = datasets.random_resized_crop(100, 20, (1.0, 1.0), (2.0, 2.0), np.random.default_rng(0))
    assert (fallback.width, fallback.height) == (20, 10) and fallback.top == 45


def test_clip_preprocess_matches_clip_image_processor_defaults():
    frame = np.random.default_rng(0).integers(0, 256, (40, 64, 3), dtype=np.uint8)
    pixels = datasets.clip_preprocess(frame, 16)
    assert pixels.shape == (3, 16, 16)
    from PIL import Image

    resized = np.asarray(Image.fromarray(frame).resize((26, 16), Image.BICUBIC), np.float32) / 255.0
    centre = resized[:, 5:21]
    expected = (centre - np.array(datasets.CLIP_MEAN, np.float32)) / np.array(datasets.CLIP_STD, np.float32)
    np.testing.assert_allclose(pixels.numpy(), expected.transpose(2, 0, 1), atol=1e-6)


# --- AnimateAnyone datasets --------------------------------------------------------------------------


def test_stage1_sample_layout_and_one_crop_for_target_and_pose(pose_data):
    dataset = pose_datasets.AnimateAnyoneFramePairs([pose_data / "meta.json"], width=24, height=16, sample_margin=3,
                                                    crop_scale=(0.6, 1.0), crop_ratio=(0.8, 1.2), clip_size=32)
    assert len(dataset) == 2
    for seed in range(4):
        sample = dataset.sample(seed % 2, np.random.default_rng(seed))
        assert sample["pixels"].shape == sample["reference"].shape == (3, 16, 24)
        assert sample["pose"].shape == (3, 16, 24) and sample["clip_reference"].shape == (3, 32, 32)
        assert -1 <= sample["pixels"].min() and sample["pixels"].max() <= 1 and sample["pose"].min() >= 0
        # the pose video marks the square: after the shared crop the marker still sits on the square
        assert _centroid(sample["pixels"].amax(dim=0) > 0) == pytest.approx(_centroid(sample["pose"].amax(dim=0) > 0.5), abs=1.0)


def _centroid(mask):
    rows, cols = torch.nonzero(mask, as_tuple=True)
    assert len(rows) > 0
    return rows.float().mean().item(), cols.float().mean().item()


def test_stage2_sample_layout(pose_data):
    dataset = pose_datasets.AnimateAnyoneClips([pose_data / "meta.json"], width=32, height=32, n_sample_frames=4,
                                               sample_rate=3, crop_scale=(1.0, 1.0), crop_ratio=(0.9, 1.0),
                                               clip_size=32)
    sample = dataset.sample(1, np.random.default_rng(0))
    assert sample["pixels"].shape == sample["pose"].shape == (4, 3, 32, 32)
    assert sample["reference"].shape == (3, 32, 32)
    again = dataset.sample(1, np.random.default_rng(0))
    assert all(torch.equal(sample[k], again[k]) for k in ("pixels", "pose", "reference", "clip_reference"))


def test_missing_files_are_named(tmp_path, pose_data):
    meta = json.loads((pose_data / "meta.json").read_text())
    meta.append({"video_path": str(tmp_path / "gone.mp4"), "kps_path": meta[0]["kps_path"]})
    path = tmp_path / "meta.json"
    path.write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="gone.mp4.*entry 2, video_path"):
        pose_datasets.AnimateAnyoneFramePairs([path], 32, 32)
    path.write_text(json.dumps({"video_path": "x"}))
    with pytest.raises(DatasetError, match="not a list"):
        pose_datasets.AnimateAnyoneFramePairs([path], 32, 32)
    with pytest.raises(DatasetError, match="nowhere.json"):
        pose_datasets.AnimateAnyoneFramePairs([tmp_path / "nowhere.json"], 32, 32)


def test_unreadable_and_mismatched_videos_are_named(tmp_path, pose_data):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    short = tmp_path / "short_kps.mp4"
    write_video(np.zeros((5, 32, 32, 3), np.uint8), short, fps=8)
    good = json.loads((pose_data / "meta.json").read_text())[0]["video_path"]
    path = tmp_path / "meta.json"
    path.write_text(json.dumps([{"video_path": good, "kps_path": str(short)}]))
    with pytest.raises(DatasetError, match=r"has 12 frames but its pose video '.*short_kps.mp4' has 5"):
        pose_datasets.AnimateAnyoneFramePairs([path], 32, 32).sample(0, np.random.default_rng(0))
    path.write_text(json.dumps([{"video_path": str(broken), "kps_path": str(broken)}]))
    with pytest.raises(DatasetError, match="broken.mp4"):
        pose_datasets.AnimateAnyoneClips([path], 32, 32).sample(0, np.random.default_rng(0))


# --- EasyAnimate dataset -----------------------------------------------------------------------------


def test_json_layout_with_videos_and_an_image(media_data):
    dataset = media_datasets.EasyAnimateMedia(media_data / "metadata.json", media_data, video_size=16, image_size=16,
                                              sample_stride=2, sample_n_frames=3, video_repeat=2)
    assert [e.kind for e in dataset.entries] == ["video", "video", "image"] + ["video", "video"] * 2
    video_sample = dataset.sample(0, np.random.default_rng(0))
    assert video_sample["pixels"].shape == (3, 3, 16, 16) and video_sample["kind"] == "video"
    assert video_sample["text"] == "a red square slides right"
    image_sample = dataset.sample(2, np.random.default_rng(0))
    assert image_sample["pixels"].shape == (1, 3, 16, 16) and dataset.group_of(2) == "image"


def test_csv_layouts_and_kind_from_suffix(media_data, tmp_path):
    with (tmp_path / "plain.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_path", "text"])
        writer.writerow(["videos/00000000.mp4", "red"])
        writer.writerow(["still.png", "blue"])
    entries = media_datasets.read_media_meta(tmp_path / "plain.csv", media_data)
    assert [(e.path.name, e.text, e.kind) for e in entries] == [("00000000.mp4", "red", "video"), ("still.png", "blue", "image")]
    with (tmp_path / "webvid.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["videoid", "name", "page_dir"])
        writer.writerow(["00000001", "green", "x"])
    (entry,) = media_datasets.read_media_meta(tmp_path / "webvid.csv", media_data / "videos")
    assert entry.path == media_data / "videos" / "00000001.mp4" and entry.text == "green" and entry.kind == "video"


def test_easyanimate_errors_name_the_file(media_data, tmp_path):
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps([{"file_path": "videos/missing.mp4", "text": "x"}]))
    with pytest.raises(DatasetError, match=r"missing.mp4' \(entry 0\)"):
        media_datasets.read_media_meta(meta, media_data)
    meta.write_text(json.dumps([{"path": "a.mp4"}]))
    with pytest.raises(DatasetError, match="neither file_path"):
        media_datasets.read_media_meta(meta, media_data)
    meta.write_text(json.dumps([{"file_path": "still.png", "text": "x", "type": "audio"}]))
    with pytest.raises(DatasetError, match="type 'audio'"):
        media_datasets.read_media_meta(meta, media_data)


def test_video_crops(media_data, tmp_path):
    meta = tmp_path / "wide.json"
    meta.write_text(json.dumps([{"file_path": "wide.mp4", "text": "wide"}]))
    centre = media_datasets.EasyAnimateMedia(meta, media_data, video_size=16, sample_n_frames=2, sample_stride=1)
    sample = centre.sample(0, np.random.default_rng(0))["pixels"]
    assert sample.shape == (2, 3, 16, 16)
    randomised = media_datasets.EasyAnimateMedia(meta, media_data, video_size=16, sample_n_frames=2, sample_stride=1,
                                                 video_crop="random", min_crop_f=0.5, max_crop_f=0.6)
    crops = [randomised.sample(0, np.random.default_rng(s))["pixels"] for s in range(3)]
    assert all(c.shape == (2, 3, 16, 16) for c in crops)
    assert not torch.equal(crops[0], crops[1])


def test_caption_dropout_rate(media_data, tmp_path):
    meta = tmp_path / "images.json"
    meta.write_text(json.dumps([{"file_path": "still.png", "text": "a blue square"}]))
    dataset = media_datasets.EasyAnimateMedia(meta, media_data, image_size=8, text_drop_ratio=0.1)
    dropped = [dataset.sample(0, sampling.numpy_rng(5, sampling.DATA, p))["text"] == "" for p in range(1500)]
    assert abs(np.mean(dropped) - 0.1) < 4 * math.sqrt(0.1 * 0.9 / 1500)


# --- the sample stream -------------------------------------------------------------------------------


def _positions(sampler, rounds):
    out = []
    for batch, _ in zip(iter(sampler), range(rounds)):
        out.append([position for _, position in batch])
    return out


def test_one_process_with_batch_two_sees_what_two_processes_with_batch_one_see():
    single = _positions(sampling.StreamBatchSampler(5, 2, seed=3), 6)
    rank0 = _positions(sampling.StreamBatchSampler(5, 1, seed=3, rank=0, world_size=2), 6)
    rank1 = _positions(sampling.StreamBatchSampler(5, 1, seed=3, rank=1, world_size=2), 6)
    assert single == [a + b for a, b in zip(rank0, rank1)]
    items = [item for batch, _ in zip(iter(sampling.StreamBatchSampler(5, 5, seed=3)), range(3)) for item, _ in batch]
    assert sorted(items[:5]) == sorted(items[5:10]) == list(range(5)) and items[:5] != items[5:10]  # reshuffled


def test_resuming_the_stream_continues_where_it_stopped():
    full = list(zip(iter(sampling.StreamBatchSampler(7, 3, seed=1, rank=1, world_size=2)), range(8)))
    resumed = list(zip(iter(sampling.StreamBatchSampler(7, 3, seed=1, rank=1, world_size=2, start_round=5)), range(3)))
    assert [b for b, _ in full[5:]] == [b for b, _ in resumed]
    kinds = {0: "video", 1: "image", 2: "video", 3: "video", 4: "image"}
    grouped = list(zip(iter(sampling.StreamBatchSampler(5, 2, seed=0, group_of=kinds.get)), range(6)))
    assert all(len({kinds[item] for item, _ in batch}) == 1 for batch, _ in grouped)
    later = list(zip(iter(sampling.StreamBatchSampler(5, 2, seed=0, group_of=kinds.get, start_round=4)), range(2)))
    assert [b for b, _ in grouped[4:]] == [b for b, _ in later]


def test_samples_do_not_depend_on_the_number_of_loader_workers(pose_data):
    dataset = pose_datasets.AnimateAnyoneFramePairs([pose_data / "meta.json"], 16, 16, sample_margin=3, clip_size=16)

    def first_batches(workers):
        loader = torch.utils.data.DataLoader(sampling.SampleKeyDataset(dataset, 9), num_workers=workers,
                                             batch_sampler=sampling.StreamBatchSampler(len(dataset), 2, seed=9))
        return [batch for batch, _ in zip(loader, range(2))]

    for a, b in zip(first_batches(0), first_batches(2)):
        assert torch.equal(a["pixels"], b["pixels"]) and torch.equal(a["position"], b["position"])


# --- the video helpers the datasets use ---------------------------------------------------------------


def test_count_frames_and_read_frames_at_agree_with_full_decoding(tmp_path):
    from PIL import Image

    from comfyui_animate_suite.core import video

    clip = tiny.moving_square(7, 32, (250, 120, 10))
    write_video(clip, tmp_path / "clip.mp4", fps=8)
    video.write_gif(clip, tmp_path / "clip.gif", fps=8)
    (tmp_path / "frames").mkdir()
    for index, frame in enumerate(clip):
        Image.fromarray(frame).save(tmp_path / "frames" / f"f{index}.png")
    for path in (tmp_path / "clip.mp4", tmp_path / "clip.gif", tmp_path / "frames"):
        everything, _ = video.read_frames(path, video.DecodeOptions())
        assert video.count_frames(path) == len(everything) == 7
        picked = video.read_frames_at(path, [5, 1, 1, 6])
        assert np.array_equal(picked, everything[[5, 1, 1, 6]])
        with pytest.raises(Exception, match="fewer than 8 frames"):
            video.read_frames_at(path, [7])
