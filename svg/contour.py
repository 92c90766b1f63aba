"""The outline of a drawing: silhouette, outer border tracing, Douglas-Peucker, mitre dilation.

AniClipart gets its mesh boundary with cairosvg + OpenCV (``findContours`` with ``RETR_EXTERNAL`` /
``CHAIN_APPROX_NONE``, the largest contour by area, ``approxPolyDP``). The pack depends on neither:
the silhouette comes from our rasteriser and the two OpenCV steps are re-implemented here with the
same conventions (8-connected foreground, 4-connected background, Freeman directions, border
following that starts at the first pixel in raster order and turns counter-clockwise, the same
starting pair and recursion order in Douglas-Peucker and the same final straight-run clean-up), so a
given silhouette yields OpenCV's vertices exactly.
"""

from __future__ import annotations

import numpy as np
import torch

from ..core.errors import InputError
from .document import Drawing

# Freeman directions as (dx, dy) with y pointing down: 0 right, 1 up-right, 2 up, ... 7 down-right.
_DIRECTIONS = ((1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1))
CONTOUR_RENDER_SCALE = 2  # AniClipart traces a 512 px rendering of its 256 px canvas
MAX_DILATION_STEPS = 400


def silhouette(drawing: Drawing, scale: int = CONTOUR_RENDER_SCALE) -> np.ndarray:
    """Foreground mask (bool [H, W]) of the drawing rendered ``scale`` times larger: alpha >= 128/255."""
    from .paths import layout_drawing
    from .raster import rasterise

    layout, points = layout_drawing(drawing)
    with torch.no_grad():
        rgba = rasterise(layout, points, size=(drawing.height * scale, drawing.width * scale))
    alpha = torch.round(rgba[0, ..., 3] * 255).to(torch.uint8).numpy()
    return alpha >= 128


def _spread_along_rows(reach: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Mark every background run (in each row) that holds a reached pixel."""
    flat_background = background.ravel()
    run_start = flat_background.copy()
    run_start[1:] &= ~flat_background[:-1]
    run_start[:: background.shape[1]] = flat_background[:: background.shape[1]]  # runs never wrap rows
    run_id = np.cumsum(run_start) * flat_background
    reached = np.zeros(run_id.max() + 1, bool)
    reached[run_id[reach.ravel() & flat_background]] = True
    reached[0] = False
    return reached[run_id].reshape(background.shape)


def outside_background(mask: np.ndarray) -> np.ndarray:
    """Background pixels 4-connected to the image frame (of a mask padded by one pixel)."""
    background = ~mask
    reach = np.zeros_like(mask)
    reach[0, :] = reach[-1, :] = reach[:, 0] = reach[:, -1] = True
    reach &= background
    while True:
        grown = _spread_along_rows(reach, background)
        grown = _spread_along_rows(grown.T.copy(), background.T.copy()).T
        if np.array_equal(grown, reach):
            return reach
        reach = grown


def _follow_border(filled: np.ndarray, x0: int, y0: int, visited: np.ndarray) -> list[tuple[int, int]]:
    """The outer border through (x0, y0), a start pixel whose left neighbour is background."""
    def on(x, y):
        return filled[y, x]

    # Predecessor: the first foreground neighbour turning clockwise from the left.
    s = 4
    while True:
        s = (s - 1) & 7
        x1, y1 = x0 + _DIRECTIONS[s][0], y0 + _DIRECTIONS[s][1]
        if on(x1, y1) or s == 4:
            break
    if not on(x1, y1):
        visited[y0, x0] = True
        return [(x0, y0)]
    points = []
    x3, y3 = x0, y0
    while True:
        # Next border pixel: the first foreground neighbour turning counter-clockwise from where we came.
        for step in range(1, 9):
            d = (s + step) & 7
            x4, y4 = x3 + _DIRECTIONS[d][0], y3 + _DIRECTIONS[d][1]
            if on(x4, y4):
                break
        s = d
        visited[y3, x3] = True
        points.append((x3, y3))
        if (x4, y4) == (x0, y0) and (x3, y3) == (x1, y1):
            return points
        x3, y3 = x4, y4
        s = (s + 4) & 7


def external_contours(mask: np.ndarray) -> list[np.ndarray]:
    """Outer borders of the foreground components (those not inside another's hole), as int [N, 2]
    pixel coordinates (x, y), in OpenCV's order (last found first)."""
    padded = np.pad(np.asarray(mask, bool), 1)
    filled = ~outside_background(padded)
    visited = np.zeros_like(filled)
    starts = filled.copy()
    starts[:, 1:] &= ~filled[:, :-1]
    contours = []
    for y, x in zip(*np.nonzero(starts)):
        if visited[y, x]:
            continue
        border = _follow_border(filled, int(x), int(y), visited)
        contours.append(np.array(border, np.int64) - 1)
    return contours[::-1]


def contour_area(points: np.ndarray) -> float:
    x, y = points[:, 0].astype(np.float64), points[:, 1].astype(np.float64)
    return abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))) / 2.0


