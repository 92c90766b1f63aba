"""Live Photo pairs, read back with exiftool and ffprobe (independent readers) and decoded."""

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import testlib
from comfyui_animate_suite.core import livephoto

UUID = re.compile(r"^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$")


def _clip(frames=10, height=36, width=52):
    clip = np.zeros((frames, height, width, 3), np.uint8)
    for index in range(frames):
        clip[index, 8:24, 2 + 4 * index:18 + 4 * index] = 255
        clip[index, ..., 1] = 20 * index
    return clip


def _exiftool(*args) -> dict:
    out = subprocess.run([testlib.require_tool("exiftool"), "-j", "-a", "-G1", *map(str, args)],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return json.loads(out)[0]


def _jpeg_identifier(info: dict) -> str:
    # Tag 0x0011 of Apple's MakerNote: "ContentIdentifier" (exiftool >= 12.59), "MediaGroupUUID" before.
    return info.get("Apple:ContentIdentifier") or info.get("Apple:MediaGroupUUID")


def _ffprobe(path: Path) -> dict:
    out = subprocess.run([testlib.require_tool("ffprobe"), "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return json.loads(out)


def _decoded_frames(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])])


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("live")
    clip = _clip()
    identifier = livephoto.write_live_photo(clip, 8.0, clip[4], folder / "p.jpg", folder / "p.mov", still_frame=4,
                                            quality=95, metadata={"prompt": '{"1": {}}'})
    return folder / "p.jpg", folder / "p.mov", identifier, clip


def test_both_files_carry_the_same_content_identifier(pair):
    jpeg, mov, identifier, _ = pair
    assert UUID.match(identifier)
    assert _jpeg_identifier(_exiftool(jpeg)) == identifier
    assert _exiftool(mov)["Keys:ContentIdentifier"] == identifier


def test_movie_has_a_still_image_time_track_at_the_still(pair):
    _, mov, _, _ = pair
    info = _exiftool("-ee", mov)
    assert info["Track2:MetaFormat"] == "mebx"
    assert info["Track2:StillImageTime"] == -1
    assert info["Track2:ContentDescribes"] == "Track 1"
    streams = _ffprobe(mov)["streams"]
    assert [s["codec_tag_string"] for s in streams] == ["avc1", "mebx"]
    assert streams[0]["codec_name"] == "h264"
    # The still sits at frame 4 of 8 fps: the metadata track starts after an empty edit of 0.5 s.
    assert float(streams[1]["start_time"]) == pytest.approx(0.5, abs=1e-3)


def test_movie_is_playable_and_keeps_frames_and_metadata(pair):
    _, mov, identifier, clip = pair
    subprocess.run([testlib.require_tool("ffmpeg"), "-v", "error", "-xerror", "-i", str(mov), "-map", "0:v", "-f", "null", "-"],
                   check=True, timeout=60, capture_output=True)
    frames = _decoded_frames(mov)
    assert frames.shape == clip.shape
    assert np.abs(frames.astype(int) - clip.astype(int)).mean() < 8
    tags = _ffprobe(mov)["format"]["tags"]
    assert tags["com.apple.quicktime.content.identifier"] == identifier
    assert tags["prompt"] == '{"1": {}}'  # metadata ffmpeg put in moov/udta/meta moved to moov/meta


def test_still_is_the_chosen_frame(pair):
    from PIL import Image

    jpeg, _, _, clip = pair
    still = np.asarray(Image.open(jpeg).convert("RGB")).astype(int)
    errors = [np.abs(still - frame.astype(int)).mean() for frame in clip]
    assert int(np.argmin(errors)) == 4


def test_boxes_are_well_formed_and_the_sample_is_in_the_file(pair):
    _, mov, _, _ = pair
    data = mov.read_bytes()
    top = list(livephoto._boxes(data, 0, len(data)))
    assert [b.kind for b in top][-1] == b"moov" and top[-1].end == len(data)
    moov = top[-1]
    kinds = [b.kind for b in livephoto._boxes(data, moov.payload_start, moov.end)]
    assert kinds.count(b"trak") == 2 and b"meta" in kinds
    stco = livephoto._path(data, [b for b in livephoto._boxes(data, moov.payload_start, moov.end) if b.kind == b"trak"][1],
                           b"mdia", b"minf", b"stbl", b"stco")
    offset = int.from_bytes(data[stco.payload_start + 8:stco.payload_start + 12], "big")
    assert data[offset:offset + 9] == livephoto.still_image_time_sample()


def test_a_movie_without_moov_is_refused():
    with pytest.raises(ValueError, match="no moov"):
        livephoto.add_live_photo_metadata(b"\x00\x00\x00\x08free", "X", 0.0)


def test_save_live_photo_node_writes_a_pair_per_run(comfy, run_node):
    frames = torch.from_numpy(_clip(frames=6)).float() / 255
    first = run_node("AnimateSuiteSaveLivePhoto", images=frames, fps=6.0, filename_prefix="tests/live", still_frame=-1, quality=90)
    second = run_node("AnimateSuiteSaveLivePhoto", images=frames, fps=6.0, filename_prefix="tests/live", still_frame=0, quality=90,
                      still_image=torch.ones(1, 20, 20, 3))
    assert first[0] != second[0]
    folder = Path(comfy.output) / "tests"
    jpegs, movs = sorted(folder.glob("live_*.jpg")), sorted(folder.glob("live_*.mov"))
    assert len(jpegs) == len(movs) == 2
    for jpeg, mov, identifier in zip(jpegs, movs, (first[0], second[0])):
        assert jpeg.stem == mov.stem
        assert _jpeg_identifier(_exiftool(jpeg)) == identifier == _exiftool(mov)["Keys:ContentIdentifier"]
    from PIL import Image

    assert np.asarray(Image.open(jpegs[1])).min() > 240  # the still_image input (white), not a frame


def test_save_live_photo_node_returns_both_files_for_the_ui(comfy, node_class):
    node = node_class("AnimateSuiteSaveLivePhoto")
    out = node.execute(torch.rand(3, 16, 16, 3), 5.0, "tests/ui", 1, 80)
    files = out.ui["live_photo"]
    assert [f["filename"][-4:] for f in files] == [".jpg", ".mov"]
    assert out.ui["images"] == files[:1] and out.result[0] == out.ui["content_identifier"][0]
    errors = comfy.module("core.errors")
    with pytest.raises(errors.InputError, match="still_frame"):
        node.execute(torch.rand(3, 16, 16, 3), 5.0, "tests/ui", 3, 80)
