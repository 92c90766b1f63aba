"""Lottie export of clipart animations: the bodymovin structure players need, geometry, dotLottie, CLI,
and (test_lottie_in_real_browser) lottie-web in headless Chromium drawing what the pack draws."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from comfyui_animate_suite.svg import lottie
from comfyui_animate_suite.svg.animate import animate_procedural, load_clipart, render_animation
from comfyui_animate_suite.svg.document import parse_svg
from comfyui_animate_suite.svg.motion import MotionSettings
from comfyui_animate_suite.svg.paths import layout_drawing
from comfyui_animate_suite.svg.raster import rasterise

REPO = Path(__file__).resolve().parents[1]
WEB = REPO / "tests" / "web"
GINGERBREAD = REPO / "examples" / "gingerbread.svg"
SHAPES_SVG = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64">
<rect x="4" y="4" width="56" height="56" fill="#3366cc" fill-opacity="0.5"/>
<path d="M10 50 C 10 20, 40 20, 40 50 Z M18 44 L 32 44 L 25 30 Z" fill="#e04020" fill-rule="evenodd"/>
<polyline points="44,10 60,10 52,30" fill="green"/>
</svg>"""


@pytest.fixture(scope="module")
def animation():
    clipart = load_clipart(GINGERBREAD)
    return animate_procedural(clipart.rig, MotionSettings("wave", num_frames=8, fps=10.0), clipart.name)


def _is_value(prop, dimensions=None) -> bool:
    if not (isinstance(prop, dict) and prop.get("a") == 0 and "k" in prop):
        return False
    return dimensions is None or (isinstance(prop["k"], list) and len(prop["k"]) == dimensions)


def _check_path(shape: dict) -> int:
    assert set(shape) >= {"i", "o", "v", "c"}, shape.keys()
    assert isinstance(shape["c"], bool)
    count = len(shape["v"])
    assert count >= 1 and len(shape["i"]) == count and len(shape["o"]) == count
    for key in "iov":
        assert all(len(p) == 2 and all(isinstance(x, (int, float)) and np.isfinite(x) for x in p) for p in shape[key])
    return count


def check_lottie_schema(document: dict) -> None:
    """What lottie-web needs to play a shape-layer animation (bodymovin 5.x)."""
    assert isinstance(document["v"], str) and document["v"].count(".") == 2
    assert document["fr"] > 0 and document["ip"] == 0 and document["op"] > document["ip"]
    assert isinstance(document["w"], int) and isinstance(document["h"], int) and document["w"] > 0 and document["h"] > 0
    assert document["layers"], "no layers"
    indices = [layer["ind"] for layer in document["layers"]]
    assert len(set(indices)) == len(indices)
    for layer in document["layers"]:
        assert layer["ty"] == 4 and layer["ip"] <= document["ip"] and layer["op"] >= document["op"]
        assert "st" in layer and layer["sr"] == 1
        for key, size in (("o", None), ("r", None), ("p", 3), ("a", 3), ("s", 3)):
            assert _is_value(layer["ks"][key], size), (key, layer["ks"][key])
        (group,) = layer["shapes"]
        assert group["ty"] == "gr"
        kinds = [item["ty"] for item in group["it"]]
        assert kinds[-1] == "tr" and kinds[-2] == "fl" and set(kinds[:-2]) == {"sh"}
        fill = group["it"][-2]
        assert _is_value(fill["c"], 4) and all(0 <= c <= 1 for c in fill["c"]["k"])
        assert _is_value(fill["o"]) and 0 <= fill["o"]["k"] <= 100 and fill["r"] in (1, 2)
        for path in group["it"][:-2]:
            ks = path["ks"]
            if ks["a"] == 0:
                _check_path(ks["k"])
                continue
            assert ks["a"] == 1 and isinstance(ks["k"], list) and ks["k"]
            times = [key["t"] for key in ks["k"]]
            assert times == sorted(set(times)) and document["ip"] <= times[0] and times[-1] < document["op"]
            counts = {_check_path(key["s"][0]) for key in ks["k"] if len(key["s"]) == 1}
            assert len(counts) == 1, "a path must keep its vertex count over its keyframes"


