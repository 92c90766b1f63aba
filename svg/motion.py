"""Procedural motion: named presets that move a rig's keypoints, no model needed.

Every preset is a periodic function of the phase ``theta = 2 pi cycles f / F`` built on the skeleton
(a kinematic tree rooted at its most central keypoint; limbs are the chains from the leaves up to
where they meet the body) and the figure's size. With ``fixed_start`` the value at phase 0 is
subtracted, so frame 0 is the rest pose (the input artwork) and the clip still loops. The keypoints
then drive the same ARAP mesh the text-guided mode uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..core.errors import InputError
from .skeleton import KinematicTree, minimum_spanning_bones
from .trajectories import bezier_poses

PRESETS = ("sway", "wave", "bounce", "jump", "swim", "flap", "walk", "breathe", "wiggle")
MAX_FRAMES = 1000


@dataclass
class MotionSettings:
    preset: str = "wave"
    num_frames: int = 24
    fps: float = 12.0
    amplitude: float = 1.0  # 1 = the preset's natural size
    speed: float = 0.5  # motion cycles per second
    loop: bool = True  # a whole number of cycles, so the last frame leads into the first
    seed: int = 0
    fixed_start: bool = True  # frame 0 is the input artwork
    keep_on_canvas: bool = True  # shrink/move the whole clip when the motion reaches past the canvas

    def check(self) -> "MotionSettings":
        if self.preset not in PRESETS:
            raise InputError("motion", f"'{self.preset}' is unknown", "one of " + ", ".join(PRESETS))
        if not isinstance(self.num_frames, int) or not 1 <= self.num_frames <= MAX_FRAMES:
            raise InputError("frames", f"is {self.num_frames!r}", f"1 to {MAX_FRAMES} frames")
        for name in ("fps", "speed"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise InputError(name, f"is {value!r}", "a positive number")
        if not (math.isfinite(self.amplitude) and 0 <= self.amplitude <= 5):
            raise InputError("amplitude", f"is {self.amplitude!r}", "a number from 0 to 5 (1 is the preset's own size)")
        return self

    @property
    def cycles(self) -> float:
        cycles = self.speed * self.num_frames / self.fps
        return float(max(1, round(cycles))) if self.loop else cycles


@dataclass
class Figure:
    """What presets need to know about the drawing besides its keypoints."""

    keypoints: np.ndarray  # [K, 2] rest positions
    tree: KinematicTree
    low: np.ndarray  # the drawing's bounding box (canvas pixels)
    high: np.ndarray
    mass_points: np.ndarray  # points spread over the figure's area (mesh triangle centroids)
    mass_weights: np.ndarray
    bones: np.ndarray | None = None  # the rig's own bones (the tree may add links between separate parts)

    @property
    def size(self) -> float:
        return float(max(self.high - self.low))

    @property
    def base(self) -> np.ndarray:
        """The bottom centre of the drawing (where it stands)."""
        return np.array([(self.low[0] + self.high[0]) / 2, self.high[1]])


def figure_of(rig) -> Figure:
    keypoints = rig.keypoints.numpy()
    bones = rig.bones if len(rig.bones) else minimum_spanning_bones(keypoints)
    points = rig.rest_points.numpy().astype(np.float64)
    centroids, weights = [], []
    for layer in rig.layers:
        corners = layer.mesh.vertices[layer.mesh.triangles]
        centroids.append(corners.mean(1))
        weights.append(np.abs(layer.mesh.areas()))
    return Figure(keypoints, KinematicTree.build(keypoints, bones), points.min(0), points.max(0),
                  np.concatenate(centroids), np.concatenate(weights), np.asarray(bones, np.int64).reshape(-1, 2))


def keypoint_motion(figure: Figure, settings: MotionSettings) -> np.ndarray:
    """Keypoint positions ``[F, K, 2]`` (float64, canvas pixels) for a preset."""
    settings.check()
    rng, drive = _drive_for(settings)
    poses = _GENERATORS[settings.preset](figure, drive, settings.amplitude, rng)
    if settings.fixed_start:
        poses[0] = figure.keypoints  # every drive signal is 0 at phase 0; this removes rounding
    return poses


def _drive_for(settings: MotionSettings):
    rng = np.random.default_rng(settings.seed)
    frames = np.arange(settings.num_frames)
    theta = 2 * math.pi * settings.cycles * frames / settings.num_frames
    if not settings.fixed_start:
        theta = theta + rng.uniform(0, 2 * math.pi)
    return rng, _Drive(theta, settings.fixed_start)


def body_scale(figure: Figure, settings: MotionSettings) -> dict | None:
    """For presets that swell the whole drawing (breathe): the pivot (its base) and a per-frame (sx, sy)
    applied to the deformed drawing, since a mesh that stays as rigid as possible cannot grow."""
    if settings.preset != "breathe":
        return None
    _, drive = _drive_for(settings.check())
    b = drive.rise()
    scale = np.stack([1 + 0.04 * settings.amplitude * b, 1 + 0.08 * settings.amplitude * b], axis=1)
    return {"pivot": [float(v) for v in figure.base], "scale": scale.tolist()}


class _Drive:
    """The phase of every frame and the periodic signals presets are built from. With a fixed start
    each signal is shifted to be 0 at phase 0, so the first frame is the rest pose."""

    def __init__(self, theta: np.ndarray, fixed_start: bool):
        self.theta = theta
        self.fixed_start = fixed_start

    def __len__(self):
        return len(self.theta)

    def sin(self, phase: float = 0.0, rate: float = 1.0) -> np.ndarray:
        value = np.sin(rate * self.theta + phase)
        return value - math.sin(phase) if self.fixed_start else value

    def rise(self, phase: float = 0.0, rate: float = 1.0) -> np.ndarray:
        """(1 - cos) / 2: 0 at rest, 1 half a cycle later."""
        value = 0.5 * (1 - np.cos(rate * self.theta + phase))
        return value - 0.5 * (1 - math.cos(phase)) if self.fixed_start else value

    def cycle(self) -> np.ndarray:
        """Position in the current cycle, 0..1."""
        return np.mod(self.theta / (2 * math.pi), 1.0)


# ----------------------------------------------------------------------------- helpers


def _rotate_about(points: np.ndarray, pivot: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotate points [K, 2] about a pivot by per-frame (or per-frame-per-point) angles (radians)."""
    angle = np.asarray(angle)
    if angle.ndim == 1:
        angle = angle[:, None]
    c, s = np.cos(angle), np.sin(angle)
    d = points[None] - pivot
    return np.stack([pivot[0] + c * d[..., 0] - s * d[..., 1], pivot[1] + s * d[..., 0] + c * d[..., 1]], -1)


