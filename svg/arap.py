"""As-rigid-as-possible mesh deformation with soft handles (Igarashi et al. 2009, two steps).

Step 1 finds vertices whose edges are similarity transforms of the rest edges (fitted on the 3-4
vertices around each edge) while the handle vertices are pulled to their targets with weight ``w``;
step 2 removes the scale from those transforms and solves for vertices whose edges follow the
rotated rest edges. Both least-squares systems have a fixed matrix, so each is prefactored once:
a deformation is two small matrix products and one per-edge rotation, differentiable with respect
to the handle targets, batched over frames. Solved in float64 (the systems are badly conditioned).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

DEFAULT_ARAP_WEIGHT = 3000.0


def edge_neighbours(edges: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """[E, 4] = i, j, l, r: the third vertex of the first and second triangle (in triangle order)
    holding edge (i, j); r = -1 on the boundary."""
    num_edges = len(edges)
    lookup = {(int(i), int(j)): k for k, (i, j) in enumerate(edges)}
    opposite = np.full((num_edges, 2), -1, np.int64)
    filled = np.zeros(num_edges, np.int64)
    for triangle in triangles:
        for a, b, c in ((0, 1, 2), (1, 2, 0), (0, 2, 1)):
            i, j = sorted((int(triangle[a]), int(triangle[b])))
            k = lookup[(i, j)]
            if filled[k] < 2:
                opposite[k, filled[k]] = triangle[c]
                filled[k] += 1
    return np.concatenate([edges, opposite], axis=1)


def similarity_fits(vertices: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """Per edge the first two rows of (GᵀG)⁻¹Gᵀ, [E, 2, 8] (zero-padded for boundary edges):
    they map the neighbour coordinates to the edge's best similarity (c, s)."""
    num_edges = len(neighbours)
    fits = np.zeros((num_edges, 2, 8), np.float64)
    for boundary in (False, True):
        rows = np.nonzero((neighbours[:, 3] < 0) == boundary)[0]
        if len(rows) == 0:
            continue
        count = 3 if boundary else 4
        points = vertices[neighbours[rows, :count]]  # [n, count, 2]
        g = np.zeros((len(rows), 2 * count, 4))
        g[:, 0::2, 0] = points[..., 0]
        g[:, 0::2, 1] = points[..., 1]
        g[:, 0::2, 2] = 1.0
        g[:, 1::2, 0] = points[..., 1]
        g[:, 1::2, 1] = -points[..., 0]
        g[:, 1::2, 3] = 1.0
        gt = np.transpose(g, (0, 2, 1))
        solution = np.linalg.solve(gt @ g, gt)  # [n, 4, 2*count]
        fits[rows, :, : 2 * count] = solution[:, :2]
    return fits


