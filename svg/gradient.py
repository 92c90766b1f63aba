"""Linear and radial gradients: reading them from the SVG and painting them per pixel (differentiably).

A gradient is kept in its own coordinates with the matrix that takes them to canvas pixels
(``gradientTransform``, the object bounding box for ``objectBoundingBox`` units, the element's
transforms and the viewBox fit). When the drawing deforms, the gradient follows its shape: the
affine map that best carries the shape's rest points to the deformed ones (least squares, a fixed
pseudo-inverse times the points) moves the gradient frame too, so gradients reach the path points.
Radial gradients are two-circle gradients from the focal point (``fr`` = 0), as cairo draws them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import torch

SPREADS = ("pad", "reflect", "repeat")


@dataclass
class Gradient:
    kind: str  # linear | radial
    coords: tuple[float, ...]  # linear: x1, y1, x2, y2; radial: cx, cy, r, fx, fy (gradient coordinates)
    matrix: np.ndarray  # [3, 3] gradient coordinates -> canvas pixels
    offsets: np.ndarray  # [n] non-decreasing in 0..1
    colours: np.ndarray  # [n, 4] straight RGBA (stop-opacity included)
    spread: str = "pad"
    opacity: float = 1.0  # fill-/stroke-opacity x opacity

    def transformed(self, matrix: np.ndarray) -> "Gradient":
        return Gradient(self.kind, self.coords, matrix @ self.matrix, self.offsets, self.colours, self.spread, self.opacity)

    def average(self) -> tuple[float, float, float, float]:
        """The stops' average colour (for outputs that cannot draw gradients)."""
        offsets, colours = self.offsets, self.colours
        if len(offsets) == 1:
            return tuple(float(v) for v in colours[0])
        weights = np.zeros(len(offsets))
        spans = np.diff(offsets)
        weights[:-1] += spans / 2
        weights[1:] += spans / 2
        weights[0] += offsets[0]
        weights[-1] += 1 - offsets[-1]
        return tuple(float(v) for v in (weights[:, None] * colours).sum(0) / max(weights.sum(), 1e-12))


# ----------------------------------------------------------------------------- reading


def _attribute_chain(element, ids):
    """The gradient and the gradients it inherits from (href), nearest first."""
    chain, seen = [element], {id(element)}
    while True:
        reference = chain[-1].attrib.get("href", "").strip()
        target = ids.get(reference[1:]) if reference.startswith("#") else None
        if target is None or id(target) in seen or target.tag not in ("linearGradient", "radialGradient"):
            return chain
        seen.add(id(target))
        chain.append(target)


def read_gradient(element, ids, style_of, parse_color, parse_opacity, bbox, viewport) -> Gradient | None:
    """A ``<linearGradient>``/``<radialGradient>`` as a :class:`Gradient` in the element's user space
    (``bbox`` = x0, y0, x1, y1 of the painted element, ``viewport`` = width, height for percentages).
    None when it has no stops (the paint is then 'none')."""
    chain = _attribute_chain(element, ids)

    def attribute(name, default=None):
        for gradient in chain:
            if name in gradient.attrib:
                return gradient.attrib[name]
        return default

    stops = next(([s for s in g.children if s.tag == "stop"] for g in chain if any(s.tag == "stop" for s in g.children)), [])
    if not stops:
        return None
    offsets, colours = [], []
    for stop in stops:
        style = style_of(stop)
        colour = parse_color(style.get("stop-color", "black")) or (0.0, 0.0, 0.0, 0.0)
        colours.append((*colour[:3], colour[3] * parse_opacity(style.get("stop-opacity"))))
        offsets.append(min(max(_fraction(stop.attrib.get("offset", "0")), 0.0), 1.0))
    offsets = np.maximum.accumulate(np.array(offsets, np.float64))
    bounding = attribute("gradientUnits", "objectBoundingBox").strip() != "userSpaceOnUse"
    width, height = (1.0, 1.0) if bounding else viewport
    diagonal = math.sqrt((width * width + height * height) / 2)

    def length(name, default, reference):
        text = attribute(name)
        if text is None:
            return default * reference
        text = text.strip()
        if text.endswith("%"):
            return _number(text[:-1], 0.0) / 100.0 * reference
        return _user_length(text)

    if element.tag == "linearGradient":
        coords = (length("x1", 0.0, width), length("y1", 0.0, height), length("x2", 1.0, width), length("y2", 0.0, height))
    else:
        cx, cy, r = length("cx", 0.5, width), length("cy", 0.5, height), length("r", 0.5, diagonal)
        fx = length("fx", cx / width, width) if attribute("fx") is not None else cx
        fy = length("fy", cy / height, height) if attribute("fy") is not None else cy
        coords = (cx, cy, max(r, 0.0), fx, fy)
    from .document import parse_transform

    matrix = parse_transform(attribute("gradientTransform"))
    if bounding:
        x0, y0, x1, y1 = bbox
        if x1 - x0 <= 0 or y1 - y0 <= 0:
            return None  # objectBoundingBox on a shape without area: the paint is not drawn
        matrix = np.array([[x1 - x0, 0, x0], [0, y1 - y0, y0], [0, 0, 1.0]]) @ matrix
    spread = (attribute("spreadMethod", "pad") or "pad").strip()
    return Gradient(element.tag[:6], coords, matrix, offsets, np.array(colours, np.float64),
                    spread if spread in SPREADS else "pad")


