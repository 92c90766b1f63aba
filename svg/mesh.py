"""The triangle mesh that carries a drawing: triangulation, path subdivision at mesh edges, binding.

The dilated outline and the keypoints are triangulated with the keypoints as vertices (the ARAP
handles). The default mesher is our own (permissive licence, shapely/GEOS only): the outline's edges
are cut to the target edge length, the inside is filled with a hexagonal lattice of points whose
equilateral triangles meet the maximum area, the points are smoothed and Delaunay-triangulated, and
outline edges the Delaunay triangulation misses are split until it holds them all (a conforming
mesh). ``mesher="triangle"`` uses Shewchuk's Triangle as AniClipart does (``pq<angle>a<area>``:
constrained, quality, maximum area), when the user has installed ``triangle`` (its library is free
for non-commercial use only).
Every line/cubic of the drawing is split where it crosses a mesh edge, so each piece lies inside one
triangle, and every point of the drawing is bound to the first triangle (in Triangle's order) that
contains it by barycentric coordinates.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from ..core.errors import InputError
from .document import Drawing
from .pathdata import Subpath

DEFAULT_MAX_TRI_AREA = 30.0
DEFAULT_MIN_TRI_ANGLE = 20.0
MESHERS = ("builtin", "triangle")
_MAX_CONFORMING_ROUNDS = 16
_SMOOTHING_ROUNDS = 4
_ENDPOINT_TOLERANCE = 1e-7  # svglib's "machine zero" for split parameters
_BIND_CHUNK = 2_000_000


@dataclass
class Mesh:
    vertices: np.ndarray  # [V, 2] float64, the outline first, then the keypoints, then Steiner points
    triangles: np.ndarray  # [T, 3] int64
    handle_index: np.ndarray  # [K] the keypoints' vertex indices

    @property
    def edges(self) -> np.ndarray:
        return mesh_edges(self.triangles)

    def areas(self, vertices: np.ndarray | None = None) -> np.ndarray:
        """Signed triangle areas (positive for Triangle's counter-clockwise order in x-right/y-up)."""
        v = self.vertices if vertices is None else vertices
        a, b, c = v[..., self.triangles[:, 0], :], v[..., self.triangles[:, 1], :], v[..., self.triangles[:, 2], :]
        return 0.5 * ((b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) - (c[..., 0] - a[..., 0]) * (b[..., 1] - a[..., 1]))


def _flag_number(value: float) -> str:
    return format(float(value), "g")


def triangulate(outline: np.ndarray, keypoints: np.ndarray, max_area: float = DEFAULT_MAX_TRI_AREA,
                min_angle: float = DEFAULT_MIN_TRI_ANGLE, mesher: str = "builtin") -> Mesh:
    """Quality triangulation of the closed ``outline`` with ``keypoints`` inside (vertices: the outline,
    then the keypoints, then added points)."""
    if mesher not in MESHERS:
        raise InputError("mesher", f"'{mesher}' is unknown", "one of " + ", ".join(MESHERS))
    if not 0 < min_angle <= 34:
        raise InputError("min_tri_angle", f"is {min_angle}", "an angle in (0, 34] degrees (Triangle may not finish above)")
    if not max_area > 0:
        raise InputError("max_tri_area", f"is {max_area}", "a positive area in square canvas pixels")
    outline = np.asarray(outline, np.float64)
    keypoints = np.asarray(keypoints, np.float64).reshape(-1, 2)
    if mesher == "triangle":
        out_vertices, triangles = _triangle_mesh(outline, keypoints, max_area, min_angle)
    else:
        outline = _clean_outline(outline)
        out_vertices, triangles = _builtin_mesh(outline, keypoints, max_area, min(min_angle, 20.0))
    n = len(outline)
    handle_index = np.arange(n, n + len(keypoints))
    used = np.zeros(len(out_vertices), bool)
    used[triangles.ravel()] = True
    outside = [int(k) for k, index in enumerate(handle_index) if not used[index]]
    if outside:
        raise InputError("keypoints", f"{outside} lie outside the figure's outline", "keypoints on the drawing")
    if not used.all():  # a point no triangle kept (the built-in mesher's sliver filter): drop it
        remap = np.cumsum(used) - 1
        out_vertices, triangles, handle_index = out_vertices[used], remap[triangles], remap[handle_index]
    return Mesh(out_vertices, triangles, handle_index)


def _triangle_mesh(outline, keypoints, max_area, min_angle):
    try:
        import triangle
    except ImportError:
        raise InputError("mesher", "'triangle' needs the triangle package, which is not installed",
                         "'builtin' (or pip install triangle; its library is free for non-commercial use only)") from None
    n = len(outline)
    vertices = np.concatenate([outline, keypoints], axis=0)
    segments = np.stack([np.arange(n), (np.arange(n) + 1) % n], axis=1)
    result = triangle.triangulate({"vertices": vertices, "segments": segments},
                                  f"pq{_flag_number(min_angle)}a{_flag_number(max_area)}Q")
    out_vertices = np.asarray(result["vertices"], np.float64)
    triangles = np.asarray(result["triangles"], np.int64)
    if len(out_vertices) < len(vertices) or not np.array_equal(out_vertices[: len(vertices)], vertices):
        raise InputError("keypoints", "contain duplicate points (Triangle merged them)", "distinct keypoints")
    return out_vertices, triangles


def _clean_outline(outline: np.ndarray, grow: float = 0.2, tolerance: float = 0.1) -> np.ndarray:
    """The outline grown by ``grow`` px (round joins) and simplified by ``tolerance`` px: zero-width spikes
    (a 1 px line traced out and back) become thin fingers, and near-duplicate or nearly collinear vertices,
    which would become sliver triangles, go. It still holds everything the outline held."""
    import shapely

    polygon = shapely.Polygon(outline)
    if not polygon.is_valid:
        polygon = shapely.make_valid(polygon)
    cleaned = polygon.buffer(grow, quad_segs=2).simplify(tolerance, preserve_topology=True)
    if cleaned.geom_type != "Polygon" or cleaned.is_empty:
        return outline
    ring = _merge_short_edges(np.asarray(cleaned.exterior.coords[:-1], np.float64), 0.6)
    return ring if len(ring) >= 3 and shapely.Polygon(ring).is_valid else outline


def _merge_short_edges(ring: np.ndarray, shortest: float) -> np.ndarray:
    """Replace the two ends of every edge shorter than ``shortest`` by its middle (they make slivers)."""
    ring = list(ring)
    index = 0
    while index < len(ring) and len(ring) > 3:
        following = (index + 1) % len(ring)
        if np.linalg.norm(ring[following] - ring[index]) < shortest:
            ring[index] = (ring[index] + ring[following]) / 2
            del ring[following]
            if following < index:
                index -= 1
            continue
        index += 1
    return np.array(ring, np.float64)


def _builtin_mesh(outline: np.ndarray, keypoints: np.ndarray, max_area: float, min_angle: float = DEFAULT_MIN_TRI_ANGLE):
    """Conforming Delaunay mesh of the outline polygon: boundary points every ``spacing``, a smoothed
    hexagonal lattice inside, keypoints as vertices. Returns vertices and counter-clockwise triangles."""
    import shapely

    polygon = shapely.Polygon(outline)
    if not polygon.is_valid:
        polygon = shapely.make_valid(polygon)
    spacing = math.sqrt(4 * max_area / math.sqrt(3)) * 0.92  # equilateral triangles a little under max_area
    fixed = np.concatenate([outline, keypoints], axis=0)
    if len(np.unique(np.round(fixed, 9), axis=0)) < len(fixed):
        raise InputError("keypoints", "contain duplicate points (or one on the outline)", "distinct keypoints")
    boundary = _new_points(_split_outline(outline, spacing), fixed)
    inside = keypoints[shapely.contains_xy(polygon, keypoints[:, 0], keypoints[:, 1])] if len(keypoints) else keypoints
    lattice = _lattice(polygon, spacing, np.concatenate([outline, boundary, inside]))
    lattice0 = lattice
    for _ in range(_SMOOTHING_ROUNDS if len(lattice) else 0):
        vertices = np.concatenate([fixed, boundary, lattice])
        lattice = _smooth(vertices, _delaunay_inside(vertices, polygon), len(fixed) + len(boundary), polygon)
    ring = np.arange(len(outline))
    for _ in range(_MAX_CONFORMING_ROUNDS):
        vertices = np.concatenate([fixed, boundary, lattice])
        triangles = _delaunay_inside(vertices, polygon)
        order = _outline_order(outline, boundary, ring, len(fixed))
        missing = _missing_outline_edges(triangles, order)
        inner, splits = _refinement_points(vertices, triangles, vertices[np.stack([order, np.roll(order, -1)], 1)],
                                           max_area, min_angle, polygon)
        if not len(missing) and not len(inner) and not len(splits):
            break
        if len(boundary) + len(lattice) > 20 * (len(outline) + len(lattice0) + 10):  # not converging: stop here
            break
        boundary = np.concatenate([boundary, _new_points(np.concatenate([vertices[missing].mean(axis=1), splits]), vertices)])
        lattice = np.concatenate([lattice, _new_points(inner, np.concatenate([vertices, boundary]))])
    return vertices, triangles


def _refinement_points(vertices, triangles, segments, max_area: float, min_angle: float, polygon):
    """Ruppert-style refinement: for triangles larger than ``max_area`` or with an angle below
    ``min_angle``, the circumcentre goes in, unless it lies outside or encroaches on an outline segment
    (``segments`` [n, 2, 2]), which is then split at its middle. Returns (inner points, outline points)."""
    import shapely

    corners = vertices[triangles]
    a, b, c = corners[:, 0], corners[:, 1], corners[:, 2]
    area = 0.5 * np.abs((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1]))
    sides = np.stack([np.linalg.norm(b - c, axis=1), np.linalg.norm(c - a, axis=1), np.linalg.norm(a - b, axis=1)], 1)
    shortest = sides.min(1)
    # sin(smallest angle) = 2 area / (product of the two sides around it) ; the smallest angle faces the shortest side
    around = np.prod(sides, axis=1) / np.maximum(shortest, 1e-12)
    small_angle = 2 * area / np.maximum(around, 1e-12) < math.sin(math.radians(min_angle))
    bad = (area > max_area) | (small_angle & (shortest > 0.1))  # (near-)coincident points are left as they are
    if not bad.any():
        return np.zeros((0, 2)), np.zeros((0, 2))
    centre = _circumcentres(corners[bad])
    middle = segments.mean(axis=1)
    radius = np.linalg.norm(segments[:, 1] - segments[:, 0], axis=1) / 2
    encroached = np.linalg.norm(centre[:, None] - middle[None], axis=-1) < radius[None]  # [bad, segments]
    inside = shapely.contains_xy(polygon, centre[:, 0], centre[:, 1]) & np.isfinite(centre).all(1)
    clear = inside & ~encroached.any(1)
    split = np.unique(np.concatenate([np.nonzero(encroached[~clear].any(0))[0],
                                      _nearest_segment(centre[~clear & ~encroached.any(1)], segments)]))
    return _distinct(centre[clear]), middle[split]