def _scale_about(points: np.ndarray, pivot: np.ndarray, sx: np.ndarray, sy: np.ndarray) -> np.ndarray:
    d = points[None] - pivot
    return np.stack([pivot[0] + sx[:, None] * d[..., 0], pivot[1] + sy[:, None] * d[..., 1]], -1)


def _limbs(figure: Figure) -> list[list[int]]:
    """Chains [attachment, ..., tip] hanging off the body."""
    return figure.tree.limbs()


def _wings(figure: Figure) -> list[list[int]]:
    """Limbs that reach sideways (wings, arms); legs and heads do not flap. All limbs if none do."""
    chains = _limbs(figure)
    wings = []
    for chain in chains:
        reach = figure.keypoints[chain[-1]] - figure.keypoints[chain[0]]
        if abs(reach[0]) >= 0.5 * abs(reach[1]):
            wings.append(chain)
    return wings or chains


def _main_joint(chain: list[int]) -> int:
    """Where a limb swings big: its second joint (a shoulder) when it has two or more bones, since
    turning the bone that joins the body squeezes the armpit; else its only joint."""
    return 0 if len(chain) == 2 else 1


def _reach(figure: Figure, chain: list[int]) -> float:
    """Turning gain of a limb: long limbs (a big part of the figure) turn less, so tips move alike."""
    length = float(np.linalg.norm(np.diff(figure.keypoints[chain], axis=0), axis=1).sum())
    return min(1.0, 0.3 * figure.size / max(length, 1e-6))


