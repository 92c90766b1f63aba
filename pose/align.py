"""Fitting a driving pose sequence to the reference image's body, smoothing it, and fitting it to a size.

- ``fit_to_reference`` is StableAnimator's ``get_video_pose`` alignment: one scale and offset for the
  whole clip, fitted by least squares (``np.polyfit``) between the reference body and every driving
  frame that shows exactly one person, on 14 body joints (nose, neck, shoulders, hips, knees, ankles,
  eyes, ears) that the reference shows. Coordinates are fractions of each image, the result is on
  the reference canvas.
- ``retarget_limbs`` goes further: after the global fit, every body bone keeps the driving frame's
  direction but takes the reference's length, walking out from the neck, and hands and face move
  with the joint they hang from (scaled like their forearm / head). Use it when the driving actor's
  proportions differ from the reference character's.
- ``smooth`` averages each point over neighbouring frames (Gaussian weights times confidence).
- ``fit_canvas`` maps poses onto another canvas size the way ``core.images.resize_batch``
  maps the frames (crop / pad / stretch).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.errors import InputError
from ..core.images import fit_size
from .keypoints import BODY, FACE, LEFT_HAND, NUM_POINTS, RIGHT_HAND, FramePose

# StableAnimator's joints for the fit (OpenPose-18 indices) and its visibility rule (subset >= 0).
FIT_JOINTS = (0, 1, 2, 5, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17)
VISIBLE = 0.3
# Body bones from the neck outwards (parent, child), OpenPose-18 indices.
BONES = ((1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12),
         (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17))
# Point groups that follow one body joint: (slice, anchor joint, bone whose length scales the group).
ATTACHED = ((LEFT_HAND, 7, (6, 7)), (RIGHT_HAND, 4, (3, 4)), (FACE, 0, (1, 0)))


@dataclass
class GlobalFit:
    """x_ref = ax * x + bx, y_ref = ay * y + by in 0..1 image fractions."""

    ax: float
    ay: float
    bx: float
    by: float
    joints: list[int]
    frames_used: list[int]
    driving_y: np.ndarray  # the data np.polyfit fits: driving y of every joint used ...
    reference_y: np.ndarray  # ... against the reference's y, repeated per frame

    def apply(self, normalized: np.ndarray) -> np.ndarray:
        return normalized * np.array([self.ax, self.ay]) + np.array([self.bx, self.by])


def fit_to_reference(reference: FramePose, frames: list[FramePose]) -> tuple[list[np.ndarray], GlobalFit]:
    """StableAnimator's global fit. Returns each frame's aligned coordinates as fractions of the
    reference image (``[P,134,2]``) and the fit."""
    if reference.num_people == 0:
        raise InputError("reference_pose", "has no person", "a reference image with one visible person")
    joints = [j for j in FIT_JOINTS if reference.scores[0, j] > VISIBLE]
    if not joints:
        raise InputError("reference_pose", "shows none of the body joints used for the fit", "a visible body")
    ref_body = reference.normalized()[0, BODY][joints]
    used = [i for i, frame in enumerate(frames) if frame.num_people == 1]
    if not used:
        raise InputError("driving_pose", "has no frame with exactly one person", "at least one single-person frame")
    detected = np.stack([frames[i].normalized()[0, BODY] for i in used])[:, joints]
    driving_y = detected[:, :, 1].flatten()
    reference_y = np.tile(ref_body[:, 1], len(detected))
    ay, by = np.polyfit(driving_y, reference_y, 1)
    ref_h, ref_w = reference.height, reference.width
    ax = ay / (ref_h / ref_w / ref_h * ref_w)  # StableAnimator's expression: equal to ay up to rounding
    bx = np.mean(np.tile(ref_body[:, 0], len(detected)) - detected[:, :, 0].flatten() * ax)
    fit = GlobalFit(float(ax), float(ay), float(bx), float(by), joints, used, driving_y, reference_y)
    return [fit.apply(frame.normalized()) for frame in frames], fit


def align(reference: FramePose, frames: list[FramePose], method: str = "global") -> list[FramePose]:
    """Driving frames aligned to ``reference``, on the reference canvas. ``method``: global | limbs."""
    aligned, _ = fit_to_reference(reference, frames)
    size = np.array([float(reference.width), float(reference.height)])
    out = [FramePose(reference.width, reference.height, points * size, frame.scores) for points, frame in zip(aligned, frames)]
    if method == "limbs":
        out = [retarget_limbs(reference, frame) for frame in out]
    elif method != "global":
        raise InputError("method", f"'{method}' is unknown", "global or limbs")
    return out


def retarget_limbs(reference: FramePose, frame: FramePose) -> FramePose:
    """Give every person's bones the reference person's lengths, keeping the frame's bone directions."""
    ref_points, ref_scores = reference.keypoints[0], reference.scores[0]
    keypoints = frame.keypoints.copy()
    for person in range(frame.num_people):
        keypoints[person] = _retarget_person(frame.keypoints[person], frame.scores[person], ref_points, ref_scores)
    return frame.with_people(keypoints)


