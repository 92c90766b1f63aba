"""Clipart animations as Lottie (bodymovin JSON) and dotLottie, for lottie-web, lottie-ios/android, After Effects.

Every filled shape of the drawing becomes one shape layer (the first layer is drawn on top, so the
layers run in reverse paint order). A layer holds one group: a path (``sh``) per subpath and the fill
(``fl``: colour, opacity, non-zero or even-odd rule). A path's vertices are the segment ends, its in/out
tangents the cubic control points relative to them (0 on straight segments); the fill closes every
path. A shape whose points move gets hold keyframes ``{"t": f, "s": [path], "h": 1}``, one per frame, so
the player shows exactly the pack's frames at the animation's frame rate (``fr``); a still shape gets
one static path. ``ip``/``op`` span the frames; players loop it by default, and the dotLottie manifest
says ``loop``. Coordinates are canvas pixels scaled to ``size``.
"""

from __future__ import annotations

import io
import json
import re
import zipfile

import numpy as np
import torch

from ..core.errors import InputError
from .paths import PathLayout

LOTTIE_VERSION = "5.7.4"
GENERATOR = "ComfyUI-Animate-Suite"
STATIC_TRANSFORM = {"o": {"a": 0, "k": 100}, "r": {"a": 0, "k": 0}, "p": {"a": 0, "k": [0, 0, 0]},
                    "a": {"a": 0, "k": [0, 0, 0]}, "s": {"a": 0, "k": [100, 100, 100]}}


def _subpath_shapes(layout: PathLayout, frames: np.ndarray, index: int, decimals: int) -> list[dict]:
    """One Lottie path value {i, o, v, c} per frame for subpath ``index`` of ``frames`` [F, P, 2]."""
    start, end = int(layout.subpath_offsets[index]), int(layout.subpath_offsets[index + 1])
    count = end - start
    anchors, outs, ins = [], [], []
    cursor = 0
    for ncp in layout.subpath_control_points[index]:
        anchors.append(cursor)
        following = cursor + int(ncp) + 1
        if ncp == 2:
            outs.append(cursor + 1)
            ins.append(cursor + 2)
        else:
            outs.append(cursor)
            ins.append(following % count)
        cursor = following
    if cursor < count:  # an open subpath ends on its own point; the fill closes it with a line
        anchors.append(cursor)
        outs.append(cursor)
        ins.append(0)
    points = frames[:, start:end]
    vertices = points[:, anchors]
    out_tangents = points[:, outs] - vertices
    # Lottie's in tangent of vertex k belongs to the segment arriving at k: the previous segment's 2nd control.
    in_points = np.roll(points[:, ins], 1, axis=1)
    in_tangents = in_points - vertices
    shapes = []
    for f in range(len(frames)):
        shapes.append({"i": _round(in_tangents[f], decimals), "o": _round(out_tangents[f], decimals),
                       "v": _round(vertices[f], decimals), "c": True})
    return shapes


def _round(values: np.ndarray, decimals: int) -> list:
    rounded = np.round(np.asarray(values, np.float64), decimals) + 0.0  # + 0.0 turns -0.0 into 0.0
    return rounded.tolist()


def _path_item(shapes: list[dict], moving: bool, name: str) -> dict:
    if not moving:
        return {"ty": "sh", "nm": name, "ks": {"a": 0, "k": shapes[0]}}
    keyframes = [{"t": t, "s": [shape], "h": 1} for t, shape in enumerate(shapes)]
    return {"ty": "sh", "nm": name, "ks": {"a": 1, "k": keyframes}}


def _fill_item(layout: PathLayout, group: int) -> dict:
    r, g, b, a = (float(v) for v in layout.group_fill[group])
    colour = [round(min(max(c, 0.0), 1.0), 4) for c in (r, g, b)] + [1]
    return {"ty": "fl", "nm": "fill", "c": {"a": 0, "k": colour}, "o": {"a": 0, "k": round(a * 100, 3)},
            "r": 2 if bool(layout.group_even_odd[group]) else 1}


def _group_transform() -> dict:
    return {"ty": "tr", "p": {"a": 0, "k": [0, 0]}, "a": {"a": 0, "k": [0, 0]}, "s": {"a": 0, "k": [100, 100]},
            "r": {"a": 0, "k": 0}, "o": {"a": 0, "k": 100}, "sk": {"a": 0, "k": 0}, "sa": {"a": 0, "k": 0}}


