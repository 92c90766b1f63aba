"""A differentiable rasteriser for filled Bézier paths in plain PyTorch (CPU or GPU, batched over frames).

Each cubic is cut into chords shorter than a pixel; each chord adds its exact area coverage to the
pixel cells it crosses (signed-area accumulation, as font rasterisers do), and a running sum along
each row turns those contributions into the winding number per pixel, anti-aliased with an exact
box filter. Non-zero fill uses ``min(|w|, 1)``, even-odd a triangle wave of ``|w|``; shapes are
composited with "over" in paint order. Every step is made of differentiable tensor operations, so
gradients reach the path points. When ``pydiffvg`` is importable it can be used instead
(``backend="diffvg"``; ``"auto"`` picks it), but the pack never needs it.
"""

from __future__ import annotations

import functools
import math

import torch

from ..core.errors import InputError
from .paths import PathLayout

MAX_CHORD = 0.95  # px: a chord this short crosses at most one grid line per axis
MAX_CHORD_DEVIATION = 0.01  # px: how far a chord may stray from its curve
MAX_CHORDS = 20_000_000  # per call (frames x chords): beyond this the shapes are absurdly far outside the canvas
CHUNK_ELEMENTS = 16_000_000  # frames x shapes x pixels handled at once
BACKENDS = ("auto", "torch", "diffvg")


@functools.lru_cache(maxsize=1)
def _diffvg_available() -> bool:
    try:
        import pydiffvg  # noqa: F401
    except Exception:
        return False
    return True


def rasterise(layout: PathLayout, points: torch.Tensor, size: int | tuple[int, int] | None = None,
              background: tuple[float, float, float] | None = None, backend: str = "auto") -> torch.Tensor:
    """Render filled paths.

    ``points``: ``[P, 2]`` or ``[F, P, 2]`` in canvas pixels (the layout's ``width`` x ``height``).
    ``size``: output ``(height, width)`` or one side for a square canvas; the drawing is scaled to it.
    ``backend``: "torch" (this module), "diffvg" (needs ``pydiffvg``) or "auto" (diffvg when importable).
    Returns ``[F, H, W, 4]`` straight (not premultiplied) RGBA in 0..1, or ``[F, H, W, 3]`` composited
    on ``background`` (an RGB triple) when given.
    """
    if backend not in BACKENDS:
        raise InputError("backend", f"'{backend}' is unknown", "one of " + ", ".join(BACKENDS))
    frames = points if points.dim() == 3 else points.unsqueeze(0)
    height, width = _output_size(layout, size)
    if backend == "diffvg" and not _diffvg_available():
        raise InputError("backend", "'diffvg' needs the pydiffvg package, which is not installed", "'torch' or 'auto'")
    if backend == "diffvg" or (backend == "auto" and _diffvg_available()):
        from .raster_diffvg import rasterise_diffvg

        rgba = rasterise_diffvg(layout, frames, height, width)
        colour, alpha = rgba[..., :3] * rgba[..., 3:], rgba[..., 3]
    else:
        colour, alpha = _rasterise_torch(layout, frames, height, width)
    if background is not None:
        back = torch.as_tensor(background, dtype=colour.dtype, device=colour.device)
        return (colour + back * (1 - alpha).unsqueeze(-1)).clamp(0, 1)
    straight = colour / alpha.clamp_min(1e-12).unsqueeze(-1)
    straight = torch.where(alpha.unsqueeze(-1) > 0, straight, torch.zeros_like(straight))
    return torch.cat([straight.clamp(0, 1), alpha.clamp(0, 1).unsqueeze(-1)], dim=-1)


def _output_size(layout: PathLayout, size) -> tuple[int, int]:
    if size is None:
        return layout.height, layout.width
    if isinstance(size, int):
        if layout.width == layout.height:
            return size, size
        return size, max(1, round(size * layout.width / layout.height))
    height, width = size
    return int(height), int(width)