def _retarget_person(points, scores, ref_points, ref_scores) -> np.ndarray:
    out = points.copy()
    shown = (scores > VISIBLE) & (ref_scores > VISIBLE)
    moved = np.zeros(NUM_POINTS, bool)
    for parent, child in BONES:
        if not (shown[parent] and shown[child]):
            continue
        direction = points[child] - points[parent]
        norm = np.linalg.norm(direction)
        if norm == 0:
            continue
        length = np.linalg.norm(ref_points[child] - ref_points[parent])
        out[child] = out[parent] + direction / norm * length
        moved[child] = True
    for group, anchor, (bone_a, bone_b) in ATTACHED:
        if not moved[anchor]:
            continue
        old_len = np.linalg.norm(points[bone_b] - points[bone_a])
        new_len = np.linalg.norm(out[bone_b] - out[bone_a])
        factor = new_len / old_len if old_len > 0 else 1.0
        out[group] = out[anchor] + (points[group] - points[anchor]) * factor
    return out


def smooth(frames: list[FramePose], radius: int = 2, sigma: float = 1.0, min_score: float = VISIBLE) -> list[FramePose]:
    """Average every point over ``radius`` frames each side, weighted by a Gaussian and its score.

    People are matched by their order in each frame; a run of frames with a different number of
    people is smoothed on its own. Points below ``min_score`` keep their own position and do not pull
    on neighbours.
    """
    if radius <= 0 or len(frames) < 2:
        return list(frames)
    offsets = np.arange(-radius, radius + 1)
    gauss = np.exp(-0.5 * (offsets / max(sigma, 1e-6)) ** 2)
    out = []
    for t, frame in enumerate(frames):
        keypoints = frame.keypoints.copy()
        for person in range(frame.num_people):
            total = np.zeros((NUM_POINTS, 2))
            weight = np.zeros(NUM_POINTS)
            for offset, g in zip(offsets, gauss):
                u = t + offset
                if not (0 <= u < len(frames)) or frames[u].num_people != frame.num_people:
                    continue
                other = frames[u].rescaled(frame.width, frame.height)
                w = g * np.where(other.scores[person] >= min_score, other.scores[person], 0.0)
                total += other.keypoints[person] * w[:, None]
                weight += w
            steady = (weight > 0) & (frame.scores[person] >= min_score)
            keypoints[person][steady] = total[steady] / weight[steady, None]
        out.append(frame.with_people(keypoints))
    return out


def fit_canvas(frames: list[FramePose], width: int, height: int, mode: str = "crop") -> list[FramePose]:
    """Poses moved onto a ``width`` x ``height`` canvas as ``resize_batch`` moves pixels; points that end
    up outside the canvas get score 0 (hidden)."""
    if width <= 0 or height <= 0:
        raise InputError("width/height", f"{width}x{height}", "positive sizes")
    out = []
    for frame in frames:
        scaled_w, scaled_h, x, y = fit_size(frame.width, frame.height, width, height, mode)
        factor = np.array([scaled_w / frame.width, scaled_h / frame.height])
        keypoints = frame.keypoints * factor - np.array([x, y], np.float64)
        scores = frame.scores.copy()
        outside = ((keypoints[..., 0] < 0) | (keypoints[..., 0] >= width) |
                   (keypoints[..., 1] < 0) | (keypoints[..., 1] >= height))
        scores[outside] = 0.0
        out.append(FramePose(width, height, keypoints, scores))
    return out
