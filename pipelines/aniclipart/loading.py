"""Loading AniClipart's video prior, ModelScope text-to-video (``text-to-video-ms-1.7b``), from a diffusers folder.

Local files only; nothing is fetched. The folder is the released layout (``model_index.json`` naming a
``TextToVideoSDPipeline`` with ``unet/`` UNet3DConditionModel, ``vae/`` AutoencoderKL, ``text_encoder/``
CLIPTextModel, ``tokenizer/`` CLIPTokenizer, ``scheduler/``). Each module is built from its own
``config.json`` and its weights are read with ``core/checkpoints.py`` (safetensors, or ``.bin``
with ``weights_only=True``) and checked strictly: every file key lands in the module and every module
key comes from the file. Both the full and the ``fp16`` variant files are accepted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ...core import checkpoints
from ...core.errors import CheckpointError, ModelNotFoundError

PIPELINE_CLASS = "TextToVideoSDPipeline"
COMPONENT_CLASSES = {
    "unet": "UNet3DConditionModel",
    "vae": "AutoencoderKL",
    "text_encoder": "CLIPTextModel",
    "tokenizer": "CLIPTokenizer",
}
DIFFUSERS_WEIGHT_STEMS = ("diffusion_pytorch_model", "diffusion_pytorch_model")  # (safetensors, bin)
TRANSFORMERS_WEIGHT_STEMS = ("model", "pytorch_model")
HALF_VARIANT = "fp16"
# transformers 4.x names CLIPTextModel's weights text_model.*; 5.x drops the prefix. Files have either.
TEXT_MODEL_PREFIX = "text_model."
# Saved by transformers < 4.31 as a persistent buffer; later versions rebuild it.
LEGACY_TEXT_KEYS = ("embeddings.position_ids",)


@dataclass
class T2VPrior:
    """The modules of the video prior, loaded and in eval mode, never trained."""

    unet: torch.nn.Module
    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    scheduler: object
    source: Path


def read_model_index(folder: Path) -> dict:
    """``model_index.json`` of a text-to-video folder, checked for the components the prior needs."""
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise ModelNotFoundError(
            "ModelScope text-to-video folder", f"model_index.json in '{folder.name}'", [str(folder)],
            "https://huggingface.co/ali-vilab/text-to-video-ms-1.7b",
        )
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"'{index_path}' is not readable JSON ({error}).") from None
    wrong = [
        f"{name} is {index.get(name, [None, 'missing'])[-1]}, expected {cls}"
        for name, cls in COMPONENT_CLASSES.items()
        if not isinstance(index.get(name), list) or index[name][-1] != cls
    ]
    if wrong or "scheduler" not in index:
        problems = "; ".join(wrong + ([] if "scheduler" in index else ["scheduler is missing"]))
        raise CheckpointError(
            f"'{folder}' is not a ModelScope text-to-video folder ({index.get('_class_name', 'unknown pipeline')}: "
            f"{problems}). Use ali-vilab/text-to-video-ms-1.7b, whose model_index.json names a {PIPELINE_CLASS}."
        )
    return index


def _read_config(component_dir: Path) -> dict:
    path = component_dir / ("scheduler_config.json" if component_dir.name == "scheduler" else "config.json")
    if not path.is_file():
        raise ModelNotFoundError(f"ModelScope text-to-video {component_dir.name}", f"'{path.name}'", [str(component_dir)])
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"'{path}' is not readable JSON ({error}).") from None


def weights_file(component_dir: Path, stems: tuple[str, str], prefer_half: bool) -> Path:
    """The component's weights: safetensors before .bin, the fp16 variant first when computing in 16 bit."""
    safetensors_stem, bin_stem = stems
    variants = (f".{HALF_VARIANT}", "") if prefer_half else ("", f".{HALF_VARIANT}")
    names = [f"{safetensors_stem}{v}.safetensors" for v in variants] + [f"{bin_stem}{v}.bin" for v in variants]
    for name in names:
        if (component_dir / name).is_file():
            return component_dir / name
    raise ModelNotFoundError(
        f"ModelScope text-to-video {component_dir.name} weights", " or ".join(f"'{n}'" for n in names), [str(component_dir)]
    )


def _leftover_meta(module: torch.nn.Module) -> list[str]:
    tensors = list(module.named_parameters()) + list(module.named_buffers())
    return [name for name, tensor in tensors if tensor.is_meta]


