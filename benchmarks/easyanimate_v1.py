"""EasyAnimate v1 speed and memory: seconds per sampling step, encode/decode time, peak memory.

CPU (default): the parity fixture's model (../shared/parity/easyanimate, 64x64, 8 frames), or the
tests' tiny model when the fixture is absent, in float32 and float64.
GPU (``--full-size``, needs CUDA): the real PixArt-XL-2 + motion-module size with random weights at
512x512x80, fp16, with a random T5-XXL encoder staged for encoding and offloaded to the CPU after,
as the pipeline does; reports seconds per step and peak VRAM.

Run: python benchmarks/easyanimate_v1.py [--steps 3] [--full-size]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

PACK = Path(__file__).resolve().parents[1]
FIXTURE = PACK.parent / "shared" / "parity" / "easyanimate"
sys.path.insert(0, str(PACK / "tests"))

from comfyui_animate_suite.core.context import MoveToDeviceStager, RunContext  # noqa: E402
from comfyui_animate_suite.pipelines.easyanimate import loading, pipeline  # noqa: E402


class PeakRSS:
    """Peak resident memory of this process while the block runs (sampled every 5 ms)."""

    def __enter__(self):
        import psutil

        self._process, self.peak, self._running = psutil.Process(), 0, True
        self.start = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while self._running:
            self.peak = max(self.peak, self._process.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc):
        self._running = False
        self._thread.join()


def timed_context(dtype: torch.dtype, device: str = "cpu") -> tuple[RunContext, list[float]]:
    marks: list[float] = []
    stager = MoveToDeviceStager(torch.device(device), offload_device=torch.device("cpu"))
    return RunContext(device=device, dtype=dtype, stager=stager,
                      progress=lambda step, total, preview=None: marks.append(time.perf_counter())), marks


def cpu_model(dtype: torch.dtype) -> tuple[loading.EasyAnimateV1, str, dict]:
    if (FIXTURE / "manifest.json").is_file():
        (motion,) = sorted((FIXTURE / "Motion_Module").glob("*.safetensors"))
        return loading.load_v1(FIXTURE, motion, dtype), "parity fixture", {"width": 64, "height": 64, "frames": 8}
    from tiny_models import easyanimate as tiny

    files = tiny.write_v1(Path(tempfile.mkdtemp(prefix="easyanimate_bench_")))
    return loading.load_v1(files.base, files.motion_module, dtype), "tests' tiny model", {"width": 64, "height": 64, "frames": 8}


def run(model, request: pipeline.VideoRequest, dtype: torch.dtype, device: str = "cpu") -> dict:
    context, marks = timed_context(dtype, device)
    start = time.perf_counter()
    with PeakRSS() as memory:
        result = pipeline.generate_v1(model, request, context)
    end = time.perf_counter()
    steps = marks[:request.steps]
    step_seconds = [b - a for a, b in zip([start] + steps, steps)][1:] or [steps[0] - start]
    return {"seconds_per_step": statistics.median(step_seconds), "total": end - start,
            "decode_per_frame": (marks[-1] - marks[request.steps - 1]) / result.frames.shape[0],
            "peak_rss_mb": memory.peak / 2**20, "rss_growth_mb": (memory.peak - memory.start) / 2**20}


def cpu_benchmark(steps: int) -> None:
    figures = {}
    for dtype in (torch.float32, torch.float64):
        model, source, size = cpu_model(dtype)
        request = pipeline.VideoRequest(prompt="A snowy forest landscape with a dirt road.", steps=steps, sampler="DPM++", **size)
        run(model, request, dtype)  # warm-up
        figures[dtype] = run(model, request, dtype)
        f = figures[dtype]
        print(f"CPU {str(dtype).replace('torch.', ''):8s} ({source}, {size['width']}x{size['height']}x{size['frames']}, "
              f"{torch.get_num_threads()} threads): {f['seconds_per_step']:.3f} s/step, "
              f"decode {f['decode_per_frame']:.3f} s/frame, total {f['total']:.2f} s, "
              f"peak RSS {f['peak_rss_mb']:.0f} MB (+{f['rss_growth_mb']:.0f} MB during the job)")
    ratio = figures[torch.float64]["seconds_per_step"] / figures[torch.float32]["seconds_per_step"]
    print(f"float64 / float32 step time: {ratio:.2f}x")


def full_size_benchmark(steps: int) -> None:
    if not torch.cuda.is_available():
        print("full size: no CUDA GPU on this machine; skipped")
        return
    from transformers import T5Config, T5EncoderModel

    dtype, device = torch.float16, "cuda"
    transformer = loading.build_v1_transformer(dtype=dtype)
    from comfyui_animate_suite.pipelines.motion_module import sinusoid_table

    with torch.no_grad():
        for parameter in transformer.parameters():
            parameter.normal_(0, 0.02)
        for buffer in transformer.buffers():  # the motion module's frame encodings
            buffer.copy_(sinusoid_table(buffer.shape[1], buffer.shape[-1]))
    with torch.device("meta"):
        t5 = T5EncoderModel(T5Config(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                                     feed_forward_proj="gated-gelu", is_encoder_decoder=False))
    t5 = t5.to(dtype).to_empty(device="cpu")
    with torch.no_grad():
        for parameter in t5.parameters():
            parameter.normal_(0, 0.02)
    from tiny_models import easyanimate as tiny

    folder = Path(tempfile.mkdtemp(prefix="easyanimate_bench_"))
    tokenizer = loading.load_t5_tokenizer(tiny.write_t5_tokenizer(folder / "tokenizer"))
    vae = tiny_sd_vae(dtype)
    model = loading.EasyAnimateV1(transformer=transformer.eval(), text_encoder=t5.eval(), tokenizer=tokenizer, vae=vae)
    request = pipeline.VideoRequest(prompt="A snowy forest landscape with a dirt road.", steps=steps)
    torch.cuda.reset_peak_memory_stats()
    figures = run(model, request, dtype, device)
    print(f"GPU fp16 {torch.cuda.get_device_name()} 512x512x80: {figures['seconds_per_step']:.2f} s/step, "
          f"decode {figures['decode_per_frame']:.3f} s/frame, peak VRAM {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB "
          "(T5 offloaded after encoding)")


def tiny_sd_vae(dtype: torch.dtype):
    """An SD-sized VAE (random weights) for decode timing."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=(128, 256, 512, 512), latent_channels=4, layers_per_block=2,
                         down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4).to(dtype).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--full-size", action="store_true", help="real model size with random weights on a CUDA GPU")
    args = parser.parse_args()
    if args.full_size:
        full_size_benchmark(args.steps)
    else:
        cpu_benchmark(args.steps)


if __name__ == "__main__":
    main()
