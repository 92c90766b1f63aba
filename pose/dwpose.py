"""DWPose extraction over frame batches: person detection, whole-body keypoints, 134-point layout.

``DWPose`` wraps the two ONNX models (``yolox_l.onnx`` and ``dw-ll_ucoco_384.onnx``, or files with the
same inputs/outputs). Frames are processed in chunks: one detector call per chunk (per frame when the
detector's batch size is fixed to 1, as the released file is) and one pose call for every person
in the chunk, so a 120-frame clip needs a handful of pose calls instead of one per person.

The three reference code bases differ only in what they feed the models; ``PRESETS`` names them:

- ``animateanyone`` (Moore-AnimateAnyone): BGR, image first resized to a 512 short side with both
  sides rounded to multiples of 64 (Lanczos up / area down); keypoints live on that canvas.
- ``stableanimator``: RGB at full resolution.
- ``controlnet_aux`` (comfyui_controlnet_aux's DWPose Estimator): RGB at full resolution.

When the detector finds nobody, Moore and StableAnimator run the pose model on the whole image
(``when_no_person="whole_image"``, which invents a skeleton) while controlnet_aux returns no person;
the default here is an empty pose for that frame.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np

from ..core.errors import CheckpointError, InputError
from . import detector as det
from . import estimator as est
from . import resize, sessions
from .keypoints import NUM_RAW, FramePose, to_openpose_layout

CHANNEL_ORDERS = ("rgb", "bgr")
WHEN_NO_PERSON = ("empty", "whole_image")
DEFAULT_CHUNK = 16
DETECTOR_SOURCE = "https://huggingface.co/yzd-v/DWPose (yolox_l.onnx)"
POSE_SOURCE = "https://huggingface.co/yzd-v/DWPose (dw-ll_ucoco_384.onnx)"


@dataclass(frozen=True)
class ExtractionSettings:
    channel_order: str = "rgb"
    # 0: detect on the frames as given; N: Moore's resize to an N short side, sides multiples of 64.
    detect_resolution: int = 0
    when_no_person: str = "empty"
    detector: det.DetectorSettings = field(default_factory=det.DetectorSettings)
    pose: est.PoseSettings = field(default_factory=est.PoseSettings)

    def __post_init__(self):
        if self.channel_order not in CHANNEL_ORDERS:
            raise InputError("channel_order", f"'{self.channel_order}' is unknown", " or ".join(CHANNEL_ORDERS))
        if self.when_no_person not in WHEN_NO_PERSON:
            raise InputError("when_no_person", f"'{self.when_no_person}' is unknown", " or ".join(WHEN_NO_PERSON))


PRESETS = {
    "animateanyone": ExtractionSettings(channel_order="bgr", detect_resolution=512),
    "stableanimator": ExtractionSettings(channel_order="rgb"),
    "controlnet_aux": ExtractionSettings(channel_order="rgb"),
}


@dataclass
class Extraction:
    """Per frame: the poses (on the detection canvas) and the reference code's intermediate values."""

    frames: list[FramePose]
    boxes: list[np.ndarray]
    raw_keypoints: list[np.ndarray]
    raw_scores: list[np.ndarray]


def detect_size(width: int, height: int, resolution: int) -> tuple[int, int]:
    """Moore-AnimateAnyone's detection canvas: short side ``resolution``, sides rounded to 64."""
    k = float(resolution) / min(float(height), float(width))
    return int(np.round(width * k / 64.0)) * 64, int(np.round(height * k / 64.0)) * 64


def resize_for_detection(frames: np.ndarray, resolution: int) -> np.ndarray:
    _, height, width, _ = frames.shape
    new_w, new_h = detect_size(width, height, resolution)
    k = float(resolution) / min(float(height), float(width))
    return resize.resize(frames, new_w, new_h, "lanczos4" if k > 1 else "area")


