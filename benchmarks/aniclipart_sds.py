"""Time of one text-guided (SDS) optimisation step of AniClipart, with a tiny random text-to-video prior.

One step = Bézier poses from the trajectory MLP -> ARAP deformation of the real clipart rig ->
rasterisation -> frame augmentation -> VAE encode (distinct poses only) -> UNet3D with and without the
prompt -> backward -> Adam step. The clipart is man_dance from ../shared/data/clipart (12 keypoints,
AniClipart's example) when present, else the pack's gingerbread, at 256x256. The default prior is the
tests' tiny random model (built in a temporary folder), so the figures measure the pipeline's own
overhead; pass ``--prior`` a real text-to-video-ms-1.7b folder (and ``--device cuda``) for real timings.
Also prints what encoding each distinct pose once saves over encoding all frames.

Run: python benchmarks/aniclipart_sds.py [--prior DIR] [--clipart SVG] [--device cpu|cuda] [--steps N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from tiny_models.aniclipart_t2v import build_t2v_folder  # noqa: E402

from comfyui_animate_suite.pipelines.aniclipart import loading, sds  # noqa: E402
from comfyui_animate_suite.pipelines.aniclipart.text_guided import (  # noqa: E402
    ADAM_BETAS, ADAM_EPS, PRESETS, MotionObjective, initial_trajectory,
)
from comfyui_animate_suite.svg import raster, rig as rig_module  # noqa: E402
from comfyui_animate_suite.svg.animate import load_clipart  # noqa: E402

CANVAS = 256
MAN_DANCE = REPO.parent / "shared" / "data" / "clipart" / "man_dance" / "man_dance_scaled.svg"
GINGERBREAD = REPO / "examples" / "gingerbread.svg"


def synchronise(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PhaseTimer:
    """Wraps the pipeline's own functions so each step's time splits into its phases."""

    def __init__(self, device):
        self.device, self.totals = device, {}

    def wrap(self, name, function):
        def timed(*args, **kwargs):
            synchronise(self.device)
            start = time.perf_counter()
            result = function(*args, **kwargs)
            synchronise(self.device)
            self.totals[name] = self.totals.get(name, 0.0) + time.perf_counter() - start
            return result

        return timed


def time_steps(prior, embeddings, rig, preset: str, steps: int, device):
    """Per-step seconds and the median split into ARAP / rasterise / augment / VAE encode / UNet / backward+Adam."""
    settings = PRESETS[preset]
    trajectory = initial_trajectory(rig, settings, 0, device)
    loss_fn = sds.VideoSDS(prior.unet, prior.vae, prior.scheduler, embeddings, settings.sds())
    objective = MotionObjective(rig, trajectory, loss_fn, settings, device)
    optimizer = torch.optim.Adam(trajectory.mlp.parameters(), lr=settings.lr, betas=ADAM_BETAS, eps=ADAM_EPS)
    generator = torch.Generator().manual_seed(0)
    timer = PhaseTimer(device)
    objective.augmentation = timer.wrap("augment", objective.augmentation)
    originals = rig_module.deform, raster.rasterise, sds.encode_video, sds.guided_noise_prediction
    rig_module.deform = timer.wrap("ARAP deform", rig_module.deform)
    raster.rasterise = timer.wrap("rasterise", raster.rasterise)
    sds.encode_video = timer.wrap("VAE encode", sds.encode_video)
    sds.guided_noise_prediction = timer.wrap("UNet x2", sds.guided_noise_prediction)
    times, phases = [], []
    try:
        for _ in range(steps + 1):  # the first step warms up
            timer.totals = {}
            synchronise(device)
            start = time.perf_counter()
            optimizer.zero_grad()
            loss, _, _, _ = objective(objective.noise(generator), generator)
            backward = timer.wrap("backward + step", lambda: (loss.backward(), optimizer.step()))
            backward()
            synchronise(device)
            times.append(time.perf_counter() - start)
            phases.append(dict(timer.totals))
    finally:
        rig_module.deform, raster.rasterise, sds.encode_video, sds.guided_noise_prediction = originals
    split = {name: statistics.median(p[name] for p in phases[1:]) for name in phases[-1]}
    return times[1:], split


def time_encoding(prior, distinct: int, frames: int, repeats: int, device) -> tuple[float, float]:
    """VAE encode + backward: each distinct frame once vs every output frame."""
    video = torch.rand(1, distinct, 3, CANVAS, CANVAS, device=device, requires_grad=True)
    index = torch.arange(frames) % distinct
    noise = torch.randn(frames, prior.vae.config.latent_channels, CANVAS // 8, CANVAS // 8)
    results = []
    for frame_index, clip in ((index, video), (None, None)):
        samples = []
        for _ in range(repeats + 1):
            synchronise(device)
            start = time.perf_counter()
            source = clip if frame_index is not None else video[:, index.to(device)]
            sds.encode_video(prior.vae, source, noise, frame_index).sum().backward()
            synchronise(device)
            samples.append(time.perf_counter() - start)
        results.append(statistics.median(samples[1:]))
    return results[0], results[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", type=Path, default=None, help="text-to-video diffusers folder (default: tiny random)")
    parser.add_argument("--clipart", type=Path, default=MAN_DANCE if MAN_DANCE.is_file() else GINGERBREAD,
                        help="SVG with AniClipart side files (default: man_dance if ../shared is there, else gingerbread)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    with tempfile.TemporaryDirectory() as temporary:
        folder = args.prior or build_t2v_folder(Path(temporary) / "tiny-t2v")
        prior = loading.load_t2v_prior(folder, dtype)
    for module in (prior.unet, prior.vae, prior.text_encoder):
        module.to(device)
    embeddings = sds.embed_token_ids(prior.text_encoder, *sds.tokenize_prompt(prior.tokenizer, "A figure is dancing."))
    clipart = load_clipart(args.clipart, CANVAS)
    rig = clipart.rig.to(device)

    print(f"prior: {'tiny random (tests/tiny_models/aniclipart_t2v.py)' if args.prior is None else args.prior}; "
          f"device {device}, {dtype}; torch threads {torch.get_num_threads()}")
    print(f"clipart: {args.clipart.name}, {rig.num_keypoints} keypoints, "
          f"{sum(len(layer.mesh.triangles) for layer in rig.layers)} triangles, {rig.layout.num_points} path points")
    for preset in ("aniclipart", "fast"):
        settings = PRESETS[preset]
        times, split = time_steps(prior, embeddings, rig, preset, args.steps, device)
        median = statistics.median(times)
        print(f"{preset:>10}: {settings.num_frames} frames {CANVAS}x{CANVAS}, one SDS step {median * 1000:8.1f} ms "
              f"(median of {len(times)}, min {min(times) * 1000:.1f} ms); {settings.iterations} steps "
              f"~ {median * settings.iterations:.0f} s")
        print("            " + ", ".join(f"{name} {seconds * 1000:.1f} ms ({seconds / median:.0%})" for name, seconds in split.items()))
    reference = PRESETS["aniclipart"]
    distinct = reference.num_frames // (2 * reference.loop_num)
    once, every = time_encoding(prior, distinct, reference.num_frames, max(2, args.steps // 2), device)
    print(f"VAE encode+backward: {distinct} distinct poses {once * 1000:.1f} ms vs all {reference.num_frames} "
          f"frames {every * 1000:.1f} ms -> {every / once:.2f}x faster")


if __name__ == "__main__":
    main()
