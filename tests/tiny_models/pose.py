"""Small ONNX graphs with the DWPose and insightface models' inputs, outputs and value layouts.

They compute their outputs from the picture, so a test can predict them without running the
pack's code:

- ``yolox_l.onnx`` (``images`` [N,3,640,640] raw 0..255 -> ``output`` [N,8400,85] raw YOLOX head):
  a pixel is "person" when channel 0 > 200. The left half (x < 320) and the right half of the
  letterboxed image each give one box, the inclusive extent of their person pixels
  ``(x1, y1, x2, y2)``; every anchor on that half predicts it (``xy = (d + grid) * stride``,
  ``wh = exp(.) * stride``) with objectness 0.9 (left) / 0.8 (right) and class 0, so NMS must merge
  the 4200 copies into one box per half.
- ``dw-ll_ucoco_384.onnx`` (``input`` [N,3,384,288] ImageNet-normalised -> ``simcc_x`` [N,133,576],
  ``simcc_y`` [N,133,768]): un-normalises channel 0, takes the extent of pixels > 200 in the crop
  and puts keypoint k at ``x1 + U[k] (x2 - x1)``, ``y1 + V[k] (y2 - y1)`` with score ``CONF[k]``
  (0 for a crop without person pixels), as Gaussian SimCC curves (sigma 2 bins, 2 bins per pixel).
- ``det_10g.onnx`` / ``w600k_r50.onnx``: an SCRFD head and an ArcFace net, see ``build_face_pack``.

``U``, ``V`` and ``CONF`` are public so tests compute the expected keypoints themselves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13
THRESHOLD = 200.0
NUM_KEYPOINTS = 133
_rng = np.random.default_rng(1234)
U = _rng.uniform(0.1, 0.9, NUM_KEYPOINTS).astype(np.float32)
V = _rng.uniform(0.1, 0.9, NUM_KEYPOINTS).astype(np.float32)
CONF = _rng.uniform(0.55, 0.95, NUM_KEYPOINTS).astype(np.float32)
CONF[[3, 4]] = 0.2  # COCO ears: below the 0.3 every reference uses to hide a point
CONF[100] = -0.5  # a left-hand point with a negative score: its location becomes -1 before mapping
LEFT_OBJ, RIGHT_OBJ = 0.9, 0.8
STRIDES = (8, 16, 32)


class _Graph:
    """A tiny helper to write ONNX graphs node by node."""

    def __init__(self):
        self.nodes, self.inits, self.count = [], [], 0

    def const(self, value, dtype=np.float32) -> str:
        self.count += 1
        name = f"c{self.count}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def op(self, kind: str, *inputs: str, **attrs) -> str:
        self.count += 1
        name = f"t{self.count}"
        self.nodes.append(helper.make_node(kind, list(inputs), [name], **attrs))
        return name

    def output(self, kind: str, inputs, name: str, **attrs) -> None:
        self.nodes.append(helper.make_node(kind, list(inputs), [name], **attrs))

    def extent(self, mask: str, size_x: int, size_y: int, column_mask: str | None = None):
        """(x1, y1, x2, y2, has) of the 1-pixels of ``mask`` [N,1,H,W], each [N,1]."""
        if column_mask is not None:
            mask = self.op("Mul", mask, column_mask)
        cols = self.op("ReduceMax", mask, axes=[1, 2], keepdims=0)
        rows = self.op("ReduceMax", mask, axes=[1, 3], keepdims=0)
        xs = self.const(np.arange(size_x))
        ys = self.const(np.arange(size_y))
        x2 = self.op("ReduceMax", self.op("Mul", cols, xs), axes=[1], keepdims=1)
        y2 = self.op("ReduceMax", self.op("Mul", rows, ys), axes=[1], keepdims=1)
        x1 = self.op("Sub", self.const(size_x - 1), self.op("ReduceMax", self.op("Mul", cols, self.const(size_x - 1 - np.arange(size_x))), axes=[1], keepdims=1))
        y1 = self.op("Sub", self.const(size_y - 1), self.op("ReduceMax", self.op("Mul", rows, self.const(size_y - 1 - np.arange(size_y))), axes=[1], keepdims=1))
        has = self.op("ReduceMax", cols, axes=[1], keepdims=1)
        return x1, y1, x2, y2, has

    def save(self, inputs, outputs, path: Path) -> Path:
        graph = helper.make_graph(self.nodes, "tiny", inputs, outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(path))
        return path


def _anchors(size: int = 640):
    gx, gy, stride = [], [], []
    for s in STRIDES:
        yv, xv = np.meshgrid(np.arange(size // s), np.arange(size // s), indexing="ij")
        gx.append(xv.ravel())
        gy.append(yv.ravel())
        stride.append(np.full(xv.size, s))
    return np.concatenate(gx), np.concatenate(gy), np.concatenate(stride)


def build_detector(path: Path, batch: int | str = "batch") -> Path:
    """``yolox_l.onnx`` stand-in; ``batch=1`` gives the released file's fixed batch size."""
    g = _Graph()
    channel0 = g.op("Slice", "images", g.const([0], np.int64), g.const([1], np.int64), g.const([1], np.int64))
    mask = g.op("Cast", g.op("Greater", channel0, g.const(THRESHOLD)), to=TensorProto.FLOAT)
    left_cols = g.const((np.arange(640) < 320).astype(np.float32))
    right_cols = g.const((np.arange(640) >= 320).astype(np.float32))
    boxes = [g.extent(mask, 640, 640, left_cols), g.extent(mask, 640, 640, right_cols)]
    gx, gy, stride = _anchors()
    on_left = ((gx + 0.5) * stride < 320).astype(np.float32)
    pick_left, pick_right = g.const(on_left[None]), g.const(1 - on_left[None])

    def per_anchor(left_value: str, right_value: str) -> str:  # [N,1] each -> [N,8400]
        return g.op("Add", g.op("Mul", left_value, pick_left), g.op("Mul", right_value, pick_right))

    x1, y1, x2, y2, has = (per_anchor(a, b) for a, b in zip(*boxes))
    s, gxc, gyc = g.const(stride[None]), g.const(gx[None]), g.const(gy[None])
    half = g.const(0.5)
    cx = g.op("Mul", g.op("Add", x1, x2), half)
    cy = g.op("Mul", g.op("Add", y1, y2), half)
    one = g.const(1.0)
    w = g.op("Max", g.op("Sub", x2, x1), one)
    h = g.op("Max", g.op("Sub", y2, y1), one)
    fields = [g.op("Sub", g.op("Div", cx, s), gxc), g.op("Sub", g.op("Div", cy, s), gyc),
              g.op("Log", g.op("Div", w, s)), g.op("Log", g.op("Div", h, s))]
    obj = g.op("Mul", has, per_anchor(g.const([[LEFT_OBJ]]), g.const([[RIGHT_OBJ]])))
    fields.append(obj)
    columns = [g.op("Unsqueeze", f, g.const([2], np.int64)) for f in fields]
    zero_like = g.op("Mul", columns[0], g.const(0.0))
    columns.append(g.op("Add", zero_like, one))  # class 0 (person)
    columns.append(g.op("Mul", zero_like, g.const(np.zeros((1, 1, 79)))))
    g.output("Concat", columns, "output", axis=2)
    inputs = [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, 640, 640])]
    outputs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, 8400, 85])]
    return g.save(inputs, outputs, path)


