"""Loaders for EasyAnimate's released files, local only.

v1: the PixArt-XL-2-512x512 diffusers folder (``transformer/``, ``text_encoder/`` (T5), ``tokenizer/``,
``vae/``) plus ``easyanimate_v1_mm.safetensors``. The 3D transformer is built from the folder's
``transformer/config.json`` and the shipped ``configs/v1_motion_module.json``; the folder's transformer
weights and the motion-module file together must cover every key (the motion-module file may also
override folder keys, as EasyAnimate's non-strict load lets it).

v5.1: a diffusers ``EasyAnimatePipeline`` folder (``EasyAnimateV5.1-*-diffusers``): diffusers'
``EasyAnimateTransformer3DModel`` and ``AutoencoderKLMagvit``, transformers' Qwen2-VL text encoder.

Large modules are built on the meta device and filled tensor by tensor, so loading never holds a
second full copy of the weights in memory. Every loader checks that every key lands.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ...core import checkpoints
from ...core.errors import CheckpointError, CheckpointMismatchError, ModelNotFoundError
from ..motion_module import MotionSettings
from .models import EasyAnimateV1Transformer, TransformerConfig, motion_settings

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
V1_FOLDER_PARTS = ("transformer", "text_encoder", "tokenizer", "vae")
V51_FOLDER_PARTS = ("transformer", "text_encoder", "tokenizer", "vae", "scheduler")
DIFFUSERS_WEIGHTS = "diffusion_pytorch_model"


def read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelNotFoundError("Model config", f"'{path.name}'", [str(path.parent)])
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"'{path}' is not readable JSON ({error}).") from None


def require_parts(folder: Path, parts: Sequence[str], what: str, source: str) -> None:
    missing = [part for part in parts if not (folder / part).is_dir()]
    if missing:
        raise ModelNotFoundError(f"{what} in '{folder.name}'", "sub-folder(s) " + ", ".join(f"'{p}/'" for p in missing),
                                 [str(folder)], source)


# ----------------------------------------------------------------------------- weights, key by key


def weight_files(folder: Path, stem: str = DIFFUSERS_WEIGHTS) -> list[Path]:
    """The weight files of a diffusers model folder: one file, or the shards its index names."""
    for name in (f"{stem}.safetensors", f"{stem}.fp16.safetensors"):
        if (folder / name).is_file():
            return [folder / name]
    index = folder / f"{stem}.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(read_json(index).get("weight_map", {}).values()))
        return [folder / shard for shard in shards]
    for name in (f"{stem}.bin", f"{stem}.fp16.bin"):
        if (folder / name).is_file():
            return [folder / name]
    raise ModelNotFoundError(f"Weights of '{folder.name}'", f"'{stem}.safetensors' (or shards / .bin)", [str(folder)])


def empty_module(build: Callable[[], nn.Module], dtype: torch.dtype) -> nn.Module:
    """Build a module without initialising it: allocated once, in ``dtype``, on the CPU."""
    with torch.device("meta"):
        module = build()
    # nn.Module.to, not diffusers' override (which warns about fp32-kept modules it then ignores).
    return nn.Module.to(module, dtype).to_empty(device="cpu")


def load_weights(module: nn.Module, files: Sequence[Path], model_name: str,
                 ignore_missing: Sequence[str] = ()) -> nn.Module:
    """Fill ``module`` from ``files`` (later files override earlier ones per key), strictly.

    Keys and shapes are checked from the files' headers before any tensor is read; tensors are
    then copied one at a time, cast to the module's dtype. Only the keys in ``ignore_missing`` (already
    set by the caller) may be absent from the files.
    """
    owner: dict[str, Path] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    for path in files:
        for key, shape in checkpoints.read_key_shapes(path).items():
            owner[key], shapes[key] = path, shape
    source = " + ".join(str(path) for path in files)
    checkpoints.check_keys(module, shapes, source, model_name, ignore_missing)
    targets = module.state_dict(keep_vars=True)
    with torch.no_grad():
        for path in files:
            keys = [key for key, where in owner.items() if where == path]
            for key, tensor in _read_tensors(path, keys):
                targets[key].copy_(tensor)
    return module


def _read_tensors(path: Path, keys: list[str]):
    if path.suffix.lower() in checkpoints.SAFETENSORS_SUFFIXES:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            for key in keys:
                yield key, handle.get_tensor(key)
    else:
        state_dict = checkpoints.load_state_dict(path)
        for key in keys:
            yield key, state_dict[key]


# ----------------------------------------------------------------------------- v1


def shipped_config(name: str) -> dict[str, Any]:
    return read_json(CONFIG_DIR / name)


def v1_motion_module_config() -> MotionSettings:
    return motion_settings(shipped_config("v1_motion_module.json"), "configs/v1_motion_module.json")


def pixart_xl_config() -> TransformerConfig:
    """PixArt-XL-2-512x512's transformer, the base of every released v1 model (used for layout checks)."""
    return TransformerConfig.from_pixart(shipped_config("pixart_xl_2_512x512_transformer.json"))