def approx_poly_dp_closed(points: np.ndarray, epsilon: float) -> np.ndarray:
    """Douglas-Peucker on a closed pixel contour, with OpenCV's start pair, recursion and clean-up."""
    src = [tuple(int(v) for v in p) for p in points]
    count = len(src)
    if count == 0:
        return np.zeros((0, 2), np.int64)
    eps2 = epsilon * epsilon
    out: list[tuple[int, int]] = []
    # 1. Two roughly farthest points: three rounds of "farthest from the current start".
    pos, far, within = 0, 0, False
    for _ in range(3):
        pos = (pos + far) % count
        start = src[pos]
        best = 0.0
        for j in range(1, count):
            pt = src[(pos + j) % count]
            dist = (pt[0] - start[0]) ** 2 + (pt[1] - start[1]) ** 2
            if dist > best:
                best, far = dist, j
        within = best <= eps2
    stack = []
    if within:
        out.append(src[pos])
    else:
        middle = (far + pos) % count
        stack.append((middle, pos))
        stack.append((pos, middle))
    # 2. Split each slice at its farthest point until every point is within epsilon of its chord.
    while stack:
        first, last = stack.pop()
        start, end = src[first], src[last]
        position = (first + 1) % count
        if position == last:
            out.append(start)
            continue
        dx, dy = end[0] - start[0], end[1] - start[1]
        best, split = 0.0, first
        while position != last:
            pt = src[position]
            dist = abs((pt[1] - start[1]) * dx - (pt[0] - start[0]) * dy)
            if dist > best:
                best, split = dist, position
            position = (position + 1) % count
        if best * best <= eps2 * (dx * dx + dy * dy):
            out.append(start)
        else:
            stack.append((split, last))
            stack.append((first, split))
    return np.array(_drop_straight_runs(out, eps2), np.int64).reshape(-1, 2)


def _drop_straight_runs(dst: list[tuple[int, int]], eps2: float) -> list[tuple[int, int]]:
    """OpenCV's last pass: drop a vertex lying on the (diagonal) chord of its neighbours, in place."""
    count = new_count = len(dst)
    dst = list(dst)
    pos = count - 1
    start = dst[pos]
    pos = 0
    write = 0
    pt = dst[pos]
    pos = 1 % count
    i = 0
    while i < count and new_count > 2:
        end = dst[pos]
        pos = (pos + 1) % count
        dx, dy = end[0] - start[0], end[1] - start[1]
        dist = abs((pt[0] - start[0]) * dy - (pt[1] - start[1]) * dx)
        forward = (pt[0] - start[0]) * (end[0] - pt[0]) + (pt[1] - start[1]) * (end[1] - pt[1])
        if dist * dist <= 0.5 * eps2 * (dx * dx + dy * dy) and dx != 0 and dy != 0 and forward >= 0:
            new_count -= 1
            dst[write] = start = end
            write = (write + 1) % count
            pt = dst[pos]
            pos = (pos + 1) % count
            i += 2
            continue
        dst[write] = start = pt
        write = (write + 1) % count
        pt = end
        i += 1
    return dst[:new_count]


def largest_outline(mask: np.ndarray, epsilon: float = 1.0) -> np.ndarray:
    """The simplified outer border (int pixel coordinates) of the largest foreground component."""
    contours = external_contours(mask)
    if not contours:
        raise InputError("svg", "draws nothing visible on the canvas", "shapes inside the drawing area")
    largest = max(contours, key=contour_area)
    return approx_poly_dp_closed(largest, epsilon)


def drawing_outline(drawing: Drawing, epsilon: float = 1.0, scale: int = CONTOUR_RENDER_SCALE) -> np.ndarray:
    """AniClipart's contour: the largest outline of a ``scale``x rendering, back in canvas pixels (float32)."""
    return (largest_outline(silhouette(drawing, scale), epsilon).astype(np.float32) / scale).astype(np.float32)