def build_pose(path: Path, batch: int | str = "batch") -> Path:
    """``dw-ll_ucoco_384.onnx`` stand-in (input 288x384, SimCC split ratio 2)."""
    g = _Graph()
    channel0 = g.op("Slice", "input", g.const([0], np.int64), g.const([1], np.int64), g.const([1], np.int64))
    pixels = g.op("Add", g.op("Mul", channel0, g.const(58.395)), g.const(123.675))
    mask = g.op("Cast", g.op("Greater", pixels, g.const(THRESHOLD)), to=TensorProto.FLOAT)
    x1, y1, x2, y2, has = g.extent(mask, 288, 384)
    kx = g.op("Add", x1, g.op("Mul", g.op("Sub", x2, x1), g.const(U[None])))  # [N,133]
    ky = g.op("Add", y1, g.op("Mul", g.op("Sub", y2, y1), g.const(V[None])))
    conf = g.op("Unsqueeze", g.op("Mul", has, g.const(CONF[None])), g.const([2], np.int64))
    for coord, bins, name in ((kx, 576, "simcc_x"), (ky, 768, "simcc_y")):
        centre = g.op("Unsqueeze", g.op("Mul", coord, g.const(2.0)), g.const([2], np.int64))
        diff = g.op("Sub", g.const(np.arange(bins)[None, None]), centre)
        curve = g.op("Exp", g.op("Mul", g.op("Mul", diff, diff), g.const(-1.0 / 8.0)))
        g.output("Mul", [curve, conf], name)
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, 384, 288])]
    outputs = [helper.make_tensor_value_info("simcc_x", TensorProto.FLOAT, [batch, NUM_KEYPOINTS, 576]),
               helper.make_tensor_value_info("simcc_y", TensorProto.FLOAT, [batch, NUM_KEYPOINTS, 768])]
    return g.save(inputs, outputs, path)