def build_v1_transformer(config: TransformerConfig | None = None, motion: MotionSettings | None = None,
                         dtype: torch.dtype = torch.float32, device: str = "cpu") -> EasyAnimateV1Transformer:
    """An uninitialised v1 transformer (``device="meta"`` allocates nothing: for layout checks)."""
    config, motion = config or pixart_xl_config(), motion or v1_motion_module_config()
    if device == "meta":
        with torch.device("meta"):
            return EasyAnimateV1Transformer(config, motion).to(dtype)
    return empty_module(lambda: EasyAnimateV1Transformer(config, motion), dtype)


def load_v1_transformer(transformer_folder: Path, motion_module: Path, dtype: torch.dtype) -> EasyAnimateV1Transformer:
    config_path = Path(transformer_folder) / "config.json"
    config = TransformerConfig.from_pixart(read_json(config_path), str(config_path))
    transformer = build_v1_transformer(config, v1_motion_module_config(), dtype)
    files = weight_files(Path(transformer_folder)) + [Path(motion_module)]
    return load_weights(transformer, files, "the EasyAnimate v1 transformer (PixArt-XL + motion module)").eval()


def load_t5(folder: Path, dtype: torch.dtype):
    """T5 encoder from a transformers folder. Under fp16 transformers keeps T5's ``wo`` in fp32 (overflow)."""
    from transformers import T5EncoderModel

    if not (Path(folder) / "config.json").is_file():
        raise ModelNotFoundError("T5 text encoder", "'config.json'", [str(folder)])
    try:
        model, info = T5EncoderModel.from_pretrained(str(folder), torch_dtype=dtype, local_files_only=True,
                                                     output_loading_info=True)
    except pickle.UnpicklingError as error:  # transformers reads .bin with weights_only=True: code is refused
        raise CheckpointError(f"'{folder}': the T5 weights hold more than plain tensors (pickled code?) and were refused "
                              f"(torch.load weights_only=True): {str(error).splitlines()[0][:200]}") from None
    check_loading_info(info, folder, "the T5 text encoder")
    if dtype in (torch.float32, torch.float64):
        model = model.to(dtype)
    return model.eval()


def load_t5_tokenizer(folder: Path):
    from transformers import T5Tokenizer

    if not any((Path(folder) / name).is_file() for name in ("spiece.model", "tokenizer.json")):
        raise ModelNotFoundError("T5 tokenizer", "'spiece.model'", [str(folder)])
    return T5Tokenizer.from_pretrained(str(folder), local_files_only=True)


def vae_dtype(dtype: torch.dtype, config: dict) -> torch.dtype:
    """SD-style VAEs marked ``force_upcast`` overflow in fp16: they decode in fp32 instead."""
    return torch.float32 if dtype == torch.float16 and config.get("force_upcast", False) else dtype


def load_vae(folder: Path, dtype: torch.dtype, class_name: str = "AutoencoderKL"):
    import diffusers

    config = read_json(Path(folder) / "config.json")
    cls = getattr(diffusers, class_name)
    vae = empty_module(lambda: cls.from_config(config), vae_dtype(dtype, config))
    return load_weights(vae, weight_files(Path(folder)), f"the VAE ({class_name})").eval()


