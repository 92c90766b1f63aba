"""An SVG file as a flat list of filled shapes on a square working canvas.

Groups, transforms, ``<use>``, CSS classes and inheritance are resolved; ``<rect>``, ``<circle>``,
``<ellipse>``, ``<polygon>``, ``<polyline>`` and arcs become Bézier subpaths; the viewBox is fitted
into the canvas (centred, uniform scale, as AniClipart's ``svg_resize`` does). Strokes become filled
outlines (``stroke``), linear and radial gradients are kept as paints (``gradient``). What the pack
cannot draw (text, images, clip paths, masks, markers) is skipped and listed in ``Drawing.warnings``.
"""

from __future__ import annotations

import math
import re
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.errors import InputError
from . import pathdata
from .gradient import Gradient, parse_paint_order, read_gradient
from .pathdata import Subpath
from .stroke import StrokeStyle, stroke_outline
from .safe_xml import Element, parse_xml

DEFAULT_CANVAS = 256
MIN_CANVAS, MAX_CANVAS = 16, 4096
MAX_SHAPES = 10_000
MAX_SEGMENTS = 1_000_000
MAX_RENDERED_ELEMENTS = 100_000
MAX_DOCUMENT_SIZE = 1e7
MIN_DOCUMENT_SIZE = 1e-3
_UNITS = {"": 1.0, "px": 1.0, "pt": 4.0 / 3.0, "pc": 16.0, "mm": 96 / 25.4, "cm": 96 / 2.54, "in": 96.0,
          "em": 16.0, "ex": 8.0, "%": None}
_SKIPPED_CONTAINERS = {"defs", "symbol", "clipPath", "mask", "pattern", "marker", "metadata", "title", "desc",
                       "style", "script", "linearGradient", "radialGradient", "filter", "font", "foreignObject"}
_UNSUPPORTED = {"text": "text", "image": "embedded images", "foreignObject": "foreign objects"}
_STROKE_PROPERTIES = ("stroke", "stroke-width", "stroke-opacity", "stroke-linejoin", "stroke-linecap", "stroke-miterlimit",
                      "stroke-dasharray", "stroke-dashoffset", "paint-order")
_INHERITED = ("fill", "fill-opacity", "fill-rule", "color", "visibility", "clip-rule", *_STROKE_PROPERTIES)


@dataclass
class ShapeGroup:
    """One filled shape (an SVG element): its subpaths in canvas pixels and its paint."""

    subpaths: list[Subpath]
    fill: tuple[float, float, float, float]  # straight RGBA in 0..1 (alpha = fill-opacity x opacity)
    even_odd: bool = False
    element_id: str = ""
    source_d: str | None = None  # the element's own path data when it needs no transform (lossless write-back)
    gradient: Gradient | None = None  # a linear/radial gradient paint (``fill`` then holds its average colour)
    element_index: int = -1  # which painted element (its fill and its stroke outline share one) in document order


@dataclass
class Drawing:
    width: int
    height: int
    groups: list[ShapeGroup]
    warnings: list[str] = field(default_factory=list)

    def all_points(self) -> np.ndarray:
        """Every point (segment ends and Bézier control points), [N, 2]."""
        return np.concatenate([s.points for g in self.groups for s in g.subpaths], axis=0)

    @property
    def num_elements(self) -> int:
        """Painted elements (AniClipart's shapes: a filled and stroked path is one); groups when unknown."""
        known = [g.element_index for g in self.groups if g.element_index >= 0]
        return max(known) + 1 if len(known) == len(self.groups) and known else len(self.groups)

    def groups_of_elements(self, elements) -> list[int]:
        """The groups that draw the given element indices (in paint order)."""
        if self.num_elements == len(self.groups) and all(g.element_index in (-1, i) for i, g in enumerate(self.groups)):
            return sorted(elements)
        wanted = set(elements)
        return [i for i, g in enumerate(self.groups) if g.element_index in wanted]

    def subset(self, indices) -> "Drawing":
        return Drawing(self.width, self.height, [self.groups[i] for i in indices], list(self.warnings))


