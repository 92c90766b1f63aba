"""Command-line pieces every command shares: where the models folder is and the locator for it, the device and
precision a run uses, and progress printed to stderr."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parents[1]
PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def default_models_dir() -> Path:
    """$COMFYUI_MODELS_DIR, else the models/ of the ComfyUI this pack sits in, else ./models."""
    env = os.environ.get("COMFYUI_MODELS_DIR")
    if env:
        return Path(env)
    if PACK_DIR.parent.name == "custom_nodes" and (PACK_DIR.parent.parent / "models").is_dir():
        return PACK_DIR.parent.parent / "models"
    return Path("models")


def add_models_dir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models-dir", type=Path, default=None,
                        help="ComfyUI models folder (default: $COMFYUI_MODELS_DIR, the enclosing ComfyUI's, or ./models)")


def locator_from_args(args):
    from .model_registry import DirectoryLocator

    return DirectoryLocator(args.models_dir or default_models_dir())


def choose_device(name: str | None):
    """``name`` as a torch device; None or "auto": CUDA when available, else the CPU."""
    import torch

    if name in (None, "auto"):
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def choose_precision(precision: str, device) -> tuple:
    """(name, torch dtype) of one of ``PRECISIONS``; "auto": fp16 on CUDA, fp32 elsewhere."""
    import torch

    if precision == "auto":
        precision = "fp16" if device.type == "cuda" else "fp32"
    return precision, {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def progress_printer(label: str, every: int | None = None):
    """A ``RunContext`` progress callback printing ``<label>step/total`` to stderr: rewritten in place on one
    line, or with ``every`` a line every ``every`` steps and at the last."""

    def report(step: int, total: int, preview=None) -> None:
        if every is None:
            print(f"\r{label}{step}/{total}", end="\n" if step == total else "", file=sys.stderr, flush=True)
        elif step == total or step % every == 0:
            print(f"{label}{step}/{total}", file=sys.stderr, flush=True)

    return report