def _rasterise_torch(layout: PathLayout, frames: torch.Tensor, height: int, width: int):
    """Premultiplied colour [F, H, W, 3] and alpha [F, H, W]."""
    dtype = frames.dtype if frames.dtype in (torch.float32, torch.float64) else torch.float32
    device = frames.device
    num_frames = frames.shape[0]
    scale = torch.tensor([width / layout.width, height / layout.height], dtype=dtype, device=device)
    control = frames.to(dtype)[:, layout.segment_points.to(device)] * scale  # [F, S, 4, 2]
    control = _lines_as_cubics(control, layout.segment_is_line.to(device))
    control = _flatten_outside_left(control)
    samples, chord_segment = _sample_chords(control)
    colour = torch.zeros(num_frames, height, width, 3, dtype=dtype, device=device)
    alpha = torch.zeros(num_frames, height, width, dtype=dtype, device=device)
    segment_group = layout.segment_group.to(device)
    chord_group = segment_group[chord_segment]
    chord_start = _chord_starts(chord_segment)
    start, end = samples[:, chord_start], samples[:, chord_start + 1]
    pieces = (*_split_at_grid(start, end), (height, width))  # piece starts, piece ends [F, L, 3, 2], size
    fills = layout.group_fill.to(device=device, dtype=dtype)
    even_odd = layout.group_even_odd.to(device)
    chunks = _chunks(chord_group, start, end, layout.num_groups, num_frames, height, width)
    paints = _Paints(layout, frames.to(dtype), fills, scale.tolist())
    if torch.is_grad_enabled() and pieces[0].requires_grad:
        colour, alpha = _composite_differentiable(pieces, chord_group, chunks, paints, even_odd, colour, alpha)
    else:
        _composite_in_place(pieces, chord_group, chunks, paints, even_odd, colour, alpha)
    return colour, alpha


class _Paints:
    """Each shape's paint: its solid fill colour, or its gradient evaluated over a pixel box."""

    def __init__(self, layout: PathLayout, frames: torch.Tensor, fills: torch.Tensor, scale):
        self.gradients = layout.group_gradients or [None] * layout.num_groups
        self.frames, self.fills, self.scale = frames, fills, scale

    def any_gradient(self, first: int, last: int) -> bool:
        return any(g is not None for g in self.gradients[first:last])

    def pixels(self, group: int, box) -> torch.Tensor:
        """Straight RGBA [F, h, w, 4] (alpha includes the shape's opacity) over the output box."""
        from .gradient import paint_pixels

        if self.gradients[group] is not None:
            return paint_pixels(self.gradients[group], self.frames, box, self.scale)
        y0, y1, x0, x1 = box
        return self.fills[group].view(1, 1, 1, 4).expand(self.frames.shape[0], y1 - y0, x1 - x0, 4)


def _lines_as_cubics(control: torch.Tensor, is_line: torch.Tensor) -> torch.Tensor:
    a, b = control[:, :, 0], control[:, :, 3]
    mask = is_line.view(1, -1, 1)
    c1 = torch.where(mask, a + (b - a) / 3, control[:, :, 1])
    c2 = torch.where(mask, a + 2 * (b - a) / 3, control[:, :, 2])
    return torch.stack([a, c1, c2, b], dim=2)


def _flatten_outside_left(control: torch.Tensor) -> torch.Tensor:
    """Segments wholly left of the canvas only add cover to column 0: squash their x so no chord
    crosses a vertical grid line there (keeps the chord count bounded for far-away geometry)."""
    x = control[..., 0]
    left = (x < 0).all(dim=-1, keepdim=True).all(dim=0, keepdim=True)
    squashed_x = torch.where(left, torch.full_like(x, -0.5), x)
    return torch.stack([squashed_x, control[..., 1]], dim=-1)