def lottie_path_d(shape: dict) -> str:
    """SVG path data of one Lottie path value (an independent reading of i/o/v/c)."""
    v, i, o = (np.asarray(shape[k], np.float64) for k in "vio")
    parts = [f"M{v[0, 0]} {v[0, 1]}"]
    count = len(v)
    for k in range(count if shape["c"] else count - 1):
        n = (k + 1) % count
        c1, c2 = v[k] + o[k], v[n] + i[n]
        parts.append(f"C{c1[0]} {c1[1]} {c2[0]} {c2[1]} {v[n, 0]} {v[n, 1]}")
    return " ".join(parts) + (" Z" if shape["c"] else "")


def lottie_frame_svg(document: dict, frame: int) -> str:
    """One frame of a Lottie document as SVG, paint order restored (Lottie draws its first layer on top)."""
    elements = []
    for layer in reversed(document["layers"]):
        items = layer["shapes"][0]["it"]
        fill = items[-2]
        paths = []
        for item in items[:-2]:
            ks = item["ks"]
            shape = ks["k"] if ks["a"] == 0 else max((k for k in ks["k"] if k["t"] <= frame), key=lambda k: k["t"])["s"][0]
            paths.append(lottie_path_d(shape))
        r, g, b, _ = fill["c"]["k"]
        rule = "evenodd" if fill["r"] == 2 else "nonzero"
        elements.append(f'<path d="{" ".join(paths)}" fill="rgb({r * 100}%,{g * 100}%,{b * 100}%)" '
                        f'fill-opacity="{fill["o"]["k"] / 100}" fill-rule="{rule}"/>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {document["w"]} {document["h"]}">'
            + "".join(elements) + "</svg>")


def _render_svg(text: str, size: int) -> torch.Tensor:
    layout, points = layout_drawing(parse_svg(text, size))
    return rasterise(layout, points, size, (1.0, 1.0, 1.0))[0]


# ----------------------------------------------------------------------------- structure and geometry


def test_document_has_the_structure_players_need(animation):
    document = lottie.animation_lottie(animation, 128)
    check_lottie_schema(document)
    assert (document["w"], document["h"], document["op"], document["fr"]) == (128, 128, 8, 10.0)
    assert len(document["layers"]) == animation.rig.layout.num_groups
    moving = [item for layer in document["layers"] for item in layer["shapes"][0]["it"] if item["ty"] == "sh" and item["ks"]["a"] == 1]
    assert moving and all(len(item["ks"]["k"]) == 8 and all(key["h"] == 1 for key in item["ks"]["k"]) for item in moving)
    json.loads(lottie.lottie_json(document))  # plain JSON, no NaN


def test_each_frame_redraws_the_packs_frame(animation):
    """Lottie paths read back independently and drawn by the pack's rasteriser match the pack's render."""
    size = 96
    document = lottie.animation_lottie(animation, size)
    expected = render_animation(animation, size)
    for frame in (0, 3, 7):
        drawn = _render_svg(lottie_frame_svg(document, frame), size)
        assert (drawn - expected[frame]).abs().mean() < 0.004, frame


def test_fills_rules_opacity_and_open_paths():
    drawing = parse_svg(SHAPES_SVG, 64)
    layout, points = layout_drawing(drawing)
    frames = torch.stack([points, points + torch.tensor([3.0, -2.0])])
    document = lottie.lottie_document(layout, frames, 5.0)
    check_lottie_schema(document)
    top, middle, bottom = document["layers"]  # reverse paint order
    assert bottom["shapes"][0]["it"][-2]["o"]["k"] == 50.0
    assert middle["shapes"][0]["it"][-2]["r"] == 2 and len(middle["shapes"][0]["it"]) == 4  # two subpaths
    assert top["shapes"][0]["it"][-2]["c"]["k"][:3] == [0.0, round(128 / 255, 4), 0.0]
    for frame in (0, 1):
        drawn = _render_svg(lottie_frame_svg(document, frame), 64)
        expected = rasterise(layout, frames[frame], 64, (1.0, 1.0, 1.0))[0]
        assert (drawn - expected).abs().max() < 0.02