# ----------------------------------------------------------------------------- small parsers


def parse_length(text: str | None, reference: float | None = None) -> float | None:
    if text is None:
        return None
    match = re.fullmatch(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([a-z%]*)\s*", text)
    if match is None or match.group(2) not in _UNITS:
        return None
    value = float(match.group(1))
    unit = _UNITS[match.group(2)]
    if unit is None:
        return None if reference is None else value / 100.0 * reference
    return value * unit


_TRANSFORM = re.compile(r"(matrix|translate|scale|rotate|skewX|skewY)\s*\(([^)]*)\)")


def parse_transform(text: str | None) -> np.ndarray:
    """An SVG transform list as a 3x3 matrix."""
    result = np.eye(3)
    if not text:
        return result
    for name, arguments in _TRANSFORM.findall(text):
        values = pathdata.parse_number_list(arguments)
        matrix = np.eye(3)
        if name == "matrix" and len(values) == 6:
            a, b, c, d, e, f = values
            matrix = np.array([[a, c, e], [b, d, f], [0, 0, 1.0]])
        elif name == "translate" and values:
            matrix[0, 2] = values[0]
            matrix[1, 2] = values[1] if len(values) > 1 else 0.0
        elif name == "scale" and values:
            matrix[0, 0] = values[0]
            matrix[1, 1] = values[1] if len(values) > 1 else values[0]
        elif name == "rotate" and values:
            angle = math.radians(values[0])
            rotation = np.array([[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1.0]])
            if len(values) >= 3:
                cx, cy = values[1], values[2]
                rotation = _translation(cx, cy) @ rotation @ _translation(-cx, -cy)
            matrix = rotation
        elif name == "skewX" and values:
            matrix[0, 1] = math.tan(math.radians(values[0]))
        elif name == "skewY" and values:
            matrix[1, 0] = math.tan(math.radians(values[0]))
        result = result @ matrix
    if not np.all(np.isfinite(result)):
        return np.eye(3)
    return result


def _translation(x: float, y: float) -> np.ndarray:
    return np.array([[1, 0, x], [0, 1, y], [0, 0, 1.0]])


def parse_color(text: str | None, current_color=(0.0, 0.0, 0.0, 1.0)):
    """A CSS colour -> RGBA tuple in 0..1, 'none' -> None, unknown -> None."""
    if text is None:
        return None
    value = text.strip().lower()
    if value in ("none", "transparent", ""):
        return None
    if value == "currentcolor":
        return current_color
    if value.startswith("#"):
        digits = value[1:]
        if len(digits) in (3, 4):
            digits = "".join(c * 2 for c in digits)
        if len(digits) in (6, 8) and all(c in "0123456789abcdef" for c in digits):
            channels = [int(digits[i:i + 2], 16) / 255.0 for i in range(0, len(digits), 2)]
            return tuple(channels) if len(channels) == 4 else (*channels, 1.0)
        return None
    match = re.fullmatch(r"rgba?\(([^)]*)\)", value)
    if match:
        parts = [p for p in re.split(r"[\s,/]+", match.group(1)) if p]
        if len(parts) < 3:
            return None
        channels = []
        for part in parts[:3]:
            channels.append(float(part[:-1]) / 100.0 if part.endswith("%") else float(part) / 255.0)
        alpha = 1.0
        if len(parts) > 3:
            alpha = float(parts[3][:-1]) / 100.0 if parts[3].endswith("%") else float(parts[3])
        return tuple(min(max(c, 0.0), 1.0) for c in (*channels, alpha))
    from PIL import ImageColor

    named = ImageColor.colormap.get(value)
    if isinstance(named, str):
        return parse_color(named)
    if isinstance(named, tuple) and len(named) >= 3:  # PIL's getrgb() caches the names it has parsed as tuples
        return (*(c / 255.0 for c in named[:3]), 1.0)
    return None


def _parse_opacity(text: str | None) -> float:
    if text is None:
        return 1.0
    text = text.strip()
    try:
        value = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        return 1.0
    return min(max(value, 0.0), 1.0) if math.isfinite(value) else 1.0


# ----------------------------------------------------------------------------- CSS


@dataclass
class _Rule:
    tag: str | None
    element_id: str | None
    classes: tuple[str, ...]
    specificity: tuple[int, int, int]
    order: int
    declarations: dict[str, str]

    def matches(self, element: Element) -> bool:
        if self.tag not in (None, "*") and element.tag != self.tag:
            return False
        if self.element_id is not None and element.attrib.get("id") != self.element_id:
            return False
        classes = set(element.attrib.get("class", "").split())
        return all(c in classes for c in self.classes)


def _parse_declarations(text: str) -> dict[str, str]:
    declarations = {}
    for item in text.split(";"):
        name, _, value = item.partition(":")
        name, value = name.strip().lower(), value.replace("!important", "").strip()
        if name and value:
            declarations[name] = value
    return declarations


def _parse_css(text: str, warnings: list[str], start_order: int) -> list[_Rule]:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    rules = []
    order = start_order
    for selectors, body in re.findall(r"([^{}@]+)\{([^{}]*)\}", text):
        declarations = _parse_declarations(body)
        for selector in selectors.split(","):
            selector = selector.strip()
            match = re.fullmatch(r"([a-zA-Z][\w-]*|\*)?((?:[.#][\w-]+)*)", selector)
            if not selector or match is None:
                if selector:
                    warnings.append(f"CSS selector '{selector}' is not supported and was ignored")
                continue
            tag = match.group(1)
            parts = re.findall(r"([.#])([\w-]+)", match.group(2))
            ids = [name for kind, name in parts if kind == "#"]
            classes = tuple(name for kind, name in parts if kind == ".")
            specificity = (len(ids), len(classes), int(tag not in (None, "*")))
            rules.append(_Rule(tag, ids[0] if ids else None, classes, specificity, order, declarations))
            order += 1
    return rules


# ----------------------------------------------------------------------------- the walk


class _Reader:
    def __init__(self, root: Element, input_name: str, viewport: tuple[float, float] = (100.0, 100.0)):
        self.input_name = input_name
        self.viewport = viewport
        self.pending_strokes: dict[int, tuple] = {}
        self.painted_elements = 0
        self.warnings: list[str] = []
        self.ids = {}
        rules: list[_Rule] = []
        for element in root.iter():
            if "id" in element.attrib and element.attrib["id"] not in self.ids:
                self.ids[element.attrib["id"]] = element
            if element.tag == "style":
                rules += _parse_css(element.text, self.warnings, len(rules))
        self.rules = sorted(rules, key=lambda r: (r.specificity, r.order))
        self.groups: list[ShapeGroup] = []
        self.rendered = 0
        self.segments = 0
        self._warned: set[str] = set()
        self._geometry: dict[int, tuple[list[Subpath], str | None]] = {}

    def warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.warnings.append(message)

    def style_of(self, element: Element) -> dict[str, str]:
        """Presentation attributes < CSS rules (by specificity) < the style attribute."""
        style = {k: v for k, v in element.attrib.items() if k in _STYLE_PROPERTIES}
        for rule in self.rules:
            if rule.matches(element):
                style.update(rule.declarations)
        if "style" in element.attrib:
            style.update(_parse_declarations(element.attrib["style"]))
        return style

    def paint(self, value: str | None, inherited: dict, bbox):
        """A fill/stroke value -> (RGBA, Gradient or None), or None for no paint; resolves currentColor,
        gradients (in the element's user space; ``bbox`` for objectBoundingBox units) and fallbacks."""
        if value is None:
            return None
        value = value.strip()
        current = parse_color(inherited.get("color")) or (0.0, 0.0, 0.0, 1.0)
        match = re.match(r"url\(\s*['\"]?#([^)'\"]+)['\"]?\s*\)\s*(.*)", value)
        if match:
            target = self.ids.get(match.group(1))
            if target is not None and target.tag in ("linearGradient", "radialGradient"):
                gradient = read_gradient(target, self.ids, self.style_of, parse_color, _parse_opacity, bbox, self.viewport)
                return None if gradient is None else (gradient.average(), gradient)
            fallback = match.group(2).strip()
            if fallback:
                colour = parse_color(fallback, current)
                return None if colour is None else (colour, None)
            self.warn_once(f"paint-{match.group(1)}", f"paint server '#{match.group(1)}' is not supported; its shapes were skipped")
            return None
        colour = parse_color(value, current)
        return None if colour is None else (colour, None)

    def walk(self, element: Element, matrix: np.ndarray, inherited: dict, opacity: float, chain: tuple[str, ...],
             is_root: bool = False):
        self.rendered += 1
        if self.rendered > MAX_RENDERED_ELEMENTS:
            raise InputError(self.input_name, f"expands to more than {MAX_RENDERED_ELEMENTS} elements (nested <use>)",
                             "a clipart-sized SVG")
        tag = element.tag
        if tag.startswith("{") or tag in _SKIPPED_CONTAINERS:
            return
        if tag in _UNSUPPORTED:
            self.warn_once(tag, f"{_UNSUPPORTED[tag]} cannot be animated and were left out")
            return
        style = self.style_of(element)
        if style.get("display", "").strip() == "none":
            return
        state = dict(inherited)
        state.update({k: v for k, v in style.items() if k in _INHERITED})
        opacity = opacity * _parse_opacity(style.get("opacity"))
        if "clip-path" in style or "mask" in style:
            self.warn_once("clip", "clip paths and masks are ignored")
        if "transform" in element.attrib:
            matrix = matrix @ parse_transform(element.attrib["transform"])
        if tag in ("svg", "g", "a", "switch"):
            if tag == "svg" and not is_root:  # a nested <svg>: only its x/y offset is honoured
                matrix = matrix @ _translation(parse_length(element.attrib.get("x")) or 0.0,
                                               parse_length(element.attrib.get("y")) or 0.0)
            for child in element.children:
                self.walk(child, matrix, state, opacity, chain)
            return
        if tag == "use":
            self.use(element, matrix, state, opacity, chain)
            return
        key = id(element)
        if key not in self._geometry:  # an element drawn again through <use> is parsed once
            self._geometry[key] = self.geometry(element)
        subpaths, d = self._geometry[key]
        if not subpaths:
            return
        if state.get("visibility", "visible").strip() in ("hidden", "collapse"):
            return
        bbox = _local_bbox(subpaths)
        painted = []
        fill = None if element.tag == "line" else self.paint(state.get("fill", "black"), state, bbox)
        if fill is not None:
            painted.append((fill, _parse_opacity(state.get("fill-opacity")), None))
        stroke = self.paint(state.get("stroke"), state, bbox)
        outline_style = self.stroke_style(state) if stroke is not None else None
        if outline_style is not None:
            painted.append((stroke, _parse_opacity(state.get("stroke-opacity")), outline_style))
        if parse_paint_order(state.get("paint-order")):
            painted.reverse()
        element_id = element.attrib.get("id", "")
        element_index = self.painted_elements
        for (colour, gradient), paint_opacity, stroke_style in painted:
            alpha = colour[3] * paint_opacity * opacity
            if alpha <= 0:
                continue
            if gradient is not None:
                gradient = dataclasses.replace(gradient.transformed(matrix), opacity=paint_opacity * opacity)
            if stroke_style is None:
                transformed = [s.transformed(matrix) for s in subpaths]
                source_d = d if d is not None and np.array_equal(matrix, np.eye(3)) else None
                even_odd = state.get("fill-rule", "nonzero").strip() == "evenodd"
                self.add_group(ShapeGroup(transformed, (*colour[:3], alpha), even_odd, element_id, source_d, gradient,
                                          element_index), subpaths)
            else:
                non_scaling = style.get("vector-effect", "").strip() == "non-scaling-stroke"
                line = subpaths if element.tag not in ("path", "polyline", "line") else self.geometry(element, False)[0]
                self.pending_strokes[len(self.groups)] = (line, matrix, stroke_style, non_scaling)
                stroke_id = f"{element_id}-stroke" if element_id else ""
                self.add_group(ShapeGroup([s.transformed(matrix) for s in subpaths], (*colour[:3], alpha), True, stroke_id,
                                          None, gradient, element_index), subpaths)
        if self.groups and self.groups[-1].element_index == element_index:  # it drew something
            self.painted_elements += 1

    def add_group(self, group: ShapeGroup, subpaths: list[Subpath]) -> None:
        if len(self.groups) >= MAX_SHAPES:
            raise InputError(self.input_name, f"has more than {MAX_SHAPES} filled shapes", "a clipart-sized SVG; merge paths first")
        self.segments += sum(s.num_segments for s in subpaths)
        if self.segments > MAX_SEGMENTS:
            raise InputError(self.input_name, f"has more than {MAX_SEGMENTS} path segments", "a clipart-sized SVG")
        self.groups.append(group)

    def stroke_style(self, state: dict) -> StrokeStyle | None:
        """The stroke's geometry in the element's user space, or None when it draws nothing."""
        diagonal = math.sqrt((self.viewport[0] ** 2 + self.viewport[1] ** 2) / 2)
        width = parse_length(state.get("stroke-width", "1"), diagonal)
        if width is None or not width > 0 or not math.isfinite(width):
            return None
        dashes = ()
        dash_text = state.get("stroke-dasharray", "none").strip()
        if dash_text not in ("none", ""):
            values = [parse_length(v, diagonal) for v in re.split(r"[\s,]+", dash_text) if v]
            if values and all(v is not None and math.isfinite(v) and v >= 0 for v in values) and sum(values) > 0:
                dashes = tuple(values)
        offset = parse_length(state.get("stroke-dashoffset", "0"), diagonal) or 0.0
        limit = parse_length(state.get("stroke-miterlimit", "4"))
        join = state.get("stroke-linejoin", "miter").strip()
        cap = state.get("stroke-linecap", "butt").strip()
        return StrokeStyle(width, join if join in ("miter", "round", "bevel", "miter-clip", "arcs") else "miter",
                           cap if cap in ("butt", "round", "square") else "butt",
                           limit if limit is not None and limit >= 1 else 4.0, dashes, offset if math.isfinite(offset) else 0.0)

    def stroke_subpaths(self, index: int, fit: np.ndarray) -> list[Subpath]:
        """The outline of a pending stroke, in canvas pixels."""
        subpaths, matrix, style, non_scaling = self.pending_strokes[index]
        full = fit @ matrix
        if non_scaling:  # the width is in the document's own units, whatever the element's transforms
            outline = stroke_outline([s.transformed(matrix) for s in subpaths], style, _matrix_scale(fit))
            return [s.transformed(fit) for s in outline]
        outline = stroke_outline(subpaths, style, _matrix_scale(full))
        return [s.transformed(full) for s in outline]

    def use(self, element, matrix, state, opacity, chain):
        reference = element.attrib.get("href", "").strip()
        target = self.ids.get(reference[1:]) if reference.startswith("#") else None
        if target is None:
            if reference and not reference.startswith("#"):
                self.warn_once("external-use", "references to other files (<use href=\"file.svg#...\">) are ignored")
            return
        if reference in chain:
            raise InputError(self.input_name, f"has a <use> that refers to itself ({reference})", "an SVG without reference loops")
        offset = _translation(parse_length(element.attrib.get("x")) or 0.0, parse_length(element.attrib.get("y")) or 0.0)
        matrix = matrix @ offset
        if target.tag == "symbol":
            for child in target.children:
                self.walk(child, matrix, state, opacity, chain + (reference,))
        else:
            self.walk(target, matrix, state, opacity, chain + (reference,))

    def geometry(self, element: Element, force_close: bool = True) -> tuple[list[Subpath], str | None]:
        """The element's subpaths; ``force_close`` closes open ones as a fill does (a stroke does not)."""
        a = element.attrib
        tag = element.tag

        def number(name, default=0.0):
            value = parse_length(a.get(name))
            return default if value is None else value

        if tag == "path":
            d = a.get("d", "")
            return pathdata.parse_path_data(d, force_close, self.input_name, MAX_SEGMENTS), d
        if tag == "rect":
            rx = parse_length(a.get("rx")) if "rx" in a else None
            ry = parse_length(a.get("ry")) if "ry" in a else None
            shape = pathdata.rect_subpath(number("x"), number("y"), number("width"), number("height"), rx, ry)
        elif tag == "circle":
            r = number("r")
            shape = pathdata.ellipse_subpath(number("cx"), number("cy"), r, r)
        elif tag == "ellipse":
            shape = pathdata.ellipse_subpath(number("cx"), number("cy"), number("rx"), number("ry"))
        elif tag == "line":  # only ever stroked
            values = [number("x1"), number("y1"), number("x2"), number("y2")]
            shape = pathdata.polygon_subpath(values, False, force_close)
        elif tag in ("polygon", "polyline"):
            shape = pathdata.polygon_subpath(pathdata.parse_number_list(a.get("points", "")), tag == "polygon", force_close)
        else:
            return [], None
        return ([shape] if shape is not None else []), None


_STYLE_PROPERTIES = {"fill", "fill-opacity", "fill-rule", "opacity", "display", "visibility", "color", "stop-color",
                     "stop-opacity", "clip-path", "mask", "clip-rule", "vector-effect", *_STROKE_PROPERTIES}


def _local_bbox(subpaths: list[Subpath]) -> tuple[float, float, float, float]:
    """x0, y0, x1, y1 of the shape itself (curves flattened, not their control points)."""
    from .stroke import flatten_subpath

    size = max(float(np.ptp(np.concatenate([s.points for s in subpaths]), axis=0).max()), 1e-12)
    points = np.concatenate([flatten_subpath(s, size * 1e-4) for s in subpaths])
    low, high = points.min(0), points.max(0)
    return float(low[0]), float(low[1]), float(high[0]), float(high[1])


def _matrix_scale(matrix: np.ndarray) -> float:
    """How many canvas pixels one unit becomes (geometric mean of the axes)."""
    return math.sqrt(abs(float(np.linalg.det(matrix[:2, :2]))))


# ----------------------------------------------------------------------------- viewport


def viewport_box(root: Element, input_name: str):
    """(viewBox x, y, w, h) or None, and the preserveAspectRatio mode."""
    box = None
    if "viewBox" in root.attrib:
        values = pathdata.parse_number_list(root.attrib["viewBox"])
        if len(values) != 4:
            raise InputError(input_name, f"has an unreadable viewBox '{root.attrib['viewBox']}'", "four numbers 'x y width height'")
        box = values
    width = parse_length(root.attrib.get("width"), box[2] if box else None)
    height = parse_length(root.attrib.get("height"), box[3] if box else None)
    for name, value in (("width", width), ("height", height)):
        if value is not None and (not math.isfinite(value) or value <= 0 or value > MAX_DOCUMENT_SIZE):
            raise InputError(input_name, f"has {name}={root.attrib.get(name)!r}", f"a positive size below {MAX_DOCUMENT_SIZE:g}")
    if box is None and width is not None and height is not None:
        box = [0.0, 0.0, width, height]
    if box is not None:
        x, y, w, h = box
        if not all(math.isfinite(v) for v in box) or min(w, h) < MIN_DOCUMENT_SIZE or max(w, h) > MAX_DOCUMENT_SIZE \
                or max(abs(x), abs(y)) > MAX_DOCUMENT_SIZE or max(w, h) / min(w, h) > 1e4:
            raise InputError(input_name, f"has an absurd drawing area {box}",
                             f"a viewBox with sizes from {MIN_DOCUMENT_SIZE:g} to {MAX_DOCUMENT_SIZE:g} and an aspect ratio below 10000")
    return box, root.attrib.get("preserveAspectRatio", "xMidYMid meet")


def fit_matrix(box, aspect: str, width: int, height: int) -> np.ndarray:
    x, y, w, h = box
    parts = aspect.split()
    align = parts[0] if parts else "xMidYMid"
    if align == "none":
        return np.diag([width / w, height / h, 1.0]) @ _translation(-x, -y)
    slice_ = len(parts) > 1 and parts[1] == "slice"
    scale = max(width / w, height / h) if slice_ else min(width / w, height / h)
    fractions = {"Min": 0.0, "Mid": 0.5, "Max": 1.0}
    fx = fractions.get(align[1:4], 0.5)
    fy = fractions.get(align[5:8], 0.5)
    offset_x = (width - w * scale) * fx
    offset_y = (height - h * scale) * fy
    return _translation(offset_x, offset_y) @ np.diag([scale, scale, 1.0]) @ _translation(-x, -y)


def _content_box(groups: list[ShapeGroup]):
    points = np.concatenate([s.points for g in groups for s in g.subpaths])
    low, high = points.min(0), points.max(0)
    size = np.maximum(high - low, 1e-6)
    return [low[0], low[1], size[0], size[1]]


def check_canvas(size: int, input_name: str = "size") -> int:
    if not isinstance(size, (int, np.integer)) or not MIN_CANVAS <= size <= MAX_CANVAS:
        raise InputError(input_name, f"is {size!r}", f"a whole number of pixels from {MIN_CANVAS} to {MAX_CANVAS}")
    return int(size)


def parse_svg(data: bytes | str, canvas: int = DEFAULT_CANVAS, input_name: str = "svg") -> Drawing:
    """SVG text/bytes -> :class:`Drawing` fitted into a ``canvas`` x ``canvas`` working canvas."""
    canvas = check_canvas(canvas, "canvas")
    root = parse_xml(data, input_name)
    if root.tag != "svg":
        raise InputError(input_name, f"has a <{root.tag.split('}')[-1]}> root element", "an <svg> document")
    box, aspect = viewport_box(root, input_name)
    reader = _Reader(root, input_name, (box[2], box[3]) if box is not None else (100.0, 100.0))
    reader.walk(root, np.eye(3), {}, 1.0, (), is_root=True)
    if not reader.groups:
        raise InputError(input_name, "contains no filled shape or stroke to animate", "an SVG with at least one visible path or shape")
    if box is None:
        box = _content_box(reader.groups)
    fit = fit_matrix(box, aspect, canvas, canvas)
    identity = np.array_equal(fit, np.eye(3))
    groups = []
    for index, group in enumerate(reader.groups):
        if index in reader.pending_strokes:
            subpaths = reader.stroke_subpaths(index, fit)
            if not subpaths:
                continue
        else:
            subpaths = group.subpaths if identity else [s.transformed(fit) for s in group.subpaths]
        gradient = None if group.gradient is None else group.gradient.transformed(fit)
        groups.append(dataclasses.replace(group, subpaths=subpaths, gradient=gradient,
                                          source_d=group.source_d if identity else None))
    if not groups:
        raise InputError(input_name, "contains no filled shape or stroke to animate", "an SVG with at least one visible path or shape")
    if sum(s.num_segments for g in groups for s in g.subpaths) > MAX_SEGMENTS:
        raise InputError(input_name, f"has more than {MAX_SEGMENTS} path segments once its strokes are outlined", "a clipart-sized SVG")
    drawing = Drawing(canvas, canvas, groups, reader.warnings)
    extent = np.abs(drawing.all_points()).max()
    if not math.isfinite(extent) or extent > 1e4 * canvas:
        raise InputError(input_name, "has coordinates far outside its drawing area", "shapes inside the viewBox")
    return drawing


def load_svg(path: str | Path, canvas: int = DEFAULT_CANVAS, input_name: str = "svg") -> Drawing:
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as error:
        raise InputError(input_name, f"'{path}' cannot be read ({error.strerror})", "an existing SVG file") from None
    from .safe_xml import MAX_BYTES

    if size > MAX_BYTES:
        raise InputError(input_name, f"is {size / 1e6:.1f} MB", f"at most {MAX_BYTES // 1_000_000} MB of SVG")
    return parse_svg(path.read_bytes(), canvas, input_name)