def build_dwpose(folder: Path, detector_batch: int | str = 1) -> tuple[Path, Path]:
    """Both DWPose files under their released names (the detector has the released fixed batch 1)."""
    folder = Path(folder)
    return (build_detector(folder / "yolox_l.onnx", detector_batch),
            build_pose(folder / "dw-ll_ucoco_384.onnx"))


def draw_person(frame: np.ndarray, x1: int, y1: int, x2: int, y2: int, color=(255, 40, 40)) -> None:
    """A person for the tiny graphs: a filled rectangle over the inclusive pixel range."""
    frame[y1:y2 + 1, x1:x2 + 1] = color


def expected_keypoints(x1: float, y1: float, x2: float, y2: float) -> np.ndarray:
    """The 133 raw keypoints the tiny pose graph puts on a person filling ``x1..x2, y1..y2``."""
    return np.stack([x1 + U.astype(np.float64) * (x2 - x1), y1 + V.astype(np.float64) * (y2 - y1)], axis=1)


# ----------------------------------------------------------------------------- insightface packs

FACE_SCORES = (0.85, 0.75)  # left / right half of the 640x640 detector input
FACE_POINTS = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.55], [0.35, 0.75], [0.65, 0.75]], np.float32)
EMBED_WEIGHTS = np.random.default_rng(99).normal(0, 1, (147, 512)).astype(np.float32)


