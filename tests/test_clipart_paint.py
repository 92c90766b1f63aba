"""Strokes and gradients: each feature drawn like cairosvg (mean error per case), and differentiable."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import clipart_testlib as lib
from comfyui_animate_suite.svg.document import parse_svg
from comfyui_animate_suite.svg.paths import layout_drawing
from comfyui_animate_suite.svg.raster import rasterise

HEAD = '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">'
DEFS = """<defs>
<linearGradient id="lin" x1="0.1" y1="0" x2="0.9" y2="0.3"><stop offset="0" stop-color="#e33"/>
  <stop offset="0.5" stop-color="#fd0" stop-opacity="0.6"/><stop offset="1" stop-color="#23c"/></linearGradient>
<linearGradient id="user" gradientUnits="userSpaceOnUse" x1="10" y1="10" x2="30" y2="20" spreadMethod="reflect">
  <stop offset="0" stop-color="#0a4"/><stop offset="1" stop-color="#a0f"/></linearGradient>
<linearGradient id="rep" href="#user" spreadMethod="repeat" gradientTransform="rotate(30 32 32)"/>
<radialGradient id="rad" cx="0.5" cy="0.5" r="0.5" fx="0.3" fy="0.35"><stop offset="0.1" stop-color="white"/>
  <stop offset="1" stop-color="#158"/></radialGradient>
