"""Procedural clipart animation on the real AniClipart samples (and the pack's example).

Tolerances at amplitude 1 (the presets' natural size), for every sample and preset:
- bones keep their lengths exactly where a preset turns limbs (wave, flap, walk, wiggle), and stay
  within 0.75..1.30 of their rest length where it bends, squashes or ripples the whole figure;
- no mesh triangle that carries artwork turns over, and at least 98% of them keep their area
  within 0.5..2 times the rest area.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import clipart_testlib as lib
from clipart_testlib import shared_clipart  # noqa: F401  (a fixture)
from comfyui_animate_suite.core.errors import InputError
from comfyui_animate_suite.svg import export
from comfyui_animate_suite.svg.animate import (CANVAS_MARGIN, animate_procedural, animation_from_record, animation_svg,
                                               apply_view, folds, frame_svgs, limbs_cross, load_clipart, motion_record,
                                               render_animation)
from comfyui_animate_suite.svg.autorig import detect_keypoints
from comfyui_animate_suite.svg.contour import silhouette
from comfyui_animate_suite.svg.document import parse_svg
from comfyui_animate_suite.svg.motion import PRESETS, MotionSettings, figure_of, keypoint_motion
from comfyui_animate_suite.svg.paths import layout_drawing
from comfyui_animate_suite.svg.raster import rasterise
from comfyui_animate_suite.svg.rig import build_rig, deform
from comfyui_animate_suite.svg.safe_xml import parse_xml
from comfyui_animate_suite.svg.skeleton import bone_lengths

LIMB_PRESETS = ("wave", "flap", "walk", "wiggle")
FRAMES = 12


@pytest.fixture(scope="module")
def cliparts(shared_clipart):
    return {name: load_clipart(lib.art_path(name)) for name in shared_clipart}


@pytest.fixture(scope="module")
def example():
    return load_clipart(lib.EXAMPLES / "gingerbread.svg")


def _settings(preset, **changes):
    values = dict(preset=preset, num_frames=FRAMES, fps=12.0, speed=1.0)
    values.update(changes)
    return MotionSettings(**values)


def _art_triangle_area_ratios(clipart, keypoints):
    ratios = []
    for layer in clipart.rig.layers:
        vertices = layer.solver.solve(keypoints[:, layer.keypoint_index]).numpy()
        carrying = np.unique(layer.face_index.numpy())
        ratios.append((layer.mesh.areas(vertices) / layer.mesh.areas())[:, carrying].ravel())
    return np.concatenate(ratios)


def _check_animation(clipart, preset):
    rig = clipart.rig
    animation = animate_procedural(rig, _settings(preset))
    full = keypoint_motion(figure_of(rig), _settings(preset))
    assert not folds(rig, torch.from_numpy(full)), "the preset folds the drawing at its natural size"
    if animation.motion["amplitude_used"] < 1.0:  # played smaller only where limbs would pass through each other
        assert limbs_cross(figure_of(rig), full) and animation.motion["amplitude_used"] >= 0.4, animation.motion
    else:
        torch.testing.assert_close(animation.keypoints, torch.from_numpy(full), atol=0, rtol=0)
    keypoints = animation.keypoints
    assert keypoints.shape == (FRAMES, rig.num_keypoints, 2)
    assert torch.equal(keypoints[0], rig.keypoints), "a fixed start begins at the rest pose"
    assert (keypoints - rig.keypoints).abs().max() > 1.0, "the preset does not move"
    points = animation.points()
    assert torch.equal(points[0], apply_view(rig.rest_points, animation.motion.get("view"))), "frame 0 is the input artwork"
    assert points.amin() >= CANVAS_MARGIN - 1e-3 and (points.amax(dim=(0, 1)) <= torch.tensor(rig.canvas) - CANVAS_MARGIN + 1e-3).all(), \
        "the drawing leaves the canvas"
    ratio = bone_lengths(keypoints, rig.bones) / bone_lengths(rig.keypoints, rig.bones)
    if preset in LIMB_PRESETS:
        torch.testing.assert_close(ratio, torch.ones_like(ratio), atol=1e-9, rtol=0)
    assert ratio.min() >= 0.75 and ratio.max() <= 1.30, (preset, float(ratio.min()), float(ratio.max()))
    areas = _art_triangle_area_ratios(clipart, keypoints)
    assert areas.min() > 0, f"{preset}: a triangle carrying artwork turned over"
    assert np.mean((areas >= 0.5) & (areas <= 2.0)) >= 0.98, preset
    frames = render_animation(animation, size=64)
    assert frames.shape == (FRAMES, 64, 64, 3) and torch.isfinite(frames).all()
    assert (frames[1:] - frames[:1]).abs().amax() > 0.1, "the rendered frames do not change"
    return animation


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_animates_every_sample(preset, cliparts):
    for name, clipart in cliparts.items():
        try:
            _check_animation(clipart, preset)
        except AssertionError as error:
            raise AssertionError(f"{name}: {error}") from None


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_animates_the_pack_example(preset, example):
    _check_animation(example, preset)


def test_first_frame_renders_the_input_artwork(cliparts):
    for name, clipart in cliparts.items():
        animation = animate_procedural(clipart.rig, _settings("walk"))
        first = render_animation(animation, size=256)[0]
        layout, points = layout_drawing(clipart.drawing)  # the SVG as parsed, before any meshing
        original = rasterise(layout, points, 256, (1.0, 1.0, 1.0))[0]
        # Same geometry; only the subdivided curves are cut into chords at other places.
        assert (first - original).abs().mean() < 1e-4 and (first - original).abs().max() < 0.05, name


def test_looping_clips_continue_seamlessly(example):
    for preset in ("wave", "jump", "swim", "wiggle"):
        once = animate_procedural(example.rig, _settings(preset, num_frames=12, speed=1.0)).keypoints
        twice = animate_procedural(example.rig, _settings(preset, num_frames=24, speed=1.0)).keypoints
        torch.testing.assert_close(twice[12:], once, atol=1e-9, rtol=0)


def test_amplitude_speed_and_seed(example):
    rig = example.rig
    still = animate_procedural(rig, _settings("wave", amplitude=0.0)).keypoints
    assert torch.equal(still, rig.keypoints.expand_as(still))
    small = animate_procedural(rig, _settings("sway", amplitude=0.5)).keypoints - rig.keypoints
    large = animate_procedural(rig, _settings("sway", amplitude=1.0)).keypoints - rig.keypoints
    assert large.abs().max() > 1.8 * small.abs().max()
    seeds = [animate_procedural(rig, _settings("wave", seed=s)).keypoints for s in (0, 1)]
    assert not torch.allclose(seeds[0], seeds[1]) and torch.equal(seeds[0], animate_procedural(rig, _settings("wave")).keypoints)
    free = animate_procedural(rig, _settings("wave", fixed_start=False)).keypoints
    assert (free[0] - rig.keypoints).abs().max() > 0.5
    with pytest.raises(InputError, match="motion"):
        MotionSettings("moonwalk").check()
    # speed is in cycles per second: 24 frames at 12 fps and 1 cycle/s is two full cycles
    doubled = animate_procedural(rig, _settings("sway", num_frames=24, speed=1.0)).keypoints
    torch.testing.assert_close(doubled[12:], doubled[:12], atol=1e-9, rtol=0)


def test_layered_rig_keeps_paint_order_and_moves_layers_by_their_keypoints(cliparts):
    clipart = cliparts["man_boxing2"] if "man_boxing2" in cliparts else pytest.skip("man_boxing2 is absent")
    rig = clipart.rig
    assert len(rig.layers) == 5
    assert [g.fill for g in rig.drawing.groups] == [g.fill for g in clipart.drawing.groups]
    targets = rig.keypoints.clone().unsqueeze(0)
    layer = rig.layers[3]  # driven by keypoints 8, 10, 12 (1-based 9, 11, 13); 8 also drives layer 2
    assert layer.keypoint_index.tolist() == [8, 10, 12]
    targets[0, [10, 12]] += torch.tensor([6.0, -4.0], dtype=torch.float64)
    points = deform(rig, targets)[0]
    moved = (points - rig.rest_points).norm(dim=-1) > 1e-3
    assert moved[layer.point_index].float().mean() > 0.9
    others = torch.ones(len(points), dtype=torch.bool)
    others[layer.point_index] = False
    assert not moved[others].any(), "keypoints of one layer moved another layer"


def test_animated_svg_parses_and_has_every_frame(example):
    animation = animate_procedural(example.rig, _settings("wave", num_frames=16))
    text = animation_svg(animation, 320)
    root = parse_xml(text)
    animations = [e for e in root.iter() if e.tag == "animate"]
    assert animations, "no shape is animated"
    for element in animations:
        assert element.attrib["attributeName"] == "d" and element.attrib["calcMode"] == "discrete"
        assert len(element.attrib["values"].split(";")) == 16
        assert len(element.attrib["keyTimes"].split(";")) == 16
        assert float(element.attrib["dur"].rstrip("s")) == pytest.approx(16 / 12.0)
    assert root.attrib["width"] == "320" and root.attrib["viewBox"] == "0 0 256 256"
    # The still first frame of every shape draws the input artwork.
    first = parse_svg(text)
    layout, points = layout_drawing(first)
    original_layout, original_points = layout_drawing(example.drawing)
    assert layout.num_groups == original_layout.num_groups


def test_frame_svgs_are_exact_and_lossless_for_unchanged_shapes(cliparts):
    clipart = cliparts["man_dance"]
    animation = animate_procedural(clipart.rig, _settings("wave", num_frames=4))
    texts = frame_svgs(animation)
    assert len(texts) == 4
    sources = [g.source_d for g in clipart.drawing.groups]
    assert all(d and d in texts[0] for d in sources), "frame 0 must reuse the original path data"
    _, parsed = layout_drawing(parse_svg(texts[2]))
    assert torch.equal(parsed, animation.points()[2])


def test_motion_json_replays_at_any_size(example):
    animation = animate_procedural(example.rig, _settings("jump"))
    record = export.parse_motion_json(export.motion_json(motion_record(animation)))
    replay = animation_from_record(example.drawing, record)
    torch.testing.assert_close(replay.keypoints, animation.keypoints, atol=1e-5, rtol=0)
    torch.testing.assert_close(replay.points(), animation.points(), atol=1e-3, rtol=0)
    big = render_animation(replay, size=512)
    small = render_animation(animation, size=256)
    assert big.shape[1:3] == (512, 512)
    downsized = torch.nn.functional.avg_pool2d(big.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)
    assert (downsized - small).abs().mean() < 0.01
    with pytest.raises(InputError, match="different SVG"):
        record.svg_sha256 = "0" * 64
        animation_from_record(example.drawing, record, svg_sha256="1" * 64)
    with pytest.raises(InputError, match="motion"):
        export.parse_motion_json('{"format": "something else"}')


def test_detected_keypoints_sit_on_the_figure_and_connect(cliparts, example):
    for name, clipart in {**cliparts, "gingerbread": example}.items():
        drawing = clipart.drawing
        keypoints, bones = detect_keypoints(drawing, 0.5)
        assert 3 <= len(keypoints) <= 60, (name, len(keypoints))
        mask = silhouette(drawing, 1)
        pixels = np.floor(keypoints).astype(int)
        assert mask[pixels[:, 1], pixels[:, 0]].mean() >= 0.9, f"{name}: detected keypoints off the figure"
        seen, frontier = {0}, [0]
        while frontier:
            node = frontier.pop()
            for a, b in bones:
                for x, y in ((a, b), (b, a)):
                    if x == node and y not in seen:
                        seen.add(y)
                        frontier.append(y)
        assert len(seen) == len(keypoints), f"{name}: the detected bones do not connect all keypoints"
        coarse, _ = detect_keypoints(drawing, 0.0)
        fine, _ = detect_keypoints(drawing, 1.0)
        assert len(coarse) <= len(keypoints) <= len(fine), name


def test_a_detected_rig_animates(example):
    clipart = load_clipart(lib.EXAMPLES / "gingerbread.svg", use_side_files=False)
    assert clipart.keypoint_source == "detected"
    _check_animation(clipart, "wave")


def test_simple_shapes_still_get_a_skeleton():
    drawing = parse_svg('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 100"><ellipse cx="50" cy="50" rx="30" ry="12"/></svg>')
    keypoints, bones = detect_keypoints(drawing)
    assert len(keypoints) >= 2 and len(bones) >= 1
    rig = build_rig(drawing, keypoints, bones)
    animate_procedural(rig, _settings("swim"))


def test_bad_keypoints_are_refused(example):
    drawing = example.drawing
    with pytest.raises(InputError, match="outside the figure"):
        build_rig(drawing, np.array([[128.0, 128.0], [2.0, 2.0]]))
    with pytest.raises(InputError, match="same place"):
        build_rig(drawing, np.array([[128.0, 128.0], [128.0, 128.0]]))
    with pytest.raises(InputError, match="canvas"):
        build_rig(drawing, np.array([[128.0, 128.0], [900.0, 2.0]]))


def test_renders_that_would_not_fit_in_memory_are_refused(example):
    animation = animate_procedural(example.rig, _settings("sway", num_frames=1000))
    with pytest.raises(InputError, match="GB"):
        render_animation(animation, size=4096)


def test_motions_that_would_fold_the_drawing_are_played_smaller(example):
    from comfyui_animate_suite.svg.animate import folds

    wild = _settings("wave", amplitude=5.0)
    unguarded = animate_procedural(example.rig, wild, avoid_folds=False)
    assert folds(example.rig, unguarded.keypoints), "amplitude 5 should fold the gingerbread's armpits"
    guarded = animate_procedural(example.rig, wild)
    assert 0 < guarded.motion["amplitude_used"] < 5.0
    assert not folds(example.rig, guarded.keypoints)
    gentle = animate_procedural(example.rig, _settings("wave"))
    assert gentle.motion["amplitude_used"] == 1.0
