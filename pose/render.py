"""Pose images in the three conventions the models were trained on / users know.

- ``animateanyone`` (Moore-AnimateAnyone ``DWposeDetector``): the best person only (highest mean body
  score), drawn on a 512-short-side canvas (sides multiples of 64): ellipse limbs of half-width 4
  dimmed to 60% (``canvas * 0.6``), joints radius 4, hands (lines width 2, joints radius 4) and face
  points (radius 3) in full colour; points below 0.3 hidden. Feet are never drawn.
- ``stableanimator`` (``DWPose/skeleton_extraction.py``): every person, drawn on a canvas whose short
  side is 2160 and then resized to the output size, so lines come out thin; limb colours scaled by
  both joint scores, joint/hand/face colours by their score.
- ``controlnet_aux`` (comfyui_controlnet_aux's DWPose Estimator): every person on a canvas of the input
  size, limbs ``int(c * 0.6)``, face padded with both eyes, resized so the short side is ``resolution``.

Colours are RGB as listed in ``keypoints.BODY_COLORS`` (the references draw BGR arrays but hand them
on unswapped, so the saved images carry these values as RGB). All drawing goes through ``drawing``,
which reproduces OpenCV's rasterisation, so images match the reference code pixel for pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..core.errors import InputError
from . import drawing, resize
from .dwpose import detect_size
from .keypoints import BODY, BODY_COLORS, FACE, HAND_EDGES, LEFT_HAND, LIMBS, RIGHT_HAND, FramePose, visible_parts

CONVENTIONS = ("animateanyone", "stableanimator", "controlnet_aux")
EPS = 0.01
STICK_WIDTH = 4
VISIBLE = 0.3
ANIMATEANYONE_RESOLUTION = 512
STABLEANIMATOR_REFERENCE_SIDE = 2160
CONTROLNET_AUX_RESOLUTION = 512


@dataclass(frozen=True)
class Parts:
    body: bool = True
    hands: bool = True
    face: bool = True


def hsv_to_rgb(h: float, s: float = 1.0, v: float = 1.0) -> np.ndarray:
    """``matplotlib.colors.hsv_to_rgb`` for one colour, with the same float operations."""
    i = int(h * 6.0)
    f = (h * 6.0) - i
    p = v * (1.0 - s)
    q = v * (1.0 - s * f)
    t = v * (1.0 - s * (1.0 - f))
    if s == 0:
        return np.array([v, v, v])
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i % 6])


# ``(canvas * 0.6).astype(np.uint8)`` of the references, as a lookup table (same values, no float copy).
DIM_60 = (np.arange(256) * 0.6).astype(np.uint8)
HAND_EDGE_COLORS = [hsv_to_rgb(index / float(len(HAND_EDGES))) for index in range(len(HAND_EDGES))]


def render(pose: FramePose, convention: str, width: int = 0, height: int = 0, parts: Parts = Parts(),
           resolution: int = 0) -> np.ndarray:
    """One pose image (uint8 ``[H,W,3]``). ``width``/``height`` 0 keep the convention's own size."""
    if convention == "animateanyone":
        image = render_animateanyone(pose, parts, resolution or ANIMATEANYONE_RESOLUTION)
    elif convention == "stableanimator":
        out_w, out_h = output_size(pose.width, pose.height, width, height)
        return render_stableanimator(pose.normalized(), pose.scores, out_w, out_h, parts)
    elif convention == "controlnet_aux":
        image = render_controlnet_aux(pose, parts, resolution or CONTROLNET_AUX_RESOLUTION)
    else:
        raise ValueError(f"convention must be one of {CONVENTIONS}, not {convention!r}")
    if width or height:
        out_w, out_h = output_size(pose.width, pose.height, width, height)
        if (out_w, out_h) != (image.shape[1], image.shape[0]):
            shrink = out_w * out_h < image.shape[0] * image.shape[1]
            image = resize.resize(image, out_w, out_h, "area" if shrink else "linear")
    return image


def check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise InputError("convention", f"'{convention}' is unknown", ", ".join(CONVENTIONS))


def render_frames(frames: list[FramePose], convention: str, width: int = 0, height: int = 0, parts: Parts = Parts(),
                  ctx=None) -> np.ndarray:
    """Pose images (uint8 ``[N,H,W,3]``) of a sequence; every frame comes out at the first frame's size."""
    check_convention(convention)
    images = []
    for index, frame in enumerate(frames):
        if ctx is not None:
            ctx.check_interrupt()
        image = render(frame, convention, width, height, parts)
        if images and image.shape != images[0].shape:
            image = render(frame, convention, images[0].shape[1], images[0].shape[0], parts)
        images.append(image)
        if ctx is not None:
            ctx.report(index + 1, len(frames))
    return np.stack(images)


def render_extraction(frames: list[FramePose], input_width: int, input_height: int, convention: str, width: int = 0,
                      height: int = 0, parts: Parts = Parts(), ctx=None) -> np.ndarray:
    """Pose images of DWPose's frames (on its detection canvas) for input frames of ``input_width`` x
    ``input_height``: a requested size with one side 0 follows the input frames' aspect."""
    if width or height:
        width, height = output_size(input_width, input_height, width, height)
    return render_frames(frames, convention, width, height, parts, ctx)


