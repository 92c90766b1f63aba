"""Rasteriser speed at 256x256: the pack's PyTorch renderer vs cairosvg, on plain fills (man_dance),
strokes (the gallery's stroked icons) and gradients (the gallery's gradient art).

Prints frames per second for: cairosvg rendering a frame SVG to pixels (for strokes and gradients the
original SVG, moved per frame, so cairo draws the strokes and gradients itself); ours without gradients
(batches of 24 frames, as the procedural mode renders); ours with gradients (forward + backward of
a 24-frame batch, as a text-guided optimisation step needs); and on CUDA when there is one.
Each figure is the best of a few repeats (other processes on the machine only slow runs down).
Set BENCH_THREADS=1 on a machine shared with other jobs (OpenMP threads then mostly wait).
Run: python benchmarks/aniclipart_raster.py [path/to/clipart_scaled.svg]  (replaces the plain-fill case)
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import torch

from comfyui_animate_suite.svg import export
from comfyui_animate_suite.svg.document import load_svg
from comfyui_animate_suite.svg.paths import layout_drawing
from comfyui_animate_suite.svg.raster import rasterise

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "clipart" / "man_dance" / "man_dance_scaled.svg"
GALLERY = Path(__file__).resolve().parents[1] / "examples" / "gallery"
STROKES = ("icon_walker.svg", "icon_heart.svg", "icon_star.svg", "person_floating_head.svg")
GRADIENTS = ("gradient_tree.svg", "gradient_rocket.svg", "emoji_smile.svg", "animal_fish.svg")
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


def moved_svg(text: str, offset) -> str:
    """The SVG with its content translated by ``offset`` (user units), for cairosvg."""
    opening = re.search(r"<svg\b[^>]*>", text)
    return text[:opening.end()] + f'<g transform="translate({offset[0]:.3f} {offset[1]:.3f})">' + \
        text[opening.end():].replace("</svg>", "</g></svg>")


def bench_case(name: str, paths: list[Path], plain: bool, cuda: bool) -> None:
    """One line per renderer for the drawings ``paths``, FRAMES frames each (points moved a little)."""
    import torch

    generator = torch.Generator().manual_seed(0)
    cases = []
    for path in paths:
        layout, points = layout_drawing(load_svg(path, SIZE))
        offsets = torch.randn(FRAMES, 1, 2, generator=generator) * 3
        cases.append((path, layout, points + offsets, offsets))
    shapes = sum(c[1].num_groups for c in cases)
    segments = sum(c[1].num_segments for c in cases)
    print(f"{name}: {', '.join(p.name for p in paths)}: {shapes} shapes, {segments} segments, {SIZE}x{SIZE}, "
          f"{FRAMES} frames each, {torch.get_num_threads()} CPU threads")
    total = FRAMES * len(cases)
    results = {}
    try:
        import cairosvg

        if plain:
            texts = [export.frame_svg(layout, frame) for _, layout, frames, _ in cases for frame in frames]
        else:  # cairo draws the original strokes/gradients (offsets are in canvas pixels; close enough as user units)
            texts = [moved_svg(path.read_text(), offset[0].tolist()) for path, _, _, offsets in cases for offset in offsets]
        seconds = best_seconds(lambda: [cairosvg.svg2png(bytestring=t.encode(), output_width=SIZE, output_height=SIZE)
                                        for t in texts])
        results["cairosvg (SVG text -> PNG)"] = total / seconds
    except (ImportError, OSError) as error:
        print(f"cairosvg not usable ({error}); pip install cairosvg to compare")

    def ours(device, grad):
        batches = [(layout, frames.to(device).requires_grad_(grad)) for _, layout, frames, _ in cases]

        def run():
            for layout, batch in batches:
                with torch.set_grad_enabled(grad):
                    image = rasterise(layout, batch, background=(1.0, 1.0, 1.0), backend="torch")
                    if grad:
                        image.mean().backward()
            if device.type == "cuda":
                torch.cuda.synchronize()
        return run

    cpu = torch.device("cpu")
    results["torch CPU, no gradients"] = total / best_seconds(ours(cpu, False))
    results["torch CPU, forward + backward"] = total / best_seconds(ours(cpu, True))
    if cuda and torch.cuda.is_available():
        gpu = torch.device("cuda")
        ours(gpu, False)()  # warm-up
        results["torch CUDA, no gradients"] = total / best_seconds(ours(gpu, False))
        results["torch CUDA, forward + backward"] = total / best_seconds(ours(gpu, True))
    reference = results.get("cairosvg (SVG text -> PNG)")
    for label, fps in results.items():
        ratio = f"  ({fps / reference:.2f}x cairosvg)" if reference and not label.startswith("cairo") else ""
        print(f"  {label:32s} {fps:8.1f} frames/s{ratio}")


def main() -> None:
    threads = os.environ.get("BENCH_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    if not path.is_file():
        raise SystemExit(f"{path} not found: pass an SVG (the default is ../shared's man_dance)")
    bench_case("plain fills", [path], plain=True, cuda=True)
    bench_case("strokes", [GALLERY / n for n in STROKES], plain=False, cuda=False)
    bench_case("gradients", [GALLERY / n for n in GRADIENTS], plain=False, cuda=False)


if __name__ == "__main__":
    main()