def build_scrfd(path: Path) -> Path:
    """``det_10g.onnx`` stand-in: input ``input.1`` [1,3,?,?] as ``(x - 127.5) / 128``; 9 outputs (scores,
    distance boxes, 5 keypoints for strides 8/16/32, 2 anchors per cell, no batch axis). Pixels whose
    channel 0 exceeds 200 are "face": each half of the 640x640 input gives the extent of its face
    pixels as the box, with the ``FACE_POINTS`` template inside it, score 0.85 (left) / 0.75 (right)."""
    g = _Graph()
    channel0 = g.op("Slice", "input.1", g.const([0], np.int64), g.const([1], np.int64), g.const([1], np.int64))
    pixels = g.op("Add", g.op("Mul", channel0, g.const(128.0)), g.const(127.5))
    mask = g.op("Cast", g.op("Greater", pixels, g.const(THRESHOLD)), to=TensorProto.FLOAT)
    halves = [g.extent(mask, 640, 640, g.const((np.arange(640) < 320).astype(np.float32))),
              g.extent(mask, 640, 640, g.const((np.arange(640) >= 320).astype(np.float32)))]
    scores, boxes, points = [], [], []
    for stride in STRIDES:
        cells = 640 // stride
        yv, xv = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
        cx = np.repeat((xv.ravel() * stride).astype(np.float32), 2)[:, None]
        cy = np.repeat((yv.ravel() * stride).astype(np.float32), 2)[:, None]
        left = g.const((cx < 320).astype(np.float32))
        right = g.const((cx >= 320).astype(np.float32))

        def pick(a: str, b: str) -> str:  # [1,1] values per half -> [K,1]
            return g.op("Add", g.op("Mul", a, left), g.op("Mul", b, right))

        x1, y1, x2, y2, has = (pick(a, b) for a, b in zip(*halves))
        score = g.op("Mul", has, pick(g.const([[FACE_SCORES[0]]]), g.const([[FACE_SCORES[1]]])))
        scores.append(score)
        inv = g.const(1.0 / stride)
        cxc, cyc = g.const(cx), g.const(cy)
        sides = [g.op("Sub", cxc, x1), g.op("Sub", cyc, y1), g.op("Sub", x2, cxc), g.op("Sub", y2, cyc)]
        boxes.append(g.op("Mul", g.op("Concat", *sides, axis=1), inv))
        coords = []
        for u, v in FACE_POINTS:
            px = g.op("Add", x1, g.op("Mul", g.op("Sub", x2, x1), g.const(u)))
            py = g.op("Add", y1, g.op("Mul", g.op("Sub", y2, y1), g.const(v)))
            coords += [g.op("Sub", px, cxc), g.op("Sub", py, cyc)]
        points.append(g.op("Mul", g.op("Concat", *coords, axis=1), inv))
    names = [f"score_{s}" for s in STRIDES] + [f"bbox_{s}" for s in STRIDES] + [f"kps_{s}" for s in STRIDES]
    for name, value in zip(names, scores + boxes + points):
        g.output("Identity", [value], name)
    widths = [1] * 3 + [4] * 3 + [10] * 3
    inputs = [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "?", "?"])]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["?", w]) for n, w in zip(names, widths)]
    return g.save(inputs, outputs, path)


def build_arcface(path: Path) -> Path:
    """``w600k_r50.onnx`` stand-in: ``input.1`` [1,3,112,112] -> ``683`` [1,512], a fixed linear map of
    the 16x16-pooled crop (so the vector depends on the aligned face and has no unit norm)."""
    g = _Graph()
    pooled = g.op("AveragePool", "input.1", kernel_shape=[16, 16], strides=[16, 16])
    flat = g.op("Flatten", pooled, axis=1)
    g.output("MatMul", [flat, g.const(EMBED_WEIGHTS)], "683")
    inputs = [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["None", 3, 112, 112])]
    outputs = [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["None", 512])]
    return g.save(inputs, outputs, path)


def build_landmark_2d106(path: Path) -> Path:
    """A stand-in for ``2d106det.onnx`` (192x192 in, 212 out), which the face pack must skip."""
    g = _Graph()
    pooled = g.op("GlobalAveragePool", "data")
    g.output("MatMul", [g.op("Flatten", pooled, axis=1), g.const(np.ones((3, 212)))], "fc1")
    inputs = [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 192, 192])]
    outputs = [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [1, 212])]
    return g.save(inputs, outputs, path)


def build_face_pack(folder: Path) -> Path:
    """A buffalo_l-like pack folder: detector, recognizer and a landmark model."""
    folder = Path(folder)
    build_scrfd(folder / "det_10g.onnx")
    build_arcface(folder / "w600k_r50.onnx")
    build_landmark_2d106(folder / "2d106det.onnx")
    return folder


def draw_face(frame: np.ndarray, x1: int, y1: int, x2: int, y2: int) -> None:
    """A face for the tiny face models: bright channel 0 and a texture in channels 1 and 2."""
    h, w = y2 - y1 + 1, x2 - x1 + 1
    yy, xx = np.mgrid[0:h, 0:w]
    frame[y1:y2 + 1, x1:x2 + 1, 0] = 250
    frame[y1:y2 + 1, x1:x2 + 1, 1] = (255 * xx / max(w - 1, 1)).astype(np.uint8)
    frame[y1:y2 + 1, x1:x2 + 1, 2] = (255 * (yy / max(h - 1, 1)) ** 2).astype(np.uint8)
