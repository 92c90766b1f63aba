"""diffvg as an optional rendering backend (used by ``rasterise(backend="auto")`` when ``pydiffvg`` imports).

Renders like AniClipart does: 2x2 samples per pixel, box filter, seed 0; one diffvg ``Path`` per
subpath and one ``ShapeGroup`` per filled shape. diffvg's colour channels are treated as straight
(not premultiplied) colour, as AniClipart composites them (``a * rgb + (1 - a) * background``).
"""

from __future__ import annotations

import torch

from .paths import PathLayout

SAMPLES_PER_AXIS = 2


def rasterise_diffvg(layout: PathLayout, frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``[F, H, W, 4]`` RGBA (straight colour) for points ``[F, P, 2]`` on the layout's canvas."""
    import pydiffvg

    scale = torch.tensor([width / layout.width, height / layout.height], dtype=torch.float32, device=frames.device)
    fills = layout.group_fill.to(frames.device)
    images = []
    for frame in frames:
        points = frame.float() * scale
        shapes, groups = [], []
        for group in range(layout.num_groups):
            ids = []
            for index in (int(i) for i in (layout.subpath_group == group).nonzero()[0]):
                start, end = int(layout.subpath_offsets[index]), int(layout.subpath_offsets[index + 1])
                ids.append(len(shapes))
                shapes.append(pydiffvg.Path(
                    num_control_points=torch.tensor(layout.subpath_control_points[index], dtype=torch.int32),
                    points=points[start:end], is_closed=bool(layout.subpath_closed[index]),
                    stroke_width=torch.tensor(0.0)))
            groups.append(pydiffvg.ShapeGroup(shape_ids=torch.tensor(ids), fill_color=fills[group],
                                              use_even_odd_rule=bool(layout.group_even_odd[group])))
        scene = pydiffvg.RenderFunction.serialize_scene(width, height, shapes, groups)
        images.append(pydiffvg.RenderFunction.apply(width, height, SAMPLES_PER_AXIS, SAMPLES_PER_AXIS, 0, None, *scene))
    return torch.stack(images).to(frames.dtype if frames.dtype.is_floating_point else torch.float32)
