"""Pose-driven clipart: a human pose sequence (OpenPose-18 body joints) retargeted onto a clipart rig.

    mapping = auto_map(rig.keypoints.numpy(), rig.bones)          # or parse_map(text, rig.num_keypoints)
    animation = animate_from_pose(rig, frames, mapping, RetargetSettings(fps=12))

``frames`` are ``pose.keypoints.FramePose`` (from ``POSE_KEYPOINT`` / OpenPose JSON / DWPose); each frame's
best person drives the figure. The map pairs clipart keypoints with driving joints (OpenPose names, plus
``mid_hip``, the middle of both hips). The retargeting works on the rig's kinematic tree
(``skeleton.KinematicTree``): the body (keypoints on cycles of the bone graph, and the root) moves as one
rigid piece, turned as the driver's mapped body joints turn and shifted as they move (scaled to the
figure's size); every other bone keeps its length and takes the direction of the driving bone between its
joint and the nearest mapped keypoint above it, so joint angles come from the driver; unmapped bones
turn with the bone above them. ``follow="motion"`` (the default) adds the driver's changes since its
first frame to the drawn pose (frame 0 is the artwork; fewest folds when the art is drawn in another pose
than the driver starts in); ``follow="pose"`` copies the driver's bone directions (the figure takes the
driver's pose). Jitter is smoothed with ``pose.align.smooth``; frames without a person (or a
joint) are interpolated between the frames around them or hold the last seen value; ``loop`` bends the
last frames towards the first so the clip repeats seamlessly. The keypoints then drive the same ARAP
mesh as the procedural presets, and the result is the same ``ClipartAnimation``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..core.errors import InputError
from .skeleton import KinematicTree, minimum_spanning_bones

JOINTS = ("nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
          "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
          "right_eye", "left_eye", "right_ear", "left_ear", "mid_hip")
MID_HIP = JOINTS.index("mid_hip")
HIPS = (JOINTS.index("right_hip"), JOINTS.index("left_hip"))
NO_PERSON = ("interpolate", "hold")
FOLLOW = ("motion", "pose")
MAX_FRAMES = 5000
# Chains from the body outwards with each joint's usual place along the limb (fraction of its length).
ARM_FROM_NECK = (("neck", 0.0), ("shoulder", 0.3), ("elbow", 0.65), ("wrist", 1.0))
ARM_FROM_SHOULDER = (("shoulder", 0.0), ("elbow", 0.5), ("wrist", 1.0))
LEG_FROM_MID_HIP = (("mid_hip", 0.0), ("hip", 0.12), ("knee", 0.55), ("ankle", 1.0))
LEG_FROM_HIP = (("hip", 0.0), ("knee", 0.5), ("ankle", 1.0))
MAP_EXPECTED = "one 'keypoint joint' line per mapped keypoint, e.g. '3 right_elbow' (joints: " + ", ".join(JOINTS) + ")"


@dataclass
class RetargetSettings:
    fps: float = 12.0
    smoothing: int = 2  # frames each side averaged by pose.align.smooth (0: none)
    sigma: float = 1.0
    no_person: str = "interpolate"  # or "hold"
    loop: bool = False
    follow: str = "motion"  # "motion": add the driver's changes to the drawn pose; "pose": copy its bone directions
    move: float = 1.0  # how far the figure follows the driver's body across the frame (0: stays in place)
    min_score: float = 0.3  # joints scoring below this count as not seen

    def check(self) -> "RetargetSettings":
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise InputError("fps", f"is {self.fps!r}", "a positive number")
        if not isinstance(self.smoothing, int) or not 0 <= self.smoothing <= 30:
            raise InputError("smoothing", f"is {self.smoothing!r}", "0 to 30 frames")
        if self.no_person not in NO_PERSON:
            raise InputError("no_person", f"'{self.no_person}' is unknown", " or ".join(NO_PERSON))
        if self.follow not in FOLLOW:
            raise InputError("follow", f"'{self.follow}' is unknown", " or ".join(FOLLOW))
        if not (math.isfinite(self.move) and 0 <= self.move <= 5):
            raise InputError("move", f"is {self.move!r}", "0 (stay in place) to 5")
        return self


# ----------------------------------------------------------------------------- the map


def joint_index(name: str, input_name: str = "map") -> int:
    """A joint name (or OpenPose index 0-17) -> its index in ``JOINTS``."""
    text = name.strip().lower().replace("-", "_").replace(" ", "_")
    if text.isdigit() and int(text) < len(JOINTS):
        return int(text)
    if text not in JOINTS:
        raise InputError(input_name, f"names the joint '{name}'", "one of " + ", ".join(JOINTS))
    return JOINTS.index(text)


def parse_map(text: str, num_keypoints: int, input_name: str = "map") -> dict[int, int]:
    """'keypoint joint' lines (``#`` starts a comment) -> {clipart keypoint: joint index}."""
    mapping: dict[int, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#")[0].replace(",", " ").replace(":", " ").strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise InputError(input_name, f"line {number} is {line!r}", MAP_EXPECTED)
        keypoint = int(parts[0])
        if keypoint >= num_keypoints:
            raise InputError(input_name, f"line {number} names keypoint {keypoint}", f"keypoints 0 to {num_keypoints - 1}")
        if keypoint in mapping:
            raise InputError(input_name, f"maps keypoint {keypoint} twice", "each keypoint once")
        mapping[keypoint] = joint_index(parts[1], input_name)
    if not mapping:
        raise InputError(input_name, "maps no keypoint", MAP_EXPECTED)
    return mapping


def map_text(mapping: dict[int, int]) -> str:
    lines = ["# clipart keypoint  driving joint"]
    lines += [f"{keypoint} {JOINTS[joint]}" for keypoint, joint in sorted(mapping.items())]
    return "\n".join(lines) + "\n"


def _tree(keypoints: np.ndarray, bones) -> KinematicTree:
    bones = np.asarray(bones, np.int64).reshape(-1, 2)
    if len(bones) == 0:
        bones = minimum_spanning_bones(keypoints)
    return KinematicTree.build(keypoints, bones)


def auto_map(keypoints: np.ndarray, bones) -> dict[int, int]:
    """The map for a human-like skeleton: two legs (the limbs reaching lowest), two arms (the highest
    attached of the rest), a head when a limb points up near the middle. The figure is taken to face the
    viewer, so its left side in the picture is the driver's right. Raises when the skeleton has no such
    limbs (give a map then)."""
    keypoints = np.asarray(keypoints, np.float64)
    limbs = _tree(keypoints, bones).limbs()
    if len(limbs) < 4:
        raise InputError("map", f"is needed: the clipart's skeleton has {len(limbs)} limbs, too few to look human "
                                "(two arms and two legs)", MAP_EXPECTED)
    legs = sorted(limbs, key=lambda chain: -keypoints[chain[-1], 1])[:2]
    rest = [chain for chain in limbs if chain not in legs]
    head = _head_limb(keypoints, rest, legs)
    arms = sorted((c for c in rest if c is not head), key=lambda chain: keypoints[chain[0], 1])[:2]
    if len(arms) < 2:
        raise InputError("map", "is needed: the clipart's skeleton has no two arms besides its legs", MAP_EXPECTED)
    mapping: dict[int, int] = {}
    _map_pair(keypoints, arms, ARM_FROM_NECK, ARM_FROM_SHOULDER, mapping)
    _map_pair(keypoints, legs, LEG_FROM_MID_HIP, LEG_FROM_HIP, mapping)
    if head is not None:
        mapping.setdefault(head[0], JOINTS.index("neck"))
        mapping.setdefault(head[-1], JOINTS.index("nose"))
    return mapping


def _head_limb(keypoints, candidates, legs):
    """A limb pointing up from above the hips, its tip near the middle of the figure."""
    centre = keypoints[:, 0].mean()
    width = max(np.ptp(keypoints[:, 0]), 1e-6)
    hip_level = min(keypoints[chain[0], 1] for chain in legs)
    best = None
    for chain in candidates:
        tip, base = keypoints[chain[-1]], keypoints[chain[0]]
        upward = base[1] - tip[1] > abs(tip[0] - base[0])
        if upward and base[1] < hip_level and abs(tip[0] - centre) < 0.2 * width:
            if best is None or tip[1] < keypoints[best[-1], 1]:
                best = chain
    return best


def _map_pair(keypoints, chains, from_centre, from_side, mapping) -> None:
    """Map two limbs: picture-left is the driver's right. A shared attachment is the neck / mid-hip."""
    shared = chains[0][0] == chains[1][0]
    template = from_centre if shared else from_side
    ordered = sorted(chains, key=lambda chain: keypoints[chain[-1] if shared else chain[0], 0])
    for side, chain in zip(("right", "left"), ordered):
        for node, joint in _assign_chain(keypoints, chain, template):
            name = joint if joint in ("neck", "mid_hip") else f"{side}_{joint}"
            mapping.setdefault(node, JOINTS.index(name))


def _assign_chain(keypoints, chain, template) -> list[tuple[int, str]]:
    """First keypoint to the template's first joint, last to its last; each keypoint between goes to the
    joint nearest its place along the limb (each joint once)."""
    steps = np.linalg.norm(np.diff(keypoints[chain], axis=0), axis=1)
    place = np.concatenate([[0.0], np.cumsum(steps)]) / max(steps.sum(), 1e-9)
    pairs = [(chain[0], template[0][0]), (chain[-1], template[-1][0])]
    middle = template[1:-1]
    taken = {}
    for index in range(1, len(chain) - 1):
        if not middle:
            break
        joint = min(range(len(middle)), key=lambda j: abs(middle[j][1] - place[index]))
        distance = abs(middle[joint][1] - place[index])
        if joint not in taken or distance < taken[joint][1]:
            taken[joint] = (chain[index], distance)
    pairs += [(node, middle[joint][0]) for joint, (node, _) in taken.items()]
    return pairs


# ----------------------------------------------------------------------------- driving joints


def driving_joints(frames, settings: RetargetSettings) -> tuple[np.ndarray, np.ndarray]:
    """The best person's joints per frame, smoothed: ``[F, 19, 2]`` pixels and ``[F, 19]`` seen flags."""
    from ..pose.align import smooth
    from ..pose.keypoints import BODY, FramePose

    single = []
    for frame in frames:
        if frame.num_people == 0:
            single.append(frame)
            continue
        keypoints, scores = frame.keypoints.copy(), frame.scores.copy()
        broken = ~np.isfinite(keypoints).all(-1) | ~np.isfinite(scores)  # unreadable points count as not seen
        keypoints[broken], scores[broken] = 0.0, 0.0
        best = FramePose(frame.width, frame.height, keypoints, scores).best_person()
        single.append(FramePose(frame.width, frame.height, keypoints[best:best + 1], scores[best:best + 1]))
    single = smooth(single, settings.smoothing, settings.sigma, settings.min_score) if settings.smoothing else single
    joints = np.zeros((len(single), len(JOINTS), 2))
    seen = np.zeros((len(single), len(JOINTS)), bool)
    for index, frame in enumerate(single):
        if frame.num_people == 0:
            continue
        joints[index, :18] = frame.keypoints[0, BODY]
        seen[index, :18] = frame.scores[0, BODY] >= settings.min_score
    joints[:, MID_HIP] = joints[:, list(HIPS)].mean(1)
    seen[:, MID_HIP] = seen[:, list(HIPS)].all(1)
    return joints, seen


# ----------------------------------------------------------------------------- signals over time


def _fill(values: np.ndarray, known: np.ndarray, mode: str) -> np.ndarray:
    """Missing frames of a ``[F, ...]`` signal: interpolated between known frames (held before the first
    and after the last) or holding the last known value. All missing: NaN stays."""
    if not known.any():
        return values
    frames = np.arange(len(values))
    flat = values.reshape(len(values), -1).copy()
    if mode == "interpolate":
        for column in range(flat.shape[1]):
            flat[:, column] = np.interp(frames, frames[known], flat[known, column])
    else:
        last = np.maximum.accumulate(np.where(known, frames, -1))
        last = np.where(last < 0, frames[known][0], last)
        flat = flat[last]
    return flat.reshape(values.shape)


def _unwrap(angles: np.ndarray, known: np.ndarray) -> np.ndarray:
    out = angles.copy()
    if known.any():
        out[known] = np.unwrap(angles[known])
    return out


def _close_loop(values: np.ndarray, angular: bool) -> np.ndarray:
    """Spread the gap between the last frame and frame 0 of a ``[F, ...]`` signal evenly over the clip
    (frame f moves by f/F of it), so frame 0 follows the last frame after a step of gap/F and frame 0
    itself is unchanged."""
    count = len(values)
    if count < 3:
        return values
    gap = values[0] - values[-1]
    if angular:
        gap = (gap + np.pi) % (2 * np.pi) - np.pi
    weight = np.arange(count) / count
    return values + weight.reshape((-1,) + (1,) * (values.ndim - 1)) * gap


def _rotation_angle(source: np.ndarray, target: np.ndarray) -> float:
    """The rotation (radians) that best turns centred points ``source`` onto centred ``target`` (2-D Procrustes)."""
    a = source - source.mean(0)
    b = target - target.mean(0)
    return math.atan2(float(np.sum(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0])), float(np.sum(a * b)))


def _angle(vector: np.ndarray) -> np.ndarray:
    return np.arctan2(vector[..., 1], vector[..., 0])


# ----------------------------------------------------------------------------- retargeting


@dataclass
class _Plan:
    """Which driving vectors set which of the clipart's bones."""

    tree: KinematicTree
    body: list[int]  # keypoints that move as one rigid piece
    body_mapped: list[int]  # those with a driving joint
    driven: dict[int, int]  # keypoint -> the mapped keypoint above it whose joint starts its driving vector


def _plan(keypoints: np.ndarray, bones, mapping: dict[int, int]) -> _Plan:
    tree = _tree(keypoints, bones)
    body = sorted(tree.core)
    driven = {}
    for node in tree.order:
        if node in tree.core or node not in mapping:
            continue
        up = int(tree.parent[node])
        while up >= 0 and up not in mapping:
            up = int(tree.parent[up])
        if up >= 0:
            driven[int(node)] = up
    return _Plan(tree, body, [k for k in body if k in mapping], driven)


def retarget(keypoints: np.ndarray, bones, mapping: dict[int, int], joints: np.ndarray, seen: np.ndarray,
             settings: RetargetSettings) -> np.ndarray:
    """Clipart keypoint positions ``[F, K, 2]`` for driving joints ``[F, 19, 2]`` (``seen`` ``[F, 19]``)."""
    settings.check()
    keypoints = np.asarray(keypoints, np.float64)
    plan = _plan(keypoints, bones, mapping)
    if not plan.driven and len(plan.body_mapped) < 2:
        raise InputError("map", "gives no bone a driving direction", "a map naming both ends of some bones (or the body)")
    turn = _body_turn(keypoints, plan, mapping, joints, seen, settings)
    bone_turns = _bone_turns(keypoints, plan, mapping, joints, seen, settings)
    shift = _body_shift(keypoints, plan, mapping, joints, seen, settings)
    if settings.loop:
        turn, shift = _close_loop(turn, True), _close_loop(shift, False)
        bone_turns = {node: _close_loop(values, True) for node, values in bone_turns.items()}
    return _forward(keypoints, plan, turn, shift, bone_turns)


def _body_turn(keypoints, plan, mapping, joints, seen, settings) -> np.ndarray:
    """The body's rotation per frame [F] (0 when fewer than two body keypoints are mapped)."""
    frames = len(joints)
    if len(plan.body_mapped) < 2:
        return np.zeros(frames)
    columns = [mapping[k] for k in plan.body_mapped]
    known = seen[:, columns].all(1)
    angles = np.array([_rotation_angle(keypoints[plan.body_mapped], joints[f, columns]) if known[f] else 0.0
                       for f in range(frames)])
    return _relative(_unwrap(angles, known), known, settings, reference=0.0)


def _bone_turns(keypoints, plan, mapping, joints, seen, settings) -> dict[int, np.ndarray]:
    """Per driven keypoint the turn [F] of its bone from the drawn direction (radians)."""
    turns = {}
    for node, above in plan.driven.items():
        known = seen[:, mapping[node]] & seen[:, mapping[above]]
        vector = joints[:, mapping[node]] - joints[:, mapping[above]]
        known &= np.linalg.norm(vector, axis=1) > 1e-6
        drawn = float(_angle(keypoints[node] - keypoints[above]))
        turns[node] = _relative(_unwrap(_angle(vector), known), known, settings, reference=drawn)
    return turns


def _relative(angles, known, settings, reference: float) -> np.ndarray:
    """Filled angles minus the drawn direction (follow=pose) or the driver's first direction (motion)."""
    if not known.any():
        return np.zeros(len(angles))
    filled = _fill(angles, known, settings.no_person)
    start = filled[0] if settings.follow == "motion" else reference
    turn = filled - start
    return turn - 2 * np.pi * np.round(turn[0] / (2 * np.pi))


def _body_shift(keypoints, plan, mapping, joints, seen, settings) -> np.ndarray:
    """How far the body moves from frame 0 [F, 2], in canvas pixels (driver motion times the size ratio)."""
    frames = len(joints)
    anchors = plan.body_mapped or [k for k in (plan.tree.root,) if k in mapping]
    if not anchors or settings.move == 0:
        return np.zeros((frames, 2))
    columns = [mapping[k] for k in anchors]
    known = seen[:, columns].all(1)
    if not known.any():
        return np.zeros((frames, 2))
    centre = _fill(joints[:, columns].mean(1), known, settings.no_person)
    return (centre - centre[0]) * _size_ratio(keypoints, plan, mapping, joints, seen) * settings.move


def _size_ratio(keypoints, plan, mapping, joints, seen) -> float:
    """Clipart length over driving length, summed over the mapped bones (driver: median over frames)."""
    pairs = list(plan.driven.items()) + [(a, b) for a, b in zip(plan.body_mapped, plan.body_mapped[1:])]
    drawn, driving = 0.0, 0.0
    for a, b in pairs:
        known = seen[:, mapping[a]] & seen[:, mapping[b]]
        if not known.any():
            continue
        drawn += float(np.linalg.norm(keypoints[a] - keypoints[b]))
        driving += float(np.median(np.linalg.norm(joints[known, mapping[a]] - joints[known, mapping[b]], axis=1)))
    return drawn / driving if driving > 1e-6 else 0.0


def _forward(keypoints, plan, turn, shift, bone_turns) -> np.ndarray:
    """Positions [F, K, 2]: the body turned about its centre and shifted; every other bone from its parent,
    turned by its own driven turn or, undriven, by its parent's."""
    frames = len(turn)
    tree = plan.tree
    out = np.zeros((frames, len(keypoints), 2))
    centre = keypoints[plan.body].mean(0)
    total = np.zeros((frames, len(keypoints)))
    for node in plan.body:
        out[:, node] = centre + shift + _rotate(keypoints[node] - centre, turn)
        total[:, node] = turn
    for node in tree.order:
        node = int(node)
        if node in tree.core:
            continue
        up = int(tree.parent[node])
        total[:, node] = bone_turns[node] if node in bone_turns else total[:, up]
        out[:, node] = out[:, up] + _rotate(keypoints[node] - keypoints[up], total[:, node])
    return out


def _rotate(vector: np.ndarray, angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([c * vector[0] - s * vector[1], s * vector[0] + c * vector[1]], -1)


# ----------------------------------------------------------------------------- end to end


def animate_from_pose(rig, frames, mapping: dict[int, int] | None = None, settings: RetargetSettings | None = None,
                      name: str = "clipart", svg_sha256: str | None = None):
    """A ``ClipartAnimation`` of ``rig`` driven by pose ``frames`` (``FramePose`` list), one clip frame each."""
    from .animate import ClipartAnimation

    settings = (settings or RetargetSettings()).check()
    if not frames:
        raise InputError("pose", "has no frames", "at least one pose frame")
    if len(frames) > MAX_FRAMES:
        raise InputError("pose", f"has {len(frames)} frames", f"at most {MAX_FRAMES}")
    keypoints = rig.keypoints.numpy()
    source = "map" if mapping is not None else "auto"
    mapping = auto_map(keypoints, rig.bones) if mapping is None else mapping
    joints, seen = driving_joints(frames, settings)
    if not seen.any():
        raise InputError("pose", "shows no person in any frame", "poses with a visible person")
    poses = retarget(keypoints, rig.bones, mapping, joints, seen, settings)
    empty = [i for i, frame in enumerate(frames) if frame.num_people == 0]
    motion = {"mode": "pose", **settings.__dict__, "map": {str(k): JOINTS[j] for k, j in sorted(mapping.items())},
              "map_source": source, "frames_without_person": empty}
    return ClipartAnimation(rig, torch.from_numpy(poses), float(settings.fps), motion, name, svg_sha256)