def _load_diffusers_model(model_class, component_dir: Path, dtype: torch.dtype) -> torch.nn.Module:
    """Build on the meta device (no random init of a 1.4B UNet) and take the file's tensors as they are."""
    config = _read_config(component_dir)
    with torch.device("meta"):
        model = model_class.from_config(config)
    path = weights_file(component_dir, DIFFUSERS_WEIGHT_STEMS, dtype in (torch.float16, torch.bfloat16))
    state_dict = checkpoints.load_state_dict(path)
    # Early diffusers saved VAE attention as query/key/value/proj_attn; diffusers renames them.
    rename_legacy_keys = getattr(model, "_fix_state_dict_keys_on_load", None)
    if rename_legacy_keys is not None:
        state_dict = rename_legacy_keys(dict(state_dict))
    checkpoints.check_keys(model, {k: tuple(v.shape) for k, v in state_dict.items()}, str(path), model_class.__name__)
    model.load_state_dict(state_dict, strict=True, assign=True)
    leftover = _leftover_meta(model)
    if leftover:
        raise CheckpointError(f"'{path}' left {model_class.__name__} tensors unset: {', '.join(leftover[:5])}.")
    # nn.Module.to, not diffusers' override: that one warns about modules kept in fp32, which these lack.
    return torch.nn.Module.to(model, dtype).eval().requires_grad_(False)


def load_unet(component_dir: Path, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    from diffusers import UNet3DConditionModel

    return _load_diffusers_model(UNet3DConditionModel, component_dir, dtype)


def load_vae(component_dir: Path, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    from diffusers import AutoencoderKL

    return _load_diffusers_model(AutoencoderKL, component_dir, dtype)


def _align_text_keys(state_dict: dict, expected: set[str]) -> dict:
    """Rename ``text_model.*`` <-> ``*`` to the installed transformers' naming; drop legacy buffers."""
    has_prefix = all(key.startswith(TEXT_MODEL_PREFIX) for key in state_dict)
    wants_prefix = all(key.startswith(TEXT_MODEL_PREFIX) for key in expected)
    if has_prefix and not wants_prefix:
        state_dict = {key[len(TEXT_MODEL_PREFIX):]: value for key, value in state_dict.items()}
    elif wants_prefix and not has_prefix:
        state_dict = {TEXT_MODEL_PREFIX + key: value for key, value in state_dict.items()}
    legacy = {prefix + key for key in LEGACY_TEXT_KEYS for prefix in ("", TEXT_MODEL_PREFIX)} - expected
    return {key: value for key, value in state_dict.items() if key not in legacy}


def load_text_encoder(component_dir: Path, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig.from_dict(_read_config(component_dir))
    model = CLIPTextModel(config)
    path = weights_file(component_dir, TRANSFORMERS_WEIGHT_STEMS, dtype in (torch.float16, torch.bfloat16))
    state_dict = _align_text_keys(checkpoints.load_state_dict(path), set(model.state_dict()))
    checkpoints.load_into_module(model, state_dict, path, "CLIPTextModel")
    return model.to(dtype).eval().requires_grad_(False)


def load_tokenizer(component_dir: Path):
    from transformers import CLIPTokenizer

    if not (component_dir / "vocab.json").is_file() or not (component_dir / "merges.txt").is_file():
        raise ModelNotFoundError("ModelScope text-to-video tokenizer", "'vocab.json' and 'merges.txt'", [str(component_dir)])
    return CLIPTokenizer.from_pretrained(str(component_dir), local_files_only=True)


def load_scheduler(component_dir: Path):
    """The training noise schedule (only ``alphas_cumprod`` and ``add_noise`` are used)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_config(_read_config(component_dir))


def load_t2v_prior(folder, dtype: torch.dtype = torch.float32, vae_dtype: torch.dtype | None = None) -> T2VPrior:
    """Load every module of the text-to-video folder on CPU in ``dtype`` (the VAE in ``vae_dtype``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelNotFoundError("ModelScope text-to-video folder", f"'{folder.name}'", [str(folder.parent)])
    read_model_index(folder)
    # The VAE is differentiated through, so its weights must not be inference tensors even when the
    # caller (ComfyUI) runs under torch.inference_mode().
    with torch.inference_mode(False):
        return T2VPrior(
            unet=load_unet(folder / "unet", dtype),
            vae=load_vae(folder / "vae", vae_dtype or dtype),
            text_encoder=load_text_encoder(folder / "text_encoder", dtype),
            tokenizer=load_tokenizer(folder / "tokenizer"),
            scheduler=load_scheduler(folder / "scheduler"),
            source=folder,
        )
