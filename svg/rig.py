"""A drawing rigged for animation: keypoints, bones, mesh(es), ARAP solver(s) and the binding.

``build_rig`` does what AniClipart's ``Painter.init_mesh`` (or ``init_layered_mesh``) does; ``deform``
moves keypoints and returns the drawing's points per frame, differentiably. With a layer file every
layer gets its own outline, mesh and ARAP solver driven by its own keypoints; paint order stays the
drawing's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch

from ..core.errors import InputError
from . import contour, mesh
from .arap import DEFAULT_ARAP_WEIGHT, ArapSolver
from .document import Drawing, ShapeGroup
from .paths import PathLayout, layout_drawing
from .rigfiles import Layer


@dataclass
class RigSettings:
    max_tri_area: float = mesh.DEFAULT_MAX_TRI_AREA
    min_tri_angle: float = mesh.DEFAULT_MIN_TRI_ANGLE
    arap_weight: float = DEFAULT_ARAP_WEIGHT
    subdivide: bool = True
    boundary_simplify: float = 1.0  # Douglas-Peucker epsilon (pixels of the 2x contour rendering)
    mesher: str = "builtin"  # "builtin" (permissive) or "triangle" (AniClipart's exact mesh; non-commercial licence)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class RigLayer:
    name: str
    mesh: mesh.Mesh
    solver: ArapSolver
    keypoint_index: torch.Tensor  # [k] global keypoints that are this layer's handles
    point_index: torch.Tensor  # [p] this layer's points in the rig's points array
    face_index: torch.Tensor  # [p]
    bary: torch.Tensor  # [p, 3] float64
    triangles: torch.Tensor  # [T, 3]
    dilation_steps: int = 0


@dataclass
class ClipartRig:
    """Everything needed to turn keypoint positions into drawing points."""

    source: Drawing  # as parsed (for lossless write-back)
    drawing: Drawing  # after subdivision: the geometry that is deformed
    layout: PathLayout
    rest_points: torch.Tensor  # [P, 2] float32
    keypoints: torch.Tensor  # [K, 2] float64, rest positions
    bones: np.ndarray  # [B, 2]
    layers: list[RigLayer]
    settings: RigSettings
    layer_definitions: list[Layer] | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def num_keypoints(self) -> int:
        return int(self.keypoints.shape[0])

    @property
    def canvas(self) -> tuple[int, int]:
        return self.drawing.width, self.drawing.height

    @property
    def width(self) -> int:
        return self.drawing.width

    @property
    def height(self) -> int:
        return self.drawing.height

    def render(self, poses: torch.Tensor) -> torch.Tensor:
        """The artwork deformed to keypoint positions ``[P, K, 2]``: frames ``[P, H, W, 3]`` at the canvas
        size, composited on white, differentiable w.r.t. ``poses`` (ARAP, per layer, then the rasteriser).
        ``render(keypoints[None])`` is the input artwork."""
        from .raster import rasterise

        return rasterise(self.layout, deform(self, poses), None, WHITE)

    def to(self, device) -> "ClipartRig":
        """A copy whose tensors live on ``device``. The copy is made outside ``torch.inference_mode``, so
        autograd can use it even when this rig was built under it (ComfyUI runs nodes in inference mode)."""
        with torch.inference_mode(False):
            layers = [dataclasses.replace(layer, solver=layer.solver.to(device), **_tensors_to(layer, device, _LAYER_TENSORS))
                      for layer in self.layers]
            layout = dataclasses.replace(self.layout, **_tensors_to(self.layout, device, _LAYOUT_TENSORS))
            return dataclasses.replace(self, layout=layout, layers=layers, warnings=list(self.warnings),
                                       **_tensors_to(self, device, ("rest_points", "keypoints")))


WHITE = (1.0, 1.0, 1.0)
_LAYER_TENSORS = ("keypoint_index", "point_index", "face_index", "bary", "triangles")
_LAYOUT_TENSORS = ("group_fill", "group_even_odd", "segment_points", "segment_is_line", "segment_group")


def _tensors_to(owner, device, names) -> dict:
    """Copies of ``owner``'s tensors ``names`` on ``device`` (always new tensors)."""
    return {name: getattr(owner, name).to(device, copy=True) for name in names}


