"""AniClipart nodes under the ComfyUI stand-in, and the ``clipart`` command line."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import clipart_testlib as lib
from clipart_testlib import shared_clipart  # noqa: F401  (a fixture)

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = "(pack example) gingerbread.svg"


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def loaded(comfy):
    return comfy.runtime.execute_node("AnimateSuiteLoadClipart", svg=EXAMPLE, canvas=256,
                                      keypoints="side files, else detect", complexity=0.5, max_tri_area=30.0,
                                      min_tri_angle=20.0)


def test_load_lists_input_svgs_and_the_pack_examples(comfy):
    (comfy.input / "art").mkdir(exist_ok=True)
    (comfy.input / "art" / "cat.svg").write_text("<svg/>")
    (comfy.input / "cat_keypoint.svg").write_text("<svg/>")
    choices = comfy.package.NODE_CLASS_MAPPINGS["AnimateSuiteLoadClipart"].INPUT_TYPES()["required"]["svg"][0]
    assert "art/cat.svg" in choices and EXAMPLE in choices
    assert not any(name.endswith("_keypoint.svg") for name in choices)


def test_load_rigs_the_example_from_its_side_files(loaded):
    clipart, preview = loaded
    assert clipart.keypoint_source == "file" and clipart.rig.num_keypoints == 11
    assert preview.shape == (1, 256, 256, 3)


def test_load_uses_aniclipart_side_files_from_the_input_folder(comfy, run_node, shared_clipart):
    for suffix in ("_scaled.svg", "_keypoint_scaled.svg", "_skeleton.txt"):
        shutil.copy(lib.side_path("man_dance", suffix), comfy.input / f"man_dance{suffix}")
    clipart, _ = run_node("AnimateSuiteLoadClipart", svg="man_dance_scaled.svg", canvas=256,
                          keypoints="side files, else detect", complexity=0.5, max_tri_area=30.0, min_tri_angle=20.0)
    assert clipart.rig.num_keypoints == 12 and len(clipart.rig.bones) == 13
    detected, _ = run_node("AnimateSuiteLoadClipart", svg="man_dance_scaled.svg", canvas=256, keypoints="detect",
                           complexity=0.5, max_tri_area=30.0, min_tri_angle=20.0)
    assert detected.keypoint_source == "detected"


@pytest.mark.parametrize("name", ["../outside.svg", "/etc/passwd", "(pack example) ../README.md", "missing.svg"])
def test_load_refuses_files_outside_the_input_folder(comfy, node_class, name):
    errors = comfy.module("core.errors")
    cls = node_class("AnimateSuiteLoadClipart")
    assert "Input 'svg'" in cls.validate_inputs(name)
    with pytest.raises(errors.InputError, match="svg"):
        cls.execute(name, 256, "detect", 0.5, 30.0, 20.0)


def test_hostile_svg_in_the_input_folder_gives_a_clear_error(comfy, node_class):
    errors = comfy.module("core.errors")
    (comfy.input / "bomb.svg").write_text('<!DOCTYPE s [<!ENTITY a "aaaa">]><svg xmlns="http://www.w3.org/2000/svg">&a;</svg>')
    with pytest.raises(errors.InputError, match="entities"):
        node_class("AnimateSuiteLoadClipart").execute("bomb.svg", 256, "detect", 0.5, 30.0, 20.0)


def test_keypoints_can_be_kept_detected_and_edited(comfy, run_node, node_class, loaded):
    clipart = loaded[0]
    same, _, points_text, bones_text = run_node("AnimateSuiteClipartKeypoints", clipart=clipart, source="as loaded",
                                                complexity=0.5, keypoints="", bones="")
    assert same is clipart and len(points_text.splitlines()) == 11 and len(bones_text.splitlines()) == 10
    lines = points_text.splitlines()
    x, y = (float(v) for v in lines[4].split())
    lines[4] = f"{x + 3} {y - 2}"  # move the left hand a little
    edited, preview, new_points, _ = run_node("AnimateSuiteClipartKeypoints", clipart=clipart, source="from text",
                                              complexity=0.5, keypoints="\n".join(lines), bones=bones_text)
    assert edited.keypoint_source == "edited" and edited.rig.keypoints[4].tolist() == [x + 3, y - 2]
    assert preview.shape == (1, 256, 256, 3)
    detected = run_node("AnimateSuiteClipartKeypoints", clipart=clipart, source="detect", complexity=0.2,
                        keypoints="", bones="")[0]
    assert detected.keypoint_source == "detected"
    errors = comfy.module("core.errors")
    with pytest.raises(errors.InputError, match="keypoints"):
        node_class("AnimateSuiteClipartKeypoints").execute(clipart, "from text", 0.5, "12 abc", "")


def test_animate_render_and_save(comfy, run_node, loaded):
    before = _files(Path(comfy.input.parent))
    animation, fps = run_node("AnimateSuiteAnimateClipart", clipart=loaded[0], motion="jump", frames=10, fps=10.0,
                              amplitude=1.0, speed=1.0, loop=True, fixed_start=True, seed=3)
    assert fps == 10.0 and animation.num_frames == 10
    images, alpha = run_node("AnimateSuiteRenderClipart", animation=animation, size=128, background="white")
    assert images.shape == (10, 128, 128, 3) and alpha.shape == (10, 128, 128)
    assert 0.05 < alpha[0].mean() < 0.9 and images.min() >= 0 and images.max() <= 1
    cut_out, _ = run_node("AnimateSuiteRenderClipart", animation=animation, size=128, background="transparent")
    torch.testing.assert_close(cut_out * alpha[..., None] + (1 - alpha[..., None]), images, atol=1e-5, rtol=0)
    result = comfy.package.NODE_CLASS_MAPPINGS["AnimateSuiteSaveClipartSVG"].execute(
        animation, "clips/ginger", 300, True, True)
    entry = result.ui["clipart_svg"][0]
    folder = comfy.output / entry["subfolder"]
    svg_text = (folder / entry["filename"]).read_text()
    assert svg_text.count("<animate ") >= 1 and len(re.search(r'values="([^"]*)"', svg_text).group(1).split(";")) == 10
    assert (folder / entry["filename"].replace(".svg", ".json")).is_file()
    frames = sorted((folder / entry["filename"].replace(".svg", "_frames")).glob("*.svg"))
    assert len(frames) == 10
    # The rig's side files sit next to the saved SVG under AniClipart's names, so it loads back rigged.
    from comfyui_animate_suite.svg.animate import load_clipart

    reloaded = load_clipart(folder / entry["filename"])
    assert reloaded.keypoint_source == "file"
    torch.testing.assert_close(reloaded.rig.keypoints, animation.rig.keypoints, atol=1e-5, rtol=0)
    assert np.array_equal(reloaded.rig.bones, animation.rig.bones)
    new = _files(Path(comfy.input.parent)) - before
    assert new and all(comfy.output in p.parents for p in new), "something was written outside the output folder"


def test_save_refuses_prefixes_that_leave_the_output_folder(comfy, loaded, run_node):
    animation, _ = run_node("AnimateSuiteAnimateClipart", clipart=loaded[0], motion="sway", frames=2, fps=10.0,
                            amplitude=1.0, speed=1.0, loop=True, fixed_start=True, seed=0)
    with pytest.raises(Exception, match="outside"):
        comfy.package.NODE_CLASS_MAPPINGS["AnimateSuiteSaveClipartSVG"].execute(animation, "../../escape", 64, False, False)


# ----------------------------------------------------------------------------- command line


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "comfyui_animate_suite", "clipart", *map(str, args)],
                          capture_output=True, text=True, timeout=600, cwd=cwd)


def test_cli_writes_gif_svg_json_and_frames_and_replays(tmp_path):
    from PIL import Image

    example = REPO / "examples" / "gingerbread.svg"
    result = _cli(example, "--motion", "wave", "--frames", "8", "--out", tmp_path / "wave.gif", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "wave.gif") as gif:
        assert gif.n_frames == 8 and gif.size == (256, 256)
    assert _cli(example, "--motion", "swim", "--frames", "6", "--out", tmp_path / "swim.svg", cwd=tmp_path).returncode == 0
    assert len(re.search(r'values="([^"]*)"', (tmp_path / "swim.svg").read_text()).group(1).split(";")) == 6
    assert _cli(example, "--motion", "bounce", "--frames", "6", "--out", tmp_path / "motion.json", cwd=tmp_path).returncode == 0
    replay = _cli(example, "--replay", tmp_path / "motion.json", "--size", "96", "--background", "transparent",
                  "--out", tmp_path / "frames", cwd=tmp_path)
    assert replay.returncode == 0, replay.stderr
    pngs = sorted((tmp_path / "frames").glob("*.png"))
    assert len(pngs) == 6 and Image.open(pngs[0]).mode == "RGBA" and Image.open(pngs[0]).size == (96, 96)
    assert len(sorted((tmp_path / "frames").glob("*.svg"))) == 6
    assert {p.name for p in tmp_path.iterdir()} == {"wave.gif", "swim.svg", "motion.json", "frames"}


def test_cli_errors_are_one_clear_line(tmp_path):
    bad = tmp_path / "bad.svg"
    bad.write_text("<svg")
    result = _cli(bad, "--out", tmp_path / "x.gif", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("error: Input 'svg'") and "Traceback" not in result.stderr
    result = _cli(REPO / "examples" / "gingerbread.svg", "--out", tmp_path / "x.avi", cwd=tmp_path)
    assert result.returncode == 2 and "--out" in result.stderr
    assert not (tmp_path / "x.gif").exists() and not (tmp_path / "x.avi").exists()


def test_readme_main_command_is_true(tmp_path):
    readme = (REPO / "README.md").read_text()
    block = re.search(r"<!-- main-command -->\s*```bash\n(.*?)\n```", readme, re.S).group(1)
    command = block.split("&&", 1)[1].strip()
    assert command.startswith(".venv/bin/python -m comfyui_animate_suite clipart ")
    arguments = command.split()[3:]
    arguments = [str(REPO / a) if a.startswith("examples/") else a for a in arguments]
    result = subprocess.run([sys.executable, "-m", "comfyui_animate_suite", *arguments], capture_output=True,
                            text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    output = tmp_path / arguments[arguments.index("--out") + 1]
    assert output.is_file() and output.stat().st_size > 1000
