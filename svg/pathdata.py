"""SVG path data and basic shapes as filled subpaths of lines and cubic Béziers.

A subpath is stored the way diffvg stores a path: ``points`` holds the start point, then per segment
its control points (none for a line, two for a cubic) and its end point; a closed subpath omits the
final end point (it is the start). ``num_control_points`` has one entry (0 or 2) per segment.
Quadratic Béziers are raised to cubics exactly; elliptical arcs become cubics of at most 90 degrees.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from ..core.errors import InputError

# diffvg's closing tolerance: an end this close to the start closes the subpath.
CLOSE_TOLERANCE = 1e-5
MAX_COORDINATE = 1e9


@dataclass
class Subpath:
    points: np.ndarray  # [N, 2] float64
    num_control_points: np.ndarray  # [S] int64, 0 (line) or 2 (cubic)
    closed: bool

    @property
    def num_segments(self) -> int:
        return len(self.num_control_points)

    def transformed(self, matrix: np.ndarray) -> "Subpath":
        points = self.points @ matrix[:2, :2].T + matrix[:2, 2]
        return Subpath(points, self.num_control_points.copy(), self.closed)


class _Open:
    """A subpath under construction: a start point and its segments."""

    def __init__(self, start):
        self.points = [tuple(start)]
        self.kinds: list[int] = []
        self.closed = False

    @property
    def current(self):
        return self.points[-1]

    def line(self, end):
        self.points.append(tuple(end))
        self.kinds.append(0)

    def cubic(self, c1, c2, end):
        self.points += [tuple(c1), tuple(c2), tuple(end)]
        self.kinds.append(2)


def _finish(open_path: _Open, force_close: bool) -> Subpath | None:
    """Close the subpath the way diffvg does for filled paths; None for an empty one."""
    if not open_path.kinds:
        return None
    points = [np.asarray(p, np.float64) for p in open_path.points]
    kinds = list(open_path.kinds)
    start = points[0]
    if open_path.closed:
        # 'Z' appended a closing line unless the path was already back at its start; a negligible
        # closing line is dropped and the previous segment ends exactly at the start instead.
        if len(kinds) > 1 and kinds[-1] == 0 and np.linalg.norm(points[-1] - points[-2]) < CLOSE_TOLERANCE:
            points.pop()
            kinds.pop()
        closed = True
    elif np.linalg.norm(points[-1] - start) < CLOSE_TOLERANCE:
        closed = True
    elif force_close:
        points.append(start.copy())
        kinds.append(0)
        closed = True
    else:
        closed = False
    if closed:
        points.pop()  # the last end point is the start
    return Subpath(np.array(points, np.float64).reshape(-1, 2), np.array(kinds, np.int64), closed)


_TOKEN = re.compile(r"\s*,?\s*(?:([MmZzLlHhVvCcSsQqTtAa])|([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?))")
_ARGUMENT_COUNTS = {"M": 2, "L": 2, "H": 1, "V": 1, "C": 6, "S": 4, "Q": 4, "T": 2, "A": 7, "Z": 0}


def _tokens(d: str, input_name: str):
    position, length = 0, len(d)
    while position < length:
        match = _TOKEN.match(d, position)
        if match is None:
            if d[position:].strip(" \t\r\n,") == "":
                return
            raise InputError(input_name, f"has unreadable path data near {d[position:position + 20]!r}",
                             "SVG path syntax (M, L, C, Q, A, Z ...)")
        position = match.end()
        if match.group(1):
            yield match.group(1)
        else:
            yield float(match.group(2))


def _split_arc_flags(d: str) -> str:
    # Make the compact flag form parseable: after the 3 arc numbers, two single-digit flags follow.
    if "a" not in d and "A" not in d:
        return d
    result = []
    pieces = re.split(r"([Aa])", d)
    result.append(pieces[0])
    for i in range(1, len(pieces), 2):
        result.append(pieces[i])
        result.append(_expand_arc_arguments(pieces[i + 1]))
    return "".join(result)


_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _expand_arc_arguments(text: str) -> str:
    """Rewrite the arguments of one arc command group with explicit separators around the flags."""
    out, position, slot = [], 0, 0
    while True:
        while position < len(text) and text[position] in " \t\r\n,":
            position += 1
        if position >= len(text):
            break
        if slot % 7 in (3, 4):
            if text[position] not in "01":
                break
            out.append(text[position])
            position += 1
        else:
            match = _NUMBER.match(text, position)
            if match is None:
                break
            out.append(match.group(0))
            position = match.end()
        slot += 1
    return " ".join(out) + " " + text[position:]


def parse_path_data(d: str, force_close: bool = True, input_name: str = "svg",
                    max_segments: int = 1_000_000) -> list[Subpath]:
    """Path data -> subpaths (absolute coordinates, no transform applied)."""
    tokens = list(_tokens(_split_arc_flags(d), input_name))
    subpaths: list[Subpath] = []
    current: _Open | None = None
    position = np.zeros(2)
    subpath_start = np.zeros(2)
    last_control = None  # reflected by S/T
    last_command = ""
    command = None
    index, count, segments = 0, len(tokens), 0

    def take(n):
        nonlocal index
        values = tokens[index:index + n]
        if len(values) < n or any(isinstance(v, str) for v in values):
            raise InputError(input_name, f"has a path command '{command}' with missing numbers",
                             "complete SVG path data")
        index += n
        for v in values:
            if not math.isfinite(v) or abs(v) > MAX_COORDINATE:
                raise InputError(input_name, f"has a path coordinate {v!r}", f"finite numbers below {MAX_COORDINATE:g}")
        return values

    def ensure_open():
        nonlocal current
        if current is None:
            current = _Open(position)
        return current

    def flush():
        nonlocal current
        if current is not None:
            finished = _finish(current, force_close)
            if finished is not None:
                subpaths.append(finished)
        current = None

    while index < count:
        token = tokens[index]
        if isinstance(token, str):
            command = token
            index += 1
        elif command is None:
            raise InputError(input_name, "has path data that does not start with a command", "path data starting with M")
        elif command in "Zz":
            raise InputError(input_name, "has numbers after a Z command", "valid SVG path data")
        upper = command.upper()
        relative = command != upper
        base = position.copy() if relative else np.zeros(2)
        if upper == "Z":
            if current is not None:
                if np.any(np.asarray(current.current) != subpath_start):
                    current.line(subpath_start)
                current.closed = True
                flush()
            position = subpath_start.copy()
            last_control, last_command = None, "Z"
            continue
        x = take(_ARGUMENT_COUNTS[upper])
        segments += 1
        if segments > max_segments:
            raise InputError(input_name, f"has more than {max_segments} path segments", "a clipart-sized SVG")
        if upper == "M":
            flush()
            position = base + x
            subpath_start = position.copy()
            current = _Open(position)
            command = "l" if relative else "L"  # further pairs are implicit line-tos
            last_control, last_command = None, "M"
            continue
        path = ensure_open()
        if upper in "LHV":
            if upper == "L":
                end = base + x
            elif upper == "H":
                end = np.array([(base[0] + x[0]), position[1]])
            else:
                end = np.array([position[0], base[1] + x[0]])
            path.line(end)
            last_control = None
        elif upper == "C":
            c1, c2, end = base + x[0:2], base + x[2:4], base + x[4:6]
            path.cubic(c1, c2, end)
            last_control = c2
        elif upper == "S":
            c1 = 2 * position - last_control if last_command in "CcSs" and last_control is not None else position.copy()
            c2, end = base + x[0:2], base + x[2:4]
            path.cubic(c1, c2, end)
            last_control = c2
        elif upper in "QT":
            if upper == "Q":
                q, end = base + x[0:2], base + x[2:4]
            else:
                q = 2 * position - last_control if last_command in "QqTt" and last_control is not None else position.copy()
                end = base + x[0:2]
            path.cubic(position + 2.0 / 3.0 * (q - position), end + 2.0 / 3.0 * (q - end), end)
            last_control = q
        elif upper == "A":
            end = base + x[5:7]
            for c1, c2, e in arc_to_cubics(position, x[0], x[1], x[2], bool(x[3]), bool(x[4]), end):
                path.cubic(c1, c2, e)
            last_control = None
        last_command = command
        position = np.asarray(path.current, np.float64)
    flush()
    return subpaths


def arc_to_cubics(start, rx, ry, rotation_deg, large_arc, sweep, end):
    """An SVG elliptical arc as cubic Béziers (SVG 1.1 appendix F.6 endpoint parametrisation)."""
    start, end = np.asarray(start, np.float64), np.asarray(end, np.float64)
    if np.allclose(start, end):
        return []
    rx, ry = abs(rx), abs(ry)
    line = [(start + (end - start) / 3, start + 2 * (end - start) / 3, end)]
    if rx == 0 or ry == 0:
        return line
    phi = math.radians(rotation_deg % 360)
    cos_phi, sin_phi = math.cos(phi), math.sin(phi)
    dx, dy = (float(v) for v in (start - end) / 2)
    x1 = cos_phi * dx + sin_phi * dy
    y1 = -sin_phi * dx + cos_phi * dy
    # Radii too small for the chord grow (F.6.6); computed on radii scaled to 1 so that tiny ones never
    # under- or overflow (1e-200 squared is 0).
    size = max(rx, ry)
    unit_x, unit_y = rx / size, ry / size
    reach = math.hypot(x1 / unit_x, y1 / unit_y) if unit_x > 0 and unit_y > 0 else math.inf
    if not math.isfinite(reach):
        return line
    rx, ry = (unit_x * reach, unit_y * reach) if reach > size else (rx, ry)
    ux, uy = x1 / rx, y1 / ry
    inside = ux * ux + uy * uy
    factor = math.sqrt(max(0.0, (1.0 - inside) / inside)) if inside > 0 else 0.0
    if large_arc == sweep:
        factor = -factor
    cx1, cy1 = factor * rx * uy, -factor * ry * ux
    cx = cos_phi * cx1 - sin_phi * cy1 + (start[0] + end[0]) / 2
    cy = sin_phi * cx1 + cos_phi * cy1 + (start[1] + end[1]) / 2

    def angle(ux, uy, vx, vy):
        return math.atan2(ux * vy - uy * vx, ux * vx + uy * vy)

    theta1 = angle(1, 0, (x1 - cx1) / rx, (y1 - cy1) / ry)
    delta = angle((x1 - cx1) / rx, (y1 - cy1) / ry, (-x1 - cx1) / rx, (-y1 - cy1) / ry)
    if not sweep and delta > 0:
        delta -= 2 * math.pi
    elif sweep and delta < 0:
        delta += 2 * math.pi
    pieces = max(1, int(math.ceil(abs(delta) / (math.pi / 2) - 1e-9)))
    step = delta / pieces
    k = 4.0 / 3.0 * math.tan(step / 4)

    def point(t):
        x, y = rx * math.cos(t), ry * math.sin(t)
        return np.array([cx + cos_phi * x - sin_phi * y, cy + sin_phi * x + cos_phi * y])

    def derivative(t):
        x, y = -rx * math.sin(t), ry * math.cos(t)
        return np.array([cos_phi * x - sin_phi * y, sin_phi * x + cos_phi * y])

    cubics = []
    t0 = theta1
    for i in range(pieces):
        t1 = t0 + step
        p0, p1 = point(t0), point(t1)
        if i == pieces - 1:
            p1 = end.copy()
        cubics.append((p0 + k * derivative(t0), p1 - k * derivative(t1), p1))
        t0 = t1
    return cubics


# ----------------------------------------------------------------------------- basic shapes

KAPPA = 4.0 / 3.0 * (math.sqrt(2.0) - 1.0)


def ellipse_subpath(cx: float, cy: float, rx: float, ry: float) -> Subpath | None:
    if rx <= 0 or ry <= 0:
        return None
    path = _Open((cx + rx, cy))
    kx, ky = KAPPA * rx, KAPPA * ry
    path.cubic((cx + rx, cy + ky), (cx + kx, cy + ry), (cx, cy + ry))
    path.cubic((cx - kx, cy + ry), (cx - rx, cy + ky), (cx - rx, cy))
    path.cubic((cx - rx, cy - ky), (cx - kx, cy - ry), (cx, cy - ry))
    path.cubic((cx + kx, cy - ry), (cx + rx, cy - ky), (cx + rx, cy))
    return _finish(path, True)


def rect_subpath(x: float, y: float, width: float, height: float, rx: float | None, ry: float | None) -> Subpath | None:
    if width <= 0 or height <= 0:
        return None
    if rx is None and ry is None:
        rx = ry = 0.0
    elif rx is None:
        rx = ry
    elif ry is None:
        ry = rx
    rx, ry = min(max(rx, 0.0), width / 2), min(max(ry, 0.0), height / 2)
    if rx == 0 or ry == 0:
        path = _Open((x, y))
        for corner in ((x + width, y), (x + width, y + height), (x, y + height), (x, y)):
            path.line(corner)
        return _finish(path, True)
    kx, ky = KAPPA * rx, KAPPA * ry
    path = _Open((x + rx, y))
    path.line((x + width - rx, y))
    path.cubic((x + width - rx + kx, y), (x + width, y + ry - ky), (x + width, y + ry))
    path.line((x + width, y + height - ry))
    path.cubic((x + width, y + height - ry + ky), (x + width - rx + kx, y + height), (x + width - rx, y + height))
    path.line((x + rx, y + height))
    path.cubic((x + rx - kx, y + height), (x, y + height - ry + ky), (x, y + height - ry))
    path.line((x, y + ry))
    path.cubic((x, y + ry - ky), (x + rx - kx, y), (x + rx, y))
    return _finish(path, True)


def polygon_subpath(values: list[float], closed: bool, force_close: bool) -> Subpath | None:
    if len(values) < 4:
        return None
    coordinates = np.asarray(values[: len(values) // 2 * 2], np.float64).reshape(-1, 2)
    path = _Open(coordinates[0])
    for point in coordinates[1:]:
        path.line(point)
    if closed:
        if np.any(coordinates[-1] != coordinates[0]):
            path.line(coordinates[0])
        path.closed = True
    return _finish(path, force_close)


def parse_number_list(text: str) -> list[float]:
    return [float(v) for v in _NUMBER.findall(text or "")]
