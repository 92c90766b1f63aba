"""The pose renderer of ``prepare animate-anyone`` (``pipelines/training/prepare.py``).

``build_pose_renderer(options)`` returns ``renderer(frames uint8 [N,H,W,3]) -> pose images uint8 [N,H,W,3]``,
the pose video Moore-AnimateAnyone's ``tools/extract_dwpose_from_vid.py`` makes: DWPose fed as Moore's
``DWposeDetector`` feeds it (BGR, 512 short side), the best person drawn in AnimateAnyone's convention on
the 512-short-side canvas, then resized to the frames' own size (the datasets resize pose frames to the
video's size anyway; the same size keeps a video and its pose video cropped alike).

Options: ``models_dir`` (required): a ComfyUI ``models`` folder; ``yolox_l.onnx`` and
``dw-ll_ucoco_384.onnx`` are found under its ``dwpose/`` (one sub-folder down too) through the model
registry. ``device``: ``auto`` (default) or ``cpu``. ``when_no_person``: ``empty`` (default: a black
frame) or ``whole_image`` (Moore's behaviour: the pose model runs on the whole frame).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np

from ..core import model_registry
from ..core.errors import InputError
from . import dwpose, render

OPTIONS = ("models_dir", "device", "when_no_person")
CONVENTION = "animateanyone"


def build_pose_renderer(options: dict) -> Callable[[np.ndarray], np.ndarray]:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise InputError(unknown[0], "is not a pose renderer option", "one of " + ", ".join(OPTIONS))
    if not options.get("models_dir"):
        raise InputError("models_dir", "is not set", "the ComfyUI models folder holding dwpose/")
    settings = replace(dwpose.PRESETS[CONVENTION], when_no_person=options.get("when_no_person") or "empty")
    locator = model_registry.DirectoryLocator(options["models_dir"])
    model = dwpose.DWPose.from_files(model_registry.require(model_registry.DWPOSE, "detector", locator),
                                     model_registry.require(model_registry.DWPOSE, "pose", locator),
                                     options.get("device") or "auto")

    def renderer(frames: np.ndarray) -> np.ndarray:
        height, width = frames.shape[1:3]
        extraction = model(frames, settings)
        return np.stack([render.render(pose, CONVENTION, width, height) for pose in extraction.frames])

    return renderer
