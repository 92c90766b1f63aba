"""SVG parsing: features, lossless write-back, AniClipart side files, and hostile or broken files."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
import torch

import clipart_testlib as lib
from clipart_testlib import shared_clipart  # noqa: F401  (a fixture)
from comfyui_animate_suite.core.errors import InputError
from comfyui_animate_suite.svg import export, rigfiles
from comfyui_animate_suite.svg.document import load_svg, parse_svg
from comfyui_animate_suite.svg.paths import layout_drawing
from comfyui_animate_suite.svg.raster import rasterise

FEATURES_SVG = """<?xml version="1.0"?>
<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">
<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" viewBox="0 0 200 100" width="400" height="200">
  <style>.warm { fill: #e05a2b } #blob { fill-opacity: .6 }</style>
  <defs><path id="leaf" d="M0 0 Q10 -12 20 0 Q10 12 0 0 Z"/></defs>
  <g transform="translate(10 10) scale(1.5)" fill="navy">
    <rect x="0" y="0" width="30" height="20" rx="5"/>
    <circle class="warm" cx="45" cy="10" r="9"/>
    <g opacity="0.5"><ellipse cx="70" cy="10" rx="12" ry="6" fill="rgb(20, 160, 60)"/></g>
  </g>
  <polygon points="10,60 40,60 25,90" fill="#8a2be2"/>
  <polyline points="50,60 80,60 80,90" fill="gold"/>
  <path id="blob" d="M100 50 a20 15 30 1 1 30 20 c-5 10 -20 10 -30 -20 z" fill="teal"/>
  <path d="M150 60 h30 v30 h-30 z m8 8 v14 h14 v-14 z" fill="black" fill-rule="evenodd"/>
  <use xlink:href="#leaf" x="150" y="20" fill="green"/>
  <use href="#leaf" transform="rotate(30 170 40)" x="160" y="40" style="fill: #446688"/>
  <rect x="0" y="0" width="5" height="5" fill="none" stroke="black"/>
  <text x="10" y="10">ignored</text>
</svg>"""


UNSUPPORTED_LINES = ('<text x="10" y="10">ignored</text>',)


def test_features_render_like_cairosvg():
    drawing = parse_svg(FEATURES_SVG, 256)
    assert len(drawing.groups) == 10  # the stroked rect draws its outline, the text nothing
    assert not any("stroke" in w for w in drawing.warnings) and any("text" in w for w in drawing.warnings)
    drawn_only = FEATURES_SVG
    for line in UNSUPPORTED_LINES:
        drawn_only = drawn_only.replace(line, "")
    lib.assert_renders_like_cairosvg(drawn_only.encode(), drawing, 256)


def test_gradients_are_kept_with_their_average_colour_for_solid_outputs():
    svg = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10">
      <linearGradient id="g"><stop offset="0" stop-color="#ff0000"/><stop offset="1" stop-color="#0000ff"/></linearGradient>
      <rect width="10" height="10" fill="url(#g)"/></svg>"""
    drawing = parse_svg(svg, 32)
    assert drawing.groups[0].fill == pytest.approx((0.5, 0.0, 0.5, 1.0))
    assert drawing.groups[0].gradient is not None and drawing.groups[0].gradient.kind == "linear"
    assert not drawing.warnings


def test_viewbox_is_fitted_centred_into_the_canvas():
    drawing = parse_svg('<svg xmlns="http://www.w3.org/2000/svg" viewBox="100 0 200 100"><rect x="100" width="200" height="100"/></svg>', 256)
    points = drawing.all_points()
    np.testing.assert_allclose(points.min(0), [0, 64])
    np.testing.assert_allclose(points.max(0), [256, 192])


def test_written_frames_read_back_bit_exactly(shared_clipart):
    for name in shared_clipart:
        drawing = load_svg(lib.art_path(name))
        layout, points = layout_drawing(drawing)
        text = export.frame_svg(layout, points)  # numbers written out, not the original path data
        layout_again, points_again = layout_drawing(parse_svg(text))
        assert torch.equal(points_again, points), name
        assert torch.equal(layout_again.group_fill, layout.group_fill)
        assert [len(c) for c in layout_again.subpath_control_points] == [len(c) for c in layout.subpath_control_points]


def test_moved_frames_read_back(shared_clipart):
    layout, points = layout_drawing(load_svg(lib.art_path("man_dance")))
    moved = points + torch.tensor([0.123456789, -3.3])
    _, points_again = layout_drawing(parse_svg(export.frame_svg(layout, moved)))
    assert torch.equal(points_again, moved)


def test_unchanged_shapes_keep_their_original_path_data(shared_clipart):
    source = lib.art_path("man_dance").read_text()
    drawing = parse_svg(source)
    layout, points = layout_drawing(drawing)
    moved = points.clone()
    start, end = layout.group_point_range(3)
    moved[start:end] += 1.0
    text = export.frame_svg(layout, moved, rest_points=points)
    originals = [g.source_d for g in drawing.groups]
    assert all(d in text for i, d in enumerate(originals) if i != 3)
    assert originals[3] not in text


def test_keypoint_files_skip_commented_circles(shared_clipart):
    keypoints = rigfiles.read_keypoint_file(lib.side_path("man_dance", "_keypoint_scaled.svg"))
    assert keypoints.shape == (12, 2)
    text = lib.side_path("man_dance", "_keypoint_scaled.svg").read_text()
    assert text.count("<circle") == 13
    bones = rigfiles.read_skeleton_file(lib.side_path("man_dance", "_skeleton.txt"), len(keypoints))
    assert bones.shape == (13, 2) and bones.min() == 0 and bones.max() == 11
    # The 512-viewBox keypoint file maps onto the same canvas positions as the scaled one.
    full = rigfiles.read_keypoint_file(lib.side_path("man_dance", "_keypoint.svg"))
    np.testing.assert_allclose(full, keypoints, atol=1e-3)


def test_layer_files_are_one_based(shared_clipart):
    drawing = load_svg(lib.art_path("man_boxing2"))
    layers = rigfiles.read_layer_file(lib.side_path("man_boxing2", "_layer.json"), len(drawing.groups), 13)
    assert [layer.path_index for layer in layers][0] == [18, 17, 2, 1, 0]
    assert layers[0].control_index == [2, 4, 6]
    assert sorted(p for layer in layers for p in layer.path_index) == list(range(len(drawing.groups)))
    with pytest.raises(InputError, match="no layer"):
        rigfiles.parse_layers('[{"path_index": [1], "control_index": [1]}]', 3, 2)
    with pytest.raises(InputError, match="1-based"):
        rigfiles.parse_layers('[{"path_index": [0, 1, 2], "control_index": [1]}]', 3, 2)


def test_side_files_are_found_by_aniclipart_names(shared_clipart):
    side = rigfiles.find_side_files(lib.art_path("man_boxing2"))
    assert side.keypoints.name == "man_boxing2_keypoint_scaled.svg"
    assert side.skeleton.name == "man_boxing2_skeleton.txt" and side.layers.name == "man_boxing2_layer.json"
    original = rigfiles.find_side_files(lib.art_path("man_boxing2").with_name("man_boxing2.svg"))
    assert original.keypoints.name == "man_boxing2_keypoint.svg"


def test_skeleton_file_errors_name_the_line():
    with pytest.raises(InputError, match="line 2"):
        rigfiles.parse_skeleton("0 1\n1 7\n", 3)
    with pytest.raises(InputError, match="two keypoint indices"):
        rigfiles.parse_skeleton("0 1 2\n", 3)


def test_typed_keypoints_read_back_and_errors_name_the_line():
    points = np.array([[1.5, 2.0], [30.25, 40.0]])
    assert np.array_equal(rigfiles.parse_keypoints_text(rigfiles.keypoints_text(points)), points)
    assert rigfiles.parse_keypoints_text("# x y\n1, 2\n\n3 4 # hip\n").tolist() == [[1, 2], [3, 4]]
    assert rigfiles.parse_keypoints_text("").shape == (0, 2)
    with pytest.raises(InputError, match="line 2"):
        rigfiles.parse_keypoints_text("0 1\n12 abc\n")


# ----------------------------------------------------------------------------- hostile input

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<svg xmlns="http://www.w3.org/2000/svg"><title>&lol9;</title><rect width="1" height="1"/></svg>"""
EXTERNAL_ENTITY = """<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<svg xmlns="http://www.w3.org/2000/svg"><text>&xxe;</text><rect width="1" height="1"/></svg>"""
PARAMETER_ENTITY = """<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY % remote SYSTEM "http://example.com/x.dtd"> %remote;]>
<svg xmlns="http://www.w3.org/2000/svg"><rect width="1" height="1"/></svg>"""


def _many_paths(count: int) -> str:
    return '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 100">' + \
        '<path d="M0 0 L1 0 L1 1 Z"/>' * count + "</svg>"


def _nested_uses(levels: int) -> str:
    defs = '<path id="p0" d="M0 0 L1 0 L1 1 Z"/>'
    for level in range(1, levels + 1):
        defs += f'<g id="p{level}">' + f'<use href="#p{level - 1}"/>' * 10 + "</g>"
    return f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><defs>{defs}</defs><use href="#p{levels}"/></svg>'


HOSTILE = {
    "malformed": ("<svg xmlns='http://www.w3.org/2000/svg'><path d='M0 0 L1 1'</svg>", "well-formed"),
    "binary": (bytes(range(256)) * 10, "well-formed"),
    "not svg": ("<html><body/></html>", "<html> root"),
    "empty file": ("", "empty"),
    "empty drawing": ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"/>', "no filled shape"),
    "invisible stroke only": ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><path d="M0 0 L9 9" fill="none" stroke="red" stroke-width="0"/></svg>', "no filled shape"),
    "billion laughs": (BILLION_LAUGHS, "entities"),
    "external entity": (EXTERNAL_ENTITY, "entities"),
    "parameter entity": (PARAMETER_ENTITY, "entities"),
    "100k paths": (_many_paths(100_000), "XML elements"),
    "nested use bomb": (_nested_uses(7), "more than"),
    "self use": ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 9 9"><g id="a"><use href="#a"/></g></svg>', "refers to itself"),
    "deep nesting": ('<svg xmlns="http://www.w3.org/2000/svg">' + "<g>" * 5000 + "</g>" * 5000 + "</svg>", "deep"),
    "absurd width": ('<svg xmlns="http://www.w3.org/2000/svg" width="1e30" height="10"><rect width="1" height="1"/></svg>', "width"),
    "absurd viewBox": ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1e-30 1e-30"><rect width="1" height="1"/></svg>', "absurd drawing area"),
    "thin viewBox": ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1000000 1"><rect width="1" height="1"/></svg>', "absurd drawing area"),
    "absurd coordinates": ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><path d="M0 0 L1e300 0 L0 1 Z"/></svg>', "coordinate"),
    "far away shapes": ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><path d="M0 0 L1e8 0 L0 1e8 Z"/></svg>', "far outside"),
    "bad path data": ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><path d="M0 0 L 5 nonsense"/></svg>', "path"),
    "bad viewBox": ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ten"><rect width="1" height="1"/></svg>', "viewBox"),
}


@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
def test_hostile_svgs_end_fast_with_a_clear_error(case):
    data, expected = HOSTILE[case]
    started = time.perf_counter()
    with pytest.raises(InputError) as error:
        parse_svg(data, 256)
    elapsed = time.perf_counter() - started
    assert "Input 'svg'" in str(error.value) and expected in str(error.value), str(error.value)
    assert elapsed < 5.0, f"{case} took {elapsed:.1f} s"


def test_oversized_files_are_refused_before_parsing(tmp_path):
    path = tmp_path / "huge.svg"
    path.write_bytes(b"<svg>" + b" " * (21 * 1024 * 1024) + b"</svg>")
    with pytest.raises(InputError, match="MB"):
        load_svg(path)


def test_canvas_size_is_bounded():
    with pytest.raises(InputError, match="canvas"):
        parse_svg('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1 1"><rect width="1" height="1"/></svg>', 10**6)


def test_parsing_needs_no_network_and_reads_no_other_file(monkeypatch):
    import builtins
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("the parser tried to open a file or socket")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(builtins, "open", refuse)
    monkeypatch.setattr(io, "open", refuse)
    with pytest.raises(InputError):
        parse_svg(EXTERNAL_ENTITY)
    parse_svg(FEATURES_SVG.replace("<use", "<use"), 64)
