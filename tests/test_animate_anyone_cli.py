"""``python -m comfyui_animate_suite animate-anyone``: models found as ComfyUI finds them, video written."""

import numpy as np
import pytest

from comfyui_animate_suite import cli
from comfyui_animate_suite.core import video
from tiny_models import animate_anyone as tiny


def test_cli_animates_a_pose_folder_into_a_gif(tmp_path, capsys):
    tiny.make_release(tmp_path / "models" / "animate_anyone" / "tiny")
    rng = np.random.default_rng(0)
    video.write_png_sequence(rng.integers(0, 255, (5, 80, 64, 3), dtype=np.uint8), tmp_path / "poses", "pose")
    from PIL import Image

    Image.fromarray(rng.integers(0, 255, (90, 70, 4), dtype=np.uint8)).save(tmp_path / "character.png")
    output = tmp_path / "out" / "dance.gif"
    code = cli.main(["animate-anyone", str(tmp_path / "character.png"), str(tmp_path / "poses"), "-o", str(output),
                     "--models-dir", str(tmp_path / "models"), "--width", "64", "--height", "80", "--steps", "2",
                     "--context-frames", "4", "--context-overlap", "1", "--frames", "4", "--device", "cpu"])
    assert code == 0 and capsys.readouterr().out.strip() == str(output)
    frames, _ = video.read_frames(output, video.DecodeOptions())
    assert frames.shape == (4, 80, 64, 3)


def test_cli_says_which_model_is_missing(tmp_path, capsys):
    (tmp_path / "poses").mkdir()
    video.write_png_sequence(np.zeros((1, 8, 8, 3), np.uint8), tmp_path / "poses", "pose")
    (tmp_path / "poses" / "pose_00000.png").rename(tmp_path / "character.png")  # a real image: it is read first
    video.write_png_sequence(np.zeros((1, 8, 8, 3), np.uint8), tmp_path / "poses", "pose")
    code = cli.main(["animate-anyone", str(tmp_path / "character.png"), str(tmp_path / "poses"),
                     "--models-dir", str(tmp_path / "models"), "--device", "cpu"])
    error = capsys.readouterr().err
    assert code == 2 and "denoising_unet.pth" in error and "patrolli/AnimateAnyone" in error


def test_cli_help_lists_the_sampling_options(capsys):
    with pytest.raises(SystemExit):
        cli.main(["animate-anyone", "--help"])
    help_text = capsys.readouterr().out
    assert "--context-frames" in help_text and "--models-dir" in help_text and "--fit" in help_text
