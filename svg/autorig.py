"""Keypoints and bones for an SVG that comes without them.

Like AniClipart's preprocessing (silhouette -> skeleton -> simplified graph), but with a morphological
skeleton instead of CGAL's straight skeleton: the filled silhouette is thinned to a one-pixel medial
line (Zhang-Suen), traced into a graph of branches between end points and junctions, short spurs are
pruned, and long branches get intermediate joints where they bend (Douglas-Peucker) or run long.
``complexity`` (0..1) trades few, coarse joints (0) for many (1).
"""

from __future__ import annotations

import numpy as np

from .contour import outside_background, silhouette
from .document import Drawing

_NEIGHBOURS = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))  # P2..P9 (row, col)


def _neighbour_stack(image: np.ndarray) -> np.ndarray:
    padded = np.pad(image, 1)
    h, w = image.shape
    return np.stack([padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w] for dy, dx in _NEIGHBOURS])


def thin(mask: np.ndarray, max_iterations: int = 500) -> np.ndarray:
    """Zhang-Suen thinning of a boolean mask to one-pixel lines."""
    image = mask.astype(np.uint8)
    for _ in range(max_iterations):
        changed = False
        for step in (0, 1):
            p = _neighbour_stack(image)
            count = p.sum(0)
            transitions = ((p == 0) & (np.roll(p, -1, axis=0) == 1)).sum(0)
            if step == 0:
                a = p[0] * p[2] * p[4]
                b = p[2] * p[4] * p[6]
            else:
                a = p[0] * p[2] * p[6]
                b = p[0] * p[4] * p[6]
            remove = (image == 1) & (count >= 2) & (count <= 6) & (transitions == 1) & (a == 0) & (b == 0)
            if remove.any():
                image[remove] = 0
                changed = True
        if not changed:
            break
    return image.astype(bool)


def _skeleton_graph(skeleton: np.ndarray):
    """Nodes (end points and junction clusters) and the pixel paths between them."""
    pixels = {(int(y), int(x)) for y, x in zip(*np.nonzero(skeleton))}

    def neighbours(pixel):
        y, x = pixel
        return [(y + dy, x + dx) for dy, dx in _NEIGHBOURS if (y + dy, x + dx) in pixels]

    degree = {p: len(neighbours(p)) for p in pixels}
    special = {p for p, d in degree.items() if d != 2}
    # Adjacent junction pixels form one node.
    node_of, nodes = {}, []
    for pixel in sorted(special):
        if pixel in node_of:
            continue
        cluster, stack = [], [pixel]
        node_of[pixel] = len(nodes)
        while stack:
            current = stack.pop()
            cluster.append(current)
            if degree[current] < 3:
                continue
            for other in neighbours(current):
                if other in special and other not in node_of and degree[other] >= 3:
                    node_of[other] = len(nodes)
                    stack.append(other)
        nodes.append(np.mean(np.array(cluster, np.float64), axis=0)[::-1])  # (x, y)
    branches, used = [], set()
    for pixel in sorted(special):
        for first in neighbours(pixel):
            if first in node_of and node_of[first] == node_of[pixel]:
                continue
            if (pixel, first) in used:
                continue
            path, previous, current = [pixel], pixel, first
            while current not in special:
                path.append(current)
                following = [n for n in neighbours(current) if n != previous]
                if not following:
                    break
                previous, current = current, following[0]
            path.append(current)
            used.add((pixel, first))
            used.add((current, path[-2]))
            if current in node_of:
                branches.append((node_of[pixel], node_of[current], np.array(path, np.float64)[:, ::-1]))
    if not special and pixels:  # a closed loop without ends: cut it at its top-left pixel
        start = min(pixels)
        nodes.append(np.array(start[::-1], np.float64))
    return nodes, branches


def _merge_through(branches, node: int):
    """Join the two branches meeting at a node of degree 2 into one."""
    touching = [i for i, (a, b, _) in enumerate(branches) if node in (a, b)]
    if len(touching) != 2:
        return branches
    (a1, b1, p1), (a2, b2, p2) = branches[touching[0]], branches[touching[1]]
    if a1 == b1 or a2 == b2:
        return branches  # a loop: keep it as it is
    first = p1 if b1 == node else p1[::-1]
    start = a1 if b1 == node else b1
    second = p2 if a2 == node else p2[::-1]
    end = b2 if a2 == node else a2
    merged = (start, end, np.concatenate([first, second[1:]]))
    return [branch for i, branch in enumerate(branches) if i not in touching] + [merged]