<radialGradient id="radu" gradientUnits="userSpaceOnUse" cx="32" cy="32" r="12" spreadMethod="reflect" href="#lin"/>
</defs>"""

# name: (body, mean-error bound per channel at 128 px)
CASES = {
    "stroke width and mitre joins": ('<path d="M8 50 L20 10 L32 50 L44 12 L56 50" fill="none" stroke="#c30" stroke-width="5"/>', 0.003),
    "miter limit bevels sharp corners": ('<path d="M8 50 L20 10 L32 50 L44 30 L56 50" fill="none" stroke="#c30" stroke-width="5" stroke-miterlimit="2"/>', 0.003),
    "round joins and caps on curves": ('<path d="M8 50 L20 10 L32 50 Q44 0 56 50" fill="none" stroke="#06c" stroke-width="6" stroke-linejoin="round" stroke-linecap="round"/>', 0.003),
    "bevel joins and square caps": ('<path d="M8 50 L20 10 L32 50 L56 40" fill="none" stroke="#06c" stroke-width="6" stroke-linejoin="bevel" stroke-linecap="square"/>', 0.003),
    "closed shapes with fill and stroke": ('<rect x="12" y="12" width="40" height="30" rx="6" fill="#fc0" stroke="#333" stroke-width="4"/><polygon points="10,60 30,45 50,60" fill="none" stroke="#a0a" stroke-width="3"/>', 0.004),
    "dashes and dash offset": ('<circle cx="32" cy="32" r="20" fill="none" stroke="#080" stroke-width="4" stroke-dasharray="8 4 2 4" stroke-dashoffset="3"/><path d="M5 58 L59 58" stroke="#800" stroke-width="3" stroke-dasharray="5" stroke-linecap="round"/>', 0.004),
    "stroke opacity": ('<rect x="10" y="10" width="30" height="30" fill="#09f"/><path d="M5 40 C20 0 40 70 60 20" fill="none" stroke="#f30" stroke-width="8" stroke-opacity="0.5"/>', 0.003),
    "transformed strokes scale": ('<g transform="translate(32 32) scale(2 1) rotate(20)"><path d="M-10 -10 L10 -5 L0 12 Z" fill="#9c3" stroke="#036" stroke-width="2"/></g>', 0.003),
    "star with fill and stroke": ('<path d="M32 4 L39 24 L60 24 L43 37 L50 58 L32 45 L14 58 L21 37 L4 24 L25 24 Z" fill="#fd3" stroke="#f80" stroke-width="3" stroke-linejoin="round"/>', 0.003),
    "linear gradient with stop opacity": ('<rect x="4" y="8" width="56" height="40" fill="url(#lin)"/>', 0.003),
    "user space gradient, reflect": ('<rect x="4" y="4" width="56" height="56" fill="url(#user)"/>', 0.003),
    "href inheritance, repeat, gradientTransform": ('<rect x="4" y="4" width="56" height="56" fill="url(#rep)"/>', 0.003),
    "radial gradient with a focal point": ('<ellipse cx="32" cy="30" rx="26" ry="20" fill="url(#rad)"/>', 0.003),
    "radial user space gradient, gradient stroke": ('<rect x="2" y="2" width="60" height="60" fill="url(#radu)" stroke="url(#lin)" stroke-width="3"/>', 0.004),
    "gradients on a transformed shape": ('<g transform="rotate(15 32 32)"><circle cx="32" cy="32" r="18" fill="url(#rad)" stroke="url(#lin)" stroke-width="6" fill-opacity="0.8"/></g>', 0.003),
}


def _ours(svg: str, size: int = 128) -> np.ndarray:
    layout, points = layout_drawing(parse_svg(svg, 64))
    return rasterise(layout, points, size=size, background=(1.0, 1.0, 1.0))[0].numpy()


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_strokes_and_gradients_render_like_cairosvg(case):
    body, limit = CASES[case]
    svg = HEAD + DEFS + body + "</svg>"
    drawing = parse_svg(svg, 64)
    assert not drawing.warnings
    lib.assert_renders_like_cairosvg(svg.encode(), drawing, 128, limit)
    # Not trivially white: the feature is drawn.
    assert (1 - _ours(svg)).mean() > 0.02


def test_paint_order_puts_the_stroke_under_the_fill():
    shape = 'd="M10 10 L54 14 L30 54 Z"'
    paint = 'fill="#fc0" stroke="#036" stroke-width="8"'
    ours = _ours(HEAD + f'<path {shape} {paint} paint-order="stroke"/></svg>')
    # cairosvg has no paint-order: the same picture drawn as a stroke-only path under a fill-only one.
    reference = lib.cairo_render((HEAD + f'<path {shape} fill="none" stroke="#036" stroke-width="8"/>'
                                  f'<path {shape} fill="#fc0"/></svg>').encode(), 128)
    assert np.abs(ours - reference).mean() < 0.003
    default = _ours(HEAD + f'<path {shape} {paint}/></svg>')
    assert np.abs(ours - default).mean() > 0.01  # the order matters here


def test_non_scaling_stroke_keeps_its_width_through_transforms():
    line = 'd="M-10 -10 L10 10" fill="none" stroke="#a00" stroke-width="2"'
    ours = _ours(HEAD + f'<g transform="translate(32 32) scale(2.5)"><path {line} vector-effect="non-scaling-stroke"/></g></svg>')
    reference = lib.cairo_render((HEAD + '<path d="M7 7 L57 57" fill="none" stroke="#a00" stroke-width="2"/></svg>').encode(), 128)
    assert np.abs(ours - reference).mean() < 0.003
    scaled = _ours(HEAD + f'<g transform="translate(32 32) scale(2.5)"><path {line}/></g></svg>')
    assert (1 - scaled).mean() > 2 * (1 - ours).mean()


def test_stroke_outlines_and_gradients_follow_the_points_differentiably():
    svg = HEAD + DEFS + '<circle cx="32" cy="32" r="16" fill="url(#rad)" stroke="url(#lin)" stroke-width="4"/></svg>'
    layout, points = layout_drawing(parse_svg(svg, 64))
    shift = torch.tensor([5.0, 3.0])
    moved = rasterise(layout, points + shift, background=(1.0, 1.0, 1.0))[0]
    rest = rasterise(layout, points, background=(1.0, 1.0, 1.0))[0]
    # Moving every point moves the picture, gradients included (5 px right, 3 px down).
    assert torch.allclose(moved[3:, 5:], rest[:-3, :-5], atol=2e-3)
    variable = (points.double() + 0.37).requires_grad_(True)  # off the pixel grid (coverage has kinks on it)
    weights = torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def loss(p):
        return (rasterise(layout, p, background=(1.0, 1.0, 1.0))[0] * weights).sum()

    (gradient,) = torch.autograd.grad(loss(variable), variable)
    assert torch.isfinite(gradient).all() and gradient.abs().max() > 0.1
    # A whole-shape move: the analytic directional derivative matches finite differences.
    direction = torch.zeros_like(variable)
    direction[:, 0] = 1.0
    step = 1e-4
    with torch.no_grad():
        numeric = (loss(variable + step * direction) - loss(variable - step * direction)) / (2 * step)
    assert float((gradient * direction).sum()) == pytest.approx(float(numeric), rel=0.01, abs=1e-3)


def test_strokes_only_icons_are_drawn():
    svg = HEAD + '<g fill="none" stroke="black" stroke-width="3" stroke-linecap="round"><circle cx="32" cy="32" r="20"/><path d="M22 28 h0 M42 28 h0 M22 40 q10 8 20 0"/></g></svg>'
    drawing = parse_svg(svg, 64)
    assert len(drawing.groups) == 2 and not drawing.warnings
    lib.assert_renders_like_cairosvg(svg.encode(), drawing, 128, 0.004)


# Icon-set and emoji markup as found in the wild: <line>, arcs, currentColor, transforms with skew, dashes,
# a user-space radial gradient.
ICON = '<svg xmlns="http://www.w3.org/2000/svg" width="24" height="24" viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round">'
ICONS = {
 "smile": ICON + '<circle cx="12" cy="12" r="10"/><path d="M8 14s1.5 2 4 2 4-2 4-2"/><line x1="9" y1="9" x2="9.01" y2="9"/><line x1="15" y1="9" x2="15.01" y2="9"/></svg>',
 "settings": ICON + '<circle cx="12" cy="12" r="3"/><path d="M19.4 15a1.65 1.65 0 0 0 .33 1.82l.06.06a2 2 0 0 1 0 2.83 2 2 0 0 1-2.83 0l-.06-.06a1.65 1.65 0 0 0-1.82-.33 1.65 1.65 0 0 0-1 1.51V21a2 2 0 0 1-2 2 2 2 0 0 1-2-2v-.09A1.65 1.65 0 0 0 9 19.4a1.65 1.65 0 0 0-1.82.33l-.06.06a2 2 0 0 1-2.83 0 2 2 0 0 1 0-2.83l.06-.06a1.65 1.65 0 0 0 .33-1.82 1.65 1.65 0 0 0-1.51-1H3a2 2 0 0 1-2-2 2 2 0 0 1 2-2h.09A1.65 1.65 0 0 0 4.6 9a1.65 1.65 0 0 0-.33-1.82l-.06-.06a2 2 0 0 1 0-2.83 2 2 0 0 1 2.83 0l.06.06a1.65 1.65 0 0 0 1.82.33H9a1.65 1.65 0 0 0 1-1.51V3a2 2 0 0 1 2-2 2 2 0 0 1 2 2v.09a1.65 1.65 0 0 0 1 1.51 1.65 1.65 0 0 0 1.82-.33l.06-.06a2 2 0 0 1 2.83 0 2 2 0 0 1 0 2.83l-.06.06a1.65 1.65 0 0 0-.33 1.82V9a1.65 1.65 0 0 0 1.51 1H21a2 2 0 0 1 2 2 2 2 0 0 1-2 2h-.09a1.65 1.65 0 0 0-1.51 1z"/></svg>',
 "user": ICON + '<path d="M20 21v-2a4 4 0 0 0-4-4H8a4 4 0 0 0-4 4v2"/><circle cx="12" cy="7" r="4"/></svg>',
 "dashed_rot": '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 100"><g transform="rotate(30 50 50) skewX(10)"><rect x="20" y="25" width="60" height="50" rx="8" fill="#fee" stroke="#c00" stroke-width="4" stroke-dasharray="10 5"/></g><polyline points="10,90 30,70 50,90 70,70 90,90" fill="none" stroke="navy" stroke-width="3"/></svg>',
 "emoji_grad": '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 36 36"><defs><radialGradient id="a" cx="18" cy="14" r="20" gradientUnits="userSpaceOnUse"><stop offset="0" stop-color="#FFE8B6"/><stop offset="1" stop-color="#FFCC4D"/></radialGradient></defs><path fill="url(#a)" d="M36 18c0 9.941-8.059 18-18 18S0 27.941 0 18 8.059 0 18 0s18 8.059 18 18"/><ellipse fill="#664500" cx="12" cy="13.5" rx="2.5" ry="3.5"/><ellipse fill="#664500" cx="24" cy="13.5" rx="2.5" ry="3.5"/><path fill="#664500" d="M18 21c-3.623 0-6.027-.422-9-1-.679-.131-2 0-2 2 0 4 4.595 9 11 9 6.404 0 11-5 11-9 0-2-1.321-2.132-2-2-2.973.578-5.377 1-9 1z"/><path fill="#FFF" d="M9 22s3 1 9 1 9-1 9-1-2 4-9 4-9-4-9-4z"/></svg>',
}


@pytest.mark.parametrize("name", list(ICONS), ids=list(ICONS))
def test_real_world_icon_markup_renders_like_cairosvg(name):
    drawing = parse_svg(ICONS[name], 64)
    assert not drawing.warnings
    lib.assert_renders_like_cairosvg(ICONS[name].encode(), drawing, 128, 0.004)


def test_layer_files_count_a_filled_and_stroked_shape_once(tmp_path):
    from comfyui_animate_suite.svg.animate import load_clipart

    svg = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 100">'
           '<rect x="10" y="10" width="30" height="60" fill="#f00" stroke="#000" stroke-width="3"/>'
           '<rect x="60" y="10" width="30" height="60" fill="#00f"/></svg>')
    (tmp_path / "x.svg").write_text(svg)
    circles = "".join(f'<circle cx="{x}" cy="{y}" r="1"/>' for x, y in ((25, 20), (25, 60), (75, 20), (75, 60)))
    (tmp_path / "x_keypoint.svg").write_text(f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 100">{circles}</svg>')
    (tmp_path / "x_layer.json").write_text('[{"path_index": [1], "layer": "a", "control_index": [1, 2]},'
                                           ' {"path_index": [2], "layer": "b", "control_index": [3, 4]}]')
    rig = load_clipart(tmp_path / "x.svg", 100).rig
    assert [layer.path_index for layer in rig.layer_definitions] == [[0, 1], [2]]  # fill + stroke outline, then fill


def test_written_frames_keep_gradients_that_follow_their_shapes():
    from comfyui_animate_suite.svg import export

    svg = (lib.EXAMPLES / "gallery" / "gradient_rocket.svg").read_text()
    layout, points = layout_drawing(parse_svg(svg, 128))
    moved = points * 0.9 + torch.tensor([5.0, 3.0])
    text = export.frame_svg(layout, moved, points)
    assert "Gradient" in text and 'fill="url(#paint' in text
    again_layout, again_points = layout_drawing(parse_svg(text, 128))
    ours = rasterise(layout, moved, background=(1.0, 1.0, 1.0))[0]
    assert torch.allclose(rasterise(again_layout, again_points, background=(1.0, 1.0, 1.0))[0], ours, atol=1e-4)
    assert np.abs(lib.cairo_render(text.encode(), 128) - ours.numpy()).mean() < 0.004
    assert "Gradient" in export.animated_svg(layout, torch.stack([points, moved]), 2.0, points)
