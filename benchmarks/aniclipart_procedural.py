"""A procedural 24-frame clipart clip end to end on CPU (target: under 2 s).

Measures what the CLI does after Python has started: parse the SVG, rig it (contour, mesh,
subdivision, binding, ARAP factorisation), move the keypoints, deform, render 24 frames at
256x256 and write the GIF; per stage and in total, best of a few repeats.
Set BENCH_THREADS=1 on a machine shared with other jobs (OpenMP threads then mostly wait).
Run: python benchmarks/aniclipart_procedural.py [clipart.svg] [preset]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from comfyui_animate_suite.core.images import to_uint8
from comfyui_animate_suite.core.video import write_gif
from comfyui_animate_suite.svg.animate import animate_procedural, load_clipart, render_animation
from comfyui_animate_suite.svg.motion import MotionSettings

PACK = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 2.0
REPEATS = 3


def run_once(path: Path, preset: str, folder: Path) -> dict[str, float]:
    stages = {}
    started = time.perf_counter()
    clipart = load_clipart(path)
    stages["parse + rig"] = time.perf_counter() - started
    mark = time.perf_counter()
    animation = animate_procedural(clipart.rig, MotionSettings(preset, num_frames=24, fps=12.0))
    animation.points()
    stages["motion + ARAP deform"] = time.perf_counter() - mark
    mark = time.perf_counter()
    frames = render_animation(animation)
    stages["render 24 frames"] = time.perf_counter() - mark
    mark = time.perf_counter()
    write_gif(to_uint8(frames), folder / "clip.gif", animation.fps)
    stages["write GIF"] = time.perf_counter() - mark
    stages["total"] = time.perf_counter() - started
    return stages


def main() -> None:
    threads = os.environ.get("BENCH_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else PACK / "examples" / "gingerbread.svg"
    preset = sys.argv[2] if len(sys.argv) > 2 else "wave"
    with tempfile.TemporaryDirectory() as folder:
        runs = [run_once(path, preset, Path(folder)) for _ in range(REPEATS)]
    best = min(runs, key=lambda r: r["total"])
    print(f"{path.name}, preset '{preset}', {torch.get_num_threads()} CPU threads (best of {REPEATS}):")
    for stage, seconds in best.items():
        print(f"  {stage:22s} {seconds:6.2f} s")
    verdict = "meets" if best["total"] < TARGET_SECONDS else "misses"
    print(f"  {verdict} the {TARGET_SECONDS:.0f} s target ({best['total'] / TARGET_SECONDS:.2f}x of it)")


if __name__ == "__main__":
    main()
