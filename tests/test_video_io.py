"""Save and load animations, through the library and through the nodes."""

import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from comfyui_animate_suite.core import images as image_ops
from comfyui_animate_suite.core import video
from comfyui_animate_suite.core.errors import InputError


def moving_square(frames=6, height=48, width=64):
    """Frames with a white square moving right; each frame differs."""
    clip = np.zeros((frames, height, width, 3), np.uint8)
    for index in range(frames):
        clip[index, 10:30, 4 + 6 * index:24 + 6 * index] = 255
        clip[index, :, :, 2] = (25 * index) % 256
    return clip


@pytest.mark.parametrize("suffix,writer,tolerance", [
    (".gif", lambda f, p: video.write_gif(f, p, fps=10), 12),
    (".webp", lambda f, p: video.write_webp(f, p, fps=10, quality=100), 1),
    (".mp4", lambda f, p: video.write_video(f, p, fps=10, quality=100), 12),
])
def test_write_then_read_keeps_frames_and_fps(tmp_path, suffix, writer, tolerance):
    clip = moving_square()
    path = tmp_path / f"clip{suffix}"
    writer(clip, path)
    frames, fps = video.read_frames(path, video.DecodeOptions())
    assert frames.shape == clip.shape
    assert fps == pytest.approx(10, rel=0.02)
    assert np.abs(frames.astype(int) - clip.astype(int)).mean() < tolerance


def test_mp4_pads_odd_sizes_and_stores_metadata(tmp_path):
    import av

    path = tmp_path / "odd.mp4"
    video.write_video(moving_square(height=47, width=63), path, fps=8, metadata={"prompt": "{}"})
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.width, stream.height) == ("h264", 64, 48)
        assert container.metadata.get("prompt") == "{}"


def test_png_sequence_and_frame_folder_round_trip(tmp_path):
    clip = moving_square()
    paths = video.write_png_sequence(clip, tmp_path / "seq", "f")
    assert [p.name for p in paths][:2] == ["f_00000.png", "f_00001.png"]
    frames, fps = video.read_frames(tmp_path / "seq", video.DecodeOptions(), folder_fps=12)
    assert np.array_equal(frames, clip) and fps == 12


def test_write_frames_picks_the_format_by_suffix(tmp_path):
    clip = moving_square(frames=3)
    for name, header in (("a.gif", b"GIF8"), ("a.webp", b"RIFF"), ("a.MOV", None), ("a.mp4", None)):
        assert video.write_frames(clip, tmp_path / name, 10.0) == [tmp_path / name]
        if header:
            assert (tmp_path / name).read_bytes()[:4] == header
        else:
            assert b"ftyp" in (tmp_path / name).read_bytes()[:16]
    written = video.write_frames(clip, tmp_path / "frames", 10.0, png_stem="f")
    assert [p.name for p in written] == ["f_00000.png", "f_00001.png", "f_00002.png"]
    assert np.array_equal(video.read_frames(tmp_path / "frames", video.DecodeOptions())[0], clip)
    video.write_frames(clip, tmp_path / "lossless.webp", 10.0, webp_quality=100)
    assert np.array_equal(video.read_frames(tmp_path / "lossless.webp", video.DecodeOptions())[0], clip)


