"""``POSE_KEYPOINT`` / OpenPose JSON: the format comfyui_controlnet_aux and other ComfyUI packs exchange.

A ``POSE_KEYPOINT`` value is a list with one dict per frame::

    {"people": [{"pose_keypoints_2d": [x, y, c] * 18,
                 "face_keypoints_2d": [x, y, c] * 70 | None,
                 "hand_left_keypoints_2d": [x, y, c] * 21 | None,
                 "hand_right_keypoints_2d": [x, y, c] * 21 | None,
                 "animate_suite_wholebody": [x, y, score] * 134}],   # ours, see below
     "canvas_height": H, "canvas_width": W}

Coordinates are pixels of the image the pose was detected on (``canvas_width`` x ``canvas_height``).
As controlnet_aux writes it, ``c`` is 1.0 for a point whose score is at least 0.3 and ``[0, 0, 0]``
otherwise (other packs treat ``c < 1`` as missing), the face has the two eyes appended (70 points)
and parts that were not requested are ``None``. The real confidences would be lost that way, so each
person also carries ``animate_suite_wholebody``: all 134 points of ``keypoints.FramePose`` with their
raw scores. Other packs ignore the extra key; our nodes read it back when present and otherwise
rebuild the pose from the OpenPose fields (score = ``c``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..core.errors import InputError
from .keypoints import BODY, FACE, LEFT_HAND, NUM_POINTS, RIGHT_HAND, FramePose, visible_parts
from .render import Parts

WHOLEBODY_KEY = "animate_suite_wholebody"
PART_KEYS = {
    "pose_keypoints_2d": (BODY, 18),
    "face_keypoints_2d": (FACE, 68),
    "hand_left_keypoints_2d": (LEFT_HAND, 21),
    "hand_right_keypoints_2d": (RIGHT_HAND, 21),
}


def _compress(points) -> list[float] | None:
    if not points:
        return None
    values = []
    for point in points:
        values += [float(point[0]), float(point[1]), 1.0] if point is not None else [0.0, 0.0, 0.0]
    return values


def frame_to_dict(frame: FramePose, parts: Parts = Parts()) -> dict:
    people = []
    for keypoints, scores in zip(frame.keypoints, frame.scores):
        body, left, right, face = visible_parts(keypoints, scores)
        people.append({
            "pose_keypoints_2d": _compress(body if parts.body else [None] * 18),
            "face_keypoints_2d": _compress(face) if parts.face else None,
            "hand_left_keypoints_2d": _compress(left) if parts.hands else None,
            "hand_right_keypoints_2d": _compress(right) if parts.hands else None,
            WHOLEBODY_KEY: np.concatenate([keypoints, scores[:, None]], axis=1).ravel().tolist(),
        })
    return {"people": people, "canvas_height": int(frame.height), "canvas_width": int(frame.width)}


MAX_CANVAS = 16384
MAX_COORDINATE = 1e6


def to_pose_keypoint(frames: list[FramePose], parts: Parts = Parts()) -> list[dict]:
    """Frames -> a ``POSE_KEYPOINT`` list (one dict per frame)."""
    return [frame_to_dict(frame, parts) for frame in frames]


def from_pose_keypoint(value, input_name: str = "pose_keypoint") -> list[FramePose]:
    """A ``POSE_KEYPOINT`` list (ours or another pack's; a single frame dict works too) -> frames."""
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise InputError(input_name, f"got {type(value).__name__}", "a non-empty POSE_KEYPOINT list of frame dicts")
    return [_frame_from_dict(item, input_name, i) for i, item in enumerate(value)]


def _frame_from_dict(item, input_name: str, index: int) -> FramePose:
    where = f"frame {index}"
    if not isinstance(item, dict) or "people" not in item:
        raise InputError(input_name, f"{where} is not an OpenPose frame", "a dict with 'people', 'canvas_width', 'canvas_height'")
    try:
        width, height = int(item["canvas_width"]), int(item["canvas_height"])
    except (KeyError, TypeError, ValueError, OverflowError):
        raise InputError(input_name, f"{where} has no usable canvas_width/canvas_height", "positive integers") from None
    if not (0 < width <= MAX_CANVAS and 0 < height <= MAX_CANVAS):
        raise InputError(input_name, f"{where} has a {width}x{height} canvas", f"1 to {MAX_CANVAS} pixels per side")
    keypoints, scores = [], []
    for person in item.get("people") or []:
        points, point_scores = _person_arrays(person, input_name, where)
        keypoints.append(points)
        scores.append(point_scores)
    frame = FramePose(width, height, np.array(keypoints).reshape(-1, NUM_POINTS, 2), np.array(scores).reshape(-1, NUM_POINTS))
    if not (np.all(np.abs(frame.keypoints) <= MAX_COORDINATE) and np.all(np.isfinite(frame.scores))):
        raise InputError(input_name, f"{where} has keypoints that are not finite or beyond {MAX_COORDINATE:g}",
                         "coordinates on (or near) the canvas")
    return _denormalize(frame)


def _person_arrays(person, input_name: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(person, dict):
        raise InputError(input_name, f"{where} has a person that is not a dict", "OpenPose person dicts")
    wholebody = person.get(WHOLEBODY_KEY)
    if isinstance(wholebody, list) and len(wholebody) == NUM_POINTS * 3:
        try:
            values = np.asarray(wholebody, np.float64).reshape(NUM_POINTS, 3)
        except (TypeError, ValueError):
            raise InputError(input_name, f"{where}: '{WHOLEBODY_KEY}' is not a flat list of numbers", f"{NUM_POINTS * 3} numbers") from None
        return values[:, :2], values[:, 2]
    points = np.zeros((NUM_POINTS, 2))
    scores = np.zeros(NUM_POINTS)
    for key, (target, count) in PART_KEYS.items():
        values = person.get(key)
        if not values:
            continue
        try:
            values = np.asarray(values, np.float64).reshape(-1, 3)
        except (TypeError, ValueError):
            raise InputError(input_name, f"{where}: '{key}' is not a flat [x, y, c, ...] list", "multiples of 3 numbers") from None
        if len(values) < count:
            raise InputError(input_name, f"{where}: '{key}' has {len(values)} points", f"at least {count}")
        points[target] = values[:count, :2]
        scores[target] = values[:count, 2]
    return points, scores


def _denormalize(frame: FramePose) -> FramePose:
    """Some packs store 0..1 coordinates; those are scaled to the canvas."""
    visible = frame.scores > 0
    if visible.any() and np.all(np.abs(frame.keypoints[visible]) <= 1.0):
        return FramePose(frame.width, frame.height, frame.keypoints * [frame.width, frame.height], frame.scores)
    return frame


def save(value: list[dict], path: Path) -> None:
    Path(path).write_text(json.dumps(value, indent=1))


def load(path: Path, input_name: str = "file") -> list[dict]:
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(input_name, f"'{Path(path).name}' could not be read as JSON ({error})", "an OpenPose JSON file") from None
    except RecursionError:
        raise InputError(input_name, f"'{Path(path).name}' is nested too deeply", "an OpenPose JSON file") from None
    if isinstance(value, dict):
        value = [value]
    from_pose_keypoint(value, input_name)  # validate now, with the file's name in the message
    return value
