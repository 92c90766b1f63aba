"""Training steps per second and peak memory per stage/mode at tiny size on CPU.

Every case runs the real model code on a tiny random-weight release in the official layout: EasyAnimate v1
(PixArt transformer + motion module, T5, VAE; ``tests/tiny_models/easyanimate.py``) and AnimateAnyone
(ReferenceNet + denoising UNet + PoseGuider, CLIP, VAE; stage 1 from an SD UNet folder, stage 2 from the
stage-1 files plus an AnimateDiff motion module; ``tests/tiny_models/animate_anyone.py``, 64x64 pixels,
stage 2 on 4-frame clips). The dataset is synthetic (2 samples). Each case runs in its own process so
its peak memory (max RSS) is its own.

    python benchmarks/training_tiny.py [--steps 20] [--warmup 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KINDS = ("animate_anyone_stage1", "animate_anyone_stage2", "easyanimate_lora", "easyanimate_motion_module")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_case(kind: str, steps: int, warmup: int, checkpointing: bool) -> dict:
    sys.path.insert(0, str(REPO / "tests"))
    import transformers  # noqa: F401  (import order as in the tests)

    from comfyui_animate_suite.pipelines.training.config import parse_config
    from comfyui_animate_suite.pipelines.training.tasks import build_task
    from comfyui_animate_suite.pipelines.training.trainer import Trainer, TrainerCallback
    from tiny_models import animate_anyone as tiny_animate_anyone
    from tiny_models import easyanimate as tiny_easyanimate
    from tiny_models import training as tiny

    work = Path(tempfile.mkdtemp(prefix="training_bench_"))
    solver = dict(max_train_steps=warmup + steps, gradient_checkpointing=checkpointing)
    if kind.startswith("animate_anyone"):
        tiny.write_pose_dataset(work / "data", size=64)
        sources = tiny_animate_anyone.write_training_sources(work / "models")
        settings = tiny.animate_anyone_real_config(sources, work / "data", work / "out", stage=int(kind[-1]), **solver)
    else:
        mode = kind[len("easyanimate_"):]
        tiny.write_media_dataset(work / "data", frames=6, size=32)
        v1 = tiny_easyanimate.write_v1(work / "models")
        settings = tiny.easyanimate_v1_config(v1, work / "data", work / "out", mode, with_motion_module=mode == "lora",
                                              **solver)
    config = parse_config(settings)
    task = build_task(config)
    before_training = peak_rss_mb()
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, step, total, logs):
            times.append(time.perf_counter())

    Trainer(task, config, callbacks=(Clock(),), write=lambda *_: None).train()
    timed = times[warmup - 1:]
    seconds = (timed[-1] - timed[0]) / (len(timed) - 1)
    return {"kind": kind, "gradient_checkpointing": checkpointing, "steps_per_second": 1.0 / seconds,
            "batch": config.data.batch_size, "peak_rss_mb": peak_rss_mb(),
            "peak_rss_over_models_mb": peak_rss_mb() - before_training}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--checkpointing", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.steps, args.warmup, args.checkpointing)))
        return 0
    rows = []
    for kind in KINDS:
        for checkpointing in (False, True):
            command = [sys.executable, __file__, "--case", kind, "--steps", str(args.steps), "--warmup", str(args.warmup)]
            if checkpointing:
                command.append("--checkpointing")
            result = subprocess.run(command, capture_output=True, text=True, check=True)
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
    print(f"{'case':<28}{'grad ckpt':>10}{'steps/s':>10}{'peak RSS MB':>13}{'over models MB':>16}")
    for row in rows:
        print(f"{row['kind']:<28}{str(row['gradient_checkpointing']):>10}{row['steps_per_second']:>10.2f}"
              f"{row['peak_rss_mb']:>13.0f}{row['peak_rss_over_models_mb']:>16.1f}")
    for kind in KINDS:
        plain, ckpt = [r for r in rows if r["kind"] == kind]
        print(f"{kind}: gradient checkpointing speed ratio {ckpt['steps_per_second'] / plain['steps_per_second']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
