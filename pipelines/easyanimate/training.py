"""EasyAnimate v1 for the trainer (``pipelines/training``): the released models as ``EasyAnimateModels``
(what ``training_task.EasyAnimateTask`` trains).

The recipe's ``model`` mapping (``configs/easyanimate_*.yaml``):
- ``pixart_dir``: the PixArt-XL-2-512x512 diffusers folder (``transformer/``, ``text_encoder/``,
  ``tokenizer/``, ``vae/``), EasyAnimate's ``--pretrained_model_name_or_path``;
- ``motion_module``: an ``easyanimate_v1_mm.safetensors`` to start from (EasyAnimate's
  ``--transformer_path``), or null for a fresh motion module as ``Transformer3DModel.from_pretrained_2d``
  builds it: PyTorch's default initialisation, ``proj_out`` zeroed (the module starts as the identity) and
  the sinusoidal frame tables.

Every module is read by the inference loaders (``loading.py``), in float32 and with every key checked;
the trainer casts the frozen ones to the mixed-precision type. Validation samples come from the
inference pipeline (``pipeline.generate_v1``) run with the weights being trained, LoRA adapters included.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from ...core.context import RunContext
from ...core.errors import InputError
from ..motion_module import initialise_motion_modules
from ..training.tasks import ValidationRequest
from . import loading, pipeline, schedulers
from .models import EasyAnimateV1Transformer, TransformerConfig
from .training_task import EasyAnimateModels

MODEL_KEYS = ("pixart_dir", "motion_module")
MOTION_MODULE_INIT_SEED = 0  # a fresh motion module is the same in every run (and on every process)
VALIDATION_OPTIONS = {  # validation.options -> default (EasyAnimate's training scripts sample 16 frames)
    "prompts": ["A girl with delicate face is smiling."],
    "negative_prompt": pipeline.V1_NEGATIVE_PROMPT,
    "width": pipeline.V1_SIZE,
    "height": pipeline.V1_SIZE,
    "frames": 16,
    "steps": pipeline.V1_STEPS,
    "guidance": pipeline.V1_GUIDANCE,
    "sampler": schedulers.V1_DEFAULT_SAMPLER,
}


def build_training_models(model_config: dict) -> EasyAnimateModels:
    """PixArt-XL-2-512x512 folder (+ motion module file) -> transformer, VAE, T5 and its tokenizer."""
    unknown = sorted(set(model_config) - set(MODEL_KEYS))
    if unknown:
        raise InputError(f"model.{unknown[0]}", "is not a known setting", "one of factory, " + ", ".join(MODEL_KEYS))
    if not model_config.get("pixart_dir"):
        raise InputError("model.pixart_dir", "is not set", "the PixArt-XL-2-512x512 diffusers folder")
    base = Path(model_config["pixart_dir"])
    loading.require_parts(base, loading.V1_FOLDER_PARTS, "EasyAnimate v1 base (PixArt-XL-2-512x512)", loading.V1_SOURCE)
    motion_module = model_config.get("motion_module")
    transformer = load_transformer(base / "transformer", Path(motion_module) if motion_module else None)
    text_encoder = loading.load_t5(base / "text_encoder", torch.float32)
    tokenizer = loading.load_t5_tokenizer(base / "tokenizer")
    vae = loading.load_vae(base / "vae", torch.float32)
    return EasyAnimateModels(transformer=transformer, vae=vae, text_encoder=text_encoder,
                             tokenize=partial(tokenize, tokenizer),
                             validation_sampler=V1ValidationSampler(tokenizer, text_encoder, vae))


def load_transformer(transformer_folder: Path, motion_module: Optional[Path]) -> EasyAnimateV1Transformer:
    """The v1 transformer in float32: PixArt weights + the motion-module file, or a fresh motion module."""
    if motion_module is not None:
        return loading.load_v1_transformer(transformer_folder, motion_module, torch.float32)
    config_path = transformer_folder / "config.json"
    config = TransformerConfig.from_pixart(loading.read_json(config_path), str(config_path))
    transformer = loading.build_v1_transformer(config, dtype=torch.float32)
    fresh = initialise_motion_modules(transformer, MOTION_MODULE_INIT_SEED)
    return loading.load_weights(transformer, loading.weight_files(transformer_folder),
                                "the PixArt transformer under EasyAnimate v1's motion module", ignore_missing=fresh).eval()


def tokenize(tokenizer, texts: list, max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """T5 ids and attention mask, padded and truncated to ``max_length``, as EasyAnimate's training scripts
    tokenize captions (no lower-casing, ``</s>`` appended)."""
    tokens = tokenizer(list(texts), max_length=max_length, padding="max_length", truncation=True,
                       add_special_tokens=True, return_tensors="pt")
    return tokens.input_ids, tokens.attention_mask


@dataclass
class V1ValidationSampler:
    """Text-to-video samples with the trained weights, one per prompt of ``validation.options``."""

    tokenizer: Any
    text_encoder: nn.Module
    vae: nn.Module

    def check_options(self, options: dict) -> None:
        unknown = sorted(set(options) - set(VALIDATION_OPTIONS))
        if unknown:
            raise InputError(f"validation.options.{unknown[0]}", "is not a known setting",
                             "one of " + ", ".join(VALIDATION_OPTIONS))
        prompts = options.get("prompts", VALIDATION_OPTIONS["prompts"])
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise InputError("validation.options.prompts", f"is {prompts!r}", "a list of prompts")

    def __call__(self, net: nn.Module, request: ValidationRequest) -> dict:
        options = {**VALIDATION_OPTIONS, **request.options}
        text_encoder = net.text_encoder if net.text_encoder is not None else self.text_encoder  # its LoRA, if trained
        model = loading.EasyAnimateV1(net.transformer, text_encoder, self.tokenizer, self.vae)
        context = RunContext(device=request.device, dtype=next(net.transformer.parameters()).dtype)
        samples = {}
        for index, prompt in enumerate(options["prompts"]):
            video = pipeline.VideoRequest(
                prompt=prompt, negative_prompt=options["negative_prompt"], width=options["width"],
                height=options["height"], frames=options["frames"], steps=options["steps"],
                guidance=options["guidance"], seed=request.seed, sampler=options["sampler"])
            frames = pipeline.generate_v1(model, video, context).frames
            samples[f"prompt-{index}"] = (frames * 255).round().to(torch.uint8).numpy()
        return samples

