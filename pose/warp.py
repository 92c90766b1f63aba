"""Affine warps that reproduce OpenCV 5's ``cv2.getAffineTransform`` and ``cv2.warpAffine``
(``INTER_LINEAR``, constant 0 border) on uint8 images, without OpenCV.

OpenCV 5 inverts the matrix in double precision, casts it to float32 and interpolates in float32
with fused multiply-adds: ``top = fma(ax, p01 - p00, p00)``, ``bottom = fma(ax, p11 - p10, p10)``,
``value = fma(ay, bottom - top, top)``, rounded half to even. The float64 products below are exact,
so rounding each sum once to float32 reproduces every fma exactly.
"""

from __future__ import annotations

import numpy as np

F32 = np.float32


def affine_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 matrix mapping three ``src`` points onto ``dst`` (``cv2.getAffineTransform``).

    Solves OpenCV's 6x6 system with the same partial-pivoting LU, so the doubles agree bit for bit.
    """
    src = np.asarray(src, np.float32).astype(np.float64)
    dst = np.asarray(dst, np.float32).astype(np.float64)
    a = np.zeros((6, 6))
    b = np.zeros(6)
    for i in range(3):
        a[2 * i, 0:3] = (src[i, 0], src[i, 1], 1.0)
        a[2 * i + 1, 3:6] = (src[i, 0], src[i, 1], 1.0)
        b[2 * i], b[2 * i + 1] = dst[i, 0], dst[i, 1]
    return _lu_solve(a, b).reshape(2, 3)


def _lu_solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.copy(), b.copy()
    m = len(b)
    for i in range(m):
        pivot = i + int(np.argmax(np.abs(a[i:, i])))
        if abs(a[pivot, i]) < np.finfo(np.float64).eps * 10:
            raise ValueError("the three points are collinear")
        if pivot != i:
            a[[i, pivot], i:] = a[[pivot, i], i:]
            b[[i, pivot]] = b[[pivot, i]]
        d = -1.0 / a[i, i]
        for j in range(i + 1, m):
            alpha = a[j, i] * d
            for k in range(i + 1, m):
                a[j, k] += alpha * a[i, k]
            b[j] += alpha * b[i]
    for i in range(m - 1, -1, -1):
        s = b[i]
        for k in range(i + 1, m):
            s -= a[i, k] * b[k]
        b[i] = s / a[i, i]
    return b


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """``cv2.invertAffineTransform`` in double precision."""
    m = np.asarray(matrix, np.float64)
    det = m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]
    det = 1.0 / det if det != 0 else 0.0
    a11, a22 = m[1, 1] * det, m[0, 0] * det
    a12, a21 = -m[0, 1] * det, -m[1, 0] * det
    b1 = -a11 * m[0, 2] - a12 * m[1, 2]
    b2 = -a21 * m[0, 2] - a22 * m[1, 2]
    return np.array([[a11, a12, b1], [a21, a22, b2]])


def warp_affine(image: np.ndarray, matrix: np.ndarray, width: int, height: int) -> np.ndarray:
    """``cv2.warpAffine(image, matrix, (width, height), flags=INTER_LINEAR)``, border 0.

    ``matrix`` maps source to destination pixels (OpenCV's default direction).
    """
    inverse = invert_affine(matrix).astype(F32).astype(np.float64)
    xs = np.arange(width, dtype=np.float64)
    ys = np.arange(height, dtype=np.float64)
    # Per row: float(y*M1 + M2) in float32 arithmetic (two roundings), then fma(M0, x, that).
    row_x = ((ys * inverse[0, 1]).astype(F32).astype(np.float64) + inverse[0, 2]).astype(F32).astype(np.float64)
    row_y = ((ys * inverse[1, 1]).astype(F32).astype(np.float64) + inverse[1, 2]).astype(F32).astype(np.float64)
    if inverse[0, 1] == 0 and inverse[1, 0] == 0:
        # Axis-aligned (every DWPose crop): x positions are the same on every row, y on every column.
        sx = (inverse[0, 0] * xs + row_x[0]).astype(F32)[None, :]
        sy = row_y.astype(F32)[:, None]
    else:
        sx = (inverse[0, 0] * xs[None, :] + row_x[:, None]).astype(F32)
        sy = (inverse[1, 0] * xs[None, :] + row_y[:, None]).astype(F32)
    ix, iy = np.floor(sx), np.floor(sy)
    ax = (sx - ix).astype(np.float64)[..., None]
    ay = (sy - iy).astype(np.float64)[..., None]
    taps = _taps(image, iy.astype(np.int64), ix.astype(np.int64))
    # the top and bottom horizontal blends at once: fma(ax, right - left, left), rounded to float32
    blend = (ax * (taps[:, 1] - taps[:, 0]) + taps[:, 0]).astype(F32).astype(np.float64)
    top, bottom = blend[0], blend[1]
    span = (bottom - top).astype(F32).astype(np.float64)
    value = (ay * span + top).astype(F32)
    return np.rint(value).clip(0, 255).astype(np.uint8)


def _taps(image: np.ndarray, iy: np.ndarray, ix: np.ndarray) -> np.ndarray:
    """The 2x2 neighbours of every output pixel as float64 ``[row, column, h, w, C]``; pixels outside
    the image read 0. ``iy``/``ix`` are ``[h,1]``/``[1,w]`` (axis-aligned) or both ``[h,w]``."""
    src_h, src_w, _ = image.shape
    rows = np.stack([iy, iy + 1])
    cols = np.stack([ix, ix + 1])
    row_ok, col_ok = (rows >= 0) & (rows < src_h), (cols >= 0) & (cols < src_w)
    rows, cols = rows.clip(0, src_h - 1), cols.clip(0, src_w - 1)
    if iy.shape[1] == 1 and ix.shape[0] == 1:  # axis-aligned: a row index per y, a column index per x
        rows, cols = rows[:, :, 0], cols[:, 0]
        row_ok, col_ok = row_ok[:, :, 0], col_ok[:, 0]
        picked = image[rows[:, None, :, None], cols[None, :, None, :]]  # [row, column, h, w, C]
        inside = row_ok[:, None, :, None] & col_ok[None, :, None, :]
    else:
        picked = image[rows[:, None], cols[None, :]]
        inside = row_ok[:, None] & col_ok[None, :]
    if not inside.all():
        picked = picked * inside[..., None]
    return picked.astype(np.float64)
