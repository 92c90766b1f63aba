"""The text-guided half of the ``clipart`` command: ``clipart INPUT.svg --prompt "..."``.

The ``clipart`` command (procedural motion, SVG loading, output writing) adds these arguments with
``add_prompt_arguments(parser)`` and, when ``args.prompt`` is set, calls ``run_prompt(args, rig)`` with
the rigged clipart (a ``text_guided.ClipartRig``); the result carries the frames and the trajectories.
"""

from __future__ import annotations

import sys
from pathlib import Path

PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def add_prompt_arguments(parser) -> None:
    from .text_guided import PRESETS

    group = parser.add_argument_group("text-guided motion (AniClipart SDS with text-to-video-ms-1.7b)")
    group.add_argument("--prompt", help="caption of the motion, e.g. 'A man is dancing.'; optimises the "
                                        "trajectories against the ModelScope text-to-video prior")
    group.add_argument("--t2v-model", type=Path, default=None,
                       help="text-to-video-ms-1.7b diffusers folder (default: looked up in <models-dir>/diffusers)")
    group.add_argument("--sds-preset", choices=sorted(PRESETS), default="aniclipart",
                       help="aniclipart: the paper's 500 steps, 24 frames; fast: 150 steps, 16 frames")
    group.add_argument("--iterations", type=int, default=None, help="optimisation steps (default: the preset's)")
    group.add_argument("--guidance", type=float, default=None, help="classifier-free guidance of the prior (default 50)")
    group.add_argument("--precision", choices=PRECISIONS, default="auto",
                       help="auto: fp16 on a GPU as AniClipart, fp32 on CPU")
    group.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")


def _device_and_dtype(args):
    import torch

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    named = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if args.precision in named:
        return device, named[args.precision]
    return device, torch.float16 if device.type == "cuda" else torch.float32


def prior_folder(args) -> Path:
    """``--t2v-model``, or the registered text-to-video-ms-1.7b folder under the models directory."""
    if args.t2v_model is not None:
        return Path(args.t2v_model)
    from ...cli import locator_from_args
    from .. import model_registry

    return model_registry.require(model_registry.MODELSCOPE_T2V, "diffusers", locator_from_args(args))


class _PrintProgress:
    def __init__(self, every: int = 10):
        self.every = every

    def __call__(self, step: int, total: int, preview=None) -> None:
        if step == total or step % self.every == 0:
            print(f"text-guided motion: step {step}/{total}", file=sys.stderr, flush=True)


def run_prompt(args, rig):
    """Load the prior, optimise ``rig``'s motion for ``args.prompt``; returns a ``TextGuidedResult``."""
    from ..context import RunContext
    from .loading import load_t2v_prior
    from .text_guided import animate_from_text, settings_for

    device, dtype = _device_and_dtype(args)
    prior = load_t2v_prior(prior_folder(args), dtype)
    settings = settings_for(args.sds_preset, iterations=args.iterations, guidance_scale=args.guidance)
    ctx = RunContext(device=device, dtype=dtype, progress=_PrintProgress())
    return animate_from_text(rig, prior, args.prompt, settings, seed=getattr(args, "seed", 0) or 0, ctx=ctx)
