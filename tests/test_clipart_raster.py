"""The PyTorch rasteriser: agreement with cairosvg, gradients, fill rules, compositing, batching."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

import clipart_testlib as lib
from clipart_testlib import shared_clipart  # noqa: F401  (a fixture)
from comfyui_animate_suite.core.errors import InputError
from comfyui_animate_suite.svg import raster
from comfyui_animate_suite.svg.document import load_svg, parse_svg
from comfyui_animate_suite.svg.paths import layout_drawing
from comfyui_animate_suite.svg.raster import rasterise

SHAPES = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">
  <path fill="#c03020" fill-opacity="0.8" d="M5.3 6.1 C12 2 20 3.7 26.2 8.4 C28 15 25 22 19.6 27.1 L7.7 24.9 Z"/>
  <path fill="#2050e0" fill-rule="evenodd" d="M10.3 10.1 L21.2 11.4 L15.6 22.1 Z M13.1 13.2 L18.4 13.9 L15.2 18.3 Z"/>
</svg>"""


@pytest.mark.parametrize("name", lib.clipart_names() or ["(no clipart)"])
def test_samples_render_like_cairosvg(name, shared_clipart):
    if name not in shared_clipart:
        pytest.skip("no clipart")
    path = lib.art_path(name)
    lib.assert_renders_like_cairosvg(path.read_bytes(), load_svg(path, 256), 256)


def test_the_pack_example_renders_like_cairosvg_at_other_sizes():
    path = lib.EXAMPLES / "gingerbread.svg"
    drawing = load_svg(path, 256)
    for size in (96, 512):
        lib.assert_renders_like_cairosvg(path.read_bytes(), drawing, size)


def _layout(svg: str, canvas: int = 32):
    layout, points = layout_drawing(parse_svg(svg, canvas))
    return layout, points.double()