def _circumcentres(corners: np.ndarray) -> np.ndarray:
    a, b, c = corners[:, 0], corners[:, 1], corners[:, 2]
    d = 2 * (a[:, 0] * (b[:, 1] - c[:, 1]) + b[:, 0] * (c[:, 1] - a[:, 1]) + c[:, 0] * (a[:, 1] - b[:, 1]))
    a2, b2, c2 = (a * a).sum(1), (b * b).sum(1), (c * c).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = (a2 * (b[:, 1] - c[:, 1]) + b2 * (c[:, 1] - a[:, 1]) + c2 * (a[:, 1] - b[:, 1])) / d
        y = (a2 * (c[:, 0] - b[:, 0]) + b2 * (a[:, 0] - c[:, 0]) + c2 * (b[:, 0] - a[:, 0])) / d
    return np.stack([x, y], 1)


def _nearest_segment(points: np.ndarray, segments: np.ndarray) -> np.ndarray:
    if not len(points):
        return np.zeros(0, np.int64)
    start, direction = segments[:, 0], segments[:, 1] - segments[:, 0]
    offset = points[:, None] - start[None]
    along = np.clip((offset * direction[None]).sum(-1) / np.maximum((direction ** 2).sum(-1), 1e-18)[None], 0, 1)
    distance = np.linalg.norm(offset - along[..., None] * direction[None], axis=-1)
    return np.argmin(distance, axis=1)


