"""The whole-body keypoint layout every DWPose code base uses, and the per-frame pose container.

DWPose predicts the 133 COCO-WholeBody points (body 0-16, feet 17-22, face 23-90, left hand 91-111,
right hand 112-132). All three reference code bases then insert a neck (mean of the shoulders) at
index 17 and reorder the body into OpenPose-18, giving 134 points:

    0-17 OpenPose body (nose, neck, R shoulder/elbow/wrist, L shoulder/elbow/wrist,
         R hip/knee/ankle, L hip/knee/ankle, R eye, L eye, R ear, L ear)
    18-23 feet, 24-91 face (68), 92-112 left hand (21), 113-133 right hand (21)

``FramePose`` keeps that layout for every person with the **raw** model scores (no thresholding),
in pixel coordinates of the canvas it was detected on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NUM_RAW = 133
NUM_POINTS = 134
BODY = slice(0, 18)
FEET = slice(18, 24)
FACE = slice(24, 92)
LEFT_HAND = slice(92, 113)
RIGHT_HAND = slice(113, 134)

# Neck insertion and OpenPose reorder, identical in DWPose, Moore-AnimateAnyone, StableAnimator and
# comfyui_controlnet_aux: after inserting the neck at 17, openpose slots take these mmpose slots.
NECK_INSERT_AT = 17
NECK_FROM = (5, 6)
NECK_SCORE_THRESHOLD = 0.3
# controlnet_aux keeps points scoring at least this in its OpenPose output.
OPENPOSE_VISIBLE = 0.3
MMPOSE_ORDER = (17, 6, 8, 10, 7, 9, 12, 14, 16, 13, 15, 2, 1, 4, 3)
OPENPOSE_SLOTS = (1, 2, 3, 4, 6, 7, 8, 9, 10, 12, 13, 14, 15, 16, 17)

# OpenPose limbs (1-based joint pairs); the drawing code of every reference draws the first 17.
LIMBS = ((2, 3), (2, 6), (3, 4), (4, 5), (6, 7), (7, 8), (2, 9), (9, 10), (10, 11), (2, 12), (12, 13),
         (13, 14), (2, 1), (1, 15), (15, 17), (1, 16), (16, 18))
BODY_COLORS = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
               (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
               (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85))
HAND_EDGES = ((0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10), (10, 11),
              (11, 12), (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19), (19, 20))


def to_openpose_layout(raw_keypoints: np.ndarray, raw_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """133 DWPose points ``[P,133,2]`` / ``[P,133]`` -> 134 OpenPose-ordered points and scores (float64).

    The neck is the mean of both shoulders; its score is 1 when both shoulder scores exceed 0.3, else 0.
    """
    info = np.concatenate([np.asarray(raw_keypoints, np.float64),
                           np.asarray(raw_scores)[..., None].astype(np.float64)], axis=-1)
    neck = np.mean(info[:, list(NECK_FROM)], axis=1)
    neck[:, 2] = np.logical_and(info[:, NECK_FROM[0], 2] > NECK_SCORE_THRESHOLD,
                                info[:, NECK_FROM[1], 2] > NECK_SCORE_THRESHOLD).astype(int)
    info = np.insert(info, NECK_INSERT_AT, neck, axis=1)
    info[:, list(OPENPOSE_SLOTS)] = info[:, list(MMPOSE_ORDER)]
    return info[..., :2], info[..., 2]


@dataclass
class FramePose:
    """Every person found in one frame, in the 134-point layout.

    ``keypoints`` ``[P,134,2]`` are (x, y) pixels of a ``width`` x ``height`` canvas; ``scores``
    ``[P,134]`` are the raw model confidences (the neck holds 0/1). ``P == 0`` is a frame with nobody.
    """

    width: int
    height: int
    keypoints: np.ndarray = field(default_factory=lambda: np.zeros((0, NUM_POINTS, 2)))
    scores: np.ndarray = field(default_factory=lambda: np.zeros((0, NUM_POINTS)))

    def __post_init__(self):
        self.keypoints = np.asarray(self.keypoints, np.float64).reshape(-1, NUM_POINTS, 2)
        self.scores = np.asarray(self.scores, np.float64).reshape(-1, NUM_POINTS)
        if len(self.keypoints) != len(self.scores):
            raise ValueError(f"{len(self.keypoints)} keypoint sets for {len(self.scores)} score sets")

    @property
    def num_people(self) -> int:
        return len(self.keypoints)

    def normalized(self) -> np.ndarray:
        """Keypoints divided by the canvas size, as the reference drawing code stores them."""
        return self.keypoints / np.array([float(self.width), float(self.height)])

    def rescaled(self, width: int, height: int) -> "FramePose":
        """The same pose on a canvas of another size (coordinates scale with it)."""
        factor = np.array([width / self.width, height / self.height])
        return FramePose(width, height, self.keypoints * factor, self.scores.copy())

    def with_people(self, keypoints: np.ndarray, scores: np.ndarray | None = None) -> "FramePose":
        return FramePose(self.width, self.height, keypoints, self.scores.copy() if scores is None else scores)

    def best_person(self) -> int:
        """Index of the person with the highest mean body score (Moore-AnimateAnyone's choice)."""
        return int(np.mean(self.scores[:, BODY], axis=-1).argmax(axis=0))


def visible_parts(keypoints: np.ndarray, scores: np.ndarray):
    """controlnet_aux's ``format_result`` for one person: lists of (x, y) or None (score < 0.3)."""

    def part(points, point_scores):
        items = [(x, y) if s >= OPENPOSE_VISIBLE else None for (x, y), s in zip(points, point_scores)]
        return None if all(item is None for item in items) else items

    body = part(keypoints[BODY], scores[BODY]) or [None] * 18
    left = part(keypoints[LEFT_HAND], scores[LEFT_HAND])
    right = part(keypoints[RIGHT_HAND], scores[RIGHT_HAND])
    face = part(keypoints[FACE], scores[FACE])
    if face is not None:
        face = face + [body[14], body[15]]
    return body, left, right, face


def empty_frames(frames: list[FramePose]) -> list[int]:
    """Indices of frames without any person."""
    return [i for i, frame in enumerate(frames) if frame.num_people == 0]


def on_canvas(frames: list[FramePose], width: int, height: int) -> list[FramePose]:
    """The frames moved onto a ``width`` x ``height`` canvas (those already on it as they are)."""
    return [frame if (frame.width, frame.height) == (width, height) else frame.rescaled(width, height)
            for frame in frames]