def test_still_shapes_are_static_and_size_scales():
    layout, points = layout_drawing(parse_svg(SHAPES_SVG, 64))
    document = lottie.lottie_document(layout, torch.stack([points, points]), 5.0, size=128)
    paths = [item for layer in document["layers"] for item in layer["shapes"][0]["it"] if item["ty"] == "sh"]
    assert all(item["ks"]["a"] == 0 for item in paths)
    rect = document["layers"][-1]["shapes"][0]["it"][0]["ks"]["k"]
    assert np.allclose(np.min(rect["v"], 0), [8, 8]) and np.allclose(np.max(rect["v"], 0), [120, 120])


def test_dotlottie_zip(animation, tmp_path):
    document = lottie.animation_lottie(animation, 64)
    data = lottie.dotlottie_bytes(document, loop=True, animation_id="my clip/1")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read("manifest.json"))
    ident = manifest["animations"][0]["id"]
    assert ident == "my_clip_1" and names == {"manifest.json", f"animations/{ident}.json"}
    assert manifest["animations"][0]["loop"] is True
    _, read_back = lottie.read_dotlottie(data)
    assert read_back == json.loads(lottie.lottie_json(document))


def test_bad_input_is_named():
    from comfyui_animate_suite.core.errors import InputError

    layout, points = layout_drawing(parse_svg(SHAPES_SVG, 64))
    with pytest.raises(InputError, match="fps"):
        lottie.lottie_document(layout, points[None], 0.0)
    with pytest.raises(InputError, match="frames"):
        lottie.lottie_document(layout, points, 5.0)


def test_cli_writes_lottie_and_keeps_json_for_motion(tmp_path, capsys):
    from comfyui_animate_suite.cli import main

    outputs = {name: tmp_path / name for name in ("clip.lottie", "clip.lottie.json", "clip.json")}
    for path in outputs.values():
        assert main(["clipart", str(GINGERBREAD), "--frames", "4", "--size", "64", "--out", str(path)]) == 0
    manifest, document = lottie.read_dotlottie(outputs["clip.lottie"].read_bytes())
    assert manifest["animations"][0]["id"] == "clip"
    check_lottie_schema(document)
    check_lottie_schema(json.loads(outputs["clip.lottie.json"].read_text()))
    assert json.loads(outputs["clip.json"].read_text())["format"] == "animate-suite/clipart-motion"


# ----------------------------------------------------------------------------- lottie-web in Chromium


def _browser_tools():
    chromium = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")
    node = shutil.which("node")
    missing = []
    if chromium is None:
        missing.append("chromium (apt-get install chromium, or set CHROMIUM_PATH)")
    if node is None:
        missing.append("node")
    for package in ("lottie-web", "playwright-core"):
        if not (WEB / "node_modules" / package / "package.json").is_file():
            missing.append(f"{package} (cd tests/web && npm ci)")
    if missing:
        reason = "browser check needs " + ", ".join(missing)
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + " (CI installs them in .ci/run)")
        pytest.skip(reason)
    return chromium, node


@pytest.fixture(scope="module")
def pose_animation():
    from pose_driving_testlib import dance

    from comfyui_animate_suite.svg.retarget import RetargetSettings, animate_from_pose

    clipart = load_clipart(GINGERBREAD)
    return animate_from_pose(clipart.rig, dance(8), None, RetargetSettings(10.0), clipart.name)


