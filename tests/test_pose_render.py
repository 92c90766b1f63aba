"""Pose images: colours, sizes and part toggles of the three conventions, from a hand-made pose.

Expected colours come from the conventions as documented (shared/docs, section 3.4): limb colour i
of the OpenPose palette, dimmed to 60% (AnimateAnyone: ``canvas * 0.6``; controlnet_aux:
``int(c * 0.6)``; StableAnimator: ``int(c * s_a * s_b)`` then 60%), joints full (StableAnimator:
``int(c * s)``), hand joints blue, face points white / grey by score.
"""

from __future__ import annotations

import numpy as np
import pytest

from comfyui_animate_suite.core.errors import InputError
from comfyui_animate_suite.pose import render
from comfyui_animate_suite.pose.keypoints import FramePose

PALETTE = [(255, 0, 0), (255, 85, 0), (255, 170, 0)]
NECK, R_SHOULDER, L_SHOULDER = (320.0, 120.0), (220.0, 120.0), (420.0, 120.0)
HAND_0, HAND_1 = (300.0, 300.0), (300.0, 360.0)  # left-hand points 0 and 1 (index 92, 93)
FACE_POINT = (330.0, 60.0)  # face point 0 (index 24)


def _pose(scores=(0.9, 0.8, 0.7), width=640, height=480) -> FramePose:
    kp = np.zeros((1, 134, 2))
    sc = np.zeros((1, 134))
    for index, point, score in ((1, NECK, scores[0]), (2, R_SHOULDER, scores[1]), (5, L_SHOULDER, scores[2]),
                                (92, HAND_0, 0.9), (93, HAND_1, 0.9), (24, FACE_POINT, 0.8)):
        kp[0, index] = point
        sc[0, index] = score
    return FramePose(width, height, kp, sc)


def _at(image, point, scale=(1.0, 1.0)):
    return tuple(int(v) for v in image[int(point[1] * scale[1]), int(point[0] * scale[0])])


def _mid(a, b):
    return ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)


def test_animateanyone_colours_and_canvas():
    image = render.render(_pose(), "animateanyone")
    assert image.shape == (512, 704, 3)  # 480 -> 512 short side, 682.7 -> 704 (multiple of 64)
    s = (704 / 640, 512 / 480)
    assert _at(image, _mid(NECK, R_SHOULDER), s) == tuple(int(c * 0.6) for c in PALETTE[0])
    assert _at(image, _mid(NECK, L_SHOULDER), s) == tuple(int(c * 0.6) for c in PALETTE[1])
    assert _at(image, R_SHOULDER, s) == PALETTE[2]  # joint 2 (R shoulder), full colour
    assert _at(image, HAND_0, s) == (0, 0, 255)
    assert _at(image, _mid(HAND_0, HAND_1), s) == (255, 0, 0)  # first hand edge: hsv(0) * 255
    assert _at(image, FACE_POINT, s) == (255, 255, 255)


def test_stableanimator_colours_scale_with_confidence():
    scores = (0.9, 0.8, 0.7)
    image = render.render(_pose(scores), "stableanimator")
    assert image.shape == (480, 640, 3)
    limb = tuple(int(int(c * scores[0] * scores[1]) * 0.6) for c in PALETTE[0])
    assert _at(image, _mid(NECK, R_SHOULDER)) == limb
    assert _at(image, R_SHOULDER) == tuple(int(c * scores[1]) for c in PALETTE[2])
    assert _at(image, FACE_POINT) == (int(0.8 * 255),) * 3


def test_stableanimator_hides_limbs_below_0_3():
    image = render.render(_pose((0.9, 0.25, 0.7)), "stableanimator")
    assert _at(image, _mid(NECK, R_SHOULDER)) == (0, 0, 0)
    assert _at(image, _mid(NECK, L_SHOULDER)) != (0, 0, 0)


def test_controlnet_aux_colours_and_short_side():
    image = render.render(_pose(), "controlnet_aux")
    assert image.shape == (512, 683, 3)  # short side 512, 640 * 512 / 480 rounded
    s = (683 / 640, 512 / 480)
    # away from the limb edges the up-scaled colours are exact
    assert _at(image, _mid(NECK, R_SHOULDER), s) == tuple(int(c * 0.6) for c in PALETTE[0])
    assert _at(image, R_SHOULDER, s) == PALETTE[2]


@pytest.mark.parametrize("convention", render.CONVENTIONS)
def test_part_toggles(convention):
    full = render.render(_pose(), convention)
    no_body = render.render(_pose(), convention, parts=render.Parts(body=False))
    no_hands = render.render(_pose(), convention, parts=render.Parts(hands=False))
    no_face = render.render(_pose(), convention, parts=render.Parts(face=False))
    nothing = render.render(_pose(), convention, parts=render.Parts(False, False, False))
    assert not nothing.any()
    for partial in (no_body, no_hands, no_face):
        assert partial.shape == full.shape and (partial != full).any()
    assert (no_body.astype(int).sum() < full.astype(int).sum()) and no_body.any()


@pytest.mark.parametrize("convention", render.CONVENTIONS)
def test_any_output_size(convention):
    assert render.render(_pose(), convention, 300, 200).shape == (200, 300, 3)
    assert render.render(_pose(), convention, 320, 0).shape == (240, 320, 3)


def test_empty_pose_draws_a_black_image():
    empty = FramePose(640, 480)
    for convention in render.CONVENTIONS:
        image = render.render(empty, convention)
        assert image.ndim == 3 and not image.any()


def test_hand_edge_colours_follow_matplotlib_hsv():
    # hsv_to_rgb(1/20) computes t = 1 - (1 - 0.3) = 0.30000000000000004, so 255 * t rounds up to 77
    assert tuple(render.HAND_EDGE_COLORS[1] * 255) == pytest.approx((255.0, 76.50000000000001, 0.0))
    assert len(render.HAND_EDGE_COLORS) == 20


def test_a_sequence_comes_out_at_the_first_frames_size():
    frames = [_pose(), _pose(width=320, height=480), FramePose(640, 480)]
    images = render.render_frames(frames, "controlnet_aux")
    assert images.shape == (3,) + render.render(frames[0], "controlnet_aux").shape
    assert np.array_equal(images[0], render.render(frames[0], "controlnet_aux")) and not images[2].any()
    sized = render.render_extraction(frames, 640, 480, "stableanimator", 320, 0)
    assert sized.shape == (3, 240, 320, 3)
    with pytest.raises(InputError, match="convention"):
        render.render_frames(frames, "openpose")