def _sample_chords(control: torch.Tensor):
    """Points along every segment at ``k / n`` (n per segment, same for all frames) -> [F, T, 2]."""
    with torch.no_grad():
        edges = (control[:, :, 1:] - control[:, :, :-1]).norm(dim=-1)  # [F, S, 3]
        bends = (control[:, :, 2:] - 2 * control[:, :, 1:-1] + control[:, :, :-2]).norm(dim=-1)  # [F, S, 2]
        # |B'| <= 3 max edge: n >= 3 max edge / MAX_CHORD keeps chords shorter than MAX_CHORD;
        # |B''| <= 6 max bend and a chord strays at most |B''| / (8 n^2) from its arc: n >= sqrt(6 bend / (8 tol)).
        counts = torch.maximum(torch.ceil(3 * edges.amax(dim=(0, 2)) / MAX_CHORD),
                               torch.ceil(torch.sqrt(0.75 * bends.amax(dim=(0, 2)) / MAX_CHORD_DEVIATION)))
        counts = counts.clamp_min(1).long()
    total = int(counts.sum()) * control.shape[0]
    if total > MAX_CHORDS:
        raise InputError("points", f"need {total} chords to draw (shapes reach far outside the canvas)",
                         "path coordinates near the canvas")
    segments = torch.arange(counts.numel(), device=control.device)
    sample_segment = torch.repeat_interleave(segments, counts + 1)
    first_sample = torch.cumsum(counts + 1, 0) - (counts + 1)
    k = torch.arange(sample_segment.numel(), device=control.device) - first_sample[sample_segment]
    t = (k.to(control.dtype) / counts[sample_segment].to(control.dtype)).unsqueeze(-1)
    u = 1 - t
    weights = torch.cat([u ** 3, 3 * u * u * t, 3 * u * t * t, t ** 3], dim=-1)  # [T, 4]
    samples = torch.einsum("tk,ftkd->ftd", weights, control[:, sample_segment])
    chord_segment = torch.repeat_interleave(segments, counts)
    return samples, chord_segment


def _chord_starts(chord_segment: torch.Tensor) -> torch.Tensor:
    # Sample index of each chord's start: chords of segment s are preceded by s extra end samples.
    return torch.arange(chord_segment.numel(), device=chord_segment.device) + chord_segment


def _split_at_grid(start: torch.Tensor, end: torch.Tensor):
    """Cut each chord where it crosses a vertical and a horizontal grid line: 3 pieces, each in one cell."""
    delta = end - start
    crossings = []
    for axis in (0, 1):
        lo, hi = torch.floor(start[..., axis]), torch.floor(end[..., axis])
        crosses = lo != hi
        grid = torch.maximum(lo, hi)
        step = torch.where(crosses, delta[..., axis], torch.ones_like(delta[..., axis]))
        crossings.append(torch.where(crosses, ((grid - start[..., axis]) / step).clamp(0, 1), torch.ones_like(step)))
    t_a = torch.minimum(*crossings)
    t_b = torch.maximum(*crossings)
    ts = torch.stack([torch.zeros_like(t_a), t_a, t_b, torch.ones_like(t_a)], dim=-1)  # [F, L, 4]
    points = start.unsqueeze(2) + ts.unsqueeze(-1) * delta.unsqueeze(2)  # [F, L, 4, 2]
    return points[:, :, :-1], points[:, :, 1:]


def _group_boxes(chord_group, start, end, num_groups, height, width):
    """Per shape the pixel box (y0, y1, x0, x1) its chords touch over all frames, or None."""
    with torch.no_grad():
        index = chord_group.view(-1, 1).expand(-1, 2)
        lows = torch.full((num_groups, 2), math.inf, dtype=start.dtype, device=start.device)
        lows = lows.scatter_reduce(0, index, torch.minimum(start, end).amin(0), "amin").cpu().tolist()
        highs = torch.full((num_groups, 2), -math.inf, dtype=start.dtype, device=start.device)
        highs = highs.scatter_reduce(0, index, torch.maximum(start, end).amax(0), "amax").cpu().tolist()
        boxes = []
        for (low_x, low_y), (high_x, high_y) in zip(lows, highs):
            if not math.isfinite(low_x):
                boxes.append(None)
                continue
            x0 = int(min(max(math.floor(low_x), 0), width))
            x1 = int(min(max(math.floor(high_x) + 1, 0), width))
            y0 = int(min(max(math.floor(low_y), 0), height))
            y1 = int(min(max(math.floor(high_y) + 1, 0), height))
            boxes.append((y0, y1, x0, x1) if x1 > x0 and y1 > y0 else None)
    return boxes