def _solve_spd(matrix: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Solve a symmetric positive definite system (Cholesky, float64)."""
    factor = torch.linalg.cholesky(torch.from_numpy(matrix))
    return torch.cholesky_solve(torch.from_numpy(np.ascontiguousarray(right)), factor).numpy()


@dataclass
class ArapSolver:
    """Prefactored two-step ARAP for one mesh; ``solve(targets [F, K, 2]) -> vertices [F, V, 2]``."""

    rest: torch.Tensor  # [V, 2] float64
    edges: torch.Tensor  # [E, 2]
    neighbours: torch.Tensor  # [E, 4], -1 where there is no r
    fits: torch.Tensor  # [E, 2, 8]
    step_one: torch.Tensor  # [2V, 2K]: v' (flattened x, y) = step_one @ targets (flattened)
    step_two_edges: torch.Tensor  # [V, E]
    step_two_handles: torch.Tensor  # [V, K]
    handle_index: torch.Tensor  # [K]
    weight: float

    @classmethod
    def build(cls, vertices: np.ndarray, triangles: np.ndarray, handle_index: np.ndarray,
              weight: float = DEFAULT_ARAP_WEIGHT) -> "ArapSolver":
        vertices = np.asarray(vertices, np.float64)
        triangles = np.asarray(triangles, np.int64)
        handle_index = np.asarray(handle_index, np.int64)
        from .mesh import mesh_edges

        edges = mesh_edges(triangles)
        neighbours = edge_neighbours(edges, triangles)
        fits = similarity_fits(vertices, neighbours)
        num_vertices, num_edges, num_handles = len(vertices), len(edges), len(handle_index)
        # Step 1: rows H_k = [[-1, 0, 1, 0, 0...], [0, -1, 0, 1, 0...]] - E_k @ fit_k over (i, j, l, r).
        e = vertices[edges[:, 1]] - vertices[edges[:, 0]]
        e_matrix = np.stack([np.stack([e[:, 0], e[:, 1]], -1), np.stack([e[:, 1], -e[:, 0]], -1)], 1)  # [E, 2, 2]
        h = -(e_matrix @ fits)
        h[:, 0, 0] -= 1.0
        h[:, 1, 1] -= 1.0
        h[:, 0, 2] += 1.0
        h[:, 1, 3] += 1.0
        a1 = np.zeros((2 * num_edges, 2 * num_vertices))
        rows = np.arange(num_edges)
        for slot in range(4):
            vertex = neighbours[:, slot]
            present = vertex >= 0
            for component in range(2):
                for row in range(2):
                    a1[2 * rows[present] + row, 2 * vertex[present] + component] += h[present, row, 2 * slot + component]
        normal_one = a1.T @ a1
        handle_dofs = np.stack([2 * handle_index, 2 * handle_index + 1], 1).ravel()
        normal_one[handle_dofs, handle_dofs] += weight ** 2
        selector = np.zeros((2 * num_vertices, 2 * num_handles))
        selector[handle_dofs, np.arange(2 * num_handles)] = weight ** 2
        step_one = _solve_spd(normal_one, selector)
        # Step 2: edge rows -1 at i, +1 at j (x and y alike), handle rows w.
        difference = np.zeros((num_edges, num_vertices))
        difference[rows, edges[:, 0]] = -1.0
        difference[rows, edges[:, 1]] = 1.0
        normal_two = difference.T @ difference
        normal_two[handle_index, handle_index] += weight ** 2
        handles = np.zeros((num_vertices, num_handles))
        handles[handle_index, np.arange(num_handles)] = weight ** 2
        solved = _solve_spd(normal_two, np.concatenate([difference.T, handles], axis=1))
        as_tensor = lambda a, dtype=torch.float64: torch.from_numpy(np.ascontiguousarray(a)).to(dtype)  # noqa: E731
        return cls(
            rest=as_tensor(vertices),
            edges=as_tensor(edges, torch.long),
            neighbours=as_tensor(neighbours, torch.long),
            fits=as_tensor(fits),
            step_one=as_tensor(step_one),
            step_two_edges=as_tensor(solved[:, :num_edges]),
            step_two_handles=as_tensor(solved[:, num_edges:]),
            handle_index=as_tensor(handle_index, torch.long),
            weight=float(weight),
        )

    def to(self, device) -> "ArapSolver":
        """A copy on ``device`` (new tensors, also when already there)."""
        moved = {name: getattr(self, name).to(device, copy=True) for name in
                 ("rest", "edges", "neighbours", "fits", "step_one", "step_two_edges", "step_two_handles", "handle_index")}
        return ArapSolver(weight=self.weight, **moved)

    def first_step(self, targets: torch.Tensor) -> torch.Tensor:
        """v' [F, V, 2]: the scale-allowing fit to the handle targets [F, K, 2]."""
        flat = targets.to(torch.float64).reshape(targets.shape[0], -1)
        return (flat @ self.step_one.T).reshape(targets.shape[0], -1, 2)

    def solve(self, targets: torch.Tensor) -> torch.Tensor:
        """v'' [F, V, 2] (float64) for handle targets [F, K, 2]."""
        targets = targets.to(torch.float64)
        v_prime = self.first_step(targets)
        # Per edge the similarity (c, s) fitted to the step-1 neighbours, normalised to a rotation.
        neighbours = self.neighbours.clamp_min(0)
        gathered = v_prime[:, neighbours]  # [F, E, 4, 2]
        present = (self.neighbours >= 0).to(torch.float64).view(1, -1, 4, 1)
        stacked = (gathered * present).reshape(targets.shape[0], -1, 8)
        cs = torch.einsum("erk,fek->fer", self.fits, stacked)  # [F, E, 2]
        cs = cs / cs.norm(dim=-1, keepdim=True)
        c, s = cs[..., 0], cs[..., 1]
        e = self.rest[self.edges[:, 1]] - self.rest[self.edges[:, 0]]  # [E, 2]
        rotated = torch.stack([c * e[:, 0] + s * e[:, 1], -s * e[:, 0] + c * e[:, 1]], dim=-1)  # T_k e_k
        return torch.einsum("ve,fed->fvd", self.step_two_edges, rotated) + \
            torch.einsum("vk,fkd->fvd", self.step_two_handles, targets)