def _check_keypoints(keypoints: np.ndarray, drawing: Drawing) -> np.ndarray:
    keypoints = np.asarray(keypoints, np.float64)
    if keypoints.ndim != 2 or keypoints.shape[1] != 2 or len(keypoints) == 0:
        raise InputError("keypoints", f"have shape {keypoints.shape}", "a list of (x, y) positions")
    if not np.all(np.isfinite(keypoints)):
        raise InputError("keypoints", "contain non-finite values", "finite positions")
    off = np.nonzero((keypoints < 0).any(1) | (keypoints[:, 0] > drawing.width) | (keypoints[:, 1] > drawing.height))[0]
    if len(off):
        raise InputError("keypoints", f"{off.tolist()} lie outside the {drawing.width}x{drawing.height} canvas",
                         "keypoints in the art's coordinates (the keypoint file must share the art's viewBox)")
    if len(keypoints) > 1:
        gaps = np.linalg.norm(keypoints[:, None] - keypoints[None], axis=-1) + np.eye(len(keypoints)) * 1e9
        if gaps.min() < 1e-6:
            raise InputError("keypoints", "contain two keypoints at the same place", "distinct keypoints")
    return keypoints


def _build_layer(part: Drawing, keypoints: np.ndarray, keypoint_index: np.ndarray, settings: RigSettings):
    ring, steps = contour.figure_outline(part, settings.boundary_simplify)
    layer_mesh = mesh.triangulate(ring, keypoints[keypoint_index], settings.max_tri_area, settings.min_tri_angle,
                                  settings.mesher)
    return (*_carry(part, layer_mesh, settings), steps)


def _carry(part: Drawing, layer_mesh: mesh.Mesh, settings: RigSettings):
    """Subdivide the drawing at the mesh edges, bind its points and prefactor ARAP."""
    if settings.subdivide:
        part = mesh.subdivide(part, layer_mesh.vertices, layer_mesh.edges)
    # The bound points are the float32 points that get deformed, as in the reference.
    points = np.concatenate([s.points for g in part.groups for s in g.subpaths]).astype(np.float32)
    face_index, bary = mesh.bind_points(points, layer_mesh.vertices, layer_mesh.triangles)
    # ARAP runs on the float32 vertices (as AniClipart's), the binding on the float64 ones.
    solver = ArapSolver.build(layer_mesh.vertices.astype(np.float32).astype(np.float64), layer_mesh.triangles,
                              layer_mesh.handle_index, settings.arap_weight)
    return part, layer_mesh, solver, face_index, bary


def rig_from_mesh(drawing: Drawing, keypoints: np.ndarray, layer_mesh: mesh.Mesh, bones: np.ndarray | None = None,
                  settings: RigSettings | None = None) -> ClipartRig:
    """Rig a drawing on a given mesh (its handles are the keypoints) instead of meshing its outline."""
    settings = settings or RigSettings()
    keypoints = np.asarray(keypoints, np.float64)
    part, layer_mesh, solver, face_index, bary = _carry(drawing, layer_mesh, settings)
    layout, rest_points = layout_drawing(part)
    layer = RigLayer("all", layer_mesh, solver, torch.arange(len(keypoints)), torch.arange(layout.num_points),
                     torch.from_numpy(face_index), torch.from_numpy(bary), torch.from_numpy(layer_mesh.triangles))
    bones = np.zeros((0, 2), np.int64) if bones is None else np.asarray(bones, np.int64).reshape(-1, 2)
    return ClipartRig(drawing, part, layout, rest_points, torch.from_numpy(keypoints), bones, [layer], settings,
                      None, list(drawing.warnings))


