"""AniClipart's side files: keypoints (``*_keypoint.svg``), skeleton (``*_skeleton.txt``), layers (``*_layer.json``).

- keypoints: the ``<circle>`` centres in document order (commented-out circles are not elements);
  mapped onto the working canvas through the keypoint file's own viewBox, as the art is;
- skeleton: one bone per line, two 0-based keypoint indices;
- layers: a JSON list of ``{"path_index": [...], "layer": name, "control_index": [...]}`` with
  **1-based** indices of the SVG's shapes and of the keypoints driving that layer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import InputError
from .document import DEFAULT_CANVAS, fit_matrix, viewport_box, check_canvas, parse_length, parse_transform
from .safe_xml import parse_xml

MAX_KEYPOINTS = 200
MAX_FILE_BYTES = 2 * 1024 * 1024


@dataclass
class Layer:
    name: str
    path_index: list[int]  # 0-based shape indices
    control_index: list[int]  # 0-based keypoint indices


def parse_keypoint_svg(data: bytes | str, canvas: int = DEFAULT_CANVAS, input_name: str = "keypoints") -> np.ndarray:
    """Circle centres [K, 2] (float64) on the working canvas."""
    canvas = check_canvas(canvas, "canvas")
    root = parse_xml(data, input_name)
    if root.tag != "svg":
        raise InputError(input_name, "is not an SVG document", "an SVG of <circle> keypoints")
    box, aspect = viewport_box(root, input_name)
    centres = []

    def walk(element, matrix):
        if element.tag.startswith("{") or element.tag in ("defs", "symbol", "clipPath", "mask", "style", "metadata"):
            return
        if "transform" in element.attrib:
            matrix = matrix @ parse_transform(element.attrib["transform"])
        if element.tag in ("circle", "ellipse"):
            x = parse_length(element.attrib.get("cx")) or 0.0
            y = parse_length(element.attrib.get("cy")) or 0.0
            centres.append((matrix @ np.array([x, y, 1.0]))[:2])
        for child in element.children:
            walk(child, matrix)

    walk(root, np.eye(3))
    if not centres:
        raise InputError(input_name, "has no <circle> keypoints", "one <circle cx cy> per keypoint")
    if len(centres) > MAX_KEYPOINTS:
        raise InputError(input_name, f"has {len(centres)} keypoints", f"at most {MAX_KEYPOINTS}")
    points = np.array(centres, np.float64)
    if box is None:
        raise InputError(input_name, "has neither a viewBox nor width/height", "the art's viewBox on the keypoint SVG")
    fit = fit_matrix(box, aspect, canvas, canvas)
    return points @ fit[:2, :2].T + fit[:2, 2]


def parse_skeleton(text: str, num_keypoints: int, input_name: str = "skeleton") -> np.ndarray:
    """Bones [B, 2] (0-based keypoint indices)."""
    bones = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#")[0].strip()
        if not line:
            continue
        parts = line.replace(",", " ").split()
        if len(parts) != 2 or not all(p.lstrip("-").isdigit() for p in parts):
            raise InputError(input_name, f"line {number} is not two whole numbers", "two keypoint indices per line, e.g. '0 1'")
        a, b = int(parts[0]), int(parts[1])
        for index in (a, b):
            if not 0 <= index < num_keypoints:
                raise InputError(input_name, f"line {number} names keypoint {index}", f"0-based indices below {num_keypoints}")
        if a == b:
            raise InputError(input_name, f"line {number} joins keypoint {a} to itself", "two different keypoints")
        bones.append((a, b))
    return np.array(bones, np.int64).reshape(-1, 2)


def parse_keypoints_text(text: str, input_name: str = "keypoints") -> np.ndarray:
    """Keypoints [K, 2] typed as one 'x y' (or 'x, y') per line in canvas pixels; '#' starts a comment."""
    points = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#")[0].replace(",", " ").strip()
        if not line:
            continue
        parts = line.split()
        try:
            points.append((float(parts[0]), float(parts[1])))
        except (IndexError, ValueError):
            raise InputError(input_name, f"line {number} is {line!r}", "'x y' in canvas pixels per line") from None
    return np.array(points, np.float64).reshape(-1, 2)


def parse_layers(text: str, num_paths: int, num_keypoints: int, input_name: str = "layers") -> list[Layer]:
    """A layer file -> layers with 0-based indices; every shape must belong to exactly one layer."""
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(input_name, f"is not valid JSON ({error.msg} at line {error.lineno})", "AniClipart's layer JSON") from None
    if not isinstance(entries, list) or not entries:
        raise InputError(input_name, "is not a list of layers", '[{"path_index": [...], "control_index": [...]}, ...]')
    layers, owner = [], {}
    for number, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise InputError(input_name, f"entry {number} is not an object", '{"path_index": [...], "control_index": [...]}')
        paths, controls = entry.get("path_index"), entry.get("control_index")
        for key, values, limit in (("path_index", paths, num_paths), ("control_index", controls, num_keypoints)):
            if not isinstance(values, list) or not values or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                raise InputError(input_name, f"entry {number} has no list of whole numbers for '{key}'", "1-based indices")
            bad = [v for v in values if not 1 <= v <= limit]
            if bad:
                raise InputError(input_name, f"entry {number} '{key}' has {bad}", f"1-based indices from 1 to {limit}")
        for path in paths:
            if path in owner:
                raise InputError(input_name, f"shape {path} is in layers {owner[path]} and {number}", "each shape in exactly one layer")
            owner[path] = number
        layers.append(Layer(str(entry.get("layer", f"layer_{number}")), [p - 1 for p in paths],
                            sorted(set(c - 1 for c in controls), key=[c - 1 for c in controls].index)))
    missing = sorted(set(range(1, num_paths + 1)) - set(owner))
    if missing:
        raise InputError(input_name, f"leaves shapes {missing} in no layer", "every shape (1-based) in exactly one layer")
    return layers


def _read_text(path: Path, input_name: str) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise InputError(input_name, f"'{path.name}' is {size / 1e6:.1f} MB", "a small text file")
        return path.read_bytes()
    except OSError as error:
        raise InputError(input_name, f"'{path}' cannot be read ({error.strerror})", "an existing file") from None


@dataclass
class SideFiles:
    """The side files found next to ``<name>.svg`` (``None`` where absent)."""

    keypoints: Path | None
    skeleton: Path | None
    layers: Path | None


def find_side_files(svg_path: str | Path) -> SideFiles:
    """AniClipart's naming: ``<stem>_keypoint.svg`` (or ``_keypoint_scaled.svg`` next to a ``_scaled``
    art file), ``<stem>_skeleton.txt``, ``<stem>_layer.json``; the stem drops a ``_scaled`` suffix."""
    path = Path(svg_path)
    stem = path.stem
    base = stem[: -len("_scaled")] if stem.endswith("_scaled") else stem
    folder = path.parent
    keypoint_names = [f"{base}_keypoint_scaled.svg", f"{base}_keypoint.svg"] if stem.endswith("_scaled") else \
        [f"{base}_keypoint.svg", f"{base}_keypoint_scaled.svg"]

    inside = folder.resolve()

    def first(names):  # a side file linked from elsewhere is not the art's own: never read through it
        for name in names:
            if (folder / name).is_file() and (folder / name).resolve().parent == inside:
                return folder / name
        return None

    return SideFiles(first(keypoint_names), first([f"{base}_skeleton.txt"]), first([f"{base}_layer.json"]))


def read_keypoint_file(path: Path, canvas: int = DEFAULT_CANVAS) -> np.ndarray:
    return parse_keypoint_svg(_read_text(Path(path), "keypoints"), canvas)


def read_skeleton_file(path: Path, num_keypoints: int) -> np.ndarray:
    return parse_skeleton(_read_text(Path(path), "skeleton").decode("utf-8", "replace"), num_keypoints)


def read_layer_file(path: Path, num_paths: int, num_keypoints: int) -> list[Layer]:
    return parse_layers(_read_text(Path(path), "layers").decode("utf-8", "replace"), num_paths, num_keypoints)


# ----------------------------------------------------------------------------- writing


def keypoint_svg(keypoints: np.ndarray, width: int, height: int, radius: float = 3.2) -> str:
    circles = "\n".join(f'<circle fill="black" cx="{x:.6f}" cy="{y:.6f}" r="{radius}"/>' for x, y in np.asarray(keypoints))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}">\n'
            f"{circles}\n</svg>\n")


def keypoints_text(keypoints: np.ndarray) -> str:
    """One 'x y' line per keypoint (canvas pixels), as ``parse_keypoints_text`` reads it."""
    return "".join(f"{x:.2f} {y:.2f}\n" for x, y in np.asarray(keypoints))


def side_file_texts(base: str, keypoints: np.ndarray, width: int, height: int, bones: np.ndarray,
                    layers: list[Layer]) -> list[tuple[str, str]]:
    """AniClipart's side files for the art ``<base>.svg`` as (file name, text): ``<base>_keypoint.svg``,
    ``<base>_skeleton.txt`` and, when there are layers, ``<base>_layer.json`` (``find_side_files`` finds them)."""
    files = [(base + "_keypoint.svg", keypoint_svg(keypoints, width, height)), (base + "_skeleton.txt", skeleton_text(bones))]
    if layers:
        files.append((base + "_layer.json", layers_json(layers)))
    return files


def skeleton_text(bones: np.ndarray) -> str:
    return "".join(f"{int(a)} {int(b)}\n" for a, b in np.asarray(bones).reshape(-1, 2))


def layers_json(layers: list[Layer]) -> str:
    return json.dumps([{"path_index": [p + 1 for p in layer.path_index], "layer": layer.name,
                        "control_index": [c + 1 for c in layer.control_index]} for layer in layers], indent=2)
