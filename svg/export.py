"""Writing drawings and animations out: per-frame SVG, animated SVG (SMIL), motion JSON.

Numbers are written as the shortest text that reads back to the same float32, so a frame written
and parsed again has exactly the points it had; a shape whose points did not move is written with
its original path data when it had no transform (lossless write-back).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..core.errors import InputError
from .paths import PathLayout

MOTION_FORMAT = "animate-suite/clipart-motion"
MOTION_VERSION = 1


def _colour(fill) -> tuple[str, str]:
    r, g, b, a = (float(v) for v in fill)
    hex_colour = "#{:02x}{:02x}{:02x}".format(*(int(round(min(max(c, 0.0), 1.0) * 255)) for c in (r, g, b)))
    return hex_colour, format(a, ".6g")


def _exact_numbers(values: np.ndarray) -> list[str]:
    return [str(v) for v in np.asarray(values, np.float32).ravel()]


def _rounded_numbers(values: np.ndarray, decimals: int) -> list[str]:
    text = np.char.mod(f"%.{decimals}f", np.asarray(values, np.float64).ravel())
    return [t.rstrip("0").rstrip(".") if "." in t else t for t in text.tolist()]


def path_data(layout: PathLayout, points: np.ndarray, group: int, decimals: int | None = None) -> str:
    """SVG path data of one shape (M/L/C/Z) for points ``[P, 2]``."""
    commands = []
    for index in np.nonzero(layout.subpath_group == group)[0]:
        start, end = layout.subpath_offsets[index], layout.subpath_offsets[index + 1]
        block = points[start:end]
        numbers = _exact_numbers(block) if decimals is None else _rounded_numbers(block, decimals)
        pairs = [f"{numbers[2 * i]} {numbers[2 * i + 1]}" for i in range(len(block))]
        parts = [f"M{pairs[0]}"]
        cursor = 1
        for ncp in layout.subpath_control_points[index]:
            take = int(ncp) + 1
            chunk = pairs[cursor:cursor + take]
            if len(chunk) < take:  # the closing segment ends at the start
                chunk = chunk + [pairs[0]]
            parts.append(("L" if ncp == 0 else "C") + " ".join(chunk))
            cursor += take
        if layout.subpath_closed[index]:
            parts.append("Z")
        commands.append(" ".join(parts))
    return " ".join(commands)


def _unchanged(points: np.ndarray, rest: np.ndarray, start: int, end: int) -> bool:
    return np.array_equal(points[start:end], rest[start:end])


def frame_svg(layout: PathLayout, points, rest_points=None, width: int | None = None, height: int | None = None) -> str:
    """One frame as an SVG document on the layout's canvas (``width``/``height`` set the display size)."""
    points = _numpy(points)
    rest = None if rest_points is None else _numpy(rest_points)
    shapes = []
    for g in range(layout.num_groups):
        start, end = layout.group_point_range(g)
        source = layout.group_source_d[g]
        if source is not None and rest is not None and _unchanged(points, rest, start, end):
            d = source
        else:
            d = path_data(layout, points, g)
        shapes.append(_gradient_element(layout, g, points) + _path_element(layout, g, d))
    return _document(layout, shapes, width, height)


def _gradient_element(layout: PathLayout, group: int, points: np.ndarray) -> str:
    """The shape's gradient (if it has one) in canvas coordinates, moved with the shape's affine fit."""
    paints = layout.group_gradients or ()
    paint = paints[group] if group < len(paints) else None
    if paint is None:
        return ""
    gradient = paint.gradient
    start, stop = paint.point_range
    fit = paint.pseudo_inverse @ (np.asarray(points[start:stop], np.float64) - paint.rest)  # [3, 2]
    follow = np.eye(3)
    follow[:2, :2] += fit[:2].T
    follow[:2, 2] = fit[2]
    a, b, c, d, e, f = (follow @ gradient.matrix)[:2].T.ravel()
    names = ("x1", "y1", "x2", "y2") if gradient.kind == "linear" else ("cx", "cy", "r", "fx", "fy")
    coords = " ".join(f'{n}="{v:.9g}"' for n, v in zip(names, gradient.coords))
    stops = "".join(f'<stop offset="{o:.6g}" stop-color="{_colour(c)[0]}" stop-opacity="{c[3] * gradient.opacity:.6g}"/>'
                    for o, c in zip(gradient.offsets, gradient.colours))
    return (f'<{gradient.kind}Gradient id="paint{group}" gradientUnits="userSpaceOnUse" spreadMethod="{gradient.spread}" '
            f'gradientTransform="matrix({a:.9g} {b:.9g} {c:.9g} {d:.9g} {e:.9g} {f:.9g})" {coords}>{stops}'
            f'</{gradient.kind}Gradient>\n')


def _path_element(layout: PathLayout, group: int, d: str, inner: str = "") -> str:
    colour, opacity = _colour(layout.group_fill[group])
    attributes = f'fill="{colour}"'
    if layout.group_gradients and layout.group_gradients[group] is not None:  # opacity is in the stops
        attributes, opacity = f'fill="url(#paint{group})"', "1"
    if opacity != "1":
        attributes += f' fill-opacity="{opacity}"'
    if bool(layout.group_even_odd[group]):
        attributes += ' fill-rule="evenodd"'
    element_id = layout.group_ids[group]
    if element_id and all(c.isalnum() or c in "-_." for c in element_id):
        attributes = f'id="{element_id}" ' + attributes
    if inner:
        return f'<path {attributes} d="{d}">{inner}</path>'
    return f'<path {attributes} d="{d}"/>'