def _tidy(nodes, branches):
    """Drop tiny loops around junction clusters and join branches through every node of degree 2."""
    branches = [b for b in branches if not (b[0] == b[1] and len(b[2]) <= 6)]
    changed = True
    while changed:
        changed = False
        for node in range(len(nodes)):
            if sum(node in (a, b) for a, b, _ in branches) == 2:
                joined = _merge_through(branches, node)
                if len(joined) < len(branches):
                    branches, changed = joined, True
    return branches


def _prune(nodes, branches, min_length: float):
    """Drop end branches shorter than ``min_length``, shortest first, joining the branches that then meet
    at a node of degree 2 (so a limb is judged by its whole length), until none is left."""
    branches = _tidy(nodes, branches)
    while True:
        degree = np.zeros(len(nodes), int)
        for a, b, _ in branches:
            degree[a] += 1
            degree[b] += 1
        lengths = [np.linalg.norm(np.diff(path, axis=0), axis=1).sum() for _, _, path in branches]
        spurs = [i for i, (a, b, _) in enumerate(branches)
                 if (degree[a] == 1 or degree[b] == 1) and lengths[i] < min_length]
        if not spurs or len(branches) <= 1:
            return branches
        shortest = min(spurs, key=lambda i: lengths[i])
        branches = _tidy(nodes, branches[:shortest] + branches[shortest + 1:])


def _bend_points(path: np.ndarray, epsilon: float) -> list[int]:
    """Indices of Douglas-Peucker break points of an open polyline (ends excluded)."""
    keep = []

    def split(first, last):
        if last - first < 2:
            return
        start, end = path[first], path[last]
        direction = end - start
        length = np.linalg.norm(direction)
        offsets = path[first + 1:last] - start
        if length == 0:
            distances = np.linalg.norm(offsets, axis=1)
        else:
            distances = np.abs(offsets[:, 0] * direction[1] - offsets[:, 1] * direction[0]) / length
        index = int(np.argmax(distances))
        if distances[index] > epsilon:
            middle = first + 1 + index
            split(first, middle)
            keep.append(middle)
            split(middle, last)

    split(0, len(path) - 1)
    return sorted(keep)


def detect_keypoints(drawing: Drawing, complexity: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints [K, 2] (canvas pixels) and bones [B, 2] from the drawing's silhouette."""
    complexity = float(min(max(complexity, 0.0), 1.0))
    mask = silhouette(drawing, 1)
    filled = ~outside_background(np.pad(mask, 1))[1:-1, 1:-1]
    if not filled.any():
        from ..core.errors import InputError

        raise InputError("svg", "draws nothing visible on the canvas", "shapes inside the drawing area")
    ys, xs = np.nonzero(filled)
    size = float(max(xs.max() - xs.min(), ys.max() - ys.min(), 1))
    skeleton = thin(filled)
    nodes, branches = _skeleton_graph(skeleton)
    branches = _prune(nodes, branches, (0.22 - 0.17 * complexity) * size)
    bend = (0.09 - 0.07 * complexity) * size
    longest = (0.5 - 0.3 * complexity) * size
    points: list[np.ndarray] = []
    index_of: dict[int, int] = {}

    def node_index(node):
        if node not in index_of:
            index_of[node] = len(points)
            points.append(nodes[node])
        return index_of[node]

    bones = []
    for a, b, path in branches:
        chain = [node_index(a)]
        cuts = _bend_points(path, bend)
        stops = [0] + cuts + [len(path) - 1]
        for first, last in zip(stops[:-1], stops[1:]):
            piece = path[first:last + 1]
            length = np.linalg.norm(np.diff(piece, axis=0), axis=1).sum()
            extra = int(length // longest)
            if extra:
                cumulative = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(piece, axis=0), axis=1))])
                for k in range(1, extra + 1):
                    target = cumulative[-1] * k / (extra + 1)
                    points.append(piece[int(np.searchsorted(cumulative, target))])
                    chain.append(len(points) - 1)
            if last != len(path) - 1:
                points.append(path[last])
                chain.append(len(points) - 1)
        chain.append(node_index(b))
        bones += [(chain[i], chain[i + 1]) for i in range(len(chain) - 1) if chain[i] != chain[i + 1]]
    if not points:
        centre = np.array([xs.mean(), ys.mean()])
        points = [centre]
    keypoints = np.array(points, np.float64) + 0.5  # pixel centres
    keypoints, bones = _merge_close(keypoints, np.array(bones, np.int64).reshape(-1, 2), 0.03 * size)
    if len(keypoints) < 2:
        keypoints, bones = _axis_keypoints(filled)
    return _parts_without_keypoints(filled, keypoints, bones)