def check_loading_info(info: dict, folder: Path, model_name: str) -> None:
    missing, unexpected = info.get("missing_keys") or [], info.get("unexpected_keys") or []
    wrong = [f"{item[0]} {item[1]}!={item[2]}" if isinstance(item, tuple) and len(item) == 3 else str(item)
             for item in info.get("mismatched_keys") or []]
    if missing or unexpected or wrong:
        raise CheckpointMismatchError(str(folder), model_name, missing, unexpected, wrong)


@dataclass
class EasyAnimateV1:
    """The modules of an EasyAnimate v1 model, loaded with weights."""

    transformer: EasyAnimateV1Transformer
    text_encoder: nn.Module
    tokenizer: Any
    vae: nn.Module


V1_SOURCE = ("https://huggingface.co/PixArt-alpha/PixArt-XL-2-512x512 (base folder) and "
             "https://pai-aigc-photog.oss-cn-hangzhou.aliyuncs.com/easyanimate/Motion_Module/easyanimate_v1_mm.safetensors")


def load_v1(base_folder: str | Path, motion_module: str | Path, dtype: torch.dtype) -> EasyAnimateV1:
    """PixArt-XL-2-512x512 diffusers folder + ``easyanimate_v1_mm.safetensors`` -> EasyAnimate v1."""
    base = Path(base_folder)
    require_parts(base, V1_FOLDER_PARTS, "EasyAnimate v1 base (PixArt-XL-2-512x512)", V1_SOURCE)
    return EasyAnimateV1(
        transformer=load_v1_transformer(base / "transformer", Path(motion_module), dtype),
        text_encoder=load_t5(base / "text_encoder", dtype),
        tokenizer=load_t5_tokenizer(base / "tokenizer"),
        vae=load_vae(base / "vae", dtype),
    )


# ----------------------------------------------------------------------------- v5.1


V51_SOURCE = "https://huggingface.co/alibaba-pai/EasyAnimateV5.1-7b-zh-diffusers (or -12b-zh-diffusers)"


@dataclass
class EasyAnimateV51:
    """The modules of a diffusers EasyAnimate v5.1 folder, loaded with weights."""

    transformer: nn.Module
    text_encoder: nn.Module
    tokenizer: Any
    vae: nn.Module
    scheduler_config: dict


def load_v51(folder: str | Path, dtype: torch.dtype) -> EasyAnimateV51:
    import diffusers

    folder = Path(folder)
    index = read_json(folder / "model_index.json")
    if index.get("_class_name") != "EasyAnimatePipeline":
        raise CheckpointError(
            f"'{folder.name}' is a {index.get('_class_name')!r} folder, not a text-to-video EasyAnimatePipeline "
            "(EasyAnimateV5.1-*-diffusers). For EasyAnimate v1 use the v1 loader with the PixArt folder.")
    require_parts(folder, V51_FOLDER_PARTS, "EasyAnimate v5.1", V51_SOURCE)
    encoder_class = (index.get("text_encoder") or [None, None])[1]
    if encoder_class != "Qwen2VLForConditionalGeneration":
        raise CheckpointError(f"'{folder.name}' has a {encoder_class!r} text encoder; EasyAnimate v5.1 uses Qwen2-VL.")
    transformer_config = read_json(folder / "transformer" / "config.json")
    transformer = empty_module(lambda: diffusers.EasyAnimateTransformer3DModel.from_config(transformer_config), dtype)
    load_weights(transformer, weight_files(folder / "transformer"), "the EasyAnimate v5.1 transformer")
    return EasyAnimateV51(
        transformer=transformer.eval(),
        text_encoder=load_qwen2vl(folder / "text_encoder", dtype),
        tokenizer=load_auto_tokenizer(folder / "tokenizer"),
        vae=load_vae(folder / "vae", dtype, "AutoencoderKLMagvit"),
        scheduler_config=read_json(folder / "scheduler" / "scheduler_config.json"),
    )


def load_qwen2vl(folder: Path, dtype: torch.dtype):
    from transformers import Qwen2VLForConditionalGeneration

    model, info = Qwen2VLForConditionalGeneration.from_pretrained(str(folder), torch_dtype=dtype, local_files_only=True,
                                                                  output_loading_info=True)
    check_loading_info(info, folder, "the Qwen2-VL text encoder")
    return model.eval()


def load_auto_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
