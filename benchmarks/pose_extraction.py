"""DWPose extraction speed: frames/s on a 120-frame 512x768 clip, batched vs one call per frame, and the
share of the time spent outside onnxruntime (our pre- and post-processing; target: under 20%).

Models: the tests' tiny graphs (``tests/tiny_models/pose.py``, with the released files' inputs and
outputs; they cost far less than the real YOLOX-L and DWPose-L, so they make the pre/post share look
as large as it can get) and, when ``../shared`` is present, the parity fixture's synthetic models,
whose cost is closer to a real model run on a GPU. Figures are wall-clock on this machine.

Run: python benchmarks/pose_extraction.py [--frames 120]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from comfyui_animate_suite.pose import dwpose  # noqa: E402
from tiny_models import pose as tiny  # noqa: E402

FIXTURE = REPO.parent / "shared" / "parity" / "dwpose"


class OrtClock:
    """Adds up the time spent inside ``session.run`` of both models."""

    def __init__(self, model: dwpose.DWPose):
        self.seconds = 0.0
        self.calls = 0
        for onnx_model in (model.detector, model.pose):
            onnx_model.session = self._wrap(onnx_model.session)

    def _wrap(self, session):
        clock = self

        class Timed:
            def run(self, names, feed):
                start = time.perf_counter()
                try:
                    return session.run(names, feed)
                finally:
                    clock.seconds += time.perf_counter() - start
                    clock.calls += 1

            def __getattr__(self, name):
                return getattr(session, name)

        return Timed()


def clip(frames: int, width: int = 512, height: int = 768) -> np.ndarray:
    """A person (left half of the frame) walking down and back."""
    out = np.full((frames, height, width, 3), 60, np.uint8)
    for t in range(frames):
        dy = int(40 * np.sin(t / 10))
        tiny.draw_person(out[t], 60, 120 + dy, 230, 640 + dy, color=(250, 240, 230))
    return out


def measure(model: dwpose.DWPose, frames: np.ndarray, chunk: int) -> dict:
    model(frames[:2], chunk=chunk)  # warm-up
    clock = OrtClock(model)
    start = time.perf_counter()
    result = model(frames, chunk=chunk)
    total = time.perf_counter() - start
    assert sum(f.num_people for f in result.frames) == len(frames)
    return {"fps": len(frames) / total, "total": total, "ort": clock.seconds, "calls": clock.calls,
            "outside": 1 - clock.seconds / total}


def report(label: str, model_files, frames: np.ndarray) -> None:
    print(f"\n{label}")
    for name, chunk in (("batched (16 frames per chunk)", 16), ("one call per frame", 1)):
        model = dwpose.DWPose.from_files(*model_files, device="cpu")
        m = measure(model, frames, chunk)
        verdict = "ok" if m["outside"] < 0.2 else "over the 20% target"
        print(f"  {name:32s} {m['fps']:6.2f} frames/s  {m['total']:6.2f} s  onnxruntime {m['ort']:6.2f} s "
              f"in {m['calls']} calls  outside onnxruntime {100 * m['outside']:4.1f}%  [{verdict}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=120)
    args = parser.parse_args()
    frames = clip(args.frames)
    print(f"{args.frames} frames of 512x768, one person each, onnxruntime CPU")
    with tempfile.TemporaryDirectory() as tmp:
        report("tiny test graphs, detector with a dynamic batch", tiny.build_dwpose(tmp, detector_batch="batch"), frames)
        report("tiny test graphs, detector with the released fixed batch of 1",
               tiny.build_dwpose(Path(tmp) / "fixed", detector_batch=1), frames)
    if FIXTURE.is_dir():
        report("parity fixture's synthetic models (released layout: fixed-batch detector)",
               (FIXTURE / "yolox_l.onnx", FIXTURE / "dw-ll_ucoco_384.onnx"), frames)


if __name__ == "__main__":
    main()
