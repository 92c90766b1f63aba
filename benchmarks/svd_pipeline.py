"""SVD img2vid: our pipeline vs diffusers' StableVideoDiffusionPipeline on the same model and inputs.

Prints seconds per denoising step (median over the steps after the first; wall clock and, as a
figure that a busy shared machine disturbs less, process CPU time) and the peak memory the
generation adds on top of the loaded model, for each implementation and as ratios to diffusers.
Each measurement runs in its own process so one cannot inherit the other's allocations; the
implementations take turns for ``--rounds`` rounds and the best round of each counts.

    .venv/bin/python benchmarks/svd_pipeline.py                      # tiny random model, CPU
    .venv/bin/python benchmarks/svd_pipeline.py --width 128 --height 64 --frames 8 --steps 5 --rounds 3
    .venv/bin/python benchmarks/svd_pipeline.py --model models/checkpoints/svd_xt.safetensors --device cuda

On a GPU (``--device cuda``) peak memory is ``torch.cuda.max_memory_allocated``; on the CPU it is
the peak resident set size sampled every 2 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMPLEMENTATIONS = {
    "diffusers": "diffusers StableVideoDiffusionPipeline",
    "ours": "Animate Suite pipeline (guidance passes batched when small, sequential when large)",
    "ours-sequential": "Animate Suite pipeline, unconditional and conditional passes always separate",
}


class PeakMemory:
    def __init__(self, device: str):
        self.device = device
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self):
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            return self
        import psutil

        process = psutil.Process()
        self.base = process.memory_info().rss

        def sample():
            while not self._stop.is_set():
                self.peak = max(self.peak, process.memory_info().rss)
                time.sleep(0.002)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()

    @property
    def added_mb(self) -> float:
        return max(0, self.peak - self.base) / 2**20


def _load(args):
    import torch

    from comfyui_animate_suite.pipelines.svd import loading

    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.precision]
    if args.model:
        return loading.load_svd_components(args.model, dtype)
    sys.path.insert(0, str(REPO / "tests"))
    from tiny_models import svd as tiny

    folder = Path(args.scratch) / "tiny-svd"
    if not folder.exists():
        tiny.save_diffusers_folder(tiny.build(seed=0), folder)
    return loading.load_svd_components(folder, dtype)


def _photo(width: int, height: int):
    import numpy as np

    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), (x + y) % 256], -1).astype(np.uint8)


def measure(args) -> dict:
    """Run one implementation in this process; returns its figures."""
    import torch

    torch.manual_seed(0)
    parts = _load(args)
    device = torch.device(args.device)
    for module in (parts.unet, parts.vae, parts.image_encoder):
        module.to(device)
    image = _photo(args.width, args.height)
    stamps: list[tuple[float, float]] = []

    if args.implementation == "diffusers":
        from diffusers import EulerDiscreteScheduler, StableVideoDiffusionPipeline
        from PIL import Image
        from transformers import CLIPImageProcessor

        fields = {k: v for k, v in parts.feature_extractor_config.items() if not k.endswith("_type")}
        pipe = StableVideoDiffusionPipeline(vae=parts.vae, image_encoder=parts.image_encoder, unet=parts.unet,
                                            scheduler=EulerDiscreteScheduler.from_config(parts.scheduler_config),
                                            feature_extractor=CLIPImageProcessor(**fields))
        pipe.set_progress_bar_config(disable=True)

        def step_end(pipeline, step, timestep, kwargs):
            if device.type == "cuda":
                torch.cuda.synchronize()
            stamps.append((time.perf_counter(), time.process_time()))
            return kwargs

        def run():
            pipe(Image.fromarray(image), height=args.height, width=args.width, num_frames=args.frames,
                 num_inference_steps=args.steps, decode_chunk_size=args.decode_chunk_size,
                 generator=torch.Generator().manual_seed(0), output_type="pt", callback_on_step_end=step_end)
    else:
        from comfyui_animate_suite.core.context import RunContext
        from comfyui_animate_suite.pipelines.svd import pipeline

        if args.implementation == "ours-sequential":
            pipeline._BATCHED_GUIDANCE_LIMIT = 0
        settings = pipeline.SVDSettings(width=args.width, height=args.height, num_frames=args.frames,
                                        context_frames=args.frames, steps=args.steps, seed=0,
                                        decode_chunk_size=args.decode_chunk_size)

        def progress(step, total, preview):
            if total == args.steps:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                stamps.append((time.perf_counter(), time.process_time()))

        def run():
            photo = torch.from_numpy(image).float()[None] / 255
            pipeline.generate(parts, photo, settings, RunContext(device=device, progress=progress))

    with torch.no_grad():
        started = time.perf_counter()
        with PeakMemory(args.device) as memory:
            run()
        total = time.perf_counter() - started
    wall = [b[0] - a[0] for a, b in zip(stamps, stamps[1:])]
    cpu = [b[1] - a[1] for a, b in zip(stamps, stamps[1:])]
    return {"implementation": args.implementation, "seconds_per_step": statistics.median(wall) if wall else float("nan"),
            "cpu_seconds_per_step": statistics.median(cpu) if cpu else float("nan"),
            "total_seconds": total, "peak_added_mb": memory.added_mb}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="svd*.safetensors or a diffusers folder (default: the tiny random test model)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"))
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--height", type=int, default=48)
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--decode-chunk-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best of each counts")
    parser.add_argument("--implementation", choices=tuple(IMPLEMENTATIONS), help=argparse.SUPPRESS)
    parser.add_argument("--scratch", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.implementation:
        print(json.dumps(measure(args)))
        return 0
    forwarded = [a for a in (argv if argv is not None else sys.argv[1:])]
    with tempfile.TemporaryDirectory() as scratch:
        runs = {name: [] for name in IMPLEMENTATIONS}
        for _ in range(args.rounds):
            for name in IMPLEMENTATIONS:
                command = [sys.executable, __file__, "--implementation", name, "--scratch", scratch] + forwarded
                out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO).stdout
                runs[name].append(json.loads(out.strip().splitlines()[-1]))
    results = {name: {key: min(r[key] for r in rows) for key in rows[0] if key != "implementation"}
               for name, rows in runs.items()}
    base = results["diffusers"]
    what = (f"{args.model or 'tiny random SVD'}, {args.width}x{args.height}, {args.frames} frames, {args.steps} steps, "
            f"{args.device} {args.precision}, best of {args.rounds}")
    print(f"SVD img2vid: {what}")
    print(f"{'implementation':<18}{'s/step':>9}{'ratio':>7}{'cpu s/step':>12}{'ratio':>7}{'peak MB':>9}{'ratio':>7}")
    for name, row in results.items():
        print(f"{name:<18}{row['seconds_per_step']:>9.4f}{row['seconds_per_step'] / base['seconds_per_step']:>7.2f}"
              f"{row['cpu_seconds_per_step']:>12.4f}{row['cpu_seconds_per_step'] / base['cpu_seconds_per_step']:>7.2f}"
              f"{row['peak_added_mb']:>9.1f}{row['peak_added_mb'] / max(base['peak_added_mb'], 1e-9):>7.2f}")
    print("ratios are ours / diffusers: below 1 is faster or smaller")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