def _chunks(chord_group, start, end, num_groups, num_frames, height, width):
    """Consecutive shape ranges whose joint pixel box (over all frames) fits the memory budget."""
    boxes = _group_boxes(chord_group, start, end, num_groups, height, width)
    first = 0
    while first < num_groups:
        if boxes[first] is None:
            first += 1
            continue
        box = boxes[first]
        last = first + 1
        while last < num_groups:
            candidate = boxes[last]
            if candidate is not None:
                merged = (min(box[0], candidate[0]), max(box[1], candidate[1]), min(box[2], candidate[2]), max(box[3], candidate[3]))
                area = (merged[1] - merged[0]) * (merged[3] - merged[2] + 1)
                if num_frames * (last - first + 1) * area > CHUNK_ELEMENTS:
                    break
                box = merged
            last += 1
        yield first, last, box
        first = last


def _composite_differentiable(pieces, chord_group, chunks, paints, even_odd, colour, alpha):
    """Composite chunk by chunk with out-of-place operations (autograd keeps what it needs)."""
    num_frames, height, width = alpha.shape
    for first, last, box in chunks:
        coverage = _coverage(pieces, chord_group, first, last, box, even_odd, num_frames)
        if paints.any_gradient(first, last):
            paint = torch.stack([paints.pixels(g, box) for g in range(first, last)], dim=1)  # [F, g, h, w, 4]
            a = coverage * paint[..., 3]
        else:
            paint = paints.fills[first:last]
            a = coverage * paint[:, 3].view(1, -1, 1, 1)
        through = torch.flip(torch.cumprod(torch.flip(1 - a, [1]), 1), [1])  # prod_{h >= g} (1 - a_h)
        after = torch.cat([through[:, 1:], torch.ones_like(through[:, :1])], dim=1)  # prod_{h > g}
        if paint.dim() == 5:
            chunk_colour = ((a * after).unsqueeze(-1) * paint[..., :3]).sum(1)
        else:
            chunk_colour = torch.einsum("fghw,gc->fhwc", a * after, paint[:, :3])
        chunk_alpha = 1 - through[:, 0]
        y0, y1, x0, x1 = box
        pad = (x0, width - x1, y0, height - y1)
        chunk_alpha = torch.nn.functional.pad(chunk_alpha, pad)
        chunk_colour = torch.nn.functional.pad(chunk_colour.permute(0, 3, 1, 2), pad).permute(0, 2, 3, 1)
        colour = colour * (1 - chunk_alpha).unsqueeze(-1) + chunk_colour
        alpha = alpha * (1 - chunk_alpha) + chunk_alpha
    return colour, alpha


def _composite_in_place(pieces, chord_group, chunks, paints, even_odd, colour, alpha):
    """Without gradients: one shape at a time, only inside its own pixel box."""
    num_frames = alpha.shape[0]
    fills = paints.fills
    for first, last, _ in chunks:
        for group in range(first, last):
            coverage = _coverage(pieces, chord_group, group, group + 1, None, even_odd, num_frames)
            if coverage is None:
                continue
            coverage, (y0, y1, x0, x1) = coverage
            if paints.gradients[group] is not None:
                paint = paints.pixels(group, (y0, y1, x0, x1))
                a, rgb = coverage[:, 0] * paint[..., 3], paint[..., :3]
            else:
                a, rgb = coverage[:, 0] * fills[group, 3], fills[group, :3]
            keep = 1 - a
            colour[:, y0:y1, x0:x1] *= keep.unsqueeze(-1)
            colour[:, y0:y1, x0:x1] += a.unsqueeze(-1) * rgb
            alpha[:, y0:y1, x0:x1] *= keep
            alpha[:, y0:y1, x0:x1] += a