def _number(text: str, default: float) -> float:
    try:
        value = float(text)
    except ValueError:
        return default
    return value if math.isfinite(value) else default


def _fraction(text: str) -> float:
    text = text.strip()
    return _number(text[:-1], 0.0) / 100.0 if text.endswith("%") else _number(text, 0.0)


def _user_length(text: str) -> float:
    from .document import parse_length

    value = parse_length(text)
    return 0.0 if value is None else value


# ----------------------------------------------------------------------------- painting


@dataclass
class GradientPaint:
    """A gradient ready for the rasteriser: the fit that makes it follow its shape's points."""

    gradient: Gradient
    inverse: np.ndarray  # [3, 3] canvas -> gradient coordinates (at rest)
    point_range: tuple[int, int]  # the shape's points in the layout's points array
    rest: np.ndarray  # [n, 2] those points at rest
    pseudo_inverse: np.ndarray  # [3, n]: rest points (homogeneous) -> their affine least-squares fit


def paint_for(gradient: Gradient, rest_points: np.ndarray, point_range: tuple[int, int]) -> GradientPaint:
    homogeneous = np.concatenate([rest_points, np.ones((len(rest_points), 1))], axis=1)
    pseudo_inverse = np.linalg.pinv(homogeneous, rcond=1e-10)
    return GradientPaint(gradient, np.linalg.inv(gradient.matrix), point_range, rest_points, pseudo_inverse)


def paint_pixels(paint: GradientPaint, frames: torch.Tensor, box, scale) -> torch.Tensor:
    """Straight RGBA ``[F, h, w, 4]`` of the gradient over the pixel ``box`` (y0, y1, x0, x1) of the
    output, whose pixels are ``scale`` (sx, sy) times the canvas pixels. ``frames`` [F, P, 2] are the
    (deformed) points in canvas pixels; the gradient follows its shape's affine motion from rest."""
    dtype, device = frames.dtype, frames.device
    y0, y1, x0, x1 = box
    xs = (torch.arange(x0, x1, dtype=dtype, device=device) + 0.5) / scale[0]
    ys = (torch.arange(y0, y1, dtype=dtype, device=device) + 0.5) / scale[1]
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # [h, w, 2] canvas coordinates
    grid = grid.unsqueeze(0).expand(frames.shape[0], -1, -1, -1)
    start, stop = paint.point_range
    displacement = frames[:, start:stop] - torch.as_tensor(paint.rest, dtype=dtype, device=device)
    if displacement.requires_grad or bool(displacement.abs().max() > 0):
        # The affine map carrying the rest shape to the deformed one: identity + fit of the displacement.
        fit = torch.einsum("kn,fnd->fkd", torch.as_tensor(paint.pseudo_inverse, dtype=dtype, device=device), displacement)
        linear = torch.eye(2, dtype=dtype, device=device) + fit[:, :2].transpose(1, 2)  # [F, 2, 2]: x' = L x + t
        shift = fit[:, 2]
        det = linear[:, 0, 0] * linear[:, 1, 1] - linear[:, 0, 1] * linear[:, 1, 0]
        det = torch.where(det.abs() < 1e-9, torch.full_like(det, 1e-9), det)
        inverse = torch.stack([torch.stack([linear[:, 1, 1], -linear[:, 0, 1]], -1),
                               torch.stack([-linear[:, 1, 0], linear[:, 0, 0]], -1)], 1) / det.view(-1, 1, 1)
        grid = torch.einsum("fij,fhwj->fhwi", inverse, grid - shift.view(-1, 1, 1, 2))
    inverse = torch.as_tensor(paint.inverse, dtype=dtype, device=device)
    local = torch.einsum("ij,fhwj->fhwi", inverse[:2, :2], grid) + inverse[:2, 2]
    t = _parameter(paint.gradient, local)
    t = _spread(t, paint.gradient.spread)
    return _interpolate(paint.gradient, t)


