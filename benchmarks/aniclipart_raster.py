"""Rasteriser speed at 256x256 on man_dance: the pack's PyTorch renderer vs cairosvg.

Prints frames per second for: cairosvg rendering a frame SVG to pixels; ours without gradients
(batches of 24 frames, as the procedural mode renders); ours with gradients (forward + backward of
a 24-frame batch, as a text-guided optimisation step needs); and on CUDA when there is one.
Each figure is the best of a few repeats (other processes on the machine only slow runs down).
Set BENCH_THREADS=1 on a machine shared with other jobs (OpenMP threads then mostly wait).
Run: python benchmarks/aniclipart_raster.py [path/to/clipart_scaled.svg]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

from comfyui_animate_suite.svg import export
from comfyui_animate_suite.svg.document import load_svg
from comfyui_animate_suite.svg.paths import layout_drawing
from comfyui_animate_suite.svg.raster import rasterise

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "clipart" / "man_dance" / "man_dance_scaled.svg"
FRAMES = 24
SIZE = 256
REPEATS = 3


def best_seconds(run) -> float:
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    threads = os.environ.get("BENCH_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    if not path.is_file():
        raise SystemExit(f"{path} not found: pass an SVG (the default is ../shared's man_dance)")
    layout, points = layout_drawing(load_svg(path, SIZE))
    generator = torch.Generator().manual_seed(0)
    frames = points + torch.randn(FRAMES, 1, 2, generator=generator) * 3
    print(f"{path.name}: {layout.num_groups} shapes, {layout.num_segments} segments, {SIZE}x{SIZE}, {FRAMES} frames, "
          f"{torch.get_num_threads()} CPU threads")
    results = {}
    try:
        import cairosvg

        texts = [export.frame_svg(layout, frame) for frame in frames]
        seconds = best_seconds(lambda: [cairosvg.svg2png(bytestring=t.encode(), output_width=SIZE, output_height=SIZE)
                                        for t in texts])
        results["cairosvg (SVG text -> PNG)"] = FRAMES / seconds
    except (ImportError, OSError) as error:
        print(f"cairosvg not usable ({error}); pip install cairosvg to compare")

    def ours(device, grad):
        batch = frames.to(device).requires_grad_(grad)

        def run():
            with torch.set_grad_enabled(grad):
                image = rasterise(layout, batch, background=(1.0, 1.0, 1.0), backend="torch")
                if grad:
                    image.mean().backward()
            if device.type == "cuda":
                torch.cuda.synchronize()
        return run

    cpu = torch.device("cpu")
    results["torch CPU, no gradients"] = FRAMES / best_seconds(ours(cpu, False))
    results["torch CPU, forward + backward"] = FRAMES / best_seconds(ours(cpu, True))
    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        ours(gpu, False)()  # warm-up
        results["torch CUDA, no gradients"] = FRAMES / best_seconds(ours(gpu, False))
        results["torch CUDA, forward + backward"] = FRAMES / best_seconds(ours(gpu, True))
    reference = results.get("cairosvg (SVG text -> PNG)")
    for name, fps in results.items():
        ratio = f"  ({fps / reference:.2f}x cairosvg)" if reference and not name.startswith("cairo") else ""
        print(f"  {name:32s} {fps:8.1f} frames/s{ratio}")


if __name__ == "__main__":
    main()
