"""AnimateAnyone sampling: seconds per denoising step, peak memory, and what doing the reference work once saves.

Variants, all with the same models, inputs and seed:
- ours: the ReferenceNet runs once per job, the keys/values of its features are projected once, and the
  unconditional (guidance) half attends to its own tokens only.
- reference: as Moore-AnimateAnyone's pipeline: the ReferenceNet runs once per job, but in every window of
  every step its features are repeated per frame and projected again together with the frame's tokens,
  and the unconditional half is attended twice (with the reference tokens, then again without).
- naive: "reference" plus the ReferenceNet recomputed at every step (what a port that does not keep
  the features between steps pays).

Each variant runs in its own process, so its peak memory is its own (CPU: peak resident set size of the
process, weights included; CUDA: peak allocated during sampling).

Models: ``--models fixture`` (default) loads the parity fixture's tiny models from
../shared/parity/animate_anyone through the real loaders, at its size (64x96, 7 frames, 4-frame windows);
``--models sd15`` builds random weights at the real SD1.5 size from the shipped configs (meant for a GPU:
``--models sd15 --device cuda --dtype fp16 --width 512 --height 784 --frames 24``).

Run: python benchmarks/animate_anyone_sampling.py [--steps 6] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

PACK = Path(__file__).resolve().parents[1]
FIXTURE = PACK.parent / "shared" / "parity" / "animate_anyone"
VARIANTS = ("ours", "reference", "naive")
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", choices=("fixture", "sd15"), default="fixture")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="fp32")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--frames", type=int, default=7)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--context-frames", type=int, default=4)
    parser.add_argument("--context-overlap", type=int, default=1)
    parser.add_argument("--guidance", type=float, default=3.5)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs per variant, interleaved; the fastest counts (shared machines are noisy)")
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------- one variant (worker process)


def _reference_style_reader():
    """The reference's read mode, built on diffusers' own attention processor."""
    import torch
    from diffusers.models.attention_processor import AttnProcessor2_0

    class ReferenceStyleReader:
        def __init__(self, features, guided):
            self.features = features
            self.guided = guided
            self.plain = AttnProcessor2_0()

        def __call__(self, attn, hidden_states, *args, **kwargs):
            x = hidden_states
            bank = self.features.to(x.dtype).expand(x.shape[0], -1, -1)  # repeated per frame and guidance half
            out = self.plain(attn, x, encoder_hidden_states=torch.cat([x, bank], dim=1))
            if self.guided:
                half = x.shape[0] // 2
                out = out.clone()
                out[:half] = self.plain(attn, x[:half])
            return out

    return ReferenceStyleReader


def _install_variant(variant: str, models, windows: int, guided: bool) -> None:
    import torch

    from comfyui_animate_suite.pipelines.animate_anyone import pipeline, reference_attention

    if variant == "ours":
        return
    reference_attention.ReferenceReader = _reference_style_reader()
    if variant != "naive":
        return
    record = pipeline.record_reference_features
    inputs = {}

    def remember(net, latents, embeds):
        inputs.update(latents=latents, embeds=embeds)
        return record(net, latents, embeds)

    pipeline.record_reference_features = remember
    calls = {"n": 0}

    def recompute_each_step(module, args):
        if calls["n"] and calls["n"] % windows == 0:
            copies = 2 if guided else 1
            embeds = inputs["embeds"]
            context = torch.cat([torch.zeros_like(embeds), embeds]) if guided else embeds
            record(models.reference_net, inputs["latents"].repeat(copies, 1, 1, 1), context)
        calls["n"] += 1

    models.denoising_unet.register_forward_pre_hook(recompute_each_step)


def _fixture_inputs(frames: int):
    from PIL import Image

    poses = sorted(FIXTURE.glob("pose_*.png"))
    return Image.open(FIXTURE / "ref.png"), [Image.open(poses[i % len(poses)]) for i in range(frames)]


def _random_sd15_models(device, dtype):
    import torch
    from diffusers import AutoencoderKL
    from transformers import CLIPVisionModelWithProjection

    from comfyui_animate_suite.pipelines.animate_anyone import loading

    config = loading.AnimateAnyoneConfig.for_weights()
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # random weights created in the target dtype: no fp32 copy in memory
    try:
        with torch.device(device):
            modules = {
                "reference_net": config.build_reference_net(), "denoising_unet": config.build_denoising_unet(),
                "pose_guider": config.build_pose_guider(),
                "image_encoder": CLIPVisionModelWithProjection(
                    loading._clip_vision_config(loading.read_json(loading.CONFIG_DIR / loading.IMAGE_ENCODER_CONFIG))),
                "vae": AutoencoderKL.from_config(loading.read_json(loading.CONFIG_DIR / loading.VAE_CONFIG)),
            }
    finally:
        torch.set_default_dtype(default_dtype)
    for module in modules.values():
        module.to(dtype).eval().requires_grad_(False)
    return loading.AnimateAnyoneModels(**modules, scheduler_config=config.scheduler)


def run_worker(args) -> dict:
    import torch

    from comfyui_animate_suite.core.frame_windows import uniform_windows
    from comfyui_animate_suite.pipelines.animate_anyone.loading import AnimateAnyoneFiles, load_models
    from comfyui_animate_suite.pipelines.animate_anyone.pipeline import AnimateAnyoneSettings, animate
    from comfyui_animate_suite.core.context import RunContext

    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, DTYPES[args.dtype])
    device = torch.device(args.device)
    if args.models == "fixture":
        models = load_models(AnimateAnyoneFiles.in_folder(FIXTURE), dtype=dtype)
        reference, poses = _fixture_inputs(args.frames)
    else:
        models = _random_sd15_models(device, dtype)
        generator = torch.Generator().manual_seed(0)
        reference = torch.rand(1, args.height, args.width, 3, generator=generator)
        poses = torch.rand(args.frames, args.height, args.width, 3, generator=generator)
    settings = AnimateAnyoneSettings(width=args.width, height=args.height, steps=args.steps, guidance=args.guidance,
                                     seed=1, context_frames=args.context_frames, context_overlap=args.context_overlap)
    windows = len(uniform_windows(args.frames, args.context_frames, args.context_overlap))
    _install_variant(args.worker, models, windows, args.guidance > 1.0)

    step_ends = []

    def progress(step, total, preview):
        if total == args.steps * windows and step % windows == 0:
            step_ends.append(time.perf_counter())

    loaded_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    animate(models, reference, poses, settings, RunContext(device=device, dtype=dtype, progress=progress))
    total = time.perf_counter() - started
    step_seconds = [b - a for a, b in zip(step_ends, step_ends[1:])]  # the first step also warms up
    result = {
        "variant": args.worker, "seconds_per_step": statistics.median(step_seconds), "job_seconds": total,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rss_after_loading_mib": loaded_rss,
    }
    if device.type == "cuda":
        result["peak_vram_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return result


# ----------------------------------------------------------------------------- driver


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(args)))
        return
    if args.models == "fixture" and not FIXTURE.is_dir():
        sys.exit(f"{FIXTURE} is absent: use --models sd15 or run from a checkout next to ../shared")
    if args.steps < 3:
        sys.exit("--steps must be at least 3 (the first step is left out of the per-step time)")
    forwarded = list(argv if argv is not None else sys.argv[1:])
    print(f"AnimateAnyone, {args.models} models, {args.width}x{args.height}, {args.frames} frames, windows of "
          f"{args.context_frames} (overlap {args.context_overlap}), guidance {args.guidance}, {args.steps} steps, "
          f"{args.device} {args.dtype}, threads {args.threads or 'default'}")
    results = {}
    for _ in range(args.repeats):
        for variant in args.variants.split(","):
            command = [sys.executable, __file__, *forwarded, "--worker", variant]
            output = subprocess.run(command, capture_output=True, text=True, cwd=PACK)
            if output.returncode:
                sys.exit(f"{variant} failed:\n{output.stderr[-3000:]}")
            run = json.loads(output.stdout.strip().splitlines()[-1])
            if variant not in results or run["seconds_per_step"] < results[variant]["seconds_per_step"]:
                results[variant] = run
    for variant, r in results.items():
        memory = f"peak VRAM {r['peak_vram_mib']:.0f} MiB" if "peak_vram_mib" in r else \
            f"peak RSS {r['peak_rss_mib']:.0f} MiB (after loading {r['rss_after_loading_mib']:.0f} MiB)"
        print(f"  {variant:9s} {r['seconds_per_step']:.3f} s/step, job {r['job_seconds']:.2f} s, {memory}")
    if "ours" in results:
        for variant in results:
            if variant != "ours":
                ratio = results[variant]["seconds_per_step"] / results["ours"]["seconds_per_step"]
                print(f"  {variant} / ours: {ratio:.2f}x the time per step")


if __name__ == "__main__":
    main()