def _coverage(pieces, chord_group, first, last, box, even_odd, num_frames):
    """Coverage [F, shapes, h, w] of shapes ``first..last-1`` inside ``box``; with ``box=None`` the
    shapes' own box is used and (coverage, box) is returned (None when nothing is visible)."""
    dtype, device = pieces[0].dtype, pieces[0].device
    groups = last - first
    # Chords are stored in paint order, so a range of shapes is a slice of chords.
    bounds = torch.tensor([first, last], device=chord_group.device)
    begin, stop = torch.searchsorted(chord_group, bounds).tolist()
    piece_start, piece_end = pieces[0][:, begin:stop], pieces[1][:, begin:stop]  # [F, l, 3, 2]
    own_box = box is None
    if own_box:
        if stop == begin:
            return None
        box = _piece_box(piece_start, piece_end, pieces[2])
        if box is None:
            return None
    y0, y1, x0, x1 = box
    box_h, box_w = y1 - y0, x1 - x0
    local_group = (chord_group[begin:stop] - first).view(1, -1, 1)
    dy = piece_end[..., 1] - piece_start[..., 1]
    mid = (piece_start + piece_end) / 2
    with torch.no_grad():
        cell_x = torch.floor(mid[..., 0]).long()
        cell_y = torch.floor(mid[..., 1]).long()
    fraction = (mid[..., 0] - cell_x.to(dtype)).clamp(0, 1)
    left = cell_x < 0
    fraction = torch.where(left, torch.zeros_like(fraction), fraction)
    cell_x = cell_x.clamp_min(0) - x0
    cell_y = cell_y - y0
    valid = (cell_y >= 0) & (cell_y < box_h) & (cell_x < box_w) & (cell_x >= 0)
    frame = torch.arange(num_frames, device=device).view(-1, 1, 1)
    row = ((frame * groups + local_group) * box_h + cell_y.clamp(0, box_h - 1)) * (box_w + 1)
    flat = (row + cell_x.clamp(0, box_w - 1)).expand_as(dy)  # invalid pieces add 0 somewhere harmless
    here = torch.where(valid, dy * (1 - fraction), torch.zeros_like(dy))
    right = torch.where(valid, dy * fraction, torch.zeros_like(dy))
    accumulator = torch.zeros(num_frames * groups * box_h * (box_w + 1), dtype=dtype, device=device)
    accumulator = accumulator.index_add(0, flat.reshape(-1), here.reshape(-1))
    accumulator = accumulator.index_add(0, (flat + 1).reshape(-1), right.reshape(-1))
    winding = accumulator.view(num_frames, groups, box_h, box_w + 1)[..., :box_w].cumsum(-1)
    magnitude = winding.abs()
    rule = even_odd[first:last].view(1, -1, 1, 1)
    coverage = torch.where(rule, 1 - (1 - torch.remainder(magnitude, 2)).abs(), magnitude.clamp(max=1))
    return (coverage, box) if own_box else coverage


def _piece_box(piece_start, piece_end, size):
    height, width = size
    with torch.no_grad():
        low = torch.minimum(piece_start, piece_end).reshape(-1, 2).amin(0).tolist()
        high = torch.maximum(piece_start, piece_end).reshape(-1, 2).amax(0).tolist()
    x0 = int(min(max(math.floor(low[0]), 0), width))
    x1 = int(min(max(math.floor(high[0]) + 1, 0), width))
    y0 = int(min(max(math.floor(low[1]), 0), height))
    y1 = int(min(max(math.floor(high[1]) + 1, 0), height))
    return (y0, y1, x0, x1) if x1 > x0 and y1 > y0 else None
