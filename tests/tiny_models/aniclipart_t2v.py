"""A tiny random ModelScope text-to-video folder, laid out as ``text-to-video-ms-1.7b`` is released.

``model_index.json`` names a ``TextToVideoSDPipeline``; ``unet/`` (UNet3DConditionModel), ``vae/``
(AutoencoderKL, 8x downsampling as the real one), ``text_encoder/`` (CLIPTextModel, weights named
``text_model.*`` as transformers 4.x saves them), ``tokenizer/`` (a tiny byte-level CLIP BPE) and
``scheduler/`` (DDIM with the release's noise schedule). Weights can be written as safetensors or
``.bin``, full or ``fp16`` variant, as the release offers both.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from . import save_weights, seeded

UNET_CONFIG = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 1,
    "block_out_channels": [32, 32],
    "down_block_types": ["CrossAttnDownBlock3D", "DownBlock3D"],
    "up_block_types": ["UpBlock3D", "CrossAttnUpBlock3D"],
    "cross_attention_dim": 16,
    "attention_head_dim": 4,
    "norm_num_groups": 8,
}
VAE_CONFIG = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [8, 8, 8, 8],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 4,
    "sample_size": 64,
    "scaling_factor": 0.18215,
}
SCHEDULER_CONFIG = {  # text-to-video-ms-1.7b's schedule
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}
MERGES = [("i", "n"), ("in", "g</w>"), ("a", "n"), ("t", "h"), ("th", "e</w>")]
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
MAX_LENGTH = 77
MODEL_INDEX = {
    "_class_name": "TextToVideoSDPipeline",
    "_diffusers_version": "0.15.0",
    "scheduler": ["diffusers", "DDIMScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet3DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}


def byte_symbols() -> list[str]:
    """CLIP's byte-level alphabet: printable Latin-1 bytes stand for themselves, the others for chr(256 + i)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]


def write_tokenizer(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    symbols = byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in MERGES] + [BOS, EOS]
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(tokens)}, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in MERGES) + "\n")
    special = {"bos_token": BOS, "eos_token": EOS, "pad_token": EOS, "unk_token": EOS}
    (folder / "special_tokens_map.json").write_text(json.dumps(special))
    (folder / "tokenizer_config.json").write_text(json.dumps({**special, "model_max_length": MAX_LENGTH,
                                                              "tokenizer_class": "CLIPTokenizer"}))


def text_encoder_config() -> dict:
    vocab_size = 2 * len(byte_symbols()) + len(MERGES) + 2
    return {
        "architectures": ["CLIPTextModel"], "model_type": "clip_text_model", "vocab_size": vocab_size,
        "hidden_size": 16, "intermediate_size": 24, "projection_dim": 16, "num_hidden_layers": 2,
        "num_attention_heads": 2, "max_position_embeddings": MAX_LENGTH, "hidden_act": "gelu",
        "layer_norm_eps": 1e-5, "bos_token_id": vocab_size - 2, "eos_token_id": vocab_size - 1,
        "pad_token_id": vocab_size - 1,
    }


def _randomise(module: torch.nn.Module, generator: torch.Generator) -> None:
    # Random everywhere, norms near 1: zero-initialised layers (conv_out, temporal conv4) take part.
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            is_norm_weight = "norm" in name and name.endswith("weight")
            parameter.copy_(1.0 + 0.1 * noise if is_norm_weight else 0.2 * noise)


def _weights_name(stem: str, fmt: str, variant: str | None) -> str:
    middle = f".{variant}" if variant else ""
    return f"{stem}{middle}.safetensors" if fmt == "safetensors" else f"{stem}{middle}.bin"


def _save_component(folder: Path, config: dict, state_dict: dict, stems: tuple[str, str], fmt: str, variant: str | None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    dtype = torch.float16 if variant == "fp16" else torch.float32
    stem = stems[0] if fmt == "safetensors" else stems[1]
    save_weights({k: v.to(dtype) for k, v in state_dict.items()}, folder / _weights_name(stem, fmt, variant))


def build_modules(seed: int = 0):
    """(unet, vae, text_encoder) with random weights, fp16-exact as the released fp16 files."""
    from diffusers import AutoencoderKL, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    generator = seeded(seed)
    unet = UNet3DConditionModel.from_config(UNET_CONFIG)
    vae = AutoencoderKL.from_config(VAE_CONFIG)
    text_encoder = CLIPTextModel(CLIPTextConfig.from_dict(text_encoder_config()))
    for module in (unet, vae, text_encoder):
        _randomise(module, generator)
        module.half().float().eval()
    return unet, vae, text_encoder


def official_text_keys(state_dict: dict) -> dict:
    """transformers 4.x naming (``text_model.*``), as the released file has it."""
    return {k if k.startswith("text_model.") else f"text_model.{k}": v for k, v in state_dict.items()}


def build_t2v_folder(folder: Path, seed: int = 0, fmt: str = "safetensors", variant: str | None = None) -> Path:
    """Write the tiny model as a diffusers folder (``fmt`` safetensors or bin, ``variant`` None or fp16)."""
    folder = Path(folder)
    unet, vae, text_encoder = build_modules(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_index.json").write_text(json.dumps(MODEL_INDEX, indent=2))
    diffusers_stems = ("diffusion_pytorch_model", "diffusion_pytorch_model")
    unet_config = {"_class_name": "UNet3DConditionModel", **UNET_CONFIG}
    vae_config = {"_class_name": "AutoencoderKL", **VAE_CONFIG}
    _save_component(folder / "unet", unet_config, unet.state_dict(), diffusers_stems, fmt, variant)
    _save_component(folder / "vae", vae_config, vae.state_dict(), diffusers_stems, fmt, variant)
    _save_component(folder / "text_encoder", text_encoder_config(), official_text_keys(text_encoder.state_dict()),
                    ("model", "pytorch_model"), fmt, variant)
    write_tokenizer(folder / "tokenizer")
    (folder / "scheduler").mkdir(exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps({"_class_name": "DDIMScheduler", **SCHEDULER_CONFIG}))
    return folder
