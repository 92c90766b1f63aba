"""Loading Stable Video Diffusion img2vid (svd, svd_xt, svd_xt_1_1) from the files users have.

Public API (StableAnimator reuses the SVD-xt image encoder, VAE and scheduler through it)::

    from comfyui_animate_suite.pipelines.svd.loading import load_svd_components

    parts = load_svd_components("models/checkpoints/svd_xt.safetensors", dtype=torch.float16,
                                which=("image_encoder", "vae"))
    parts.image_encoder   # transformers CLIPVisionModelWithProjection (OpenCLIP ViT-H/14 weights)
    parts.vae             # diffusers AutoencoderKLTemporalDecoder (AutoencoderKL for *_image_decoder files)
    parts.unet            # None here: only the modules in ``which`` are built and read
    parts.scheduler_config, parts.feature_extractor_config   # plain dicts
    parts.num_frames      # the model's native frame count (14 for svd, 25 for svd_xt)

``source`` is either
- a single-file checkpoint (``svd.safetensors``, ``svd_xt.safetensors``, ``svd_xt_1_1.safetensors``,
  ``*.fp16.safetensors``): converted by ``convert.py`` with the configs shipped in ``configs/<variant>/``;
  the variant (frame count) comes from the file name, as the file does not record it;
- a diffusers folder (``unet/ vae/ image_encoder/ scheduler/ feature_extractor/``): its own configs,
  local files only; ``*.fp16.safetensors`` variants are used when the compute dtype is half precision.
  Only the sub-folders of the components asked for must exist (missing scheduler/feature_extractor
  configs fall back to the shipped SVD-xt ones).

Modules are built without allocating random weights, then every weight is assigned strictly (a
missing, unexpected or misshapen key raises ``CheckpointMismatchError``); a file of another model
family raises ``CheckpointError`` saying what it looks like. Weights end up on the CPU in ``dtype``
(the VAE in ``vae_dtype``, by default float32 when ``dtype`` is float16, because the SD VAE overflows
in float16). ``config_dir`` replaces the shipped configs (tests use it for tiny models).
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import torch

from ...core import checkpoints
from ...core.errors import CheckpointError, InputError, ModelNotFoundError
from . import convert

COMPONENTS = ("unet", "vae", "image_encoder")
CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
VARIANT_FRAMES = {"svd": 14, "svd_xt": 25}
SINGLE_FILE = "single_file"
DIFFUSERS = "diffusers"

# diffusers folder: component -> (sub-folder, config file, weight file stem)
_FOLDER_FILES = {
    "unet": ("unet", "config.json", "diffusion_pytorch_model"),
    "vae": ("vae", "config.json", "diffusion_pytorch_model"),
    "image_encoder": ("image_encoder", "config.json", "model"),
}
_MODEL_NAMES = {"unet": "the SVD UNet", "vae": "the SVD VAE", "image_encoder": "the SVD image encoder"}


@dataclass
class SVDComponents:
    """What ``load_svd_components`` returns. Modules not asked for are None."""

    unet: torch.nn.Module | None
    vae: torch.nn.Module | None
    image_encoder: torch.nn.Module | None
    scheduler_config: dict
    feature_extractor_config: dict
    num_frames: int
    variant: str
    layout: str
    source: Path


# ----------------------------------------------------------------------------- configs


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ModelNotFoundError("SVD config", f"'{Path(path).name}'", [str(Path(path).parent)]) from None
    except json.JSONDecodeError as error:
        raise CheckpointError(f"'{path}' is not valid JSON ({error}).") from None


def variant_from_name(name: str) -> str:
    """svd_xt / svd_xt_1_1 / *img2vid-xt* files are the 25-frame model; everything else the 14-frame one."""
    stem = Path(name).name.lower().replace("-", "_")
    return "svd_xt" if "_xt" in stem or stem.startswith("xt") else "svd"


def shipped_configs(variant: str, config_dir: str | os.PathLike | None = None) -> dict[str, dict]:
    folder = Path(config_dir) if config_dir is not None else CONFIGS_DIR / variant
    names = ("unet", "vae", "image_encoder", "scheduler", "feature_extractor")
    return {name: _read_json(folder / f"{name}.json") for name in names}


def vae_dtype_for(dtype: torch.dtype, vae_config: Mapping) -> torch.dtype:
    """float16 VAEs overflow (NaN frames); such a VAE runs in float32 unless the config says otherwise."""
    if dtype == torch.float16 and vae_config.get("force_upcast", True):
        return torch.float32
    return dtype


# ----------------------------------------------------------------------------- building modules


@contextmanager
def _parameters_on_meta():
    """Build modules whose parameters take no memory and need no random init (weights come next)."""
    register = torch.nn.Module.register_parameter

    def register_on_meta(module, name, param):
        register(module, name, param)
        if param is not None:
            module._parameters[name] = torch.nn.Parameter(param.to("meta"), requires_grad=False)

    torch.nn.Module.register_parameter = register_on_meta
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register


def _is_temporal_vae(config: Mapping) -> bool:
    return config.get("_class_name", "AutoencoderKLTemporalDecoder") == "AutoencoderKLTemporalDecoder"


def build_module(component: str, config: Mapping) -> torch.nn.Module:
    """An empty (meta) module for ``component`` from its config."""
    with _parameters_on_meta():
        if component == "unet":
            from diffusers import UNetSpatioTemporalConditionModel

            return UNetSpatioTemporalConditionModel.from_config(dict(config))
        if component == "vae":
            from diffusers import AutoencoderKL, AutoencoderKLTemporalDecoder

            cls = AutoencoderKLTemporalDecoder if _is_temporal_vae(config) else AutoencoderKL
            return cls.from_config(dict(config))
        if component == "image_encoder":
            from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

            fields = {k: v for k, v in config.items() if not k.startswith("_") and k != "architectures"}
            return CLIPVisionModelWithProjection(CLIPVisionConfig(**fields))
    raise InputError("which", f"'{component}' is not an SVD component", "any of " + ", ".join(COMPONENTS))


def assign_weights(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], dtype: torch.dtype,
                   source: str, model_name: str) -> torch.nn.Module:
    """Strictly put ``state_dict`` (cast to ``dtype``) into an empty module."""
    checkpoints.check_keys(module, {k: tuple(v.shape) for k, v in state_dict.items()}, source, model_name)
    weights = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state_dict.items()}
    module.load_state_dict(weights, strict=True, assign=True)
    still_empty = [name for name, p in module.named_parameters() if p.is_meta]
    if still_empty:
        raise CheckpointError(f"'{source}': {model_name} has parameters without weights: {still_empty[:5]}.")
    return module.eval().requires_grad_(False)


# ----------------------------------------------------------------------------- single file


def _single_file_weights(path: Path, component: str, layout: convert.SingleFileLayout,
                         configs: Mapping[str, dict]) -> dict[str, torch.Tensor]:
    raw = checkpoints.load_state_dict(path, prefixes=layout.prefixes(component))
    source = str(path)
    if component == "unet":
        return convert.convert_unet(checkpoints.strip_prefix(raw, convert.UNET_PREFIX), configs["unet"], source)
    if component == "image_encoder":
        return convert.convert_open_clip_visual(checkpoints.strip_prefix(raw, convert.IMAGE_ENCODER_PREFIX), source)
    return convert.convert_vae(raw, layout, configs["vae"], source)


def _image_decoder_vae_config(config: Mapping) -> dict:
    levels = len(config["block_out_channels"])
    fields = ("in_channels", "out_channels", "down_block_types", "block_out_channels", "layers_per_block",
              "latent_channels", "sample_size", "scaling_factor", "force_upcast")
    return {"_class_name": "AutoencoderKL", "up_block_types": ["UpDecoderBlock2D"] * levels,
            **{k: config[k] for k in fields if k in config}}


def _load_single_file(path: Path, dtype, vae_dtype, which, config_dir) -> SVDComponents:
    layout = convert.describe(checkpoints.read_key_shapes(path), str(path))
    variant = variant_from_name(path.name)
    configs = shipped_configs(variant, config_dir)
    if not layout.temporal_decoder:
        configs["vae"] = _image_decoder_vae_config(configs["vae"])
    modules = {}
    for component in which:
        module = build_module(component, configs[component])
        weights = _single_file_weights(path, component, layout, configs)
        target = vae_dtype if component == "vae" else dtype
        modules[component] = assign_weights(module, weights, target, str(path), _MODEL_NAMES[component])
        del weights
    return SVDComponents(
        modules.get("unet"), modules.get("vae"), modules.get("image_encoder"),
        configs["scheduler"], configs["feature_extractor"],
        int(configs["unet"].get("num_frames", VARIANT_FRAMES[variant])), variant, SINGLE_FILE, path,
    )


# ----------------------------------------------------------------------------- diffusers folder


def _check_svd_folder(folder: Path, needs_unet: bool) -> None:
    """Refuse other pipelines' folders. A folder holding only the parts asked for (e.g. StableAnimator's
    SVD base: vae/, image_encoder/, scheduler/) is fine while the UNet is not asked for."""
    index = folder / "model_index.json"
    if index.is_file():
        name = _read_json(index).get("_class_name", "")
        if name != "StableVideoDiffusionPipeline":
            raise CheckpointError(
                f"'{folder}' is a diffusers folder for {name or 'an unknown pipeline'}, not Stable Video Diffusion "
                "(model_index.json should name StableVideoDiffusionPipeline)."
            )
    unet_config = folder / "unet" / "config.json"
    if not unet_config.is_file():
        if not needs_unet:
            return
        raise ModelNotFoundError("SVD diffusers folder", "'unet/config.json'", [str(folder)])
    name = _read_json(unet_config).get("_class_name")
    if name != "UNetSpatioTemporalConditionModel":
        raise CheckpointError(f"'{folder}': unet/ holds a {name}, not the SVD UNetSpatioTemporalConditionModel.")


def _folder_weight_files(folder: Path, stem: str, dtype: torch.dtype) -> list[Path]:
    """The weight file(s) of one component folder, preferring the fp16 variant for half precision."""
    variants = ("fp16.", "") if dtype in (torch.float16, torch.bfloat16) else ("", "fp16.")
    for variant in variants:
        for suffix in ("safetensors", "bin"):
            single = folder / f"{stem}.{variant}{suffix}"
            if single.is_file():
                return [single]
            index = folder / f"{stem}.{variant}{suffix}.index.json"
            if index.is_file():
                shards = sorted(set(_read_json(index).get("weight_map", {}).values()))
                return [folder / shard for shard in shards]
    raise ModelNotFoundError(f"SVD {folder.name} weights", f"'{stem}.safetensors' (or .bin, .fp16 variants)", [str(folder)])


def _load_folder(folder: Path, dtype, vae_dtype, which) -> SVDComponents:
    _check_svd_folder(folder, "unet" in which)
    modules = {}
    for component in which:
        sub, config_name, stem = _FOLDER_FILES[component]
        config = _read_json(folder / sub / config_name)
        target = vae_dtype if component == "vae" else dtype
        files = _folder_weight_files(folder / sub, stem, target)
        weights = {}
        for file in files:
            weights.update(checkpoints.load_state_dict(file))
        module = build_module(component, config)
        modules[component] = assign_weights(module, weights, target, str(folder / sub), _MODEL_NAMES[component])
        del weights
    shipped = shipped_configs("svd_xt")
    scheduler = folder / "scheduler" / "scheduler_config.json"
    features = folder / "feature_extractor" / "preprocessor_config.json"
    unet_config = folder / "unet" / "config.json"
    if unet_config.is_file():
        frames = int(_read_json(unet_config).get("num_frames", VARIANT_FRAMES["svd"]))
    else:
        frames = VARIANT_FRAMES[variant_from_name(folder.name)]
    return SVDComponents(
        modules.get("unet"), modules.get("vae"), modules.get("image_encoder"),
        _read_json(scheduler) if scheduler.is_file() else shipped["scheduler"],
        _read_json(features) if features.is_file() else shipped["feature_extractor"],
        frames, "svd_xt" if frames >= 25 else "svd", DIFFUSERS, folder,
    )


# ----------------------------------------------------------------------------- entry point


def load_svd_components(
    source: str | os.PathLike,
    dtype: torch.dtype = torch.float32,
    which: Iterable[str] = COMPONENTS,
    vae_dtype: torch.dtype | None = None,
    config_dir: str | os.PathLike | None = None,
) -> SVDComponents:
    """Build and load the SVD modules named in ``which`` from a single file or a diffusers folder."""
    source = Path(source)
    which = tuple(dict.fromkeys(which))
    for component in which:
        if component not in COMPONENTS:
            raise InputError("which", f"'{component}' is not an SVD component", "any of " + ", ".join(COMPONENTS))
    if source.is_dir():
        folder_vae = _read_json(source / "vae" / "config.json") if "vae" in which and (source / "vae").is_dir() else {}
        vae = vae_dtype or vae_dtype_for(dtype, folder_vae)
        return _load_folder(source, dtype, vae, which)
    if not source.is_file():
        raise ModelNotFoundError("SVD model", f"'{source.name}'", [str(source.parent)])
    vae = vae_dtype or vae_dtype_for(dtype, shipped_configs(variant_from_name(source.name), config_dir)["vae"])
    return _load_single_file(source, dtype, vae, which, config_dir)