def _shapes_clip(size: int):
    """Long cubic segments, an even-odd hole, half-transparent fill, an open polyline, moving and turning:
    wrong tangents, rules or opacity show up as whole wrong pixels here."""
    layout, points = layout_drawing(parse_svg(SHAPES_SVG, 64))
    centre = torch.tensor([32.0, 32.0])
    frames = []
    for f in range(8):
        angle = torch.tensor(0.15 * f)
        turn = torch.stack([torch.stack([angle.cos(), -angle.sin()]), torch.stack([angle.sin(), angle.cos()])])
        frames.append((points - centre) @ turn.T * (1 - 0.03 * f) + centre + torch.tensor([0.5 * f, -0.3 * f]))
    frames = torch.stack(frames)
    expected = rasterise(layout, frames, size, (1.0, 1.0, 1.0))
    return lottie.lottie_document(layout, frames, 10.0, size), expected


@pytest.mark.parametrize("renderer, clip", [(r, c) for c in ("shapes", "animation", "pose_animation") for r in ("svg", "canvas")])
def test_lottie_in_real_browser(renderer, clip, request, tmp_path):
    """lottie-web plays the file in headless Chromium; its frames match the pack's rendering (mean error,
    and no pixel off by more than anti-aliasing explains)."""
    chromium, node = _browser_tools()
    size = 128
    if clip == "shapes":
        document, expected = _shapes_clip(size)
    else:
        animation = request.getfixturevalue(clip)
        document, expected = lottie.animation_lottie(animation, size), render_animation(animation, size)
    expected = expected.numpy()
    path = tmp_path / "clip.lottie.json"
    path.write_text(lottie.lottie_json(document))
    frames = (0, 2, 5, 7)
    result = subprocess.run([node, str(WEB / "play_lottie.mjs"), str(path), str(tmp_path / "shots"), renderer,
                             ",".join(map(str, frames)), chromium], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["played"] == len(frames) and report["drawnWith"] == renderer  # <svg> or <canvas>
    shots = {f: np.asarray(Image.open(tmp_path / "shots" / f"frame_{f}.png").convert("RGB"), np.float32) / 255 for f in frames}
    errors, worst = [], []
    for frame in frames:
        assert shots[frame].shape == expected[frame].shape
        difference = np.abs(shots[frame] - expected[frame]).max(-1)
        errors.append(float(difference.mean()))
        worst.append(float(difference.max()))
    print(renderer, clip, "mean abs error per frame", [round(e, 5) for e in errors], "worst pixel", [round(w, 3) for w in worst])
    assert max(errors) < 0.006 and max(worst) < 0.3, (errors, worst)
    # The player really moved the shapes: its frames differ from each other as the pack's do.
    pack_change = float(np.abs(expected[0] - expected[5]).mean())
    assert pack_change > 0.002 and abs(float(np.abs(shots[0] - shots[5]).mean()) - pack_change) < 0.3 * pack_change


@pytest.mark.parametrize("format_index, suffix", [(0, ".lottie"), (1, ".lottie.json")])
def test_save_node_writes_into_the_output_folder(comfy, animation, format_index, suffix):
    module = comfy.module("nodes.clipart_pose")
    node = module.AnimateSuiteSaveClipartLottie
    result = node.execute(animation, "AnimateSuite/lottie_test", 64, module.LOTTIE_FORMATS[format_index], True)
    (name,) = result.ui["text"]
    path = Path(comfy.output) / "AnimateSuite" / name
    assert name.endswith(suffix) and path.is_file()
    document = lottie.read_dotlottie(path.read_bytes())[1] if suffix == ".lottie" else json.loads(path.read_text())
    check_lottie_schema(document)
    assert document["w"] == 64 and document["op"] == animation.num_frames
    with pytest.raises(comfy.module("core.errors").InputError, match="format"):
        node.execute(animation, "AnimateSuite/lottie_test", 64, "gif", True)
    with pytest.raises(comfy.module("core.errors").InputError):
        node.execute(animation, "../outside", 64, module.LOTTIE_FORMATS[0], True)
