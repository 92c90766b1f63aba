"""Pose-driven clipart on CPU: 24 and 120 frames of a synthetic dancer driving a clipart, per stage.

Stages: parse + rig the SVG, retarget (smoothing, map, angles, fill), ARAP deform, render at 256x256,
Lottie JSON. Target: retarget + deform in well under a second, the whole clip in seconds.
Set BENCH_THREADS=1 on a machine shared with other jobs.
Run: python benchmarks/aniclipart_pose.py [clipart.svg]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

PACK = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PACK / "tests"))

from pose_driving_testlib import dance  # noqa: E402

from comfyui_animate_suite.svg import lottie  # noqa: E402
from comfyui_animate_suite.svg.animate import load_clipart, render_animation  # noqa: E402
from comfyui_animate_suite.svg.retarget import RetargetSettings, animate_from_pose  # noqa: E402


def run(path: Path, frames: int) -> dict[str, float]:
    stages = {}
    mark = time.perf_counter()
    clipart = load_clipart(path)
    stages["parse + rig"] = time.perf_counter() - mark
    poses = dance(frames)
    mark = time.perf_counter()
    animation = animate_from_pose(clipart.rig, poses, None, RetargetSettings(12.0, smoothing=2, loop=True))
    stages["retarget"] = time.perf_counter() - mark
    mark = time.perf_counter()
    animation.points()
    stages["ARAP deform"] = time.perf_counter() - mark
    mark = time.perf_counter()
    render_animation(animation, 256)
    stages["render 256"] = time.perf_counter() - mark
    mark = time.perf_counter()
    size = len(lottie.lottie_json(lottie.animation_lottie(animation, 512)))
    stages[f"Lottie JSON ({size / 1e6:.1f} MB)"] = time.perf_counter() - mark
    return stages


def main() -> None:
    if os.environ.get("BENCH_THREADS"):
        torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else PACK / "examples" / "gingerbread.svg"
    for frames in (24, 120):
        stages = run(path, frames)
        parts = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in stages.items())
        print(f"{path.name}, {frames} frames: {parts}; total {sum(stages.values()):.2f} s")


if __name__ == "__main__":
    main()
