"""The SVD-xt parts StableAnimator reuses, read from a diffusers-format folder.

StableAnimator's release replaces the whole UNet (``unet.pth``), so from the SVD-xt base it needs only
the temporal VAE (``vae/``), the CLIP image encoder (``image_encoder/``) and the Euler scheduler
settings (``scheduler/``). ``load_svd_base`` is the one place that reads them; the pack's SVD loader
(single-file checkpoints too) can take its place without touching the rest of this package.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import CheckpointError, CheckpointMismatchError, ModelNotFoundError

SVD_SOURCE = "https://huggingface.co/stabilityai/stable-video-diffusion-img2vid-xt"


@dataclass
class SVDBase:
    vae: torch.nn.Module  # AutoencoderKLTemporalDecoder
    image_encoder: torch.nn.Module  # CLIPVisionModelWithProjection
    scheduler_config: dict  # EulerDiscreteScheduler config


def _subfolder(folder: Path, name: str) -> Path:
    path = folder / name
    if not (path / "config.json").is_file() and not (path / "scheduler_config.json").is_file():
        raise ModelNotFoundError(
            f"SVD-xt base ({name})", f"'{name}/' with its config", [str(folder)],
            f"{SVD_SOURCE} (a diffusers folder with vae/, image_encoder/ and scheduler/)",
        )
    return path


def _variant(path: Path, weights_stem: str) -> str | None:
    """'fp16' when only the fp16 variant of the weights is present (as some SVD downloads are)."""
    if (path / f"{weights_stem}.safetensors").is_file() or (path / f"{weights_stem}.bin").is_file():
        return None
    if any(path.glob(f"{weights_stem}.fp16.*")):
        return "fp16"
    raise ModelNotFoundError(f"SVD-xt base ({path.name})", f"'{weights_stem}.safetensors'", [str(path)], SVD_SOURCE)


def _require_complete(path: Path, name: str, info: dict) -> None:
    missing, unexpected = info.get("missing_keys", ()), info.get("unexpected_keys", ())
    mismatched = [f"{item[0]}" for item in info.get("mismatched_keys", ())]
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(str(path), name, missing, unexpected, mismatched)


def load_svd_base(folder: str | Path) -> SVDBase:
    """VAE, image encoder (float32, eval) and scheduler config from an SVD-xt diffusers folder."""
    from diffusers import AutoencoderKLTemporalDecoder
    from transformers import CLIPVisionModelWithProjection

    folder = Path(folder)
    vae_dir, encoder_dir, scheduler_dir = (_subfolder(folder, n) for n in ("vae", "image_encoder", "scheduler"))
    try:
        vae, vae_info = AutoencoderKLTemporalDecoder.from_pretrained(
            vae_dir, local_files_only=True, variant=_variant(vae_dir, "diffusion_pytorch_model"),
            torch_dtype=torch.float32, low_cpu_mem_usage=False, output_loading_info=True)
        image_encoder, encoder_info = CLIPVisionModelWithProjection.from_pretrained(
            encoder_dir, local_files_only=True, variant=_variant(encoder_dir, "model"),
            dtype=torch.float32, output_loading_info=True)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"'{folder}' is not a readable SVD-xt diffusers folder: {str(error).splitlines()[0]}") from None
    _require_complete(vae_dir, "the SVD temporal VAE", vae_info)
    _require_complete(encoder_dir, "the SVD CLIP image encoder", encoder_info)
    scheduler_config = json.loads((scheduler_dir / "scheduler_config.json").read_text())
    return SVDBase(vae.eval(), image_encoder.eval(), scheduler_config)