def _distinct(points: np.ndarray, gap: float = 1e-6) -> np.ndarray:
    if not len(points):
        return points
    return np.unique(np.round(points / gap) * gap, axis=0)


_MIN_GAP = 0.5  # px: a new point closer than this to another point is not added (it would make slivers)


def _new_points(points: np.ndarray, existing: np.ndarray) -> np.ndarray:
    """``points`` without those within ``_MIN_GAP`` of an existing point or of an earlier one of them."""
    kept: list[np.ndarray] = []
    for point in points:
        if np.min(np.linalg.norm(existing - point, axis=1)) < _MIN_GAP:
            continue
        if kept and np.min(np.linalg.norm(np.array(kept) - point, axis=1)) < _MIN_GAP:
            continue
        kept.append(point)
    return np.array(kept, np.float64).reshape(-1, 2)


def _split_outline(outline: np.ndarray, spacing: float) -> np.ndarray:
    """Points cutting every outline edge into pieces no longer than ``spacing``."""
    start, end = outline, np.roll(outline, -1, axis=0)
    pieces = np.ceil(np.linalg.norm(end - start, axis=1) / spacing).astype(int)
    added = [start[i] + (end[i] - start[i]) * k / pieces[i] for i in range(len(outline)) for k in range(1, pieces[i])]
    return np.array(added, np.float64).reshape(-1, 2)


