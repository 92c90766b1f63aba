"""SVG strokes as filled outlines (so they deform with the mesh and rasterise like any fill).

A stroke's centre line is flattened, cut into dashes, and swept with shapely/GEOS buffers (caps and
round or bevel joins); mitre joins are bevels plus the mitre triangle wherever the mitre stays within
``stroke-miterlimit`` (SVG's rule: beyond it the join is bevelled). The outline is computed in the
element's own coordinates, so transforms scale and skew it as they do the shape; with
``vector-effect: non-scaling-stroke`` it is computed after the transform instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .pathdata import Subpath

FLATTEN_TOLERANCE = 0.04  # px: how far the flattened centre line (and the outline) may stray from the curve
MAX_DASHES = 20_000


@dataclass
class StrokeStyle:
    width: float  # in the coordinates the outline is computed in
    join: str = "miter"  # miter | round | bevel
    cap: str = "butt"  # butt | round | square
    miter_limit: float = 4.0
    dashes: tuple[float, ...] = ()
    dash_offset: float = 0.0


def stroke_outline(subpaths: list[Subpath], style: StrokeStyle, pixel_scale: float) -> list[Subpath]:
    """The stroke's outline as closed line subpaths (fill it even-odd). ``pixel_scale``: canvas pixels
    per unit of the subpaths' coordinates (sets the flattening and round-join resolution)."""
    import shapely

    half = style.width / 2
    if not half > 0 or not math.isfinite(half):
        return []
    pixel_scale = max(pixel_scale, 1e-12)
    quad_segs = _quarter_segments(half * pixel_scale)
    pieces = []
    corners = []
    for subpath in subpaths:
        line, corner = flatten_subpath(subpath, FLATTEN_TOLERANCE / pixel_scale, with_corners=True)
        corners.append(line[corner])
        closed = subpath.closed and len(line) > 2
        if closed and not np.allclose(line[0], line[-1]):
            line = np.concatenate([line, line[:1]])
        if style.dashes:
            pieces += [(d, False) for d in _dash(line, style.dashes, style.dash_offset)]
        else:
            pieces.append((line, closed))
    corner_points = np.concatenate(corners) if corners else np.zeros((0, 2))
    shapes = []
    join = "round" if style.join == "round" else "bevel"
    cap = {"butt": "flat", "round": "round", "square": "square"}.get(style.cap, "flat")
    for line, closed in pieces:
        line = _drop_repeats(line)
        if len(line) < 2:
            if len(line) == 1 and cap != "flat":  # a zero-length subpath draws its cap: a dot or a square
                shapes.append(shapely.Point(line[0]).buffer(half, quad_segs=quad_segs, cap_style=cap))
            continue
        geometry = shapely.LinearRing(line) if closed and len(line) > 3 else shapely.LineString(line)
        shapes.append(geometry.buffer(half, quad_segs=quad_segs, cap_style=cap, join_style=join))
        if style.join == "miter" or style.join == "miter-clip" or style.join == "arcs":
            shapes += _mitre_triangles(line, closed and len(line) > 3, half, style.miter_limit, corner_points)
    if not shapes:
        return []
    outline = shapely.union_all(shapes).simplify(0.5 * FLATTEN_TOLERANCE / pixel_scale)
    return _polygon_subpaths(outline)


def _quarter_segments(radius_px: float) -> int:
    if radius_px <= FLATTEN_TOLERANCE:
        return 1
    step = 2 * math.acos(max(1 - FLATTEN_TOLERANCE / radius_px, -1.0))
    return int(min(max(math.ceil((math.pi / 2) / step), 1), 64))


def flatten_subpath(subpath: Subpath, tolerance: float, with_corners: bool = False):
    """Points along a subpath's segments (closed subpaths end at their start); with ``with_corners`` also
    a mask of the points that end a segment (where joins belong; the others are along curves)."""
    points = subpath.points
    count = len(points)
    out = [points[0]]
    corner = [True]
    cursor = 0
    for ncp in subpath.num_control_points:
        step = int(ncp) + 1
        control = points[[(cursor + k) % count for k in range(step + 1)]]
        cursor += step
        if ncp == 0:
            out.append(control[1])
            corner.append(True)
            continue
        bend = np.linalg.norm(control[2:] - 2 * control[1:-1] + control[:-2], axis=1).max()
        n = int(min(max(math.ceil(math.sqrt(0.75 * bend / tolerance)), 1), 256))
        t = np.linspace(0, 1, n + 1)[1:, None]
        u = 1 - t
        out += list(u ** 3 * control[0] + 3 * u * u * t * control[1] + 3 * u * t * t * control[2] + t ** 3 * control[3])
        corner += [False] * (n - 1) + [True]
    line = np.array(out, np.float64)
    return (line, np.array(corner, bool)) if with_corners else line