def output_size(width: int, height: int, want_w: int, want_h: int) -> tuple[int, int]:
    """The requested size; a missing side follows the ``width`` x ``height`` aspect; neither: unchanged."""
    if want_w and want_h:
        return want_w, want_h
    if want_w:
        return want_w, max(1, round(height * want_w / width))
    if want_h:
        return max(1, round(width * want_h / height)), want_h
    return width, height


# ----------------------------------------------------------------------------- shared strokes


def _limb_polygon(xs: np.ndarray, ys: np.ndarray, stick_width: int) -> np.ndarray:
    """The ellipse polygon the OpenPose drawing code fills for one limb (``xs``/``ys``: both ends, pixels)."""
    length = ((ys[0] - ys[1]) ** 2 + (xs[0] - xs[1]) ** 2) ** 0.5
    angle = math.degrees(math.atan2(ys[0] - ys[1], xs[0] - xs[1]))
    center = (int(np.mean(xs)), int(np.mean(ys)))
    return drawing.ellipse_polygon(center, (int(length / 2), stick_width), int(angle))


def _hand(canvas: np.ndarray, points_px: list, edge_colors, point_colors) -> None:
    """Hand edges (width 2) and joints (radius 4); ``points_px`` holds int pixel (x, y) or None."""
    for (a, b), color in zip(HAND_EDGES, edge_colors):
        if points_px[a] is None or points_px[b] is None or color is None:
            continue
        (x1, y1), (x2, y2) = points_px[a], points_px[b]
        if x1 > EPS and y1 > EPS and x2 > EPS and y2 > EPS:
            drawing.line(canvas, (x1, y1), (x2, y2), color, thickness=2)
    for point, color in zip(points_px, point_colors):
        if point is not None and point[0] > EPS and point[1] > EPS:
            drawing.fill_circle(canvas, point, 4, color)


# ----------------------------------------------------------------------------- AnimateAnyone


def render_animateanyone(pose: FramePose, parts: Parts = Parts(), resolution: int = ANIMATEANYONE_RESOLUTION) -> np.ndarray:
    """Moore-AnimateAnyone's pose map, at its detection canvas size."""
    canvas_w, canvas_h = detect_size(pose.width, pose.height, resolution)
    if (canvas_w, canvas_h) != (pose.width, pose.height):
        pose = pose.rescaled(canvas_w, canvas_h)
    canvas = np.zeros((canvas_h, canvas_w, 3), np.uint8)
    if pose.num_people == 0:
        return canvas
    candidate = pose.normalized()
    scores = pose.scores
    best = pose.best_person()
    body = candidate[best, BODY]
    subset = np.where(scores[best, BODY] > VISIBLE, np.arange(18), -1)
    hidden = scores < VISIBLE
    candidate = candidate.copy()
    candidate[hidden] = -1
    W, H = float(canvas_w), float(canvas_h)
    if parts.body:
        for (a, b), color in zip(LIMBS, BODY_COLORS):
            if subset[a - 1] == -1 or subset[b - 1] == -1:
                continue
            x = np.array([body[a - 1, 0], body[b - 1, 0]]) * W
            y = np.array([body[a - 1, 1], body[b - 1, 1]]) * H
            drawing.fill_convex_poly(canvas, _limb_polygon(x, y, STICK_WIDTH), color)
        canvas = DIM_60[canvas]
        for joint, color in enumerate(BODY_COLORS):
            if subset[joint] == -1:
                continue
            drawing.fill_circle(canvas, (int(body[joint, 0] * W), int(body[joint, 1] * H)), 4, color)
    if parts.hands:
        edge_colors = [c * 255 for c in HAND_EDGE_COLORS]
        for hand in (LEFT_HAND, RIGHT_HAND):
            points = [(int(x * W), int(y * H)) for x, y in candidate[best, hand]]
            _hand(canvas, points, edge_colors, [(0, 0, 255)] * len(points))
    if parts.face:
        for x, y in candidate[best, FACE]:
            x, y = int(x * W), int(y * H)
            if x > EPS and y > EPS:
                drawing.fill_circle(canvas, (x, y), 3, (255, 255, 255))
    return canvas


# ----------------------------------------------------------------------------- StableAnimator


