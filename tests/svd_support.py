"""Shared setup for the SVD tests: the tiny model saved once per test run in both published layouts."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from tiny_models import svd as tiny

WIDTH, HEIGHT = 24, 16  # latents 12x8 with the tiny VAE (2x down)


@functools.lru_cache(maxsize=None)
def tiny_svd_files() -> SimpleNamespace:
    """The tiny SVD as a diffusers folder, a single file (fp32 and fp16) and the configs the single file needs.

    ``config_root`` holds the configs as ``<variant>/`` folders, the layout of the pack's own
    ``pipelines/svd/configs``, so node tests can point the loader at it.
    """
    root = Path(tempfile.mkdtemp(prefix="tiny-svd-"))
    atexit.register(shutil.rmtree, root, True)
    models = tiny.build(seed=0)
    folder = tiny.save_diffusers_folder(models, root / "stable-video-diffusion-tiny")
    single = tiny.save_single_file(models, root / "svd_xt_tiny.safetensors")
    single_fp16 = tiny.save_single_file(models, root / "svd_xt_tiny.fp16.safetensors", torch.float16)
    for variant in ("svd", "svd_xt"):
        tiny.save_config_dir(root / "configs" / variant)
    return SimpleNamespace(root=root, models=models, folder=folder, single=single, single_fp16=single_fp16,
                           config_dir=root / "configs" / "svd_xt", config_root=root / "configs")


def photo(width: int = WIDTH, height: int = HEIGHT, seed: int = 0) -> np.ndarray:
    """A smooth random uint8 photo ``[H,W,3]`` (smooth so resizing is meaningful)."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((3, 3, 3)).astype(np.float32)
    image = torch.nn.functional.interpolate(torch.from_numpy(coarse).permute(2, 0, 1)[None], size=(height, width),
                                            mode="bilinear", align_corners=True)[0].permute(1, 2, 0)
    return (image.numpy() * 255).round().astype(np.uint8)


def as_image(array: np.ndarray) -> torch.Tensor:
    """uint8 ``[H,W,3]`` -> IMAGE ``[1,H,W,3]``."""
    return torch.from_numpy(array).float()[None] / 255.0
