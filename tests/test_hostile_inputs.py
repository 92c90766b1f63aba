"""Hostile, corrupt and impossible inputs (issue 16): each ends in one line naming the input, never a
traceback, and nothing is read or written outside the folder it belongs to."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest

import clipart_testlib as lib
from comfyui_animate_suite.core import video as video_io
from comfyui_animate_suite.core.errors import InputError
from comfyui_animate_suite.svg import rigfiles
from comfyui_animate_suite.svg.document import parse_svg
from comfyui_animate_suite.svg.pathdata import arc_to_cubics, parse_path_data

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _cubic_points(cubics, start, samples: int = 400) -> np.ndarray:
    points, p0 = [], np.asarray(start, float)
    for c1, c2, end in cubics:
        for t in np.linspace(0, 1, samples):
            points.append((1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * c1 + 3 * (1 - t) * t * t * c2 + t ** 3 * end)
        p0 = end
    return np.array(points)


# ----------------------------------------------------------------------------- SVG arcs


def test_a_vanishing_arc_radius_grows_to_a_half_circle_instead_of_failing():
    subpaths = parse_path_data("M10 10 A 1e-200 1e-200 0 0 1 200 200 L 10 200 Z")
    assert len(subpaths) == 1
    # the radii grow until they span the chord (SVG F.6.6): a half circle around the chord's middle
    points = _cubic_points(arc_to_cubics((10, 10), 1e-200, 1e-200, 0, False, True, (200, 200)), (10, 10))
    radius = np.hypot(190, 190) / 2
    assert np.allclose(np.hypot(*(points - 105).T), radius, rtol=1e-3)
    svg = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 256 256"><path d="M10 10 A 1e-200 1e-200 0 0 1 200 200 L 10 200 Z"/></svg>'
    assert parse_svg(svg, 64).groups


# Independent geometry: the circle of radius 5*sqrt(2) through (0,0) and (10,0) has its centre at
# (5, 5) or (5, -5). With y pointing down, sweep=1 runs clockwise on screen, i.e. over the top (y < 0);
# the large arc is the one whose far point is 5 + 7.07 from the chord, the small one 7.07 - 5.
@pytest.mark.parametrize("large_arc, sweep, centre_y, apex_y", [
    (False, True, 5.0, -(5 * math.sqrt(2) - 5)),
    (True, True, -5.0, -(5 * math.sqrt(2) + 5)),
    (False, False, -5.0, 5 * math.sqrt(2) - 5),
    (True, False, 5.0, 5 * math.sqrt(2) + 5),
])
def test_the_arc_flags_pick_the_centre_and_the_side(large_arc, sweep, centre_y, apex_y):
    radius = 5 * math.sqrt(2)
    cubics = arc_to_cubics((0, 0), radius, radius, 0, large_arc, sweep, (10, 0))
    points = _cubic_points(cubics, (0, 0))
    assert np.allclose(np.hypot(points[:, 0] - 5, points[:, 1] - centre_y), radius, rtol=2e-3)
    apex = points[np.argmax(np.abs(points[:, 1]))]
    assert apex == pytest.approx((5.0, apex_y), abs=0.05)
    assert np.allclose(points[-1], (10, 0))


def test_arcs_with_every_flag_render_like_cairosvg():
    paths = "".join(
        f'<path d="M{20 + 60 * i} 60 A 20 14 20 {large} {sweep} {50 + 60 * i} 70 Z" fill="#{["c33", "3c3", "33c", "cc3"][i]}"/>'
        for i, (large, sweep) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]))
    svg = f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 256 128" width="256" height="128">{paths}</svg>'
    lib.assert_renders_like_cairosvg(svg.encode(), parse_svg(svg, 256), 256, limit=0.01)


# ----------------------------------------------------------------------------- side files and frame folders


def _art_with_links(tmp_path) -> tuple[Path, Path]:
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    art = tmp_path / "art"
    art.mkdir()
    shutil.copy(EXAMPLES / "gingerbread.svg", art / "gingerbread.svg")
    shutil.copy(EXAMPLES / "gingerbread_keypoint.svg", outside / "gingerbread_keypoint.svg")
    (art / "gingerbread_keypoint.svg").symlink_to(outside / "gingerbread_keypoint.svg")
    (art / "gingerbread_skeleton.txt").symlink_to(secret)
    (art / "gingerbread_layer.json").symlink_to(secret)
    return art / "gingerbread.svg", secret


def test_side_files_linked_from_outside_the_folder_are_not_read(tmp_path):
    svg, _ = _art_with_links(tmp_path)
    assert rigfiles.find_side_files(svg) == rigfiles.SideFiles(None, None, None)
    own = svg.parent / "gingerbread_skeleton.txt"
    own.unlink()
    shutil.copy(EXAMPLES / "gingerbread_skeleton.txt", own)
    assert rigfiles.find_side_files(svg).skeleton == own


def test_skeleton_errors_never_quote_the_file(tmp_path):
    with pytest.raises(InputError) as caught:
        rigfiles.parse_skeleton("root:x:0:0:root:/root:/bin/bash\n", 5)
    assert "root" not in str(caught.value) and "line 1" in str(caught.value)


def test_frame_folders_do_not_read_frames_linked_from_outside(tmp_path):
    from PIL import Image

    outside, folder = tmp_path / "outside", tmp_path / "frames"
    outside.mkdir(), folder.mkdir()
    Image.new("RGB", (8, 8), "red").save(outside / "secret.png")
    Image.new("RGB", (8, 8), "blue").save(folder / "f_000.png")
    (folder / "f_001.png").symlink_to(outside / "secret.png")
    frames, _ = video_io.read_frames(folder, video_io.DecodeOptions())
    assert frames.shape[0] == 1 and tuple(frames[0, 0, 0]) == (0, 0, 255)
    (folder / "f_000.png").unlink()
    with pytest.raises(InputError, match="has no image files"):
        video_io.read_frames(folder, video_io.DecodeOptions())


# ----------------------------------------------------------------------------- corrupt media


def _mp4(tmp_path) -> Path:
    frames = (np.random.default_rng(0).random((6, 32, 32, 3)) * 255).astype(np.uint8)
    path = tmp_path / "clip.mp4"
    video_io.write_video(frames, path, 8.0)
    return path


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_corrupt_empty_or_truncated_videos_are_one_input_error(tmp_path, damage):
    path = _mp4(tmp_path)
    data = path.read_bytes()
    path.write_bytes({"empty": b"", "truncated": data[: len(data) // 2], "garbage": b"\x00\x01junk" * 500}[damage])
    for read in (lambda: video_io.read_frames(path, video_io.DecodeOptions()), lambda: video_io.count_frames(path),
                 lambda: video_io.read_frames_at(path, [0, 5])):
        with pytest.raises(InputError) as caught:
            read()
        assert "Input 'video'" in str(caught.value) and "clip.mp4" in str(caught.value)


def test_corrupt_images_are_one_input_error(tmp_path):
    from comfyui_animate_suite.core.images import open_image
    from PIL import Image

    good = tmp_path / "good.png"
    Image.new("RGB", (16, 16), "red").save(good)
    for name, data in (("junk.png", b"\x89PNG\r\n\x1a\nnot really"), ("cut.png", good.read_bytes()[:30])):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError, match=f"Input 'reference': '{name}' cannot be decoded"):
            open_image(tmp_path / name, "reference")
    assert open_image(good, "reference").size == (16, 16)
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(InputError, match="cannot be decoded"):
        video_io.read_frames(folder, video_io.DecodeOptions())


# ----------------------------------------------------------------------------- impossible sizes


def test_load_video_refuses_what_does_not_fit_in_memory_with_the_estimate(tmp_path, monkeypatch):
    from comfyui_animate_suite.core import errors

    path = _mp4(tmp_path)
    monkeypatch.setattr(errors, "available_memory_bytes", lambda: 40_000)  # two 32x32 frames' worth
    with pytest.raises(InputError) as caught:
        video_io.read_frames(path, video_io.DecodeOptions())
    message = str(caught.value)
    assert "GB of memory" in message and "frame_cap" in message and "width/height" in message
    assert video_io.read_frames(path, video_io.DecodeOptions(frame_cap=1))[0].shape[0] == 1


def test_animate_anyone_refuses_a_huge_size_before_allocating(tmp_path):
    import torch

    from comfyui_animate_suite.pipelines.animate_anyone.pipeline import check_memory, estimated_memory_bytes
    from comfyui_animate_suite.pipelines.animate_anyone.settings import AnimateAnyoneSettings

    huge = AnimateAnyoneSettings(width=16384, height=16384)
    assert estimated_memory_bytes(huge, 8, torch.float32) > 100 * 1024**3
    with pytest.raises(InputError, match=r"Input 'width/height': animating 8 frames at 16384x16384 needs about \d"):
        check_memory(huge, 8, "cpu", torch.float32)
    check_memory(AnimateAnyoneSettings(width=64, height=64), 8, "cpu", torch.float32)  # a small job passes


def test_animate_anyone_cli_refuses_a_huge_size_and_a_corrupt_reference_before_loading_models(tmp_path, capsys):
    from PIL import Image

    from comfyui_animate_suite import cli

    reference, poses = tmp_path / "ref.png", tmp_path / "poses"
    Image.new("RGB", (32, 32), "white").save(reference)
    poses.mkdir()
    for i in range(3):
        Image.new("RGB", (32, 32), "black").save(poses / f"{i}.png")
    base = ["animate-anyone", str(reference), str(poses), "--models-dir", str(tmp_path / "no_models"), "--device", "cpu"]
    assert cli.main(base + ["--width", "16384", "--height", "16384"]) == 2
    err = capsys.readouterr().err
    assert "needs about" in err and "a smaller width/height" in err and "Traceback" not in err
    reference.write_bytes(b"\x89PNG\r\n\x1a\ncut")
    assert cli.main(base) == 2
    assert "'ref.png' cannot be decoded" in capsys.readouterr().err


# ----------------------------------------------------------------------------- values that used to escape as raw exceptions


def test_nan_frames_nan_guidance_and_several_svd_images_are_refused():
    import torch
    from types import SimpleNamespace

    from comfyui_animate_suite.pipelines.animate_anyone.pipeline import checked_settings
    from comfyui_animate_suite.pipelines.animate_anyone.settings import AnimateAnyoneSettings
    from comfyui_animate_suite.core.images import check_image_batch
    from comfyui_animate_suite.pipelines.svd.pipeline import SVDSettings, generate

    frames = torch.rand(2, 8, 8, 3)
    frames[1, 2, 2, 0] = float("nan")
    with pytest.raises(InputError, match="Input 'reference_image': has NaN"):
        check_image_batch(frames, "reference_image")
    with pytest.raises(InputError, match="Input 'guidance'"):
        checked_settings(AnimateAnyoneSettings(guidance=float("nan")), 24)
    with pytest.raises(InputError, match="Input 'image': has 3 images"):
        generate(SimpleNamespace(num_frames=14), torch.rand(3, 64, 64, 3), SVDSettings())


def test_hostile_pose_json_is_one_input_error(tmp_path):
    from comfyui_animate_suite.pose import openpose_json

    nested = tmp_path / "nested.json"
    nested.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InputError, match="nested too deeply"):
        openpose_json.load(nested)
    person = {"pose_keypoints_2d": [1e308, 1e308, 1.0] * 18}
    for frame in ({"people": [person], "canvas_width": 64, "canvas_height": 64},
                  {"people": [], "canvas_width": 1e308, "canvas_height": 64},
                  {"people": [{"pose_keypoints_2d": [[1], {"a": 2}, 3]}], "canvas_width": 64, "canvas_height": 64}):
        with pytest.raises(InputError, match="Input 'pose_keypoint': frame 0"):
            openpose_json.from_pose_keypoint([frame])


def test_pickled_code_in_a_t5_bin_is_a_checkpoint_error(tmp_path):
    import json

    import torch
    import tiny_models.easyanimate as tiny

    from comfyui_animate_suite.pipelines.easyanimate.loading import load_t5
    from comfyui_animate_suite.core.errors import CheckpointError

    class Payload:
        def __reduce__(self):
            return (print, ("pickled code ran",))

    (tmp_path / "config.json").write_text(json.dumps({**tiny.T5_CONFIG, "model_type": "t5", "architectures": ["T5EncoderModel"]}))
    torch.save({"shared.weight": Payload()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="refused"):
        load_t5(tmp_path, torch.float32)


def test_node_inputs_nan_fps_nul_names_and_escaping_live_photo_prefixes(comfy):
    import torch

    nodes = comfy.package.NODE_CLASS_MAPPINGS
    frames = torch.rand(2, 16, 16, 3)
    for call, name in (
        (lambda: nodes["AnimateSuiteSaveAnimation"].execute(frames, float("nan"), "AnimateSuite/x", "gif", 0, 85), "fps"),
        (lambda: nodes["AnimateSuiteSaveLivePhoto"].execute(frames, float("nan"), "AnimateSuite/x", -1, 85), "fps"),
        (lambda: nodes["AnimateSuiteSaveLivePhoto"].execute(frames, 8.0, "../../escape/x", -1, 85), "filename_prefix"),
        (lambda: comfy.module("nodes.clipart").svg_path("cat\x00.svg"), "svg"),
        (lambda: comfy.module("nodes.video_nodes").input_video_path("clip\x00.mp4"), "video"),
    ):
        with pytest.raises(ValueError) as caught:
            call()
        assert type(caught.value).__name__ == "InputError" and f"Input '{name}'" in str(caught.value)
    assert not (comfy.output.parent / "escape").exists()


# ----------------------------------------------------------------------------- command-line slips


GINGERBREAD = EXAMPLES / "gingerbread.svg"


def _clipart(capsys, *args) -> tuple[int, str, str]:
    from comfyui_animate_suite import cli

    code = cli.main(["clipart", *map(str, args)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


@pytest.mark.parametrize("extra, words", [
    (["--seed", "-7"], "Input '--seed': is -7. Expected 0 or more."),
    (["--complexity", "5"], "Input '--complexity': is 5.0. Expected 0 to 1."),
    (["--replay", "missing.json"], "Input '--replay': 'missing.json' does not exist"),
    (["--skeleton", "missing.txt"], "Input '--skeleton': 'missing.txt' does not exist"),
])
def test_clipart_slips_are_one_line_before_any_work(tmp_path, capsys, extra, words):
    code, out, err = _clipart(capsys, GINGERBREAD, "--out", tmp_path / "o.gif", *extra)
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1 and not out
    assert not (tmp_path / "o.gif").exists()


def test_clipart_refuses_a_missing_out_folder_and_an_absent_device_before_rendering(tmp_path, capsys, monkeypatch):
    import torch

    code, out, err = _clipart(capsys, GINGERBREAD, "--out", tmp_path / "nonexistent" / "o.gif")
    assert code == 2 and "Input '--out'" in err and "does not exist" in err and not out  # nothing rendered first
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, out, err = _clipart(capsys, GINGERBREAD, "--out", tmp_path / "o.gif", "--device", "cuda")
    assert code == 2 and "Input '--device': is 'cuda' but this machine has no usable CUDA" in err


def test_clipart_refuses_bones_without_keypoints(tmp_path, capsys):
    art = tmp_path / "art.svg"
    shutil.copy(GINGERBREAD, art)
    bones = tmp_path / "bones.txt"
    bones.write_text("0 1\n")
    code, _, err = _clipart(capsys, art, "--out", tmp_path / "o.gif", "--skeleton", bones)
    assert code == 2 and "Input '--skeleton': is given but 'art.svg' has no keypoint file" in err


def test_clipart_reports_clip_length_apart_from_time_taken_and_warns_of_dropped_shapes(tmp_path, capsys):
    art = tmp_path / "with_text.svg"
    art.write_text(GINGERBREAD.read_text().replace("</svg>", '<text x="5" y="5">hello</text></svg>'))
    code, out, _ = _clipart(capsys, art, "--out", tmp_path / "o.json", "--frames", "24", "--fps", "12", "--detect")
    assert code == 0, out
    assert "(24 frames, 2.0 s clip, took " in out
    assert "warning: " in out and "left out" in out


def test_clipart_help_shows_each_default_once(capsys):
    from comfyui_animate_suite import cli

    with pytest.raises(SystemExit):
        cli.main(["clipart", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text and text.count("(default 256, as AniClipart)") == 1
    assert "default: 256" not in text


def test_models_and_prepare_name_a_missing_folder(tmp_path, capsys):
    from comfyui_animate_suite import cli

    assert cli.main(["models", "--models-dir", str(tmp_path / "nonexistent")]) == 2
    assert "Input '--models-dir':" in capsys.readouterr().err
    assert cli.main(["prepare", "animate-anyone", str(tmp_path / "missing_dir")]) == 2
    err = capsys.readouterr().err
    assert "Input 'VIDEOS_DIR':" in err and "missing_dir" in err and "could not find" not in err


def test_models_says_svd_needs_the_checkpoint_or_the_diffusers_folder(tmp_path, capsys):
    from comfyui_animate_suite import cli

    (tmp_path / "checkpoints").mkdir()
    assert cli.main(["models", "--models-dir", str(tmp_path)]) == 0
    assert "needs this checkpoint OR the diffusers folder below" in capsys.readouterr().out
    (tmp_path / "diffusers" / "stable-video-diffusion-img2vid-xt").mkdir(parents=True)
    (tmp_path / "diffusers" / "stable-video-diffusion-img2vid-xt" / "model_index.json").write_text("{}")
    assert cli.main(["models", "--models-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "not needed: the diffusers folder below is used instead" in out and "MISSING  checkpoint " not in out.split("[svd]")[1].split("\n\n")[0]


def test_named_colours_survive_pil_caching_them():
    from PIL import ImageColor

    from comfyui_animate_suite.svg.document import parse_color

    ImageColor.getrgb("white")  # PIL then keeps colormap["white"] as a tuple
    assert parse_color("white") == (1.0, 1.0, 1.0, 1.0)