def _jitter(rng, count: int, phase: float = 0.35, gain: float = 0.15):
    return rng.uniform(-phase, phase, count), rng.uniform(1 - gain, 1 + gain, count)


def _side(figure: Figure, chain: list[int]) -> float:
    """+1 when the limb reaches to the right of its attachment, -1 to the left."""
    reach = figure.keypoints[chain[-1]] - figure.keypoints[chain[0]]
    return 1.0 if reach[0] >= 0 else -1.0


def _outward(figure: Figure, chain: list[int]) -> float:
    """The sign of a turn that moves the limb's tip away from the body's middle."""
    pivot, tip = figure.keypoints[chain[0]], figure.keypoints[chain[-1]]
    turned = _rotate_about(tip[None], pivot, np.array([0.1]))[0, 0]
    centre = figure.keypoints[figure.tree.root]
    return 1.0 if abs(turned[0] - centre[0]) > abs(tip[0] - centre[0]) else -1.0


def _limb_angles(figure: Figure, chains, angle_of) -> np.ndarray:
    """Local FK angles [F, K] where each limb's joints get ``angle_of(index, chain, joint)``."""
    count = len(figure.keypoints)
    local = None
    real = None if figure.bones is None else {tuple(sorted(b)) for b in figure.bones.tolist()}
    for index, chain in enumerate(chains):
        for joint, node in enumerate(chain[1:]):
            value = angle_of(index, chain, joint)
            if real is not None and tuple(sorted((chain[joint], node))) not in real:
                value = np.zeros_like(value)  # a link the tree added between separate parts does not turn
            if local is None:
                local = np.zeros((len(value), count))
            local[:, node] += value
    return local


# ----------------------------------------------------------------------------- presets


def _sway(figure, drive, amplitude, rng):
    """Bend about the base like a plant in the wind: rotation growing with height."""
    base = figure.base
    height = np.clip((base[1] - figure.keypoints[:, 1]) / max(figure.high[1] - figure.low[1], 1e-6), 0, 1)
    angle = math.radians(10) * amplitude * drive.sin()[:, None] * height[None]
    return _rotate_about(figure.keypoints, base, angle)


def _wave(figure, drive, amplitude, rng):
    """A travelling wave through every limb: joints turn in turn from the body outwards."""
    chains = _limbs(figure)
    if not chains:
        return _sway(figure, drive, amplitude, rng)
    offsets, gains = _jitter(rng, len(chains))
    step = math.radians(12) * amplitude
    middle = (figure.low[1] + figure.high[1]) / 2

    def angle(index, chain, joint):
        if figure.keypoints[chain[-1], 1] > middle:  # a leg sways from the hip, stiffly (no S-shaped wave)
            return step * gains[index] * _reach(figure, chain) * drive.sin(offsets[index]) * (1.0 if joint == 0 else 0.25)
        return step * gains[index] * _reach(figure, chain) * drive.sin(offsets[index] - 0.9 * joint)

    return figure.tree.forward(figure.keypoints, _limb_angles(figure, chains, angle))


def _bounce(figure, drive, amplitude, rng):
    """Hop in place: up and down with a stretch in flight, landing on the base."""
    lift = _lift(figure, 0.10 * amplitude) * np.abs(drive.sin(rate=0.5))
    stretch = 1 + 0.08 * amplitude * np.abs(drive.sin())
    poses = _scale_about(figure.keypoints, figure.base, 1 / np.sqrt(stretch), stretch)
    poses[..., 1] -= lift[:, None]
    return poses


def _lift(figure: Figure, fraction: float) -> float:
    """How high to leave the ground: ``fraction`` of the figure's size, less when the canvas top is near."""
    wanted = fraction * figure.size
    headroom = max(float(figure.low[1]) - 2.0, 0.0)
    return min(wanted, max(headroom, 0.3 * wanted))


def _smoothstep(x):
    x = np.clip(x, 0, 1)
    return x * x * (3 - 2 * x)


