"""StableAnimator speed and memory: seconds per denoising step, peak memory, HJB overhead.

Default (CPU): the parity fixture's tiny models at the fixture size (../shared/parity/stable_animator,
W x H and frame count from its manifest), a plain run and a run with HJB face optimisation on the
fixture's HJB settings. Each run is a fresh process, so its peak memory is its own.

  python benchmarks/stable_animator_speed.py [--steps N] [--repeat N]

Full size (random weights at SVD-xt / iresnet100 size; meant for a GPU machine):

  python benchmarks/stable_animator_speed.py --full-size --device cuda --size 512x512 576x1024 --frames 16 48

Printed per run: seconds per plain step and per HJB-refined step (model staging excluded), decode
seconds, peak memory (CPU: the process's peak RSS and its rise over the loaded models; CUDA: peak
allocated VRAM), and the HJB run's time as a ratio of the plain run's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

PACK = Path(__file__).resolve().parents[1]
FIXTURE = PACK.parent / "shared" / "parity" / "stable_animator"

# SVD-xt's VAE and CLIP ViT-H/14 image encoder sizes, for random full-size models.
SVD_XT_VAE = dict(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                  layers_per_block=2, latent_channels=4, sample_size=768)
SVD_XT_CLIP = dict(hidden_size=1280, intermediate_size=5120, num_attention_heads=16, num_hidden_layers=32,
                   patch_size=14, image_size=224, projection_dim=1024, hidden_act="gelu")
SVD_XT_SCHEDULER = {"beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
                    "prediction_type": "v_prediction", "sigma_max": 700.0, "sigma_min": 0.002, "steps_offset": 1,
                    "timestep_spacing": "leading", "timestep_type": "continuous", "use_karras_sigmas": True}


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _fixture_models(device):
    import torch

    from comfyui_animate_suite.pipelines.stable_animator import loading

    files = loading.StableAnimatorFiles(FIXTURE / "unet.pth", FIXTURE / "pose_net.pth", FIXTURE / "face_encoder.pth",
                                        FIXTURE / "glintr100_torch.pth", svd_base=FIXTURE)
    return loading.load_stable_animator(files, torch.float32)


def _random_full_size_models(device, dtype):
    """SVD-xt-sized StableAnimator with random (default-initialised) weights, built straight on ``device``."""
    import torch
    from diffusers import AutoencoderKLTemporalDecoder
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from comfyui_animate_suite.pipelines.stable_animator import loading, models_face, models_pose, models_unet

    def ready(module, module_dtype):
        return module.to(module_dtype).eval().requires_grad_(False)

    config = loading.unet_config(Path("/nonexistent/unet.pth"))
    with torch.device(device):
        return loading.StableAnimatorModels(
            unet=ready(models_unet.build_unet(config), dtype),
            pose_net=ready(models_pose.PoseNet(config["block_out_channels"][0]), dtype),
            face_encoder=ready(models_face.FusionFaceId(config["cross_attention_dim"], 512, 1024, 4), dtype),
            image_encoder=ready(CLIPVisionModelWithProjection(CLIPVisionConfig(**SVD_XT_CLIP)), dtype),
            vae=ready(AutoencoderKLTemporalDecoder(**SVD_XT_VAE), torch.float32),
            scheduler_config=SVD_XT_SCHEDULER,
            face_embedder=ready(models_face.IResNet(), torch.float32))


class TimingStager:
    """Moves modules like the default stager and timestamps every stage (one per step, HJB, decode)."""

    def __init__(self, models, device):
        from comfyui_animate_suite.core.context import MoveToDeviceStager

        self.inner = MoveToDeviceStager(device)
        self.names = {id(m): n for n, m in vars(models).items() if hasattr(m, "parameters")}
        self.events: list[tuple[float, str]] = []

    def stage(self, modules, memory_required=0):
        self.inner.stage(modules, memory_required)
        _synchronize()
        self.events.append((time.perf_counter(), "+".join(self.names.get(id(m), "?") for m in modules)))


def _synchronize():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _phase_seconds(events, end_time):
    """Per denoising step (from one UNet staging to the next, HJB included) and the decode."""
    decode_start = max(t for t, name in events if name == "vae")
    starts = [t for t, name in events if name.startswith("unet")]
    steps, refined = [], []
    for start, stop in zip(starts, starts[1:] + [decode_start]):
        refines = any("face_embedder" in name for t, name in events if start < t < stop)
        (refined if refines else steps).append(stop - start)
    return steps, refined, end_time - decode_start


def run_one(spec: dict) -> dict:
    import torch

    from comfyui_animate_suite.core.context import RunContext
    from comfyui_animate_suite.pipelines.stable_animator import hjb, pipeline

    device = torch.device(spec["device"])
    dtype = getattr(torch, spec["dtype"])
    models = (_random_full_size_models(device, dtype) if spec["full_size"] else _fixture_models(device))
    loaded_kib = _rss_kib("VmRSS")
    generator = torch.Generator().manual_seed(0)
    width, height, frames = spec["width"], spec["height"], spec["frames"]
    masks = torch.zeros(frames, height, width)
    masks[:, height // 8: height // 2, width // 4: 3 * width // 4] = 1
    inputs = pipeline.AnimationInputs(
        reference=torch.rand(1, height, width, 3, generator=generator),
        poses=torch.rand(frames, height, width, 3, generator=generator),
        face_embedding=torch.randn(512, generator=generator) * 20,
        face_masks=masks, reference_face_mask=masks[:1])
    settings = pipeline.AnimationSettings(width=width, height=height, steps=spec["steps"], tile_size=spec["tile_size"],
                                          tile_overlap=4, decode_chunk_size=4, seed=0)
    optimization = hjb.FaceOptimization(spec["hjb"], 0, spec["steps"] - 1, spec["hjb_iterations"], 0.1)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    stager = TimingStager(models, device)
    start = time.perf_counter()
    result = pipeline.animate(models, inputs, settings, optimization, RunContext(device=device, dtype=dtype, stager=stager))
    _synchronize()
    total = time.perf_counter() - start
    steps, refined, decode = _phase_seconds(stager.events, time.perf_counter())
    return {
        **spec, "seconds": total, "refined_steps": result.refined_steps,
        "plain_step_s": sum(steps) / len(steps) if steps else None,
        "refined_step_s": sum(refined) / len(refined) if refined else None, "decode_s": decode,
        "peak_rss_mib": _rss_kib("VmHWM") / 1024, "rise_over_models_mib": (_rss_kib("VmHWM") - loaded_kib) / 1024,
        "peak_vram_mib": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None,
    }


def _spawn(spec: dict) -> dict:
    output = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec)], capture_output=True, text=True)
    if output.returncode:
        raise SystemExit(f"run {spec} failed:\n{output.stderr[-3000:]}")
    return json.loads(output.stdout.strip().splitlines()[-1])


def _median_run(spec: dict, repeat: int) -> dict:
    """The run with the median total time of ``repeat`` fresh processes (CPU timings on a shared machine vary)."""
    runs = sorted((_spawn(spec) for _ in range(repeat)), key=lambda run: run["seconds"])
    return runs[len(runs) // 2]


def _fmt(value, unit=""):
    return "-" if value is None else f"{value:.3f}{unit}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--full-size", action="store_true", help="random SVD-xt-size weights instead of the fixture")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", help="compute dtype of UNet/encoders (VAE, embedder: float32)")
    parser.add_argument("--size", nargs="+", default=None, help="WxH, e.g. 512x512 (default: the fixture's)")
    parser.add_argument("--frames", nargs="+", type=int, default=None, help="default: the fixture's")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--tile-size", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3, help="runs per configuration; the median one is shown")
    parser.add_argument("--hjb-iterations", type=int, default=None, help="default: the fixture's (3 at full size)")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return

    manifest = json.loads((FIXTURE / "manifest.json").read_text()) if not args.full_size else {}
    if not args.full_size and not manifest:
        raise SystemExit(f"{FIXTURE} is missing; use --full-size")
    sizes = [tuple(map(int, s.split("x"))) for s in args.size] if args.size else [(manifest["width"], manifest["height"])]
    frame_counts = args.frames or [manifest["num_frames"]]
    iterations = args.hjb_iterations or manifest.get("hjb", {}).get("num_optimization_iter", 3)
    print(f"StableAnimator on {args.device} ({'random full-size weights' if args.full_size else 'parity fixture models'}), "
          f"{args.steps} steps, HJB on every step with {iterations} iterations")
    for width, height in sizes:
        for frames in frame_counts:
            spec = dict(full_size=args.full_size, device=args.device, dtype=args.dtype, width=width, height=height,
                        frames=frames, steps=args.steps, tile_size=args.tile_size, hjb_iterations=iterations)
            plain, with_hjb = (_median_run({**spec, "hjb": hjb_on}, args.repeat) for hjb_on in (False, True))
            for label, run in (("plain", plain), ("HJB", with_hjb)):
                memory = (f"peak VRAM {_fmt(run['peak_vram_mib'], ' MiB')}" if run["peak_vram_mib"] is not None else
                          f"peak RSS {run['peak_rss_mib']:.0f} MiB (+{run['rise_over_models_mib']:.0f} MiB over the loaded models)")
                print(f"  {width}x{height} {frames:>3} frames {label:<5}: total {run['seconds']:.2f} s, "
                      f"plain step {_fmt(run['plain_step_s'], ' s')}, refined step {_fmt(run['refined_step_s'], ' s')}, "
                      f"decode {run['decode_s']:.2f} s, {memory}")
            print(f"  {width}x{height} {frames:>3} frames HJB overhead: run x{with_hjb['seconds'] / plain['seconds']:.2f}, "
                  f"refined step / plain step x{with_hjb['refined_step_s'] / plain['plain_step_s']:.2f}")


if __name__ == "__main__":
    main()