def build_rig(drawing: Drawing, keypoints: np.ndarray, bones: np.ndarray | None = None,
              layers: list[Layer] | None = None, settings: RigSettings | None = None) -> ClipartRig:
    """Mesh, subdivide, bind and prefactor ARAP for a drawing and its keypoints (canvas pixels)."""
    settings = settings or RigSettings()
    keypoints = _check_keypoints(keypoints, drawing)
    bones = np.zeros((0, 2), np.int64) if bones is None else np.asarray(bones, np.int64).reshape(-1, 2)
    if len(bones) and (bones.min() < 0 or bones.max() >= len(keypoints)):
        raise InputError("skeleton", f"names keypoint {int(bones.max())}", f"indices below {len(keypoints)}")
    definitions = layers or [Layer("all", list(range(len(drawing.groups))), list(range(len(keypoints))))]
    for layer in definitions:
        if max(layer.control_index) >= len(keypoints) or max(layer.path_index) >= len(drawing.groups):
            raise InputError("layers", f"layer '{layer.name}' names a shape or keypoint that does not exist",
                             f"at most {len(drawing.groups)} shapes and {len(keypoints)} keypoints")
    group_parts: dict[int, ShapeGroup] = {}
    built = []
    for layer in definitions:
        part, layer_mesh, solver, face_index, bary, steps = _build_layer(
            drawing.subset(layer.path_index), keypoints, np.array(layer.control_index), settings)
        for shape_index, group in zip(layer.path_index, part.groups):
            group_parts[shape_index] = group
        built.append((layer, layer_mesh, solver, face_index, bary, steps))
    deformed = Drawing(drawing.width, drawing.height, [group_parts[i] for i in range(len(drawing.groups))],
                       list(drawing.warnings))
    layout, rest_points = layout_drawing(deformed)
    rig_layers = []
    for layer, layer_mesh, solver, face_index, bary, steps in built:
        point_index = np.concatenate([np.arange(*layout.group_point_range(g)) for g in layer.path_index])
        rig_layers.append(RigLayer(layer.name, layer_mesh, solver, torch.tensor(layer.control_index, dtype=torch.long),
                                   torch.from_numpy(point_index), torch.from_numpy(face_index),
                                   torch.from_numpy(bary), torch.from_numpy(layer_mesh.triangles), steps))
    return ClipartRig(drawing, deformed, layout, rest_points, torch.from_numpy(keypoints), bones, rig_layers, settings,
                      layers, list(drawing.warnings))


def deform(rig: ClipartRig, keypoints: torch.Tensor) -> torch.Tensor:
    """Drawing points ``[F, P, 2]`` (float32) for keypoint positions ``[F, K, 2]`` (or ``[K, 2]``).

    Differentiable with respect to ``keypoints``. Keypoints at their rest positions give the rest
    points exactly (the mesh displacement is added to the parsed points).
    """
    targets = keypoints if keypoints.dim() == 3 else keypoints.unsqueeze(0)
    if targets.shape[1:] != (rig.num_keypoints, 2):
        raise InputError("keypoints", f"have shape {tuple(targets.shape)}", f"[frames, {rig.num_keypoints}, 2]")
    frames = targets.shape[0]
    device = targets.device
    rest = rig.rest_points.to(device)
    points = rest.unsqueeze(0).expand(frames, -1, -1)
    for layer in rig.layers:
        handles = targets[:, layer.keypoint_index]
        vertices = layer.solver.solve(handles)  # [F, V, 2] float64
        displacement = vertices - layer.solver.rest
        # Handles exactly at rest leave the art exactly as parsed (the solve is only accurate to ~1e-9);
        # x - x.detach() is 0 but keeps the gradient.
        at_rest = (handles == rig.keypoints[layer.keypoint_index].to(handles)).all(dim=2).all(dim=1).view(-1, 1, 1)
        displacement = torch.where(at_rest, displacement - displacement.detach(), displacement)
        corners = displacement[:, layer.triangles[layer.face_index]]  # [F, p, 3, 2]
        moved = (corners * layer.bary.unsqueeze(-1)).sum(2)
        if len(rig.layers) == 1:  # one layer holds every point, in order
            return (rest.to(torch.float64) + moved).to(torch.float32)
        layer_points = (rest[layer.point_index].to(torch.float64) + moved).to(torch.float32)
        points = points.index_copy(1, layer.point_index, layer_points)
    return points
