"""The built-in (permissively licensed) mesher: quality comparable to Triangle's, same motion, no `triangle` needed."""

from __future__ import annotations

import builtins

import numpy as np
import pytest
import torch

from clipart_testlib import EXAMPLES
from comfyui_animate_suite.core.errors import InputError
from comfyui_animate_suite.svg import mesh
from comfyui_animate_suite.svg.animate import animate_procedural, load_clipart
from comfyui_animate_suite.svg.motion import MotionSettings
from comfyui_animate_suite.svg.rig import RigSettings


def _min_angles(layer_mesh: mesh.Mesh) -> np.ndarray:
    corners = layer_mesh.vertices[layer_mesh.triangles]
    sides = [np.linalg.norm(corners[:, (i + 1) % 3] - corners[:, i], axis=1) for i in range(3)]
    angles = []
    for i in range(3):
        a, b, c = sides[i], sides[(i + 1) % 3], sides[(i + 2) % 3]
        angles.append(np.degrees(np.arccos(np.clip((b * b + c * c - a * a) / (2 * b * c), -1, 1))))
    return np.min(angles, axis=0)


@pytest.fixture(scope="module")
def builtin_clipart():
    return load_clipart(EXAMPLES / "gingerbread.svg", 256)


def test_the_default_mesher_needs_no_triangle(monkeypatch):
    real_import = builtins.__import__

    def no_triangle(name, *args, **kwargs):
        if name == "triangle":
            raise ImportError("triangle is not installed")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_triangle)
    clipart = load_clipart(EXAMPLES / "gingerbread.svg", 256)
    assert clipart.rig.settings.mesher == "builtin"
    with pytest.raises(InputError, match="triangle"):
        load_clipart(EXAMPLES / "gingerbread.svg", 256, settings=RigSettings(mesher="triangle"))


def test_builtin_mesh_quality_is_comparable_to_triangle(builtin_clipart):
    pytest.importorskip("triangle")
    ours = builtin_clipart.rig.layers[0].mesh
    theirs = load_clipart(EXAMPLES / "gingerbread.svg", 256, settings=RigSettings(mesher="triangle")).rig.layers[0].mesh
    assert np.all(ours.areas() > 0), "every triangle counter-clockwise and non-degenerate"
    assert ours.areas().max() <= mesh.DEFAULT_MAX_TRI_AREA * 1.05
    assert 0.7 < len(ours.triangles) / len(theirs.triangles) < 1.4
    ours_angles, their_angles = _min_angles(ours), _min_angles(theirs)
    assert np.percentile(ours_angles, 5) > np.percentile(their_angles, 5) - 5
    assert np.median(ours_angles) > 40 and np.mean(ours_angles < 15) < 0.01
    # The keypoints are the handles and every drawing point sits in a triangle.
    np.testing.assert_array_equal(ours.vertices[ours.handle_index], builtin_clipart.rig.keypoints.numpy())


def test_builtin_mesh_moves_the_shipped_clipart_like_triangle(builtin_clipart):
    pytest.importorskip("triangle")
    theirs = load_clipart(EXAMPLES / "gingerbread.svg", 256, settings=RigSettings(mesher="triangle"))
    for preset in ("wave", "jump"):
        animation = animate_procedural(theirs.rig, MotionSettings(preset, num_frames=8, fps=8))
        with torch.no_grad():
            ours = builtin_clipart.rig.render(animation.keypoints)
            theirs_frames = theirs.rig.render(animation.keypoints)
        difference = (ours - theirs_frames).abs().mean(dim=(1, 2, 3))
        motion = (theirs_frames - theirs_frames[:1]).abs().mean(dim=(1, 2, 3))
        assert difference.max() < 0.004, difference
        assert difference.max() < 0.25 * motion.max(), (difference, motion)