def _jump(figure, drive, amplitude, rng):
    """Crouch, leap with the limbs spread, land with a squash, rest."""
    p = drive.cycle()
    crouch = np.where(p < 0.2, _smoothstep(p / 0.2), np.where(p < 0.3, 1 - _smoothstep((p - 0.2) / 0.1), 0.0))
    flight = np.where((p >= 0.25) & (p < 0.75), np.sin(np.pi * np.clip((p - 0.25) / 0.5, 0, 1)), 0.0)
    land = np.where((p >= 0.75) & (p < 0.9), np.sin(np.pi * (p - 0.75) / 0.15), 0.0)
    sy = 1 - 0.1 * amplitude * (crouch + 0.7 * land) + 0.05 * amplitude * flight
    sx = 1 / np.sqrt(sy)
    chains = _limbs(figure)
    spread = math.radians(18) * amplitude

    def angle(index, chain, joint):
        main = _main_joint(chain)
        weight = 1.0 if joint == main else (0.25 if joint < main else 0.3)
        return -_side(figure, chain) * spread * _reach(figure, chain) * flight * weight

    poses = figure.tree.forward(figure.keypoints, _limb_angles(figure, chains, angle)) if chains else \
        np.repeat(figure.keypoints[None], len(drive), 0)
    base = figure.base
    poses = np.stack([base[0] + sx[:, None] * (poses[..., 0] - base[0]),
                      base[1] + sy[:, None] * (poses[..., 1] - base[1])], -1)
    poses[..., 1] -= (_lift(figure, 0.25 * amplitude) * flight)[:, None]
    return poses


def _principal_axis(figure: Figure):
    """The figure's long axis (unit vector, head first), its centre and each keypoint's position along
    it from head (0) to tail (1)."""
    weights = figure.mass_weights / figure.mass_weights.sum()
    centre = (figure.mass_points * weights[:, None]).sum(0)
    offsets = figure.mass_points - centre
    covariance = (offsets * weights[:, None]).T @ offsets
    axis = np.linalg.eigh(covariance)[1][:, -1]
    along = offsets @ axis
    span = max(along.max() - along.min(), 1e-6)
    # The head is the end carrying more of the body's area.
    head_mass = weights[along > along.max() - 0.35 * span].sum()
    tail_mass = weights[along < along.min() + 0.35 * span].sum()
    if tail_mass > head_mass:
        axis, along = -axis, -along
    position = (along.max() - (figure.keypoints - centre) @ axis) / span
    return axis, centre, np.clip(position, 0, 1)


def _swim(figure, drive, amplitude, rng):
    """A travelling wave down the body from head to tail, growing towards the tail."""
    axis, _, position = _principal_axis(figure)
    normal = np.array([-axis[1], axis[0]])
    envelope = 0.15 + 0.85 * position ** 2
    phase = rng.uniform(-0.2, 0.2)
    waves = np.stack([drive.sin(phase - 2 * math.pi * 0.8 * s) for s in position], axis=1)  # [F, K]
    offset = 0.07 * figure.size * amplitude * envelope[None] * waves
    return figure.keypoints[None] + offset[..., None] * normal


def _flap(figure, drive, amplitude, rng):
    """Wings (or arms): limbs beat together, mirrored left/right, more up than down, the body bobbing."""
    chains = _wings(figure)
    offsets, gains = _jitter(rng, max(len(chains), 1), phase=0.1, gain=0.1)
    beat = math.radians(24) * amplitude

    def angle(index, chain, joint):
        main = _main_joint(chain)
        weight = 1.0 if joint == main else (0.25 if joint < main else 0.35)
        phase = offsets[index] - 0.6 * max(joint - main, 0)
        upward = 0.7 * drive.sin(phase) + 0.6 * drive.rise(phase)  # from -0.4 (down) to 1.0 (up)
        return -_side(figure, chain) * beat * gains[index] * _reach(figure, chain) * weight * upward

    poses = figure.tree.forward(figure.keypoints, _limb_angles(figure, chains, angle)) if chains else \
        np.repeat(figure.keypoints[None], len(drive), 0)
    poses[..., 1] += (0.03 * figure.size * amplitude * drive.sin())[:, None]
    return poses