def dilate_until_inside(contour: np.ndarray, points: np.ndarray, step: float = 0.1,
                        max_steps: int = MAX_DILATION_STEPS) -> tuple[np.ndarray, int]:
    """Grow the outline by repeated mitre buffers of ``step`` until every point is strictly inside.

    Returns the exterior ring (float64, no closing point) and the number of buffers applied.
    """
    import shapely

    ring = np.asarray(contour, np.float64)
    probes = shapely.points(np.asarray(points, np.float64))
    calls = 0
    while True:
        polygon = shapely.Polygon(ring)
        if bool(np.all(shapely.within(probes, polygon))):
            return ring, calls
        if calls >= max_steps:
            raise InputError("svg", f"has parts more than {max_steps * step:.0f} px away from its main outline",
                             "one connected figure (or a layer file that splits the parts into layers)")
        ring = np.asarray(polygon.buffer(step, join_style="mitre").exterior.coords[:-1], np.float64)
        calls += 1


LEGACY_REACH = 3.0  # px: points this close to the main outline (or one part) are reached by AniClipart's dilation
BRIDGE_HALF_WIDTH = 2.0  # px: least half width of the strip joining a separate part to the figure


def figure_outline(drawing: Drawing, epsilon: float = 1.0, scale: int = CONTOUR_RENDER_SCALE) -> tuple[np.ndarray, int]:
    """The mesh boundary: AniClipart's dilated largest outline when it (nearly) holds every point;
    for a figure in parts (a floating head, a tail touching at a point, a separate hat) every part's
    outline joined to the figure by a narrow strip from its nearest point, so one mesh carries all
    parts and each follows the bones nearest to it. Returns the ring and the dilation steps."""
    import shapely

    points = drawing.all_points()
    mask = silhouette(drawing, scale)
    contours = external_contours(mask)
    if not contours:
        raise InputError("svg", "draws nothing visible on the canvas", "shapes inside the drawing area")
    main = approx_poly_dp_closed(max(contours, key=contour_area), epsilon).astype(np.float32) / scale
    main = main.astype(np.float32)
    if len(main) >= 3:
        reach = shapely.distance(shapely.Polygon(main), shapely.points(points)).max()
        if reach <= LEGACY_REACH or (len(contours) == 1 and reach <= MAX_DILATION_STEPS * 0.1):
            return dilate_until_inside(main, points)
    parts = [shapely.Polygon(np.asarray(c, np.float64) / scale).buffer(0.5 / scale, join_style="mitre")
             for c in (approx_poly_dp_closed(c, epsilon) for c in contours) if len(c) >= 3]
    covered = shapely.union_all(parts) if parts else shapely.Polygon()
    for group in drawing.groups:  # shapes too thin or faint for the silhouette still need a mesh under them
        group_points = np.concatenate([s.points for s in group.subpaths])
        if not bool(np.all(shapely.contains_xy(covered, group_points[:, 0], group_points[:, 1]))):
            parts.append(shapely.MultiPoint(group_points).convex_hull.buffer(1.0))
    figure = _join_parts([p for p in parts if not p.is_empty])
    ring = np.asarray(figure.exterior.simplify(0.25 / scale).coords[:-1], np.float64)
    return dilate_until_inside(ring, points)


def _join_parts(parts: list):
    """One polygon: the largest part, with every other part joined by a strip to the nearest part so far."""
    import shapely
    from shapely.ops import nearest_points

    parts = sorted(parts, key=lambda p: -p.area)
    figure = parts[0]
    remaining = parts[1:]
    while remaining:
        distances = [figure.distance(p) for p in remaining]
        nearest = int(np.argmin(distances))
        part = remaining.pop(nearest)
        a, b = nearest_points(figure, part)
        half_width = min(max(BRIDGE_HALF_WIDTH, 0.3 * np.sqrt(part.area)), 4 * BRIDGE_HALF_WIDTH)  # stiffer for big parts
        bridge = shapely.LineString([a, b]).buffer(half_width, cap_style="round") if a.distance(b) > 0 \
            else a.buffer(half_width)
        figure = shapely.union_all([figure, part, bridge])
        if figure.geom_type != "Polygon":  # parts that only touch: take the hull of the pieces' union
            figure = figure.buffer(0.5).buffer(-0.25)
            if figure.geom_type != "Polygon":
                figure = max(shapely.get_parts(figure), key=lambda g: g.area)
    return shapely.Polygon(figure.exterior)