def _layer(layout: PathLayout, frames: np.ndarray, group: int, index: int, decimals: int) -> dict:
    start, end = layout.group_point_range(group)
    moving = bool(np.any(frames[1:, start:end] != frames[:1, start:end]))
    items = []
    for subpath in np.nonzero(layout.subpath_group == group)[0]:
        shapes = _subpath_shapes(layout, frames, int(subpath), decimals)
        items.append(_path_item(shapes, moving, f"path {len(items) + 1}"))
    items += [_fill_item(layout, group), _group_transform()]
    name = layout.group_ids[group] or f"shape {group + 1}"
    count = len(frames)
    return {"ddd": 0, "ind": index, "ty": 4, "nm": name, "sr": 1, "ks": STATIC_TRANSFORM, "ao": 0,
            "shapes": [{"ty": "gr", "nm": name, "it": items, "np": len(items) - 1}],
            "ip": 0, "op": count, "st": 0, "bm": 0}


def lottie_document(layout: PathLayout, frames, fps: float, size: int | None = None, name: str = "clipart",
                    decimals: int = 2) -> dict:
    """The Lottie animation (a dict ready for ``json.dumps``) of drawing points ``frames`` [F, P, 2]."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames, np.float64)
    if frames.ndim != 3 or len(frames) < 1:
        raise InputError("frames", f"have shape {frames.shape}", "[frames, points, 2] with at least one frame")
    if not (np.isfinite(fps) and fps > 0):
        raise InputError("fps", f"is {fps}", "a positive number")
    scale = 1.0 if size is None else size / max(layout.width, layout.height)
    frames = frames * scale
    width, height = int(round(layout.width * scale)), int(round(layout.height * scale))
    drawn = [g for g in range(layout.num_groups) if np.any(layout.subpath_group == g)]
    layers = [_layer(layout, frames, g, i + 1, decimals) for i, g in enumerate(reversed(drawn))]
    return {"v": LOTTIE_VERSION, "fr": float(fps), "ip": 0, "op": len(frames), "w": width, "h": height,
            "nm": name, "ddd": 0, "assets": [], "layers": layers, "markers": [],
            "meta": {"g": GENERATOR}}


def animation_lottie(animation, size: int | None = None, decimals: int = 2) -> dict:
    """The Lottie document of a ``ClipartAnimation``."""
    return lottie_document(animation.rig.layout, animation.points(), animation.fps, size, animation.name, decimals)


def lottie_json(document: dict) -> str:
    return json.dumps(document, separators=(",", ":"))


def _animation_id(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")
    return cleaned[:64] or "animation"


def dotlottie_bytes(document: dict, loop: bool = True, animation_id: str | None = None) -> bytes:
    """A dotLottie file: a zip with ``manifest.json`` and ``animations/<id>.json``."""
    ident = _animation_id(animation_id or document.get("nm", "animation"))
    manifest = {"version": "1", "generator": GENERATOR, "author": GENERATOR, "revision": 1,
                "animations": [{"id": ident, "loop": bool(loop), "autoplay": True, "speed": 1, "direction": 1,
                                "playMode": "normal"}],
                "activeAnimationId": ident}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(manifest, indent=1))
        archive.writestr(f"animations/{ident}.json", lottie_json(document))
    return buffer.getvalue()


def read_dotlottie(data: bytes) -> tuple[dict, dict]:
    """(manifest, first animation) of a dotLottie file."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        ident = manifest["animations"][0]["id"]
        return manifest, json.loads(archive.read(f"animations/{ident}.json"))


def write_lottie(animation, path, size: int | None = None, loop: bool = True):
    """``path`` ending in ``.lottie``: dotLottie; else plain Lottie JSON. Returns the path."""
    from pathlib import Path

    path = Path(path)
    document = animation_lottie(animation, size)
    if path.name.lower().endswith(".lottie"):
        path.write_bytes(dotlottie_bytes(document, loop, path.name[:-len(".lottie")]))
    else:
        path.write_text(lottie_json(document), encoding="utf-8")
    return path