def test_frame_folder_is_read_in_natural_order(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in (1, 2, 10):
        Image.fromarray(np.full((4, 4, 3), index, np.uint8)).save(folder / f"frame{index}.png")
    frames, _ = video.read_frames(folder, video.DecodeOptions())
    assert [int(f[0, 0, 0]) for f in frames] == [1, 2, 10]


def test_cap_stride_skip_select_frames_and_adjust_fps(tmp_path):
    clip = moving_square(frames=10)
    video.write_png_sequence(clip, tmp_path / "seq", "f")
    options = video.DecodeOptions(frame_cap=3, stride=2, skip_first=1)
    frames, fps = video.read_frames(tmp_path / "seq", options, folder_fps=10)
    assert np.array_equal(frames, clip[[1, 3, 5]])
    assert fps == 5


def test_bad_decode_options_and_files_are_clear(tmp_path):
    with pytest.raises(InputError, match="stride"):
        video.DecodeOptions(stride=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no image files"):
        video.read_frames(tmp_path / "empty", video.DecodeOptions())
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(InputError, match="not a supported video"):
        video.read_frames(tmp_path / "x.txt", video.DecodeOptions())
    clip = moving_square()
    video.write_png_sequence(clip, tmp_path / "seq", "f")
    with pytest.raises(InputError, match="no frames left"):
        video.read_frames(tmp_path / "seq", video.DecodeOptions(skip_first=50))


@pytest.mark.parametrize("mode", image_ops.RESIZE_MODES)
def test_resize_modes(mode):
    image = torch.zeros(1, 20, 40, 3)
    image[:, :, 10:30] = 1.0  # a white centre band on a 2:1 image
    out = image_ops.resize_batch(image, 20, 20, mode)
    assert out.shape == (1, 20, 20, 3)
    if mode == "crop":
        assert out.mean() == pytest.approx(1.0)  # the centre fills the square
    elif mode == "pad":
        assert out[0, :5].max() == 0 and out[0, 10, 10].min() == pytest.approx(1.0)
    else:
        assert out[0, 10, 10].min() == pytest.approx(1.0) and out[0, 10, 0].max() == 0


def test_frame_resizer_follows_the_aspect_for_a_missing_side():
    frame = moving_square(frames=1)[0]  # 64 x 48
    assert image_ops.frame_resizer(0, 0, "crop") is None
    assert image_ops.frame_resizer(32, 0, "crop")(frame).shape == (24, 32, 3)
    assert image_ops.frame_resizer(0, 96, "pad")(frame).shape == (96, 128, 3)
    stretched = image_ops.frame_resizer(20, 20, "stretch")(frame)
    expected = image_ops.to_uint8(image_ops.resize_batch(image_ops.from_uint8(frame), 20, 20, "stretch"))[0]
    assert stretched.dtype == np.uint8 and np.array_equal(stretched, expected)


def test_image_batch_checks():
    assert image_ops.check_image_batch(torch.rand(2, 8, 8, 1)).shape == (2, 8, 8, 3)
    assert image_ops.check_image_batch(torch.rand(2, 8, 8, 4)).shape == (2, 8, 8, 3)
    with pytest.raises(InputError, match="empty batch"):
        image_ops.check_image_batch(torch.rand(0, 8, 8, 3))
    with pytest.raises(InputError, match="at most"):
        image_ops.check_image_batch(torch.zeros(1, 4, 16385, 3))
    with pytest.raises(InputError, match="channels"):
        image_ops.check_image_batch(torch.rand(1, 8, 8, 2))


def test_pil_alpha_is_composited_on_black():
    rgba = Image.new("RGBA", (2, 2), (200, 100, 50, 0))
    assert image_ops.pil_to_uint8(rgba).max() == 0


# ---------------------------------------------------------------- through the nodes


@pytest.mark.parametrize("fmt", ["gif", "webp", "mp4", "png"])
def test_save_node_writes_into_output_and_reports_ui(comfy, node_class, fmt):
    images = image_ops.from_uint8(moving_square())
    hidden = SimpleNamespace(prompt={"1": {}}, extra_pnginfo={"workflow": {}})  # what ComfyUI hands an output node
    node = type("SaveInAJob", (node_class("AnimateSuiteSaveAnimation"),), {"hidden": hidden})
    result = node.execute(images, 10.0, f"tests/{fmt}", fmt, 0, 90)
    if fmt == "gif":  # previewed by the pack's web extension: the front end would show it as a broken <video>
        assert set(result.ui) == {"animate_suite_gif"}
        entries = result.ui["animate_suite_gif"]
    else:
        entries = result.ui["images"]
        assert result.ui["animated"] == (fmt != "png",)
    assert len(entries) == (6 if fmt == "png" else 1)
    for entry in entries:
        path = Path(comfy.output) / entry["subfolder"] / entry["filename"]
        assert path.is_file() and entry["type"] == "output"
    if fmt != "png":
        frames, fps = video.read_frames(Path(comfy.output) / entries[0]["subfolder"] / entries[0]["filename"], video.DecodeOptions())
        assert len(frames) == 6 and fps == pytest.approx(10, rel=0.02)


def test_save_node_never_overwrites(comfy, node_class):
    node = node_class("AnimateSuiteSaveAnimation")
    images = image_ops.from_uint8(moving_square(frames=2))
    first = node.execute(images, 8.0, "tests/same", "gif", 0, 80).ui["animate_suite_gif"][0]["filename"]
    second = node.execute(images, 8.0, "tests/same", "gif", 0, 80).ui["animate_suite_gif"][0]["filename"]
    assert first != second


def test_save_node_refuses_to_write_outside_output(comfy, node_class):
    node = node_class("AnimateSuiteSaveAnimation")
    with pytest.raises(Exception, match="outside the output folder"):
        node.execute(image_ops.from_uint8(moving_square(frames=2)), 8.0, "../../escape", "gif", 0, 80)


def test_save_node_executes_through_the_runtime(comfy, run_node):
    images = image_ops.from_uint8(moving_square(frames=3))
    output = run_node("AnimateSuiteSaveAnimation", images=images, fps=6.0, filename_prefix="tests/runtime",
                      format="gif", loop=0, quality=80)
    assert output is None  # an output node with no outputs: only its UI message, which the runtime drops
    assert list((Path(comfy.output) / "tests").glob("runtime_*.gif"))


def test_load_node_reads_video_with_cap_stride_and_resize(comfy, run_node, node_class):
    video.write_video(moving_square(frames=8), Path(comfy.input) / "square.mp4", fps=16, quality=100)
    assert "square.mp4" in node_class("AnimateSuiteLoadVideo").INPUT_TYPES()["required"]["video"][1]["options"]
    images, fps, count = run_node("AnimateSuiteLoadVideo", video="square.mp4", frame_cap=3, stride=2, skip_first=0,
                                  width=32, height=0, resize_mode="crop", folder_fps=8.0)
    assert images.shape == (3, 24, 32, 3) and images.dtype == torch.float32
    assert fps == pytest.approx(8, rel=0.02) and count == 3


def test_load_node_lists_and_reads_frame_folders(comfy, run_node, node_class):
    video.write_png_sequence(moving_square(frames=4), Path(comfy.input) / "square_frames", "f")
    assert "square_frames" in node_class("AnimateSuiteLoadVideo").INPUT_TYPES()["required"]["video"][1]["options"]
    images, fps, count = run_node("AnimateSuiteLoadVideo", video="square_frames", frame_cap=0, stride=1,
                                  skip_first=0, width=0, height=0, resize_mode="crop", folder_fps=12.0)
    assert images.shape == (4, 48, 64, 3) and fps == 12 and count == 4


def test_load_node_never_leaves_the_input_folder(comfy, node_class):
    cls = node_class("AnimateSuiteLoadVideo")
    for name in ("../output", "/etc", "../../x.mp4", "."):
        assert "outside" in str(cls.validate_inputs(name)) or "does not exist" in str(cls.validate_inputs(name))
    assert "does not exist" in cls.validate_inputs("missing.mp4")


def test_frames_to_video_reports_missing_core_type_clearly(comfy, node_class):
    node = node_class("AnimateSuiteFramesToVideo")
    try:
        from comfy_api.input_impl import VideoFromComponents  # noqa: F401
        from comfy_api.util import VideoComponents  # noqa: F401
    except ImportError:
        with pytest.raises(comfy.module("core.errors").InputError, match="no core VIDEO type"):
            node.execute(torch.rand(2, 8, 8, 3), 8.0)
        return
    video_value = node.execute(torch.rand(2, 8, 8, 3), 8.0)[0]
    frames, fps = node_class("AnimateSuiteVideoToFrames").execute(video_value)
    assert frames.shape == (2, 8, 8, 3) and fps == 8.0
