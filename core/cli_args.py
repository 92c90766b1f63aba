"""Command-line pieces every command shares: where the models folder is, and the locator for it."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parents[1]


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