def _parameter(gradient: Gradient, p: torch.Tensor) -> torch.Tensor:
    if gradient.kind == "linear":
        x1, y1, x2, y2 = gradient.coords
        dx, dy = x2 - x1, y2 - y1
        length2 = dx * dx + dy * dy
        if length2 <= 0:
            return torch.ones_like(p[..., 0])  # SVG: the last stop's colour
        return ((p[..., 0] - x1) * dx + (p[..., 1] - y1) * dy) / length2
    cx, cy, r, fx, fy = gradient.coords
    if r <= 0:
        return torch.ones_like(p[..., 0])
    distance = math.hypot(fx - cx, fy - cy)
    if distance > 0.999 * r:  # SVG 1.1: a focal point outside the circle moves onto it
        fx, fy = cx + (fx - cx) * 0.999 * r / distance, cy + (fy - cy) * 0.999 * r / distance
    px, py = p[..., 0] - fx, p[..., 1] - fy
    cdx, cdy = cx - fx, cy - fy
    a = cdx * cdx + cdy * cdy - r * r  # < 0: the focal point is inside the circle
    b = px * cdx + py * cdy
    c = px * px + py * py
    return (b - torch.sqrt(b * b - a * c + 1e-12)) / a


def _spread(t: torch.Tensor, spread: str) -> torch.Tensor:
    if spread == "repeat":
        return t - torch.floor(t)
    if spread == "reflect":
        return 1 - (torch.remainder(t, 2) - 1).abs()
    return t.clamp(0, 1)


def _interpolate(gradient: Gradient, t: torch.Tensor) -> torch.Tensor:
    """Stop colours interpolated (straight RGBA, as cairo/pixman do) -> straight RGBA [..., 4]."""
    dtype, device = t.dtype, t.device
    offsets = torch.as_tensor(gradient.offsets, dtype=dtype, device=device)
    colours = torch.as_tensor(gradient.colours, dtype=dtype, device=device)
    count = len(offsets)
    if count == 1:
        result = colours[0].expand(*t.shape, 4)
    else:
        with torch.no_grad():
            upper = torch.searchsorted(offsets, t.detach().contiguous(), right=True).clamp(1, count - 1)
        lower = upper - 1
        span = offsets[upper] - offsets[lower]
        weight = torch.where(span > 0, (t - offsets[lower]) / span.clamp_min(1e-12), (t >= offsets[upper]).to(dtype))
        weight = weight.clamp(0, 1).unsqueeze(-1)
        result = colours[lower] * (1 - weight) + colours[upper] * weight
    return torch.cat([result[..., :3], result[..., 3:] * gradient.opacity], dim=-1)


def parse_paint_order(text: str | None) -> bool:
    """Whether ``paint-order`` puts the stroke under the fill."""
    if not text:
        return False
    words = [w for w in re.split(r"\s+", text.strip()) if w in ("fill", "stroke", "markers")]
    order = words + [w for w in ("fill", "stroke", "markers") if w not in words]
    return order.index("stroke") < order.index("fill")