def _drop_repeats(line: np.ndarray) -> np.ndarray:
    if len(line) < 2:
        return line
    keep = np.concatenate([[True], np.any(np.abs(np.diff(line, axis=0)) > 1e-12, axis=1)])
    return line[keep]


def _dash(line: np.ndarray, dashes: tuple[float, ...], offset: float) -> list[np.ndarray]:
    """The pieces of a polyline that the dash pattern draws."""
    pattern = np.array(dashes * (2 if len(dashes) % 2 else 1), np.float64)
    period = pattern.sum()
    lengths = np.linalg.norm(np.diff(line, axis=0), axis=1)
    cumulative = np.concatenate([[0.0], np.cumsum(lengths)])
    total = cumulative[-1]
    if period <= 0 or total <= 0:
        return [line]
    if total / period * len(pattern) > MAX_DASHES:
        return [line]  # a pattern finer than the drawing can show: draw the line solid
    bounds = np.concatenate([[0.0], np.cumsum(pattern)])
    start = -(offset % period)
    pieces = []
    while start < total:
        for k in range(0, len(pattern), 2):
            a, b = start + bounds[k], start + bounds[k + 1]
            a, b = max(a, 0.0), min(b, total)
            if b > a or (b == a and 0 <= a <= total and pattern[k] == 0):
                pieces.append(_sub_line(line, cumulative, a, b))
        start += period
    return pieces


def _sub_line(line: np.ndarray, cumulative: np.ndarray, a: float, b: float) -> np.ndarray:
    def at(s):
        i = int(min(max(np.searchsorted(cumulative, s, side="right") - 1, 0), len(line) - 2))
        span = cumulative[i + 1] - cumulative[i]
        f = 0.0 if span <= 0 else (s - cumulative[i]) / span
        return line[i] + f * (line[i + 1] - line[i])

    inner = (cumulative > a) & (cumulative < b)
    return np.concatenate([[at(a)], line[inner], [at(b)]])


def _mitre_triangles(line: np.ndarray, closed: bool, half: float, limit: float, corners: np.ndarray) -> list:
    """The mitre tip beyond the bevel at every segment join (a point of ``corners``; points along a curve
    keep their bevel, a sliver narrower than the flattening tolerance) whose mitre is within the limit."""
    import shapely

    if closed:
        ring = line[:-1]
        before, corner, after = np.roll(ring, 1, axis=0), ring, np.roll(ring, -1, axis=0)
    else:
        before, corner, after = line[:-2], line[1:-1], line[2:]
    if len(corner) == 0:
        return []
    u = corner - before
    v = after - corner
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    n1 = np.stack([-u[:, 1], u[:, 0]], 1)
    n1 *= np.where((n1 * v).sum(1) > 0, -1.0, 1.0)[:, None]  # the outer side: away from the turn
    n2 = np.stack([-v[:, 1], v[:, 0]], 1)
    n2 *= np.where((n2 * u).sum(1) < 0, -1.0, 1.0)[:, None]
    middle = n1 + n2
    norm = np.linalg.norm(middle, axis=1)
    turn = np.abs(u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = 2 / norm  # mitre length / stroke width
    keep = (turn > 1e-9) & (norm > 1e-9) & (ratio <= limit) & ((u * v).sum(1) > -1 + 1e-12)
    if len(corners):
        gap = np.min(np.abs(corner[:, None, :] - corners[None]).sum(-1), axis=1)
        keep &= gap < 1e-9 * max(1.0, float(np.abs(corners).max()))
    else:
        keep &= False
    triangles = []
    for p, a, b, m, r in zip(corner[keep], n1[keep], n2[keep], middle[keep], ratio[keep]):
        tip = p + m / np.linalg.norm(m) * half * r
        triangles.append(shapely.Polygon([p, p + half * a, tip, p + half * b]))
    return triangles


def _polygon_subpaths(geometry) -> list[Subpath]:
    import shapely

    subpaths = []
    for polygon in shapely.get_parts(geometry):
        if polygon.geom_type != "Polygon" or polygon.is_empty:
            continue
        for ring in [polygon.exterior, *polygon.interiors]:
            coords = np.asarray(ring.coords, np.float64)[:-1]
            if len(coords) >= 3:
                subpaths.append(Subpath(coords, np.zeros(len(coords), np.int64), True))
    return subpaths