def _outline_order(outline, boundary, ring, fixed_count):
    """Vertex indices around the outline: original corners with their added points in between."""
    start, end = outline, np.roll(outline, -1, axis=0)
    direction = end - start
    length2 = np.maximum((direction ** 2).sum(1), 1e-18)
    order = []
    if len(boundary):
        offsets = boundary[:, None] - start[None]  # [b, n, 2]
        along = (offsets * direction[None]).sum(-1) / length2
        across = np.abs(offsets[..., 0] * direction[None, :, 1] - offsets[..., 1] * direction[None, :, 0]) / np.sqrt(length2)
        across = np.where((along > 0) & (along < 1), across, np.inf)
        edge_of = np.argmin(across, axis=1)
        position = along[np.arange(len(boundary)), edge_of]
    for i in ring:
        order.append(int(i))
        if len(boundary):
            members = np.nonzero(edge_of == i)[0]
            order += [fixed_count + int(m) for m in members[np.argsort(position[members])]]
    return np.array(order, np.int64)


def _missing_outline_edges(triangles: np.ndarray, order: np.ndarray) -> np.ndarray:
    edges = {tuple(e) for e in mesh_edges(triangles).tolist()}
    pairs = np.stack([order, np.roll(order, -1)], axis=1)
    wanted = np.sort(pairs, axis=1)
    return pairs[[tuple(p) not in edges for p in wanted.tolist()]]


def _lattice(polygon, spacing: float, keep_clear: np.ndarray) -> np.ndarray:
    """Hexagonal lattice points inside the polygon, at least half a spacing from the outline and fixed points."""
    import shapely

    x0, y0, x1, y1 = polygon.bounds
    row_step = spacing * math.sqrt(3) / 2
    ys = np.arange(y0 + row_step / 2, y1, row_step)
    rows = []
    for r, y in enumerate(ys):
        xs = np.arange(x0 + spacing * (0.25 if r % 2 else 0.75), x1, spacing)
        rows.append(np.stack([xs, np.full_like(xs, y)], axis=1))
    points = np.concatenate(rows) if rows else np.zeros((0, 2))
    points = points[shapely.contains_xy(polygon, points[:, 0], points[:, 1])]
    if not len(points):
        return points
    far_from_outline = shapely.distance(polygon.boundary, shapely.points(points)) > 0.5 * spacing
    points = points[far_from_outline]
    if len(keep_clear) and len(points):
        gaps = np.linalg.norm(points[:, None] - keep_clear[None], axis=-1).min(1)
        points = points[gaps > 0.5 * spacing]
    return points


def _delaunay_inside(vertices: np.ndarray, polygon) -> np.ndarray:
    """Delaunay triangles (vertex indices, counter-clockwise) whose centroid lies inside the polygon."""
    import shapely

    collection = shapely.delaunay_triangles(shapely.multipoints(vertices))
    corners = shapely.get_coordinates(shapely.get_exterior_ring(shapely.get_parts(collection))).reshape(-1, 4, 2)[:, :3]
    index = {(float(x), float(y)): i for i, (x, y) in enumerate(vertices.tolist())}
    triangles = np.array([[index[(float(x), float(y))] for x, y in corner] for corner in corners.tolist()], np.int64)
    triangles = triangles.reshape(-1, 3)
    centre = vertices[triangles].mean(1)
    triangles = triangles[shapely.contains_xy(polygon, centre[:, 0], centre[:, 1])]
    a, b, c = vertices[triangles[:, 0]], vertices[triangles[:, 1]], vertices[triangles[:, 2]]
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1])
    triangles = triangles[np.abs(area) > 1e-9]
    flip = area[np.abs(area) > 1e-9] < 0
    triangles[flip] = triangles[flip][:, [0, 2, 1]]
    return triangles


