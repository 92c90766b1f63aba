"""Hostile, corrupt and impossible inputs (issue 16): each ends in one line naming the input, never a
traceback, and nothing is read or written outside the folder it belongs to."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest

import clipart_testlib as lib
from comfyui_animate_suite.pipelines import video as video_io
from comfyui_animate_suite.pipelines.errors import InputError
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