MIN_PART_SHARE = 0.03  # a separate part with this share of the figure's area gets keypoints of its own


def _parts_without_keypoints(filled: np.ndarray, keypoints: np.ndarray, bones: np.ndarray):
    """Give every sizeable separate part (a floating head, a body whose skeleton was pruned) that holds no
    keypoint two keypoints along its long axis and a bone between them."""
    labels, count = _label_parts(filled)
    total = filled.sum()
    inside = labels[np.clip(keypoints[:, 1].astype(int), 0, filled.shape[0] - 1),
                    np.clip(keypoints[:, 0].astype(int), 0, filled.shape[1] - 1)]
    for part in range(1, count + 1):
        mask = labels == part
        if mask.sum() < MIN_PART_SHARE * total or part in inside:
            continue
        extra, extra_bones = _axis_keypoints(mask)
        bones = np.concatenate([bones, extra_bones + len(keypoints)])
        keypoints = np.concatenate([keypoints, extra])
    return keypoints, bones.astype(np.int64).reshape(-1, 2)


def _label_parts(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of a mask: labels (0 = background) and their number (runs per row, joined
    with the runs they touch in the row above)."""
    padded = np.pad(mask.astype(np.int8), ((0, 0), (1, 1)))
    change = np.diff(padded, axis=1)
    starts_y, starts_x = np.nonzero(change == 1)
    ends_x = np.nonzero(change == -1)[1]  # exclusive; same order as the starts (row-major)
    parent = list(range(len(starts_x)))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    rows: dict[int, list[int]] = {}
    for run, y in enumerate(starts_y.tolist()):
        rows.setdefault(y, []).append(run)
    for y, runs in rows.items():
        for run in runs:
            for other in rows.get(y - 1, ()):
                if starts_x[other] <= ends_x[run] and ends_x[other] >= starts_x[run]:  # touching, diagonals too
                    parent[root(run)] = root(other)
    roots = [root(i) for i in range(len(parent))]
    numbering = {r: k + 1 for k, r in enumerate(dict.fromkeys(roots))}
    labels = np.zeros(mask.shape, np.int64)
    for run, (y, x0, x1) in enumerate(zip(starts_y.tolist(), starts_x.tolist(), ends_x.tolist())):
        labels[y, x0:x1] = numbering[roots[run]]
    return labels, len(numbering)


def _merge_close(keypoints: np.ndarray, bones: np.ndarray, distance: float):
    """Merge keypoints closer than ``distance`` (bones follow; self-loops and duplicates dropped)."""
    label = np.arange(len(keypoints))
    for i in range(len(keypoints)):
        for j in range(i):
            if label[j] == j and np.linalg.norm(keypoints[i] - keypoints[j]) < distance:
                label[i] = j
                break
    kept = np.unique(label)
    remap = {old: new for new, old in enumerate(kept)}
    merged = np.array([keypoints[label == k].mean(0) for k in kept])
    new_bones = {tuple(sorted((remap[label[a]], remap[label[b]]))) for a, b in bones if label[a] != label[b]}
    return merged, np.array(sorted(new_bones), np.int64).reshape(-1, 2)


def _axis_keypoints(filled: np.ndarray):
    """Two keypoints along the principal axis of a blob (for shapes too simple to have a skeleton)."""
    ys, xs = np.nonzero(filled)
    points = np.stack([xs, ys], 1).astype(np.float64) + 0.5
    centre = points.mean(0)
    axis = np.linalg.eigh(np.cov((points - centre).T) + 1e-9 * np.eye(2))[1][:, -1]
    along = (points - centre) @ axis
    ends = [points[np.argmin(along)], points[np.argmax(along)]]
    keypoints = np.array([centre + 0.6 * (end - centre) for end in ends])
    if np.linalg.norm(keypoints[0] - keypoints[1]) < 1e-3:
        keypoints = np.array([centre, centre + [0.5, 0.0]])
    return keypoints, np.array([[0, 1]], np.int64)
