"""The static structure of a drawing's paths, so their points can live in one tensor.

A drawing's points (segment ends and Bézier control points, diffvg layout: see ``pathdata``) are
concatenated into ``points [P, 2]`` (or ``[F, P, 2]`` for F frames). ``PathLayout`` says which points
form which segment, subpath and filled shape; deformation changes the points only, never the layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .document import Drawing


@dataclass
class PathLayout:
    width: int
    height: int
    subpath_offsets: np.ndarray  # [N+1] start of each subpath in the points array
    subpath_closed: np.ndarray  # [N] bool
    subpath_group: np.ndarray  # [N] shape-group index
    subpath_control_points: list[np.ndarray]  # per subpath, per segment 0 (line) or 2 (cubic)
    group_fill: torch.Tensor  # [G, 4] straight RGBA
    group_even_odd: torch.Tensor  # [G] bool
    group_ids: list[str]
    group_source_d: list[str | None]
    segment_points: torch.Tensor  # [S, 4] point indices; a line repeats its ends (a, a, b, b)
    segment_is_line: torch.Tensor  # [S] bool
    segment_group: torch.Tensor  # [S]
    group_gradients: list = None  # per shape a gradient.GradientPaint or None (solid ``group_fill``)

    @property
    def num_points(self) -> int:
        return int(self.subpath_offsets[-1])

    @property
    def num_groups(self) -> int:
        return int(self.group_fill.shape[0])

    @property
    def num_segments(self) -> int:
        return int(self.segment_group.shape[0])

    def group_point_range(self, group: int) -> tuple[int, int]:
        members = np.nonzero(self.subpath_group == group)[0]
        return int(self.subpath_offsets[members[0]]), int(self.subpath_offsets[members[-1] + 1])


def layout_drawing(drawing: Drawing) -> tuple[PathLayout, torch.Tensor]:
    """The layout of a drawing and its points as a float32 tensor ``[P, 2]``."""
    offsets, closed, group_of, control_points, point_arrays = [0], [], [], [], []
    segment_points, segment_is_line, segment_group = [], [], []
    for g, group in enumerate(drawing.groups):
        for subpath in group.subpaths:
            start = offsets[-1]
            count = len(subpath.points)
            cursor = 0
            for s, ncp in enumerate(subpath.num_control_points):
                step = int(ncp) + 1
                end = cursor + step
                end_index = start + (end if end < count else 0)  # a closed subpath's last segment ends at its start
                if ncp == 0:
                    segment_points.append((start + cursor, start + cursor, end_index, end_index))
                    segment_is_line.append(True)
                else:
                    segment_points.append((start + cursor, start + cursor + 1, start + cursor + 2, end_index))
                    segment_is_line.append(False)
                segment_group.append(g)
                cursor = end
            if not subpath.closed and count > 1:  # a fill closes an open subpath with a straight line
                segment_points.append((start + count - 1, start + count - 1, start, start))
                segment_is_line.append(True)
                segment_group.append(g)
            offsets.append(start + count)
            closed.append(subpath.closed)
            group_of.append(g)
            control_points.append(np.asarray(subpath.num_control_points, np.int64))
            point_arrays.append(subpath.points)
    layout = PathLayout(
        width=drawing.width,
        height=drawing.height,
        subpath_offsets=np.array(offsets, np.int64),
        subpath_closed=np.array(closed, bool),
        subpath_group=np.array(group_of, np.int64),
        subpath_control_points=control_points,
        group_fill=torch.tensor([g.fill for g in drawing.groups], dtype=torch.float32).reshape(-1, 4),
        group_even_odd=torch.tensor([g.even_odd for g in drawing.groups], dtype=torch.bool),
        group_ids=[g.element_id for g in drawing.groups],
        group_source_d=[g.source_d for g in drawing.groups],
        segment_points=torch.tensor(segment_points, dtype=torch.long).reshape(-1, 4),
        segment_is_line=torch.tensor(segment_is_line, dtype=torch.bool),
        segment_group=torch.tensor(segment_group, dtype=torch.long),
    )
    points = torch.from_numpy(np.concatenate(point_arrays).astype(np.float32))
    layout.group_gradients = _gradient_paints(drawing, layout, points.numpy().astype(np.float64))
    return layout, points


def _gradient_paints(drawing: Drawing, layout: PathLayout, rest: np.ndarray) -> list:
    from .gradient import paint_for

    paints = []
    for g, group in enumerate(drawing.groups):
        if group.gradient is None:
            paints.append(None)
            continue
        start, stop = layout.group_point_range(g)
        paints.append(paint_for(group.gradient, rest[start:stop], (start, stop)))
    return paints