def _walk(figure, drive, amplitude, rng):
    """Legs (lower limbs) swing in alternation, arms (upper limbs) against them, the body bobs."""
    chains = _limbs(figure)
    if not chains:
        return _bounce(figure, drive, 0.3 * amplitude, rng)
    middle = (figure.low[1] + figure.high[1]) / 2
    legs = sorted((c for c in chains if figure.keypoints[c[-1], 1] > middle), key=lambda c: figure.keypoints[c[-1], 0])
    arms = sorted((c for c in chains if figure.keypoints[c[-1], 1] <= middle), key=lambda c: figure.keypoints[c[-1], 0])
    role = {id(c): ("leg", i) for i, c in enumerate(legs)}
    role.update({id(c): ("arm", i) for i, c in enumerate(arms)})
    offsets, gains = _jitter(rng, len(chains), phase=0.15, gain=0.1)
    swing, knee, arm_swing = math.radians(16) * amplitude, math.radians(14) * amplitude, math.radians(12) * amplitude
    # Legs on both sides of the body (a figure seen from the front) step by lifting outwards in turn, so they
    # never swing into each other; legs seen from the side swing back and forth.
    frontal = len({_side(figure, c) for c in legs}) == 2

    def angle(index, chain, joint):
        kind, order = role[id(chain)]
        phase = math.pi * (order % 2) + offsets[index]
        gain = gains[index] * _reach(figure, chain)
        if kind == "leg":
            if frontal:  # one leg lifts outwards in the first half of the cycle, the other in the second
                lift = np.maximum((1.0 if order % 2 == 0 else -1.0) * drive.sin(offsets[index]), 0.0)
                return _outward(figure, chain) * gain * lift * (swing if joint == 0 else knee * (1.0 if joint == 1 else 0.3))
            if joint == 0:
                return swing * gain * drive.sin(phase)
            return knee * gain * drive.rise(phase) * (1.0 if joint == 1 else 0.3)
        return -arm_swing * gain * drive.sin(phase) * (1.0 if joint == 0 else 0.4)

    poses = figure.tree.forward(figure.keypoints, _limb_angles(figure, chains, angle))
    poses[..., 1] -= (0.015 * figure.size * amplitude * drive.rise(rate=2.0))[:, None]
    return poses


def _breathe(figure, drive, amplitude, rng):
    """Slow inhale/exhale: the figure swells about its base, more in height (``body_scale``), while the
    limbs rise a little with each breath."""
    chains = _limbs(figure)
    lift = math.radians(4) * amplitude

    def angle(index, chain, joint):
        return _outward(figure, chain) * lift * _reach(figure, chain) * drive.rise() * (1.0 if joint == 0 else 0.3)

    if not chains:
        return np.repeat(figure.keypoints[None], len(drive), 0)
    return figure.tree.forward(figure.keypoints, _limb_angles(figure, chains, angle))


def _wiggle(figure, drive, amplitude, rng):
    """A playful random dance: every limb joint turns along its own random cubic Bézier (in angle),
    there and back each cycle, so bones keep their lengths; a new seed gives a new dance."""
    chains = _limbs(figure)
    if not chains:
        return _sway(figure, drive, amplitude, rng)
    joints = sorted({node for chain in chains for node in chain[1:]})
    limit = math.radians(16) * amplitude
    control = torch.from_numpy(rng.uniform(-1, 1, (len(joints), 4, 1)))
    control[:, 0] = 0.0  # every curve starts at the rest angle
    there_and_back = 1 - np.abs(1 - 2 * drive.cycle())
    if not drive.fixed_start:
        control[:, 0] = torch.from_numpy(rng.uniform(-1, 1, (len(joints), 1)))
    curves = bezier_poses(control, torch.from_numpy(there_and_back)).numpy()[..., 0]  # [F, joints]
    reach = {node: _reach(figure, chain) for chain in chains for node in chain[1:]}
    local = np.zeros((len(drive), len(figure.keypoints)))
    for column, node in enumerate(joints):
        local[:, node] = limit * reach[node] * curves[:, column]
    return figure.tree.forward(figure.keypoints, local)


_GENERATORS = {
    "sway": _sway,
    "wave": _wave,
    "bounce": _bounce,
    "jump": _jump,
    "swim": _swim,
    "flap": _flap,
    "walk": _walk,
    "breathe": _breathe,
    "wiggle": _wiggle,
}
