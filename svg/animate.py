"""Clipart animation end to end: load, rig, move, render, export (procedural mode; CPU, seconds).

    clipart = load_clipart("cat.svg")                       # art + keypoints/skeleton/layers or detected ones
    animation = animate_procedural(clipart.rig, MotionSettings("wave"))
    frames = render_animation(animation, size=512)           # [F, H, W, 3] on white
    svg_text = animation_svg(animation)                      # plays in a browser

The text-guided mode produces the same ``ClipartAnimation`` (keypoints per frame) from its optimiser.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..core.context import RunContext
from ..core.errors import InputError
from . import export, rigfiles
from .document import DEFAULT_CANVAS, Drawing, parse_svg
from .motion import MotionSettings, body_scale, figure_of, keypoint_motion
from .rig import ClipartRig, RigSettings, build_rig, deform

RENDER_BATCH = 8
RENDER_PIXELS_PER_BATCH = 1 << 22  # frames x pixels rendered at once
MAX_OUTPUT_BYTES = 8 * 1024**3  # the float32 frames handed back


@dataclass
class Clipart:
    """A parsed drawing with its rig (keypoints, bones, layers, mesh)."""

    rig: ClipartRig
    name: str = "clipart"
    svg_sha256: str | None = None
    keypoint_source: str = "file"  # file | detected | edited

    @property
    def drawing(self) -> Drawing:
        return self.rig.source


@dataclass
class ClipartAnimation:
    rig: ClipartRig
    keypoints: torch.Tensor  # [F, K, 2] float64, one pose per output frame
    fps: float
    motion: dict = field(default_factory=dict)
    name: str = "clipart"
    svg_sha256: str | None = None
    _points: torch.Tensor | None = None

    @property
    def num_frames(self) -> int:
        return int(self.keypoints.shape[0])

    def points(self) -> torch.Tensor:
        """Deformed drawing points per frame [F, P, 2] (computed once)."""
        if self._points is None:
            with torch.no_grad():
                self._points = apply_view(apply_body_scale(deform(self.rig, self.keypoints), self.motion.get("body_scale")),
                                          self.motion.get("view"))
        return self._points


def rig_drawing(drawing: Drawing, keypoints=None, bones=None, layers=None, settings: RigSettings | None = None,
                complexity: float = 0.5) -> tuple[ClipartRig, str]:
    """Rig a drawing; without keypoints they (and the bones) are detected from the silhouette."""
    source = "file"
    if keypoints is None:
        from .autorig import detect_keypoints

        keypoints, bones = detect_keypoints(drawing, complexity)
        source = "detected"
    elif bones is None:
        from .skeleton import minimum_spanning_bones

        bones = minimum_spanning_bones(np.asarray(keypoints, np.float64))
    return build_rig(drawing, keypoints, bones, layers, settings), source


def redetect(clipart: Clipart, complexity: float = 0.5) -> Clipart:
    """The clipart re-rigged with keypoints and bones detected from its silhouette."""
    rig = clipart.rig
    new_rig, origin = rig_drawing(rig.source, None, None, None, rig.settings, complexity)
    return Clipart(new_rig, clipart.name, clipart.svg_sha256, origin)


def rerig_from_text(clipart: Clipart, keypoints: str, bones: str) -> Clipart:
    """The clipart re-rigged with typed keypoints ('x y' lines) and bones ('i j' lines; empty: a minimum
    spanning tree). Its layers stay when the keypoint count does."""
    rig = clipart.rig
    points = rigfiles.parse_keypoints_text(keypoints)
    if len(points) == 0:
        raise InputError("keypoints", "is empty", "one 'x y' line per keypoint")
    bone_list = rigfiles.parse_skeleton(bones, len(points)) if bones.strip() else None
    layers = rig.layer_definitions if rig.layer_definitions and len(points) == rig.num_keypoints else None
    new_rig, _ = rig_drawing(rig.source, points, bone_list, layers, rig.settings)
    return Clipart(new_rig, clipart.name, clipart.svg_sha256, "edited")


def load_clipart(svg_path: str | Path, canvas: int = DEFAULT_CANVAS, keypoints_path=None, skeleton_path=None,
                 layers_path=None, use_side_files: bool = True, settings: RigSettings | None = None,
                 complexity: float = 0.5) -> Clipart:
    """Parse an SVG and rig it with its AniClipart side files (found next to it when not given)."""
    svg_path = Path(svg_path)
    data = read_svg_bytes(svg_path)
    drawing = parse_svg(data, canvas)
    side = rigfiles.find_side_files(svg_path) if use_side_files else rigfiles.SideFiles(None, None, None)
    keypoints_path = keypoints_path or side.keypoints
    skeleton_path = skeleton_path or side.skeleton
    layers_path = layers_path or side.layers
    keypoints = bones = layers = None
    if keypoints_path is not None:
        keypoints = rigfiles.read_keypoint_file(keypoints_path, canvas)
        if skeleton_path is not None:
            bones = rigfiles.read_skeleton_file(skeleton_path, len(keypoints))
        if layers_path is not None:
            layers = rigfiles.read_layer_file(layers_path, drawing.num_elements, len(keypoints))
            # Layer files count shapes as AniClipart does (a stroked and filled path is one): our groups for them.
            layers = [dataclasses.replace(layer, path_index=drawing.groups_of_elements(layer.path_index)) for layer in layers]
    rig, source = rig_drawing(drawing, keypoints, bones, layers, settings, complexity)
    return Clipart(rig, svg_path.stem, export.svg_digest(data), source)


def read_svg_bytes(path: Path) -> bytes:
    from .safe_xml import MAX_BYTES

    try:
        if path.stat().st_size > MAX_BYTES:
            raise InputError("svg", f"'{path.name}' is larger than {MAX_BYTES // 1_000_000} MB", "a clipart-sized SVG")
        return path.read_bytes()
    except OSError as error:
        raise InputError("svg", f"'{path}' cannot be read ({error.strerror})", "an existing SVG file") from None


FOLD_RATIO = 0.05  # a triangle carrying artwork below 5% of its area (or turned over) folds the drawing
AMPLITUDE_STEPS = (1.0, 0.85, 0.7, 0.55, 0.4, 0.25, 0.1)
CANVAS_MARGIN = 2.0  # px the moving drawing keeps from the canvas edges


def folds(rig: ClipartRig, keypoints: torch.Tensor) -> bool:
    """Whether these poses fold the artwork: a mesh triangle that carries art collapses or turns over."""
    with torch.no_grad():
        for layer in rig.layers:
            vertices = layer.solver.solve(keypoints[:, layer.keypoint_index]).numpy()
            carrying = np.unique(layer.face_index.numpy())
            ratio = layer.mesh.areas(vertices)[:, carrying] / layer.mesh.areas()[carrying]
            if np.any(ratio < FOLD_RATIO):
                return True
    return False


def limbs_cross(figure, poses: np.ndarray) -> bool:
    """Whether a bone of one limb passes through a bone of another in some frame (when they did not at rest)."""
    chains = figure.tree.limbs()
    real = None if figure.bones is None else {tuple(sorted(b)) for b in figure.bones.tolist()}
    bones, owner = [], []
    for c, chain in enumerate(chains):
        for i in range(len(chain) - 1):
            if real is None or tuple(sorted((chain[i], chain[i + 1]))) in real:  # not a link between parts
                bones.append((chain[i], chain[i + 1]))
                owner.append(c)
    pairs = [(i, j) for i in range(len(bones)) for j in range(i) if owner[i] != owner[j]
             and not set(bones[i]) & set(bones[j])]
    if not pairs:
        return False
    first, second = np.array([bones[i] for i, _ in pairs]), np.array([bones[j] for _, j in pairs])
    at_rest = segments_cross(figure.keypoints[None], first, second)[0]
    return bool(np.any(segments_cross(poses, first, second) & ~at_rest[None]))


def segments_cross(points: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """[F, pairs] whether segment ``first[k]`` properly crosses ``second[k]`` (keypoint index pairs)."""
    a, b = points[:, first[:, 0]], points[:, first[:, 1]]
    c, d = points[:, second[:, 0]], points[:, second[:, 1]]

    def side(p, q, r):
        return (q[..., 0] - p[..., 0]) * (r[..., 1] - p[..., 1]) - (q[..., 1] - p[..., 1]) * (r[..., 0] - p[..., 0])

    return (side(a, b, c) * side(a, b, d) < 0) & (side(c, d, a) * side(c, d, b) < 0)


def fit_view(points: torch.Tensor, width: int, height: int, margin: float = CANVAS_MARGIN):
    """[scale, dx, dy] that keeps every frame's drawing inside the canvas (shrunk and moved as little as
    needed, the same for all frames), or None when it already stays inside."""
    low = points.amin(dim=(0, 1)).double().numpy()
    high = points.amax(dim=(0, 1)).double().numpy()
    size = np.array([width, height], np.float64)
    if np.all(low >= margin) and np.all(high <= size - margin):
        return None
    span = np.maximum(high - low, 1e-6)
    scale = float(min(1.0, *((size - 2 * margin) / span)))
    target = np.clip(low + (1 - scale) * span / 2, margin, size - margin - scale * span)
    offset = target - scale * low
    return [scale, float(offset[0]), float(offset[1])]


def apply_body_scale(points: torch.Tensor, body) -> torch.Tensor:
    """Points [F, P, 2] scaled per frame about a pivot (``motion.body_scale``)."""
    if not body:
        return points
    pivot = torch.tensor(body["pivot"], dtype=points.dtype, device=points.device)
    scale = torch.tensor(body["scale"], dtype=points.dtype, device=points.device).unsqueeze(1)
    return torch.where(scale == 1, points, pivot + (points - pivot) * scale)  # frames at rest stay exact


def apply_view(points: torch.Tensor, view) -> torch.Tensor:
    if not view:
        return points
    scale, dx, dy = view
    return points * scale + torch.tensor([dx, dy], dtype=points.dtype, device=points.device)


def animate_procedural(rig: ClipartRig, settings: MotionSettings, name: str = "clipart",
                       svg_sha256: str | None = None, avoid_folds: bool = True) -> ClipartAnimation:
    """Keypoint poses of a preset for every frame (the mesh deformation happens on demand).

    With ``avoid_folds`` a motion that would fold the artwork somewhere (keypoints too close for the
    preset's size) or pass one limb through another is played smaller, by the largest of
    ``AMPLITUDE_STEPS`` that does neither; ``motion["amplitude_used"]`` says what was played. When the
    motion reaches past the canvas, the whole clip is shrunk and moved to stay on it (``motion["view"]``:
    scale, dx, dy applied to every frame's points).
    """
    settings.check()
    figure = figure_of(rig)
    for step in AMPLITUDE_STEPS if avoid_folds else (1.0,):
        played = dataclasses.replace(settings, amplitude=settings.amplitude * step)
        poses = torch.from_numpy(keypoint_motion(figure, played))
        if not avoid_folds or settings.amplitude == 0 or not (folds(rig, poses) or limbs_cross(figure, poses.numpy())):
            break
    motion = {"mode": "procedural", **settings.__dict__, "amplitude_used": played.amplitude}
    body = body_scale(figure, played)
    if body is not None:
        motion["body_scale"] = body
    animation = ClipartAnimation(rig, poses, float(settings.fps), motion, name, svg_sha256)
    with torch.no_grad():
        points = apply_body_scale(deform(rig, poses), body)
    view = fit_view(points, rig.width, rig.height) if settings.keep_on_canvas else None
    if view is not None:
        motion["view"] = view
    animation._points = apply_view(points, view)
    return animation


def render_animation(animation: ClipartAnimation, size: int | None = None,
                     background: tuple[float, float, float] | None = (1.0, 1.0, 1.0),
                     ctx: RunContext | None = None) -> torch.Tensor:
    """IMAGE frames ``[F, H, W, 3]`` (on ``background``) or ``[F, H, W, 4]`` RGBA (``background=None``)."""
    from .raster import rasterise

    ctx = ctx or RunContext()
    layout = animation.rig.layout
    height, width = (layout.height, layout.width) if size is None else (size, size)
    total = animation.num_frames
    channels = 4 if background is None else 3
    needed = total * height * width * channels * 4
    if needed > MAX_OUTPUT_BYTES:
        raise InputError("size", f"{total} frames of {width}x{height} would take {needed / 1024**3:.1f} GB",
                         "fewer frames or a smaller size")
    points = animation.points()
    step = max(1, min(RENDER_BATCH, RENDER_PIXELS_PER_BATCH // (height * width)))
    out = []
    for start in range(0, total, step):
        ctx.check_interrupt()
        batch = points[start:start + step].to(ctx.device)
        with torch.no_grad():
            out.append(rasterise(layout, batch, size, background).cpu())
        done = min(start + step, total)
        ctx.report(done, total, lambda: _preview(out[-1]))
    return torch.cat(out)


def on_background(rgba: torch.Tensor, colour: tuple[float, float, float] | None) -> torch.Tensor:
    """The RGB of RGBA frames composited over ``colour``; ``None`` keeps the plain colours (left to the alpha to cut out)."""
    if colour is None:
        return rgba[..., :3]
    back = torch.tensor(colour, dtype=rgba.dtype)
    return rgba[..., :3] * rgba[..., 3:] + back * (1 - rgba[..., 3:])


def _preview(frames: torch.Tensor):
    from PIL import Image

    frame = frames[-1, ..., :3].clamp(0, 1).mul(255).round().to(torch.uint8).numpy()
    return Image.fromarray(frame)


def animation_svg(animation: ClipartAnimation, size: int | None = None, decimals: int = 2) -> str:
    rig = animation.rig
    return export.animated_svg(rig.layout, animation.points(), animation.fps, rig.rest_points,
                               size, size, decimals)


def frame_svgs(animation: ClipartAnimation, size: int | None = None) -> list[str]:
    rig = animation.rig
    points = animation.points()
    return [export.frame_svg(rig.layout, points[f], rig.rest_points, size, size) for f in range(animation.num_frames)]


def animation_files(animation: ClipartAnimation, base: str, size: int | None = None, motion: bool = True,
                    rig_files: bool = True) -> list[tuple[str, str]]:
    """What a saved animation consists of, as (file name, text), the animated SVG ``<base>.svg`` first; with
    ``motion`` the motion JSON (``<base>.json``), with ``rig_files`` the rig as AniClipart side files, so
    ``load_clipart`` loads the SVG back rigged."""
    files = [(base + ".svg", animation_svg(animation, size))]
    if motion:
        files.append((base + ".json", export.motion_json(motion_record(animation))))
    if rig_files:
        rig = animation.rig
        files += rigfiles.side_file_texts(base, rig.keypoints.numpy(), *rig.canvas, rig.bones, rig.layer_definitions)
    return files


def motion_record(animation: ClipartAnimation) -> export.MotionRecord:
    rig = animation.rig
    layers = None if rig.layer_definitions is None else [
        {"path_index": [p + 1 for p in l.path_index], "layer": l.name, "control_index": [c + 1 for c in l.control_index]}
        for l in rig.layer_definitions]
    return export.MotionRecord(rig.canvas, animation.fps, rig.keypoints.numpy(), rig.bones,
                               animation.keypoints.numpy(), rig.settings.as_dict(), layers, animation.motion,
                               animation.svg_sha256)


def animation_from_record(drawing: Drawing, record: export.MotionRecord, name: str = "clipart",
                          svg_sha256: str | None = None) -> ClipartAnimation:
    """Rebuild the rig the record was made with and replay its keypoints (re-render at any size)."""
    if (drawing.width, drawing.height) != tuple(record.canvas):
        raise InputError("motion", f"was made on a {record.canvas[0]}x{record.canvas[1]} canvas",
                         f"the SVG loaded with canvas {record.canvas[0]}")
    if record.svg_sha256 and svg_sha256 and record.svg_sha256 != svg_sha256:
        raise InputError("motion", "was made for a different SVG (checksum differs)", "the SVG the motion was made for")
    layers = None
    if record.layers:
        layers = rigfiles.parse_layers(json.dumps(record.layers), len(drawing.groups), len(record.rest_keypoints))
    known = set(RigSettings().__dict__)
    settings = RigSettings(**{k: v for k, v in record.rig.items() if k in known})
    rig = build_rig(drawing, record.rest_keypoints, record.bones, layers, settings)
    return ClipartAnimation(rig, torch.from_numpy(record.keypoints), record.fps, record.motion, name, svg_sha256)


def rig_preview(rig: ClipartRig, size: int | None = None) -> torch.Tensor:
    """The artwork on white with its keypoints (numbered) and bones drawn over it: IMAGE [1, H, W, 3]."""
    from PIL import Image, ImageDraw

    from .raster import rasterise

    with torch.no_grad():
        frame = rasterise(rig.layout, rig.rest_points, size, (1.0, 1.0, 1.0))[0]
    image = Image.fromarray(frame.mul(255).round().byte().numpy())
    scale = image.width / rig.canvas[0]
    draw = ImageDraw.Draw(image)
    points = rig.keypoints.numpy() * scale
    radius = max(2.0, 3.0 * scale)
    for a, b in rig.bones:
        draw.line([tuple(points[a]), tuple(points[b])], fill=(40, 170, 90), width=max(1, int(round(1.5 * scale))))
    for index, (x, y) in enumerate(points):
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=(220, 40, 60))
        draw.text((x + radius + 1, y - radius - 1), str(index), fill=(20, 20, 120))
    return torch.from_numpy(np.asarray(image, np.float32) / 255.0).unsqueeze(0)
