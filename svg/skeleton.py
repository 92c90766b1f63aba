"""Bones: lengths, AniClipart's skeleton-length term, and a kinematic tree for procedural motion."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch


def bone_lengths(poses: torch.Tensor, bones) -> torch.Tensor:
    """Lengths ``[..., B]`` of the bones for keypoint positions ``[..., K, 2]``."""
    bones = torch.as_tensor(np.asarray(bones), dtype=torch.long, device=poses.device).reshape(-1, 2)
    return torch.linalg.norm(poses[..., bones[:, 0], :] - poses[..., bones[:, 1], :], dim=-1)


def skeleton_length_loss(poses: torch.Tensor, bones, rest_lengths: torch.Tensor) -> torch.Tensor:
    """AniClipart's ``SkeletonLoss`` (unweighted): per sampled pose the mean squared bone-length change,
    summed over poses. ``poses`` are the unique sampled poses ``[T, K, 2]`` (not the mirrored frames);
    lengths are taken in float32 as the reference does. Multiply by ``skeleton_weight`` (25 in AniClipart).
    Without bones the loss is 0."""
    lengths = bone_lengths(poses, bones).float()
    if lengths.shape[-1] == 0:
        return lengths.sum()
    rest = rest_lengths.float().to(lengths.device)
    return ((lengths - rest) ** 2).mean(dim=-1).sum()


def minimum_spanning_bones(keypoints: np.ndarray) -> np.ndarray:
    """Bones of the Euclidean minimum spanning tree (a skeleton for keypoints that come without one)."""
    count = len(keypoints)
    if count < 2:
        return np.zeros((0, 2), np.int64)
    distance = np.linalg.norm(keypoints[:, None] - keypoints[None], axis=-1)
    in_tree = np.zeros(count, bool)
    in_tree[0] = True
    best = distance[0].copy()
    parent = np.zeros(count, np.int64)
    bones = []
    for _ in range(count - 1):
        candidates = np.where(in_tree, np.inf, best)
        k = int(np.argmin(candidates))
        bones.append((int(parent[k]), k))
        in_tree[k] = True
        closer = distance[k] < best
        best = np.where(closer, distance[k], best)
        parent = np.where(closer, k, parent)
    return np.array(bones, np.int64)


@dataclass
class KinematicTree:
    """A spanning tree of the bone graph rooted at its most central keypoint (breadth-first order)."""

    root: int
    parent: np.ndarray  # [K], -1 for the root
    order: np.ndarray  # breadth-first, root first
    children: list[list[int]]
    core: frozenset  # the body: keypoints on cycles of the bone graph (a torso), and the root

    @classmethod
    def build(cls, keypoints: np.ndarray, bones: np.ndarray) -> "KinematicTree":
        keypoints = np.asarray(keypoints, np.float64)
        count = len(keypoints)
        bones = np.asarray(bones, np.int64).reshape(-1, 2)
        if count > 1 and not _connected(count, bones):
            bones = _connect_components(keypoints, bones)
        neighbours = [[] for _ in range(count)]
        for a, b in bones:
            neighbours[a].append(int(b))
            neighbours[b].append(int(a))
        centroid = keypoints.mean(0)
        eccentricity = [max(_hops(neighbours, k).values()) for k in range(count)]
        root = min(range(count), key=lambda k: (eccentricity[k], np.linalg.norm(keypoints[k] - centroid)))
        hops = _hops(neighbours, root)
        parent = np.full(count, -1, np.int64)
        order = [root]
        queue = deque([root])
        seen = {root}
        while queue:
            node = queue.popleft()
            for other in sorted(neighbours[node], key=lambda n: (hops[n], n)):
                if other not in seen:
                    seen.add(other)
                    parent[other] = node
                    order.append(other)
                    queue.append(other)
        children = [[] for _ in range(count)]
        for node in order[1:]:
            children[parent[node]].append(node)
        core = frozenset(_cycle_nodes(count, bones)) | {root}
        return cls(root, parent, np.array(order, np.int64), children, core)

    def chain_to_attachment(self, leaf: int) -> list[int]:
        """From a leaf up through single-child joints: [attachment, ..., leaf] (attachment = where the
        limb meets the body or branches off another limb)."""
        chain = [leaf]
        node = leaf
        while self.parent[node] >= 0:
            node = int(self.parent[node])
            chain.append(node)
            if node in self.core or len(self.children[node]) != 1:
                break
        return chain[::-1]

    def limbs(self) -> list[list[int]]:
        """A chain [attachment, ..., tip] for every tip (tree leaf outside the body)."""
        tips = [k for k in range(len(self.parent)) if not self.children[k] and k not in self.core]
        return [self.chain_to_attachment(tip) for tip in tips]

    def forward(self, rest: np.ndarray, local_angles: np.ndarray, root_offset: np.ndarray | None = None) -> np.ndarray:
        """Positions [F, K, 2]: each keypoint's bone (from its parent) turned by the sum of the local
        angles (radians, [F, K]) along its path from the root; bone lengths are kept exactly."""
        frames = local_angles.shape[0]
        positions = np.zeros((frames, len(rest), 2))
        total = np.zeros_like(local_angles)
        positions[:, self.root] = rest[self.root] + (0 if root_offset is None else root_offset)
        total[:, self.root] = local_angles[:, self.root]
        for node in self.order[1:]:
            up = self.parent[node]
            total[:, node] = total[:, up] + local_angles[:, node]
            bone = rest[node] - rest[up]
            c, s = np.cos(total[:, node]), np.sin(total[:, node])
            positions[:, node, 0] = positions[:, up, 0] + c * bone[0] - s * bone[1]
            positions[:, node, 1] = positions[:, up, 1] + s * bone[0] + c * bone[1]
        return positions


def _hops(neighbours, start) -> dict[int, int]:
    hops = {start: 0}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for other in neighbours[node]:
            if other not in hops:
                hops[other] = hops[node] + 1
                queue.append(other)
    return hops


def _cycle_nodes(count: int, bones: np.ndarray) -> set[int]:
    """Keypoints on a cycle of the bone graph (ends of bones whose removal keeps their ends connected)."""
    nodes = set()
    for index, (a, b) in enumerate(bones):
        others = np.delete(bones, index, axis=0)
        neighbours = [[] for _ in range(count)]
        for x, y in others:
            neighbours[x].append(int(y))
            neighbours[y].append(int(x))
        if int(b) in _hops(neighbours, int(a)):
            nodes.update((int(a), int(b)))
    return nodes


def _connected(count: int, bones: np.ndarray) -> bool:
    neighbours = [[] for _ in range(count)]
    for a, b in bones:
        neighbours[a].append(int(b))
        neighbours[b].append(int(a))
    return len(_hops(neighbours, 0)) == count


def _connect_components(keypoints: np.ndarray, bones: np.ndarray) -> np.ndarray:
    """Join the bone graph's components with the shortest extra bones (Kruskal on components)."""
    count = len(keypoints)
    label = list(range(count))

    def find(k):
        while label[k] != k:
            label[k] = label[label[k]]
            k = label[k]
        return k

    for a, b in bones:
        label[find(a)] = find(b)
    distance = np.linalg.norm(keypoints[:, None] - keypoints[None], axis=-1)
    pairs = sorted(((distance[a, b], a, b) for a in range(count) for b in range(a + 1, count)))
    extra = []
    for _, a, b in pairs:
        if find(a) != find(b):
            label[find(a)] = find(b)
            extra.append((a, b))
    return np.concatenate([bones, np.array(extra, np.int64).reshape(-1, 2)])