@pytest.mark.parametrize("output", ["alpha", "on white"])
def test_gradients_match_finite_differences(output):
    layout, points = _layout(SHAPES)
    weights = torch.rand(1, 32, 32, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def loss(p):
        image = rasterise(layout, p, background=(1.0, 1.0, 1.0)) if output == "on white" else rasterise(layout, p)[..., 3:]
        return (image * weights[..., : image.shape[-1]]).sum()

    points.requires_grad_(True)
    (gradient,) = torch.autograd.grad(loss(points), points)
    assert gradient.abs().max() > 0.1
    step = 1e-5
    with torch.no_grad():
        for index in range(len(points)):
            for axis in range(2):
                plus, minus = points.clone(), points.clone()
                plus[index, axis] += step
                minus[index, axis] -= step
                numeric = (loss(plus) - loss(minus)) / (2 * step)
                assert abs(numeric - gradient[index, axis]) < 1e-6 + 1e-6 * abs(numeric), (index, axis)


def test_gradients_reach_every_frame_of_a_batch():
    layout, points = _layout(SHAPES)
    frames = torch.stack([points, points + 1.5, points - 0.7]).requires_grad_(True)
    image = rasterise(layout, frames, background=(1.0, 1.0, 1.0))
    image[1].sum().backward()
    assert frames.grad[1].abs().sum() > 0
    assert frames.grad[0].abs().sum() == 0 and frames.grad[2].abs().sum() == 0


@pytest.mark.parametrize("inner", ["M12 12 L20 12 L20 20 L12 20 Z", "M12 12 L12 20 L20 20 L20 12 Z"],
                         ids=["hole drawn in the same direction", "hole drawn in the opposite direction"])
def test_even_odd_and_non_zero_on_a_shape_with_a_hole(inner):
    same_direction = inner.startswith("M12 12 L20")
    coverage = {}
    for rule in ("nonzero", "evenodd"):
        svg = (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><path fill-rule="{rule}" '
               f'd="M4 4 L28 4 L28 28 L4 28 Z {inner}"/></svg>')
        layout, points = _layout(svg)
        coverage[rule] = rasterise(layout, points)[0, ..., 3]
    assert coverage["evenodd"][16, 16] == 0 and coverage["evenodd"][8, 8] == 1
    assert coverage["nonzero"][16, 16] == (1 if same_direction else 0) and coverage["nonzero"][8, 8] == 1
    ring = 24 * 24 - 8 * 8
    assert coverage["evenodd"].sum().item() == pytest.approx(ring)
    assert coverage["nonzero"].sum().item() == pytest.approx(24 * 24 if same_direction else ring)


def test_antialiased_edges_have_exact_area_coverage():
    layout, points = _layout('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><path d="M3.25 5 L20.75 5 L20.75 9.5 L3.25 9.5 Z"/></svg>')
    alpha = rasterise(layout, points)[0, ..., 3]
    assert alpha[6, 3].item() == pytest.approx(0.75) and alpha[6, 20].item() == pytest.approx(0.75)
    assert alpha[9, 10].item() == pytest.approx(0.5)
    assert alpha.sum().item() == pytest.approx(17.5 * 4.5)


def test_transparent_shapes_composite_over_in_paint_order():
    svg = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 8 8">
      <rect width="8" height="8" fill="#ff0000" fill-opacity="0.5"/><rect width="4" height="8" fill="#0000ff" fill-opacity="0.5"/></svg>"""
    layout, points = _layout(svg, 16)
    rgba = rasterise(layout, points)[0]
    alpha = 0.5 + 0.5 * 0.5
    torch.testing.assert_close(rgba[8, 2], torch.tensor([0.25 / alpha, 0.0, 0.5 / alpha, alpha], dtype=rgba.dtype))
    torch.testing.assert_close(rgba[8, 12], torch.tensor([1.0, 0.0, 0.0, 0.5], dtype=rgba.dtype))
    on_white = rasterise(layout, points, background=(1.0, 1.0, 1.0))[0]
    torch.testing.assert_close(on_white[8, 2], torch.tensor([0.5, 0.25, 0.75], dtype=rgba.dtype))


def test_a_batch_renders_each_frame_as_alone(shared_clipart):
    layout, points = layout_drawing(load_svg(lib.art_path("man_dance")))
    frames = torch.stack([points, points + torch.tensor([7.3, -4.1]), points * 1.1 - 10])
    batch = rasterise(layout, frames, size=128, background=(1.0, 1.0, 1.0))
    for index in range(3):
        alone = rasterise(layout, frames[index], size=128, background=(1.0, 1.0, 1.0))[0]
        # A batch cuts each curve into as many chords as its largest frame needs: edge pixels may differ a little.
        torch.testing.assert_close(batch[index], alone, atol=5e-3, rtol=0)


def test_shapes_partly_outside_the_canvas():
    layout, points = _layout('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><path d="M-50 -20 L16 -20 L16 40 L-50 40 Z"/></svg>')
    alpha = rasterise(layout, points)[0, ..., 3]
    assert torch.all(alpha[:, :16] == 1) and torch.all(alpha[:, 16:] == 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_gpu_matches_cpu(shared_clipart):
    layout, points = layout_drawing(load_svg(lib.art_path("man_dance")))
    torch.testing.assert_close(rasterise(layout, points.cuda()).cpu(), rasterise(layout, points), atol=1e-4, rtol=0)


def test_diffvg_is_optional_and_used_when_importable(monkeypatch):
    layout, points = _layout(SHAPES)
    raster._diffvg_available.cache_clear()
    monkeypatch.setitem(sys.modules, "pydiffvg", None)  # importing it fails
    assert torch.equal(rasterise(layout, points, backend="auto"), rasterise(layout, points, backend="torch"))
    raster._diffvg_available.cache_clear()
    with pytest.raises(InputError, match="pydiffvg"):
        rasterise(layout, points, backend="diffvg")
    # A stand-in with diffvg's API receives one Path per subpath and one ShapeGroup per shape.
    calls = []
    fake = types.SimpleNamespace(
        Path=lambda **kw: ("path", kw), ShapeGroup=lambda **kw: ("group", kw),
        RenderFunction=types.SimpleNamespace(
            serialize_scene=lambda w, h, shapes, groups: calls.append((w, h, shapes, groups)) or [],
            apply=lambda w, h, *args: torch.ones(h, w, 4)))
    monkeypatch.setitem(sys.modules, "pydiffvg", fake)
    raster._diffvg_available.cache_clear()
    image = rasterise(layout, points, size=64, background=(0.0, 0.0, 0.0))
    raster._diffvg_available.cache_clear()
    assert image.shape == (1, 64, 64, 3) and torch.all(image == 1)
    width, height, shapes, groups = calls[0]
    assert (width, height) == (64, 64) and len(shapes) == 3 and len(groups) == 2
    torch.testing.assert_close(shapes[0][1]["points"], points[:len(shapes[0][1]["points"])].float() * 2)
    assert groups[1][1]["use_even_odd_rule"] and groups[1][1]["shape_ids"].tolist() == [1, 2]


def test_gradients_flow_from_pixels_to_trajectories_through_the_rig():
    """The chain the text-guided mode optimises: Bézier control points -> poses -> ARAP -> points -> pixels."""
    from comfyui_animate_suite import svg

    rig = svg.load_clipart(lib.EXAMPLES / "gingerbread.svg").rig
    control = svg.init_bezier(rig.keypoints, 8.0, 256, 256, seed=3).requires_grad_(True)
    trajectories = svg.fix_start(control, rig.keypoints)
    poses = svg.bezier_poses(trajectories, svg.sample_times(12, 2))
    frames = svg.rasterise(rig.layout, svg.deform(rig, poses), 64, background=(1.0, 1.0, 1.0))
    assert frames.shape == (3, 64, 64, 3)
    target = torch.rand(3, 64, 64, 3, generator=torch.Generator().manual_seed(1))
    loss = ((frames - target) ** 2).mean()
    loss.backward()
    gradient = control.grad
    assert torch.isfinite(gradient).all() and gradient[:, 1:].abs().sum() > 0
    assert gradient[:, 0].abs().sum() == 0, "the fixed start point gets no gradient"

    def loss_of(moved):
        poses = svg.bezier_poses(svg.fix_start(moved, rig.keypoints), svg.sample_times(12, 2))
        image = svg.rasterise(rig.layout, svg.deform(rig, poses), 64, background=(1.0, 1.0, 1.0))
        return ((image - target) ** 2).mean().item()

    k, j = torch.nonzero(gradient[:, 1:].abs().sum(-1) == gradient[:, 1:].abs().sum(-1).max())[0].tolist()
    step = 0.05
    with torch.no_grad():
        for axis in range(2):
            plus, minus = control.detach().clone(), control.detach().clone()
            plus[k, j + 1, axis] += step
            minus[k, j + 1, axis] -= step
            numeric = (loss_of(plus) - loss_of(minus)) / (2 * step)
            assert numeric == pytest.approx(gradient[k, j + 1, axis].item(), rel=0.1, abs=1e-6)