class DWPose:
    """The detector and pose model, checked to have DWPose's inputs and outputs."""

    def __init__(self, detector: sessions.OnnxModel, pose: sessions.OnnxModel, max_batch: int = sessions.DEFAULT_MAX_BATCH):
        self.detector = detector
        self.pose = pose
        self.max_batch = max_batch
        self.detector_input_size = _check_detector(detector)
        self.pose_input_wh = _check_pose(pose)

    @classmethod
    def from_files(cls, detector_path, pose_path, device: str = "auto") -> "DWPose":
        detector = sessions.load(detector_path, "DWPose person detector", device, DETECTOR_SOURCE)
        pose = sessions.load(pose_path, "DWPose pose model", device, POSE_SOURCE)
        return cls(detector, pose)

    def settings_for_models(self, settings: ExtractionSettings) -> ExtractionSettings:
        """``settings`` with the input sizes the loaded models declare."""
        return replace(settings, detector=replace(settings.detector, input_size=self.detector_input_size),
                       pose=replace(settings.pose, input_wh=self.pose_input_wh))

    def __call__(self, frames: np.ndarray, settings: ExtractionSettings = ExtractionSettings(), ctx=None,
                 chunk: int = DEFAULT_CHUNK) -> Extraction:
        """Poses for uint8 RGB frames ``[N,H,W,3]``.

        Frames go through in chunks; worker threads letterbox the next chunk while onnxruntime runs the
        current one, and cut the person crops in parallel (numpy releases the GIL).
        """
        frames = _check_frames(frames)
        settings = self.settings_for_models(settings)
        if settings.channel_order == "bgr":
            frames = frames[..., ::-1]
        if settings.detect_resolution:
            frames = resize_for_detection(frames, settings.detect_resolution)
        result = Extraction([], [], [], [])
        total = len(frames)
        starts = list(range(0, total, chunk))
        pool = _workers()
        letterboxed = pool.submit(self._letterbox, frames, starts[0], chunk, settings.detector)
        for i, start in enumerate(starts):
            if ctx is not None:
                ctx.check_interrupt()
            inputs, ratio = letterboxed.result()
            if i + 1 < len(starts):
                letterboxed = pool.submit(self._letterbox, frames, starts[i + 1], chunk, settings.detector)
            raw = self.detector.run(inputs, self.max_batch, None if ctx is None else ctx.check_interrupt)[0]
            boxes = det.decode(raw, ratio, settings.detector)
            self._estimate(frames[start:start + chunk], boxes, settings, result, ctx)
            if ctx is not None:
                ctx.report(min(start + chunk, total), total)
        return result

    @staticmethod
    def _letterbox(frames: np.ndarray, start: int, chunk: int, settings: det.DetectorSettings):
        return det.letterbox(np.ascontiguousarray(frames[start:start + chunk]), settings)

    def detect(self, frames: np.ndarray, settings: det.DetectorSettings, ctx=None) -> list[np.ndarray]:
        inputs, ratio = det.letterbox(frames, settings)
        raw = self.detector.run(inputs, self.max_batch, None if ctx is None else ctx.check_interrupt)[0]
        return det.decode(raw, ratio, settings)

    def _estimate(self, frames: np.ndarray, boxes: list[np.ndarray], settings: ExtractionSettings,
                  result: Extraction, ctx) -> None:
        height, width = frames.shape[1:3]
        jobs = []
        for index, frame_boxes in enumerate(boxes):
            if len(frame_boxes) == 0 and settings.when_no_person == "whole_image":
                frame_boxes = [[0, 0, width, height]]
            jobs += [(index, box) for box in frame_boxes]
        cut = _workers().map(lambda job: est.crop_person(frames[job[0]], job[1], settings.pose), jobs)
        crops, centers, scales = zip(*cut) if jobs else ((), (), ())
        owner = np.array([index for index, _ in jobs], int)
        points = np.zeros((0, NUM_RAW, 2))
        scores = np.zeros((0, NUM_RAW), np.float32)
        if jobs:
            simcc_x, simcc_y = self.pose.run(np.stack(crops), self.max_batch,
                                             None if ctx is None else ctx.check_interrupt)[:2]
            locs, scores = est.decode_simcc(simcc_x, simcc_y, settings.pose.simcc_split_ratio)
            points = np.stack([est.to_image_coordinates(locs[i], centers[i], scales[i], settings.pose.input_wh)
                               for i in range(len(jobs))])
        for index in range(len(frames)):
            mine = owner == index
            raw_points, raw_scores = points[mine], scores[mine]
            keypoints, point_scores = to_openpose_layout(raw_points, raw_scores)
            result.frames.append(FramePose(width, height, keypoints, point_scores))
            result.boxes.append(np.asarray(boxes[index], np.float64).reshape(-1, 4))
            result.raw_keypoints.append(raw_points)
            result.raw_scores.append(raw_scores)


_pool: ThreadPoolExecutor | None = None


def _workers() -> ThreadPoolExecutor:
    """A small shared thread pool for the numpy pre-processing (created on first use)."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="dwpose")
    return _pool


def _check_frames(frames) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise InputError("images", f"got an array {frames.dtype} {tuple(frames.shape)}", "uint8 RGB frames [N,H,W,3]")
    if len(frames) == 0:
        raise InputError("images", "is an empty batch (0 frames)", "at least one frame")
    return frames


def _not_this(model: sessions.OnnxModel, expected: str) -> CheckpointError:
    return CheckpointError(f"'{model.path.name}' is not a {model.what}: it has {model.describe()}. Expected {expected}.")


def _check_detector(model: sessions.OnnxModel) -> tuple[int, int]:
    expected = "one image input [1, 3, 640, 640] and one output [1, 8400, 85] (YOLOX, e.g. yolox_l.onnx)"
    shape = model.input.shape
    if len(model.inputs) != 1 or len(shape) != 4 or shape[1] != 3 or len(model.outputs) != 1:
        raise _not_this(model, expected)
    out = model.outputs[0].shape
    if len(out) != 3 or (isinstance(out[2], int) and out[2] < 6):
        raise _not_this(model, expected)
    size = tuple(d if isinstance(d, int) and d > 0 else 640 for d in shape[2:4])
    anchors = sum((size[0] // s) * (size[1] // s) for s in det.STRIDES)
    if isinstance(out[1], int) and out[1] != anchors:
        raise _not_this(model, expected)
    return size


def _check_pose(model: sessions.OnnxModel) -> tuple[int, int]:
    expected = "one image input [N, 3, 384, 288] and two outputs simcc_x [N, 133, 576], simcc_y [N, 133, 768] (DWPose, e.g. dw-ll_ucoco_384.onnx)"
    shape = model.input.shape
    if len(model.inputs) != 1 or len(shape) != 4 or shape[1] != 3 or len(model.outputs) != 2:
        raise _not_this(model, expected)
    for output in model.outputs:
        if len(output.shape) != 3 or (isinstance(output.shape[1], int) and output.shape[1] != NUM_RAW):
            raise _not_this(model, expected)
    height, width = (d if isinstance(d, int) and d > 0 else default for d, default in zip(shape[2:4], (384, 288)))
    return (width, height)