def _smooth(vertices: np.ndarray, triangles: np.ndarray, first_free: int, polygon) -> np.ndarray:
    """One Laplacian step for the lattice points (index >= ``first_free``), kept inside the polygon."""
    import shapely

    edges = mesh_edges(triangles)
    total = np.zeros_like(vertices)
    count = np.zeros(len(vertices))
    for a, b in ((0, 1), (1, 0)):
        np.add.at(total, edges[:, a], vertices[edges[:, b]])
        np.add.at(count, edges[:, a], 1)
    free = vertices[first_free:]
    moved = np.where(count[first_free:, None] > 0, total[first_free:] / np.maximum(count[first_free:, None], 1), free)
    moved = free + 0.5 * (moved - free)
    inside = shapely.contains_xy(polygon, moved[:, 0], moved[:, 1])
    return np.where(inside[:, None], moved, free)


def mesh_edges(triangles: np.ndarray) -> np.ndarray:
    """Unique undirected edges (i < j), sorted lexicographically (pwarp's ``get_edges``)."""
    pairs = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [0, 2]]])
    return np.unique(np.sort(pairs, axis=1), axis=0)


# ----------------------------------------------------------------------------- subdivision


_ROOT_GRID = 32  # sign changes of the line equation are searched on this many sub-intervals of [0, 1]
_PAIR_CHUNK = 4_000_000


