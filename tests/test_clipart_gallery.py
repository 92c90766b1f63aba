"""Our own gallery (examples/gallery: stroke icons, emoji faces, animals, people in parts, grouped and
transformed art, gradient art), rigged by detection and animated with every preset, a few frames each:
the drawing stays on the canvas, moves visibly (as the preset's name says), limbs never pass through
each other and no mesh triangle that carries artwork turns over (no tearing)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clipart_testlib import EXAMPLES
from comfyui_animate_suite.svg.animate import animate_procedural, limbs_cross, load_clipart, render_animation
from comfyui_animate_suite.svg.motion import PRESETS, MotionSettings, figure_of

GALLERY = sorted((EXAMPLES / "gallery").glob("*.svg"))
CANVAS = 96
FRAMES = 4  # one cycle: rest, a quarter, half, three quarters


def test_the_gallery_covers_the_kinds_of_clipart():
    names = [p.stem for p in GALLERY]
    assert len(names) >= 12
    for kind in ("icon_", "emoji_", "animal_", "person_", "grouped_", "gradient_"):
        assert any(n.startswith(kind) for n in names), kind
    texts = [p.read_text() for p in GALLERY]
    assert sum('fill="none"' in t and "stroke" in t for t in texts) >= 3
    assert sum("Gradient" in t for t in texts) >= 4 and sum("transform=" in t for t in texts) >= 2


def _carrying_triangles_keep_orientation(rig, keypoints) -> bool:
    with torch.no_grad():
        for layer in rig.layers:
            vertices = layer.solver.solve(keypoints[:, layer.keypoint_index]).numpy()
            carrying = np.unique(layer.face_index.numpy())
            if np.any(layer.mesh.areas(vertices)[:, carrying] <= 0):
                return False
    return True


@pytest.mark.parametrize("path", GALLERY, ids=[p.stem for p in GALLERY])
def test_every_preset_animates_gallery_clipart(path):
    clipart = load_clipart(path, CANVAS)
    rig = clipart.rig
    assert not rig.warnings, rig.warnings
    figure = figure_of(rig)
    size = figure.size
    for preset in PRESETS:
        animation = animate_procedural(rig, MotionSettings(preset, num_frames=FRAMES, fps=FRAMES, speed=1.0))
        points = animation.points()
        where = f"{path.stem}/{preset}"
        assert points.amin() >= 0 and points.amax() <= CANVAS, f"{where}: leaves the canvas"
        moved = (points - points[:1]).norm(dim=-1).amax()
        assert moved > 0.03 * size, f"{where}: moves only {float(moved):.2f} px"
        assert not limbs_cross(figure, animation.keypoints.numpy()), f"{where}: limbs cross"
        assert _carrying_triangles_keep_orientation(rig, animation.keypoints), f"{where}: a triangle turned over"
        centre = points.mean(1)
        height = points[..., 1].amax(1) - points[..., 1].amin(1)
        if preset in ("bounce", "jump"):
            assert centre[:, 1].amin() < centre[0, 1] - 0.02 * size, f"{where}: does not go up"
        if preset == "breathe":
            assert height.amax() > 1.025 * height[0], f"{where}: does not swell"
        if preset == "sway":
            assert (centre[:, 0] - centre[0, 0]).abs().amax() > 0.015 * size, f"{where}: does not sway"
    frames = render_animation(animation, size=48)  # the last preset renders
    assert frames.shape == (FRAMES, 48, 48, 3) and (frames[1:] - frames[:1]).abs().amax() > 0.1


def test_the_canvas_fit_can_be_turned_off():
    rig = load_clipart(EXAMPLES / "gallery" / "emoji_smile.svg", CANVAS).rig
    fitted = animate_procedural(rig, MotionSettings("jump", num_frames=FRAMES, fps=FRAMES, speed=1.0))
    free = animate_procedural(rig, MotionSettings("jump", num_frames=FRAMES, fps=FRAMES, speed=1.0, keep_on_canvas=False))
    assert "view" in fitted.motion and "view" not in free.motion
    assert free.points().amin() < 0 <= fitted.points().amin()  # the face jumps off the top unless fitted
    assert torch.equal(free.points()[0], rig.rest_points)
