"""Figures in parts (a floating head, a tail touching at one point, separate arms) are rigged quickly."""

from __future__ import annotations

import time

import numpy as np
import torch

from comfyui_animate_suite.svg import contour
from comfyui_animate_suite.svg.animate import animate_procedural, rig_drawing
from comfyui_animate_suite.svg.document import parse_svg
from comfyui_animate_suite.svg.motion import MotionSettings

FLOATING_HEAD = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 160">
<circle cx="50" cy="16" r="12" fill="#fc9" stroke="#333" stroke-width="3"/>
<g fill="none" stroke="#333" stroke-width="6" stroke-linecap="round">
<path d="M50 38 L50 95"/><path d="M50 55 L25 80"/><path d="M50 55 L75 80"/><path d="M50 95 L30 150"/><path d="M50 95 L70 150"/></g></svg>"""
TOUCHING_TAIL = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 200 100">
<ellipse cx="80" cy="50" rx="60" ry="30" fill="#39f"/><path d="M140 50 L190 20 L190 80 Z" fill="#f90"/></svg>"""
FAR_PARTS = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 200 200">
<rect x="70" y="80" width="60" height="90" rx="10" fill="#c44"/><circle cx="100" cy="40" r="25" fill="#fc9"/>
<rect x="10" y="90" width="30" height="15" fill="#47a"/><rect x="160" y="90" width="30" height="15" fill="#47a"/>
<path d="M60 10 L140 10 L100 1 Z" fill="#333" stroke="#333" stroke-width="0.3"/></svg>"""


def test_parts_are_joined_into_one_mesh_quickly():
    for svg in (FLOATING_HEAD, TOUCHING_TAIL, FAR_PARTS):
        drawing = parse_svg(svg, 128)
        assert len(contour.external_contours(contour.silhouette(drawing))) >= 2 or svg is TOUCHING_TAIL
        started = time.perf_counter()
        ring, _ = contour.figure_outline(drawing)
        assert time.perf_counter() - started < 0.8
        import shapely

        polygon = shapely.Polygon(ring)
        assert polygon.is_valid
        points = drawing.all_points()
        assert shapely.contains_xy(polygon, points[:, 0], points[:, 1]).all()


def test_a_figure_in_parts_is_rigged_and_every_part_moves():
    drawing = parse_svg(FAR_PARTS, 128)
    started = time.perf_counter()
    rig, source = rig_drawing(drawing)
    assert time.perf_counter() - started < 5 and source == "detected"
    animation = animate_procedural(rig, MotionSettings("wiggle", num_frames=8, fps=8))
    points = animation.points()
    layout = rig.layout
    for group in range(layout.num_groups):  # every part (head, hat, both arms, body) is carried by the mesh
        start, stop = layout.group_point_range(group)
        assert torch.isfinite(points[:, start:stop]).all()
    moved = (points - points[:1]).norm(dim=-1).amax(dim=0)
    assert float(moved.max()) > 1.0
    hat = layout.group_point_range(4)
    head = layout.group_point_range(1)
    # The floating hat moves with the figure and stays in one piece (nearly rigid).
    hat_points = points[:, hat[0]:hat[1]]
    head_motion = (points[:, head[0]:head[1]] - points[:1, head[0]:head[1]]).mean(1).norm(dim=-1).max()
    hat_motion = (hat_points - hat_points[:1]).mean(1).norm(dim=-1).max()
    assert float(hat_motion) > 0.3 * float(head_motion)
    sizes = torch.cdist(hat_points, hat_points)
    assert float((sizes - sizes[:1]).abs().max()) < 0.15 * float(sizes[0].max())


def test_every_sizeable_part_gets_keypoints_of_its_own():
    from comfyui_animate_suite.svg.autorig import detect_keypoints

    drawing = parse_svg(FAR_PARTS, 128)
    keypoints, bones = detect_keypoints(drawing)
    # The head (a disc, no skeleton branch of its own) and the body (a box) hold keypoints (canvas = 0.64 x viewBox).
    head = np.linalg.norm(keypoints - np.array([100, 40]) * 0.64, axis=1) < 25 * 0.64
    body = np.all((keypoints >= np.array([70, 80]) * 0.64) & (keypoints <= np.array([130, 170]) * 0.64), axis=1)
    assert head.any() and body.any(), keypoints
    assert len(bones) and bones.max() < len(keypoints)