def render_stableanimator(normalized: np.ndarray, scores: np.ndarray, width: int, height: int,
                          parts: Parts = Parts(), reference_side: int = STABLEANIMATOR_REFERENCE_SIDE) -> np.ndarray:
    """StableAnimator's ``draw_pose`` for every person: coordinates in 0..1 of a ``width`` x ``height`` image."""
    short = min(height, width)
    ratio = (reference_side / short) if short != reference_side else 1
    canvas = np.zeros((int(height * ratio), int(width * ratio), 3), np.uint8)
    H, W = float(canvas.shape[0]), float(canvas.shape[1])
    people = len(normalized)
    body = normalized[:, BODY].reshape(people * 18, 2)
    body_scores = scores[:, BODY]
    subset = np.where(body_scores > VISIBLE, np.arange(people * 18).reshape(people, 18), -1)
    if parts.body:
        for (a, b), color in zip(LIMBS, BODY_COLORS):
            for n in range(people):
                index = subset[n][[a - 1, b - 1]]
                conf = body_scores[n][[a - 1, b - 1]]
                if conf[0] < VISIBLE or conf[1] < VISIBLE:
                    continue
                x = body[index.astype(int), 0] * W
                y = body[index.astype(int), 1] * H
                polygon = _limb_polygon(x, y, STICK_WIDTH)
                drawing.fill_convex_poly(canvas, polygon, [int(c * (conf[0] * conf[1])) for c in color])
        canvas = DIM_60[canvas]
        for joint, color in enumerate(BODY_COLORS):
            for n in range(people):
                index = int(subset[n][joint])
                if index == -1:
                    continue
                x, y = body[index][0:2]
                conf = body_scores[n][joint]
                drawing.fill_circle(canvas, (int(x * W), int(y * H)), 4, [int(c * conf) for c in color])
    if parts.hands:
        hands = np.vstack([normalized[:, LEFT_HAND], normalized[:, RIGHT_HAND]])
        hand_scores = np.vstack([scores[:, LEFT_HAND], scores[:, RIGHT_HAND]])
        for peaks, peak_scores in zip(hands, hand_scores):
            points = [(int(x * W), int(y * H)) for x, y in peaks]
            edge_colors = [HAND_EDGE_COLORS[i] * int(peak_scores[a] * peak_scores[b] * 255)
                           for i, (a, b) in enumerate(HAND_EDGES)]
            joint_colors = [(0, 0, int(s * 255)) for s in peak_scores]
            _hand(canvas, points, edge_colors, joint_colors)
    if parts.face:
        for landmarks, landmark_scores in zip(normalized[:, FACE], scores[:, FACE]):
            for (x, y), score in zip(landmarks, landmark_scores):
                x, y = int(x * W), int(y * H)
                conf = int(score * 255)
                if x > EPS and y > EPS:
                    drawing.fill_circle(canvas, (x, y), 3, (conf, conf, conf))
    return resize.resize(canvas, width, height, "linear")


# ----------------------------------------------------------------------------- comfyui_controlnet_aux


def _scale_of(points, canvas: np.ndarray) -> tuple[float, float]:
    """controlnet_aux draws coordinates in 0..1 as fractions of the canvas, anything else as pixels."""
    present = [p for p in points if p is not None]
    if present and all(0 <= abs(x) <= 1 and 0 <= abs(y) <= 1 for x, y in present):
        return float(canvas.shape[1]), float(canvas.shape[0])
    return 1.0, 1.0


def render_controlnet_aux(pose: FramePose, parts: Parts = Parts(), resolution: int = CONTROLNET_AUX_RESOLUTION,
                          xinsr_stick_scaling: bool = False) -> np.ndarray:
    """comfyui_controlnet_aux's DWPose Estimator image: short side ``resolution``."""
    canvas = np.zeros((pose.height, pose.width, 3), np.uint8)
    max_side = max(pose.width, pose.height)
    stick_scale = (1 if max_side < 500 else min(2 + (max_side // 1000), 7)) if xinsr_stick_scaling else 1
    for keypoints, scores in zip(pose.keypoints, pose.scores):
        body, left, right, face = visible_parts(keypoints, scores)
        if parts.body:
            _controlnet_aux_body(canvas, body, STICK_WIDTH * stick_scale)
        if parts.hands:
            for hand in (left, right):
                if hand:
                    W, H = _scale_of(hand, canvas)
                    points = [None if p is None else (int(p[0] * W), int(p[1] * H)) for p in hand]
                    _hand(canvas, points, [c * 255 for c in HAND_EDGE_COLORS], [(0, 0, 255)] * len(points))
        if parts.face and face:
            W, H = _scale_of(face, canvas)
            for point in face:
                if point is None:
                    continue
                x, y = int(point[0] * W), int(point[1] * H)
                if x > EPS and y > EPS:
                    drawing.fill_circle(canvas, (x, y), 3, (255, 255, 255))
    k = float(resolution) / float(min(pose.height, pose.width))
    out_h, out_w = int(np.round(float(pose.height) * k)), int(np.round(float(pose.width) * k))
    return resize.resize(canvas, out_w, out_h, "cubic" if k > 1 else "area")


def _controlnet_aux_body(canvas: np.ndarray, body, stick_width: int) -> None:
    W, H = _scale_of(body, canvas)
    for (a, b), color in zip(LIMBS, BODY_COLORS):
        first, second = body[a - 1], body[b - 1]
        if first is None or second is None:
            continue
        x = np.array([first[0], second[0]]) * W
        y = np.array([first[1], second[1]]) * H
        drawing.fill_convex_poly(canvas, _limb_polygon(x, y, stick_width), [int(float(c) * 0.6) for c in color])
    for point, color in zip(body, BODY_COLORS):
        if point is None:
            continue
        drawing.fill_circle(canvas, (int(point[0] * W), int(point[1] * H)), 4, color)
