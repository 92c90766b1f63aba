"""The OpenCV-free resize, warp and drawing routines on cases whose answer is known by hand.

Bit-exactness against OpenCV itself is shown by the parity fixture (tests/test_pose_parity.py),
whose references were made with OpenCV 5.
"""

from __future__ import annotations

import numpy as np
import pytest

from comfyui_animate_suite.pose import drawing, resize, warp

rng = np.random.default_rng(3)


@pytest.mark.parametrize("interpolation", resize.INTERPOLATIONS)
def test_resize_keeps_size_and_constant_images(interpolation):
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    np.testing.assert_array_equal(resize.resize(image, 30, 20, interpolation), image)
    flat = np.full((13, 17, 3), 77, np.uint8)
    assert (resize.resize(flat, 40, 9, interpolation) == 77).all()


def test_halving_averages_two_by_two_blocks():
    image = rng.integers(0, 256, (8, 12, 3), dtype=np.uint8)
    blocks = image.astype(int).reshape(4, 2, 6, 2, 3).sum((1, 3))
    expected = ((blocks + 2) >> 2).astype(np.uint8)  # OpenCV rounds the 2x2 mean half up
    np.testing.assert_array_equal(resize.resize(image, 6, 4, "linear"), expected)
    np.testing.assert_array_equal(resize.resize(image, 6, 4, "area"), expected)


def test_resize_batches_and_rejects_bad_input():
    batch = rng.integers(0, 256, (3, 10, 10, 3), dtype=np.uint8)
    out = resize.resize(batch, 7, 5, "lanczos4")
    assert out.shape == (3, 5, 7, 3)
    np.testing.assert_array_equal(out[1], resize.resize(batch[1], 7, 5, "lanczos4"))
    with pytest.raises(ValueError, match="interpolation"):
        resize.resize(batch, 7, 5, "nearest")
    with pytest.raises(ValueError, match="uint8"):
        resize.resize(batch.astype(np.float32), 7, 5)


def test_warp_identity_and_integer_shift():
    image = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
    np.testing.assert_array_equal(warp.warp_affine(image, np.array([[1.0, 0, 0], [0, 1.0, 0]]), 12, 10), image)
    shifted = warp.warp_affine(image, np.array([[1.0, 0, 3], [0, 1.0, -2]]), 12, 10)
    np.testing.assert_array_equal(shifted[:8, 3:], image[2:, :9])
    assert not shifted[:, :3].any() and not shifted[8:].any()  # outside the source: 0


def test_affine_from_points_solves_the_mapping():
    src = np.array([[10, 20], [30, 20], [10, 60]], np.float32)
    dst = src * 2 + [5, -3]
    np.testing.assert_allclose(warp.affine_from_points(src, dst), [[2, 0, 5], [0, 2, -3]], atol=1e-12)


def test_drawing_primitives():
    canvas = np.zeros((20, 20, 3), np.uint8)
    drawing.fill_circle(canvas, (5, 5), 0, (255, 0, 0))
    assert canvas[..., 0].sum() == 255 and canvas[5, 5, 0] == 255
    canvas[:] = 0
    drawing.line(canvas, (2, 10), (12, 10), (0, 255, 0))
    assert set(zip(*np.nonzero(canvas[..., 1]))) == {(10, x) for x in range(2, 13)}
    canvas[:] = 0
    drawing.fill_convex_poly(canvas, [(3, 4), (9, 4), (9, 8), (3, 8)], (0, 0, 255))
    assert canvas[4:9, 3:10, 2].all() and canvas[..., 2].astype(bool).sum() == 7 * 5
    canvas[:] = 0
    drawing.line(canvas, (-30, -30), (-10, -40), (9, 9, 9), thickness=2)  # wholly outside: nothing
    assert not canvas.any()


def test_colours_round_half_to_even_and_saturate():
    assert drawing.color_bytes([76.5, 77.5, -3.0]).tolist() == [76, 78, 0]
    assert drawing.color_bytes([300, 255.4, 0.5]).tolist() == [255, 255, 0]


def test_ellipse_polygon_of_a_horizontal_limb():
    points = drawing.ellipse_polygon((50, 40), (10, 4), 0)
    assert points[:, 0].min() == 40 and points[:, 0].max() == 60
    assert points[:, 1].min() == 36 and points[:, 1].max() == 44
    assert tuple(points[0]) == (60, 40)
