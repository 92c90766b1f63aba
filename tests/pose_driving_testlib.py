"""A synthetic dancer (OpenPose-18 body joints) for the pose-driven clipart tests."""

from __future__ import annotations

import math

import numpy as np

from comfyui_animate_suite.pose.keypoints import NUM_POINTS, FramePose

# A person facing the viewer on a 400x600 picture (OpenPose-18 order): their right side is on the left.
STANDING = np.array([(200, 80), (200, 130), (165, 130), (155, 190), (150, 250), (235, 130), (245, 190), (250, 250),
                     (180, 260), (178, 350), (176, 440), (220, 260), (222, 350), (224, 440), (192, 72), (208, 72),
                     (185, 78), (215, 78)], np.float64)


def _turn(points, centre, angle):
    c, s = math.cos(angle), math.sin(angle)
    d = points - centre
    return centre + np.stack([c * d[..., 0] - s * d[..., 1], s * d[..., 0] + c * d[..., 1]], -1)


def dancer(raise_arm: float, kick: float = 0.0, shift=(0.0, 0.0)) -> np.ndarray:
    """The standing person with the left arm raised (elbow bent as much again) and the right leg kicked."""
    joints = STANDING.copy()
    joints[[6, 7]] = _turn(joints[[6, 7]], joints[5], -raise_arm)
    joints[7] = _turn(joints[7], joints[6], -raise_arm)
    joints[[9, 10]] = _turn(joints[[9, 10]], joints[8], kick)
    return joints + np.asarray(shift)


def pose_frame(joints, width=400, height=600, score=0.9) -> FramePose:
    if joints is None:
        return FramePose(width, height)
    keypoints = np.zeros((1, NUM_POINTS, 2))
    scores = np.zeros((1, NUM_POINTS))
    keypoints[0, :18] = joints
    scores[0, :18] = score
    return FramePose(width, height, keypoints, scores)


def dance(count=24):
    return [pose_frame(dancer(1.2 * math.sin(math.pi * f / count), 0.4 * math.sin(2 * math.pi * f / count),
                              (12 * math.sin(2 * math.pi * f / count), 0))) for f in range(count)]
