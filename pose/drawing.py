"""The OpenCV drawing primitives the pose renderers use, reimplemented pixel for pixel without OpenCV.

``fill_convex_poly``, ``ellipse_polygon``, ``fill_circle`` and ``line`` follow ``cv2.fillConvexPoly``,
``cv2.ellipse2Poly``, ``cv2.circle(..., thickness=-1)`` and ``cv2.line`` with ``LINE_8`` and
``shift=0``: the same Bresenham walks, the same 16.16 fixed-point polygon scan and the same
integer rounding, so a pose drawn here is identical to one drawn by the reference code.
Canvases are ``[H, W, 3]`` uint8 arrays, modified in place; points are integer ``(x, y)``.
"""

from __future__ import annotations

import numpy as np

XY_SHIFT = 16
XY_ONE = 1 << XY_SHIFT
_HALF = XY_ONE >> 1


def color_bytes(color) -> np.ndarray:
    """A colour as OpenCV stores it: each channel rounded half to even and clamped to 0..255."""
    values = np.rint(np.asarray(color, np.float64)[:3])
    return np.clip(values, 0, 255).astype(np.uint8)


def _trunc_div(a: int, b: int) -> int:
    """C integer division (rounds toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


# ----------------------------------------------------------------------------- lines


def _clip_line(width: int, height: int, x1: int, y1: int, x2: int, y2: int):
    """``cv::clipLine`` on a ``width`` x ``height`` rectangle (OpenCV computes the cut in double
    precision and truncates); None when the line misses it."""
    right, bottom = width - 1, height - 1
    if width <= 0 or height <= 0:
        return None

    def code(x, y):
        return (x < 0) + (x > right) * 2 + (y < 0) * 4 + (y > bottom) * 8

    c1, c2 = code(x1, y1), code(x2, y2)
    if (c1 & c2) == 0 and (c1 | c2) != 0:
        if c1 & 12:
            a = 0 if c1 < 8 else bottom
            x1 += int(float(a - y1) * (x2 - x1) / (y2 - y1))
            y1 = a
            c1 = (x1 < 0) + (x1 > right) * 2
        if c2 & 12:
            a = 0 if c2 < 8 else bottom
            x2 += int(float(a - y2) * (x2 - x1) / (y2 - y1))
            y2 = a
            c2 = (x2 < 0) + (x2 > right) * 2
        if (c1 & c2) == 0 and (c1 | c2) != 0:
            if c1:
                a = 0 if c1 == 1 else right
                y1 += int(float(a - x1) * (y2 - y1) / (x2 - x1))
                x1 = a
                c1 = 0
            if c2:
                a = 0 if c2 == 1 else right
                y2 += int(float(a - x2) * (y2 - y1) / (x2 - x1))
                x2 = a
                c2 = 0
    if c1 | c2:
        return None
    return x1, y1, x2, y2


def _line_pixels(width: int, height: int, p0, p1) -> tuple[list[int], list[int]]:
    """Pixels of an 8-connected ``cv::Line`` between integer points, clipped to the canvas."""
    x1, y1 = int(p0[0]), int(p0[1])
    x2, y2 = int(p1[0]), int(p1[1])
    if not (0 <= x1 < width and 0 <= x2 < width and 0 <= y1 < height and 0 <= y2 < height):
        clipped = _clip_line(width, height, x1, y1, x2, y2)
        if clipped is None:
            return [], []
        x1, y1, x2, y2 = clipped
    dx, dy = x2 - x1, y2 - y1
    if dx < 0:  # always walk left to right
        dx, dy = -dx, -dy
        x1, y1 = x2, y2
    step_y = 1
    if dy < 0:
        dy, step_y = -dy, -1
    steep = dy > dx
    major, minor = (dy, dx) if steep else (dx, dy)
    # Bresenham's error walk: the minor coordinate advances after a step with a negative error.
    xs, ys = [x1], [y1]
    err = major - 2 * minor
    x, y = x1, y1
    for _ in range(major):
        moved = err < 0
        err += 2 * major - 2 * minor if moved else -2 * minor
        if steep:
            y += step_y
            x += moved
        else:
            x += 1
            y += step_y if moved else 0
        xs.append(x)
        ys.append(y)
    return xs, ys


def _line_fixed_pixels(width: int, height: int, p0, p1) -> tuple[list[int], list[int]]:
    """Pixels of ``cv::Line2``: the outline OpenCV draws between 16.16 fixed-point polygon corners."""
    clipped = _clip_line(width << XY_SHIFT, height << XY_SHIFT, int(p0[0]), int(p0[1]), int(p1[0]), int(p1[1]))
    if clipped is None:
        return [], []
    x1, y1, x2, y2 = clipped
    dx, dy = x2 - x1, y2 - y1
    ax, ay = abs(dx), abs(dy)
    if ax > ay:
        if dx < 0:
            x1, y1, x2, y2 = x2, y2, x1, y1
            dy = -dy
        x_step, y_step = XY_ONE, _trunc_div(dy << XY_SHIFT, ax | 1)
        ecount = (x2 - x1) >> XY_SHIFT
    else:
        if dy < 0:
            x1, y1, x2, y2 = x2, y2, x1, y1
            dx = -dx
        x_step, y_step = _trunc_div(dx << XY_SHIFT, ay | 1), XY_ONE
        ecount = (y2 - y1) >> XY_SHIFT
    xs = [(x2 + _HALF) >> XY_SHIFT]
    ys = [(y2 + _HALF) >> XY_SHIFT]
    x1 += _HALF
    y1 += _HALF
    if ax > ay:
        x1 >>= XY_SHIFT
        for _ in range(ecount + 1):
            xs.append(x1)
            ys.append(y1 >> XY_SHIFT)
            x1 += 1
            y1 += y_step
    else:
        y1 >>= XY_SHIFT
        for _ in range(ecount + 1):
            xs.append(x1 >> XY_SHIFT)
            ys.append(y1)
            x1 += x_step
            y1 += 1
    return xs, ys


def _put_pixels(canvas: np.ndarray, xs, ys, color: np.ndarray) -> None:
    xs, ys = np.asarray(xs, np.int64), np.asarray(ys, np.int64)
    keep = (xs >= 0) & (xs < canvas.shape[1]) & (ys >= 0) & (ys < canvas.shape[0])
    canvas[ys[keep], xs[keep]] = color


def _hline(canvas: np.ndarray, y: int, x_left: int, x_right: int, color: np.ndarray) -> None:
    canvas[y, x_left: x_right + 1] = color


def _fill_spans(canvas: np.ndarray, spans: list[tuple[int, int, int]], color: np.ndarray) -> None:
    """Fill many ``(y, x_left, x_right)`` runs (inclusive) at once."""
    if not spans:
        return
    rows, lefts, rights = np.array(spans, np.int64).T
    lengths = np.maximum(rights - lefts + 1, 0)
    ys = np.repeat(rows, lengths)
    starts = np.repeat(lefts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    xs = starts + np.arange(len(ys))
    canvas[ys, xs] = color


# ----------------------------------------------------------------------------- polygons


def fill_convex_poly(canvas: np.ndarray, points, color, shift: int = 0) -> None:
    """``cv2.fillConvexPoly(canvas, points, color, LINE_8, shift)``."""
    color = color_bytes(color)
    pts = [(int(x), int(y)) for x, y in np.asarray(points).reshape(-1, 2)]
    height, width = canvas.shape[:2]
    npts = len(pts)
    delta = (1 << shift) >> 1
    prev = (pts[-1][0] << (XY_SHIFT - shift), pts[-1][1] << (XY_SHIFT - shift))
    xmin = xmax = pts[0][0]
    ymin = ymax = pts[0][1]
    imin = 0
    outline_x: list[int] = []
    outline_y: list[int] = []
    for i, (x, y) in enumerate(pts):
        if y < ymin:
            ymin, imin = y, i
        ymax, xmax, xmin = max(ymax, y), max(xmax, x), min(xmin, x)
        cur = (x << (XY_SHIFT - shift), y << (XY_SHIFT - shift))
        if shift == 0:
            xs, ys = _line_pixels(width, height, (prev[0] >> XY_SHIFT, prev[1] >> XY_SHIFT),
                                  (cur[0] >> XY_SHIFT, cur[1] >> XY_SHIFT))
        else:
            xs, ys = _line_fixed_pixels(width, height, prev, cur)
        outline_x += xs
        outline_y += ys
        prev = cur
    _put_pixels(canvas, outline_x, outline_y, color)
    xmin, xmax = (xmin + delta) >> shift, (xmax + delta) >> shift
    ymin, ymax = (ymin + delta) >> shift, (ymax + delta) >> shift
    if npts < 3 or xmax < 0 or ymax < 0 or xmin >= width or ymin >= height:
        return
    ymax = min(ymax, height - 1)
    edge_idx, edge_di, edge_x, edge_dx, edge_ye = [imin, imin], [1, npts - 1], [-XY_ONE, -XY_ONE], [0, 0], [ymin, ymin]
    edges = npts
    y = ymin
    spans: list[tuple[int, int, int]] = []
    while True:
        for i in range(2):
            if y >= edge_ye[i]:
                idx0, di = edge_idx[i], edge_di[i]
                idx = (idx0 + di) % npts
                while edges > 0:
                    edges -= 1
                    ty = (pts[idx][1] + delta) >> shift
                    if ty > y:
                        xs0 = pts[idx0][0] << (XY_SHIFT - shift)
                        xe = pts[idx][0] << (XY_SHIFT - shift)
                        edge_ye[i] = ty
                        edge_dx[i] = _trunc_div((xe - xs0) * 2 + (ty - y), 2 * (ty - y))
                        edge_x[i] = xs0
                        edge_idx[i] = idx
                        break
                    idx0 = idx
                    idx = (idx + di) % npts
                else:
                    edges -= 1
        if edges < 0:
            break
        if y >= 0:
            left, right = (1, 0) if edge_x[0] > edge_x[1] else (0, 1)
            x1 = (edge_x[left] + _HALF) >> XY_SHIFT
            x2 = (edge_x[right] + _HALF) >> XY_SHIFT
            if x2 >= 0 and x1 < width:
                spans.append((y, max(x1, 0), min(x2, width - 1)))
        edge_x[0] += edge_dx[0]
        edge_x[1] += edge_dx[1]
        y += 1
        if y > ymax:
            break
    _fill_spans(canvas, spans, color)


def ellipse_polygon(center, axes, angle: int, arc_start: int = 0, arc_end: int = 360, delta: int = 1) -> np.ndarray:
    """``cv2.ellipse2Poly`` with integer centre/axes: rounded, consecutive duplicates removed."""
    angle = int(angle)
    while angle < 0:
        angle += 360
    while angle > 360:
        angle -= 360
    if arc_start > arc_end:
        arc_start, arc_end = arc_end, arc_start
    while arc_start < 0:
        arc_start += 360
        arc_end += 360
    while arc_end > 360:
        arc_end -= 360
        arc_start -= 360
    if arc_end - arc_start > 360:
        arc_start, arc_end = 0, 360
    table = _SIN_TABLE
    alpha = float(table[450 - angle])  # cos
    beta = float(table[angle])  # sin
    angles = np.minimum(np.arange(arc_start, arc_end + delta, delta), arc_end)
    angles = np.where(angles < 0, angles + 360, angles)
    x = float(axes[0]) * table[450 - angles].astype(np.float64)
    y = float(axes[1]) * table[angles].astype(np.float64)
    px = float(center[0]) + x * alpha - y * beta
    py = float(center[1]) + x * beta + y * alpha
    points = np.stack([np.rint(px), np.rint(py)], 1).astype(np.int64)
    keep = np.ones(len(points), bool)
    keep[1:] = np.any(points[1:] != points[:-1], axis=1)
    points = points[keep]
    if len(points) == 1:
        points = np.array([center, center], np.int64)
    return points


def fill_circle(canvas: np.ndarray, center, radius: int, color) -> None:
    """``cv2.circle(canvas, center, radius, color, thickness=-1)`` (midpoint circle, LINE_8)."""
    color = color_bytes(color)
    height, width = canvas.shape[:2]
    cx, cy = int(center[0]), int(center[1])
    err, dx, dy, plus, minus = 0, radius, 0, 1, (radius << 1) - 1
    while dx >= dy:
        for y, half in ((cy - dy, dx), (cy + dy, dx), (cy - dx, dy), (cy + dx, dy)):
            x_left, x_right = cx - half, cx + half
            if 0 <= y < height and x_right >= 0 and x_left < width:
                _hline(canvas, y, max(x_left, 0), min(x_right, width - 1), color)
        dy += 1
        err += plus
        plus += 2
        mask = (err <= 0) - 1
        err -= minus & mask
        dx += mask
        minus -= mask & 2


def line(canvas: np.ndarray, p0, p1, color, thickness: int = 1) -> None:
    """``cv2.line(canvas, p0, p1, color, thickness)`` with ``LINE_8``."""
    height, width = canvas.shape[:2]
    if thickness <= 1:
        xs, ys = _line_pixels(width, height, p0, p1)
        _put_pixels(canvas, xs, ys, color_bytes(color))
        return
    # OpenCV 5 first clips thick lines to the canvas grown by the thickness, in whole pixels.
    clipped = _clip_line(width + 2 * thickness, height + 2 * thickness, int(p0[0]) + thickness,
                         int(p0[1]) + thickness, int(p1[0]) + thickness, int(p1[1]) + thickness)
    if clipped is None:
        return
    x0, y0, x1, y1 = ((v - thickness) << XY_SHIFT for v in clipped)
    dx = (x0 - x1) / XY_ONE
    dy = (y1 - y0) / XY_ONE
    r = dx * dx + dy * dy
    odd = thickness & 1
    half = thickness << (XY_SHIFT - 1)
    if abs(r) > np.finfo(np.float64).eps:
        r = (half + odd * XY_ONE * 0.5) / np.sqrt(r)
        px, py = int(np.rint(dy * r)), int(np.rint(dx * r))
        corners = [(x0 + px, y0 + py), (x0 - px, y0 - py), (x1 - px, y1 - py), (x1 + px, y1 + py)]
        fill_convex_poly(canvas, corners, color, shift=XY_SHIFT)
    for x, y in ((x0, y0), (x1, y1)):
        fill_circle(canvas, ((x + _HALF) >> XY_SHIFT, (y + _HALF) >> XY_SHIFT), (half + _HALF) >> XY_SHIFT, color)


# OpenCV's SinTable: sin of 0..450 degrees written with 7 decimals, float32; cos(a) = table[450 - a].
_SIN_TABLE = np.float32(np.round(np.sin(np.deg2rad(np.arange(451, dtype=np.float64))), 7))