def _candidate_pairs(low: np.ndarray, high: np.ndarray, edge_low: np.ndarray, edge_high: np.ndarray):
    """(segment, edge) pairs whose bounding boxes touch, in segment then edge order."""
    segments, edges = [], []
    chunk = max(1, _PAIR_CHUNK // max(len(edge_low), 1))
    for start in range(0, len(low), chunk):
        touch = np.all((high[start:start + chunk, None] >= edge_low[None]) &
                       (low[start:start + chunk, None] <= edge_high[None]), axis=-1)
        s, e = np.nonzero(touch)
        segments.append(s + start)
        edges.append(e)
    return np.concatenate(segments), np.concatenate(edges)


def _line_crossings(p0, p1, a, b):
    """Parameters along p0->p1 (arrays [n, 2]) where they cross edges a->b; NaN where they do not."""
    d, e, w = p1 - p0, b - a, a - p0
    denominator = d[:, 0] * e[:, 1] - d[:, 1] * e[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (w[:, 0] * e[:, 1] - w[:, 1] * e[:, 0]) / denominator
        s = (w[:, 0] * d[:, 1] - w[:, 1] * d[:, 0]) / denominator
    ok = (denominator != 0) & (t >= 0) & (t <= 1) & (s >= 0) & (s <= 1)
    return np.where(ok, t, np.nan)


def _cubic_crossings(control, a, b):
    """Parameters along cubics (control [n, 4, 2]) where they cross edges a->b: [n, 3], NaN-padded.

    The signed distance of the curve to the edge's line is a cubic polynomial in t; its roots are
    bracketed on a fine grid and refined by safeguarded Newton steps to machine precision.
    """
    e = b - a
    offsets = control - a[:, None, :]
    f = e[:, None, 0] * offsets[..., 1] - e[:, None, 1] * offsets[..., 0]  # [n, 4] Bernstein coefficients
    coefficients = np.stack([f[:, 3] - 3 * f[:, 2] + 3 * f[:, 1] - f[:, 0],
                             3 * (f[:, 2] - 2 * f[:, 1] + f[:, 0]),
                             3 * (f[:, 1] - f[:, 0]), f[:, 0]], axis=1)  # power basis, highest first

    def value(t):
        return ((coefficients[:, 0:1] * t + coefficients[:, 1:2]) * t + coefficients[:, 2:3]) * t + coefficients[:, 3:4]

    grid = np.linspace(0.0, 1.0, _ROOT_GRID + 1)[None]
    samples = value(np.repeat(grid, len(f), 0))
    negative = samples < 0
    change = negative[:, :-1] != negative[:, 1:]
    pair, interval = np.nonzero(change)
    lo, hi = grid[0, interval], grid[0, interval + 1]
    flo = samples[pair, interval]
    c = coefficients[pair]
    t = (lo + hi) / 2
    for _ in range(60):
        fv = ((c[:, 0] * t + c[:, 1]) * t + c[:, 2]) * t + c[:, 3]
        same = (fv < 0) == (flo < 0)
        lo, hi = np.where(same, t, lo), np.where(same, hi, t)
        flo = np.where(same, fv, flo)
        slope = (3 * c[:, 0] * t + 2 * c[:, 1]) * t + c[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = t - fv / slope
        inside = np.isfinite(newton) & (newton > lo) & (newton < hi)
        t = np.where(inside, newton, (lo + hi) / 2)
    exact_zero = samples[:, 1:-1] == 0
    zero_pair, zero_index = np.nonzero(exact_zero & ~change[:, :-1])  # zeros the brackets missed
    pair = np.concatenate([pair, zero_pair])
    t = np.concatenate([t, grid[0, zero_index + 1]])
    points = _bezier_points(control[pair], t)
    edge = e[pair]
    s = ((points - a[pair]) * edge).sum(1) / (edge * edge).sum(1)
    keep = (s >= 0) & (s <= 1)
    result = np.full((len(f), 3), np.nan)
    slot = np.zeros(len(f), np.int64)
    for p, value_t in zip(pair[keep], t[keep]):
        if slot[p] < 3:
            result[p, slot[p]] = value_t
            slot[p] += 1
    return result


def _bezier_points(control: np.ndarray, t: np.ndarray) -> np.ndarray:
    u = (1 - t)[:, None]
    t = t[:, None]
    return u ** 3 * control[:, 0] + 3 * u * u * t * control[:, 1] + 3 * u * t * t * control[:, 2] + t ** 3 * control[:, 3]


def _split_cubic(control: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
    p01 = control[0] + t * (control[1] - control[0])
    p12 = control[1] + t * (control[2] - control[1])
    p23 = control[2] + t * (control[3] - control[2])
    p012 = p01 + t * (p12 - p01)
    p123 = p12 + t * (p23 - p12)
    mid = p012 + t * (p123 - p012)
    return np.array([control[0], p01, p012, mid]), np.array([mid, p123, p23, control[3]])


def _near(value: float, target: float) -> bool:
    return abs(value - target) <= _ENDPOINT_TOLERANCE


def _segments(subpath: Subpath):
    """Control points of each segment: [2, 2] for a line, [4, 2] for a cubic."""
    count = len(subpath.points)
    cursor = 0
    for ncp in subpath.num_control_points:
        step = int(ncp) + 1
        yield subpath.points[[(cursor + k) % count for k in range(step + 1)]]
        cursor += step


def _split_segment(control: np.ndarray, zs: list[float], points: list, kinds: list) -> None:
    """Append the pieces of one segment split at the sorted parameters ``zs`` (svglib's rules)."""
    if len(control) == 2:
        if not zs:
            points.append(control[1])
            kinds.append(0)
            return
        if not _near(zs[0], 0.0):
            zs.insert(0, 0.0)
        if not _near(zs[-1], 1.0):
            zs.append(1.0)
        for z in zs[1:]:
            points.append(control[0] + z * (control[1] - control[0]))
            kinds.append(0)
        return
    if zs and _near(zs[0], 0.0):
        zs.pop(0)
    if zs and _near(zs[-1], 1.0):
        zs.pop(-1)
    rest, previous = control, 0.0
    for z in zs:
        piece, rest = _split_cubic(rest, (z - previous) / (1 - previous))
        previous = z
        points += [piece[1], piece[2], piece[3]]
        kinds.append(2)
    points += [rest[1], rest[2], rest[3]]
    kinds.append(2)


def subdivide(drawing: Drawing, vertices: np.ndarray, edges: np.ndarray) -> Drawing:
    """Split every line/cubic of the drawing at all its crossings with the mesh edges."""
    edge_a, edge_b = vertices[edges[:, 0]], vertices[edges[:, 1]]
    segments = [segment for group in drawing.groups for subpath in group.subpaths for segment in _segments(subpath)]
    low = np.array([s.min(0) for s in segments])
    high = np.array([s.max(0) for s in segments])
    pair_segment, pair_edge = _candidate_pairs(low, high, np.minimum(edge_a, edge_b), np.maximum(edge_a, edge_b))
    is_line = np.array([len(s) == 2 for s in segments])[pair_segment]
    crossings: list[list[float]] = [[] for _ in segments]
    lines = np.nonzero(is_line)[0]
    if len(lines):
        ends = np.array([segments[i] for i in pair_segment[lines]])
        t = _line_crossings(ends[:, 0], ends[:, 1], edge_a[pair_edge[lines]], edge_b[pair_edge[lines]])
        for segment, value in zip(pair_segment[lines], t):
            if not np.isnan(value):
                crossings[segment].append(float(value))
    cubics = np.nonzero(~is_line)[0]
    if len(cubics):
        control = np.array([segments[i] for i in pair_segment[cubics]])
        roots = _cubic_crossings(control, edge_a[pair_edge[cubics]], edge_b[pair_edge[cubics]])
        for segment, values in zip(pair_segment[cubics], roots):
            crossings[segment] += [float(v) for v in values if not np.isnan(v)]
    groups, index = [], 0
    for group in drawing.groups:
        subpaths = []
        for subpath in group.subpaths:
            points, kinds = [subpath.points[0]], []
            for _ in subpath.num_control_points:
                _split_segment(segments[index], sorted(crossings[index]), points, kinds)
                index += 1
            points = np.array(points, np.float64)
            if subpath.closed:
                points = points[:-1]  # the last end is the start
            subpaths.append(Subpath(points, np.array(kinds, np.int64), subpath.closed))
        groups.append(dataclasses.replace(group, subpaths=subpaths))
    return Drawing(drawing.width, drawing.height, groups, list(drawing.warnings))


# ----------------------------------------------------------------------------- binding


def barycentric(points: np.ndarray, vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Barycentric coordinates [P, T, 3] of every point in every triangle (AniClipart's formula)."""
    return _barycentric(points[:, None, :], vertices[triangles][None])


def _barycentric(points: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Coordinates [..., 3] of ``points`` [..., 2] in the triangles ``corners`` [..., 3, 2] (broadcast)."""
    v0, v1, v2 = corners[..., 0, :], corners[..., 1, :], corners[..., 2, :]
    e1, e2 = v1 - v0, v2 - v0
    d00 = (e1 * e1).sum(-1)
    d01 = (e1 * e2).sum(-1)
    d11 = (e2 * e2).sum(-1)
    denominator = d00 * d11 - d01 * d01
    offset = points - v0
    d20 = (offset * e1).sum(-1)
    d21 = (offset * e2).sum(-1)
    b1 = (d11 * d20 - d01 * d21) / denominator
    b2 = (d00 * d21 - d01 * d20) / denominator
    return np.stack([1.0 - b1 - b2, b1, b2], axis=-1)


def bind_points(points: np.ndarray, vertices: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each point the first triangle containing it and its barycentric coordinates there.

    A point outside every triangle (only possible through rounding) takes the triangle it is least
    outside of, with extrapolated coordinates.
    """
    points = np.asarray(points, np.float64)
    corners = vertices[triangles]  # [T, 3, 2]
    box_low, box_high = corners.min(1) - 1e-9, corners.max(1) + 1e-9
    face_index = np.full(len(points), -1, np.int64)
    bary = np.zeros((len(points), 3), np.float64)
    chunk = max(1, _BIND_CHUNK // max(len(triangles), 1))
    for start in range(0, len(points), chunk):
        block = points[start:start + chunk]
        candidate = np.all((block[:, None] >= box_low[None]) & (block[:, None] <= box_high[None]), axis=-1)
        point_of, triangle_of = np.nonzero(candidate)  # row-major: by point, then triangle order
        coords = _barycentric(block[point_of], corners[triangle_of])
        inside = np.all((coords >= 0) & (coords <= 1), axis=-1)
        hit_points, first = np.unique(point_of[inside], return_index=True)
        hits = np.nonzero(inside)[0][first]
        face_index[start + hit_points] = triangle_of[hits]
        bary[start + hit_points] = coords[hits]
    missing = np.nonzero(face_index < 0)[0]
    if len(missing):
        coords = barycentric(points[missing], vertices, triangles)
        chosen = np.argmax(coords.min(-1), axis=1)
        face_index[missing] = chosen
        bary[missing] = coords[np.arange(len(missing)), chosen]
    return face_index, bary