def _document(layout: PathLayout, shapes: list[str], width, height) -> str:
    width = width or layout.width
    height = height or layout.height
    body = "\n".join(shapes)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {layout.width} {layout.height}" '
            f'width="{width}" height="{height}">\n{body}\n</svg>\n')


def _numpy(points) -> np.ndarray:
    if isinstance(points, torch.Tensor):
        points = points.detach().cpu().numpy()
    return np.asarray(points, np.float32)


def animated_svg(layout: PathLayout, frames, fps: float, rest_points=None, width: int | None = None,
                 height: int | None = None, decimals: int = 2, repeat: bool = True) -> str:
    """An SVG that plays the frames ``[F, P, 2]`` in a browser: each moving shape gets a SMIL
    ``<animate attributeName="d" calcMode="discrete">`` with one value per frame, each shown 1/fps s."""
    frames = _numpy(frames)
    count = frames.shape[0]
    if count < 1:
        raise InputError("frames", "is empty", "at least one frame")
    if not fps > 0:
        raise InputError("fps", f"is {fps}", "a positive number")
    rest = frames[0] if rest_points is None else _numpy(rest_points)
    duration = count / fps
    key_times = ";".join(format(i / count, ".6g") for i in range(count))
    shapes = []
    for g in range(layout.num_groups):
        start, end = layout.group_point_range(g)
        first = layout.group_source_d[g] if layout.group_source_d[g] is not None and _unchanged(frames[0], rest, start, end) \
            else path_data(layout, frames[0], g, decimals)
        moving = any(not np.array_equal(frames[f, start:end], frames[0, start:end]) for f in range(1, count))
        inner = ""
        if moving:
            values = ";".join(path_data(layout, frames[f], g, decimals) for f in range(count))
            inner = (f'<animate attributeName="d" dur="{duration:.9g}s" calcMode="discrete" '
                     f'repeatCount="{"indefinite" if repeat else "1"}" fill="freeze" keyTimes="{key_times}" values="{values}"/>')
        shapes.append(_gradient_element(layout, g, frames[0]) + _path_element(layout, g, first, inner))
    return _document(layout, shapes, width, height)


# ----------------------------------------------------------------------------- motion JSON


@dataclass
class MotionRecord:
    """Keypoint positions per frame plus what is needed to rebuild the rig and re-render."""

    canvas: tuple[int, int]
    fps: float
    rest_keypoints: np.ndarray  # [K, 2]
    bones: np.ndarray  # [B, 2]
    keypoints: np.ndarray  # [F, K, 2]
    rig: dict
    layers: list | None
    motion: dict
    svg_sha256: str | None = None


def svg_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def motion_json(record: MotionRecord) -> str:
    def rounded(array, decimals=5):
        return np.round(np.asarray(array, np.float64), decimals).tolist()

    document = {
        "format": MOTION_FORMAT,
        "version": MOTION_VERSION,
        "canvas": list(record.canvas),
        "fps": record.fps,
        "num_frames": int(record.keypoints.shape[0]),
        "rest_keypoints": rounded(record.rest_keypoints, 9),
        "bones": np.asarray(record.bones, np.int64).reshape(-1, 2).tolist(),
        "keypoints": rounded(record.keypoints),
        "rig": record.rig,
        "layers": record.layers,
        "motion": record.motion,
        "svg_sha256": record.svg_sha256,
    }
    return json.dumps(document, separators=(",", ":"))


def parse_motion_json(text: str, input_name: str = "motion") -> MotionRecord:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(input_name, f"is not valid JSON ({error.msg})", "a motion file written by this pack") from None
    except RecursionError:
        raise InputError(input_name, "is nested too deeply", "a motion file written by this pack") from None
    if not isinstance(document, dict) or document.get("format") != MOTION_FORMAT:
        raise InputError(input_name, "is not a clipart motion file", f"JSON with \"format\": \"{MOTION_FORMAT}\"")
    if document.get("version") != MOTION_VERSION:
        raise InputError(input_name, f"has version {document.get('version')!r}", f"version {MOTION_VERSION}")
    try:
        rest = np.asarray(document["rest_keypoints"], np.float64).reshape(-1, 2)
        keypoints = np.asarray(document["keypoints"], np.float64)
        bones = np.asarray(document.get("bones") or [], np.int64).reshape(-1, 2)
        canvas = tuple(int(v) for v in document["canvas"])
        fps = float(document["fps"])
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(input_name, f"is missing or has a bad field ({error})", "a complete motion file") from None
    if keypoints.ndim != 3 or keypoints.shape[1:] != rest.shape or not np.all(np.isfinite(keypoints)):
        raise InputError(input_name, f"has keypoints of shape {keypoints.shape}", f"[frames, {len(rest)}, 2] finite numbers")
    return MotionRecord(canvas, fps, rest, bones, keypoints, dict(document.get("rig") or {}),
                        document.get("layers"), dict(document.get("motion") or {}), document.get("svg_sha256"))


def write_text_files(folder, named_texts: Sequence[tuple[str, str]]) -> list:
    """Write text files into ``folder`` (names only, never paths)."""
    from pathlib import Path

    folder = Path(folder)
    written = []
    for name, text in named_texts:
        if "/" in name or "\\" in name or name in ("", ".", ".."):
            raise InputError("filename", f"'{name}' is not a plain file name", "a name without folders")
        path = folder / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
