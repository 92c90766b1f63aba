"""EasyAnimate v1's training task: LoRA or motion module, what one step computes, trains and exports.

The trainer (``pipelines/training``) builds it from a recipe with ``method: easyanimate`` (its ``TASKS``
table) and the models a factory returns (``training.py``'s ``build_training_models`` unless the recipe's
``model.factory`` names another):

``factory(model_config: dict) -> EasyAnimateModels``:
- ``transformer``: called as ``transformer(latents [B,4,F,h,w], timestep=[B], encoder_hidden_states=[B,L,D],
  encoder_attention_mask=[B,L])`` and returning (a tensor, a tuple whose first item is, or an object with
  ``.sample`` holding) ``[B,8,F,h,w]``: predicted noise then the learned-variance values. An optional
  ``grid_multiple`` attribute (latent sides must be multiples of it) lets the recipe's sizes be checked first;
- ``vae``: diffusers ``AutoencoderKL``; ``text_encoder``: transformers ``T5EncoderModel``;
- ``tokenize(texts, max_length) -> (input_ids [B,L], attention_mask [B,L])``: padded to ``max_length``
  (``data.tokenizer_max_length``, 120 in the reference), truncated, with special tokens (``T5Tokenizer``);
- ``validation_sampler`` (optional): see ``pipelines/training/tasks.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from ...core.errors import InputError
from ..motion_module import DIT_MOTION_KEY, is_motion_module_key
from ..training import lora, losses, selection
from ..training.config import from_dict
from ..training.lora import LoRATargets
from ..training.tasks import (VAE_FACTOR, StepContext, ValidationRequest, ValidationSampler, encode_frames,
                              per_sample_normal, per_sample_timesteps, sample_generators, unwrap_output)
from .lora import TEXT_ENCODER_PREFIX, TRANSFORMER_PREFIX, kohya_name
from .training_data import EasyAnimateDataConfig, EasyAnimateMedia

MODES = ("lora", "motion_module")
VIDEO_CROPS = ("center", "random")
T5_CONTAINERS = ("T5LayerSelfAttention", "T5LayerFF")


@dataclass
class IDDPMConfig:
    """The recipe's ``noise`` section."""

    num_train_timesteps: int = 1000
    beta_start: float = 0.0001
    beta_end: float = 0.02


@dataclass
class EasyAnimateModels:
    transformer: nn.Module
    vae: nn.Module
    text_encoder: nn.Module
    tokenize: Callable[[list], tuple]
    validation_sampler: Optional[ValidationSampler] = None


class EasyAnimateTrainingNet(nn.Module):
    """The module DDP wraps: the transformer, plus the text encoder when its LoRA trains."""

    def __init__(self, transformer: nn.Module, text_encoder: Optional[nn.Module] = None):
        super().__init__()
        self.transformer = transformer
        self.text_encoder = text_encoder

    def forward(self, noisy_latents, timesteps, attention_mask, encoder_hidden_states=None, input_ids=None):
        if self.text_encoder is not None:
            encoder_hidden_states = self.text_encoder(input_ids=input_ids, attention_mask=attention_mask)[0]
        output = self.transformer(noisy_latents, timestep=timesteps, encoder_hidden_states=encoder_hidden_states,
                                  encoder_attention_mask=attention_mask)
        return unwrap_output(output)


def transformer_lora_targets(include_motion_module: bool = True) -> LoRATargets:
    """As ``easyanimate/utils/lora_utils.py::LoRANetwork``: the transformer itself is the container, every Linear
    gets an adapter, the motion module (``attn_temporal``) included unless excluded (``train_t2v_lora.py``
    includes it); names ``lora_unet__transformer_blocks_0_attn1_to_q``."""
    return LoRATargets(TRANSFORMER_PREFIX, kohya_name, None, () if include_motion_module else ("attn_temporal",))


def text_encoder_lora_targets() -> LoRATargets:
    """T5's ``T5LayerSelfAttention`` and ``T5LayerFF`` layers are the containers; names
    ``lora_te_encoder_block_0_layer_0_SelfAttention_q``."""
    return LoRATargets(TEXT_ENCODER_PREFIX, kohya_name, T5_CONTAINERS)


def check_sizes(data, grid_multiple: int) -> None:
    """Clips and images must fit the transformer's token grid (v1: multiples of 8 x 2 x 2 = 32 pixels)."""
    multiple = grid_multiple * VAE_FACTOR
    for key in ("video_size", "image_size"):
        value = getattr(data, key)
        if value % multiple:
            raise InputError(f"data.{key}", f"is {value}, which does not fit the model's latent grid",
                             f"a multiple of {multiple}, e.g. {max(multiple, round(value / multiple) * multiple)}")


class EasyAnimateTask:
    """LoRA (``train_t2v_lora.py``) or motion module (``train_t2iv.py --trainable_modules attn_temporal``),
    trained with the improved-DDPM hybrid loss of the learned-sigma PixArt transformer."""

    @staticmethod
    def read_recipe(config, data_section, noise_section) -> None:
        if config.mode not in MODES:
            raise InputError("mode", f"is {config.mode!r}", " or ".join(MODES))
        config.data = from_dict(EasyAnimateDataConfig, data_section, "data")
        config.noise = from_dict(IDDPMConfig, noise_section, "noise")
        if not config.data.meta_path:
            raise InputError("data.meta_path", "is empty", "a JSON or CSV file listing the clips")
        if config.data.video_crop not in VIDEO_CROPS:
            raise InputError("data.video_crop", f"is '{config.data.video_crop}'", " or ".join(VIDEO_CROPS))

    @staticmethod
    def build_models(factory: Callable, model_config: dict, config) -> EasyAnimateModels:
        return factory(model_config)

    def __init__(self, config, models: EasyAnimateModels):
        self.mode = config.mode
        self.name = f"easyanimate {self.mode}"
        self.seed = config.seed
        self.lora_config = config.lora
        self.data_config = config.data
        self.schedule = losses.IDDPMSchedule.linear(config.noise.num_train_timesteps, config.noise.beta_start,
                                                    config.noise.beta_end)
        self.vae, self.text_encoder, self.tokenize = models.vae, models.text_encoder, models.tokenize
        self.validation_sampler = models.validation_sampler
        self.networks: list[lora.LoRANetwork] = []
        self.train_text_encoder = train_text_encoder = self.mode == "lora" and config.lora.train_text_encoder
        if self.mode == "lora":
            self.networks.append(lora.inject_lora(
                models.transformer, transformer_lora_targets(config.lora.include_motion_module),
                config.lora.rank, config.lora.alpha, config.seed))
            if train_text_encoder:
                self.networks.append(lora.inject_lora(models.text_encoder, text_encoder_lora_targets(),
                                                      config.lora.rank, config.lora.alpha, config.seed))
            self.rule = selection.lora_adapters
        else:
            self.rule = selection.name_contains(config.trainable_modules)
        self.net = EasyAnimateTrainingNet(models.transformer, models.text_encoder if train_text_encoder else None)
        self.frozen_modules = [self.vae] + ([] if train_text_encoder else [self.text_encoder])
        self.find_unused_parameters = False
        data = config.data
        check_sizes(data, getattr(models.transformer, "grid_multiple", 1))
        self.dataset = EasyAnimateMedia(
            data.meta_path, data.root, video_size=data.video_size, image_size=data.image_size,
            sample_stride=data.sample_stride, sample_n_frames=data.sample_n_frames, video_crop=data.video_crop,
            min_crop_f=data.min_crop_f, max_crop_f=data.max_crop_f, video_repeat=data.video_repeat,
            text_drop_ratio=data.text_drop_ratio)
        self.group_of = self.dataset.group_of

    def optimizer_groups(self, trainable: list, learning_rate: float) -> list[dict]:
        """The text-encoder LoRA trains at ``text_encoder_lr`` (default half the rate, as the reference)."""
        text_encoder = [p for name, p in trainable if name.startswith("text_encoder.")]
        rest = [p for name, p in trainable if not name.startswith("text_encoder.")]
        groups = [{"params": rest, "lr": learning_rate}]
        if text_encoder:
            rate = self.lora_config.text_encoder_lr
            groups.append({"params": text_encoder, "lr": learning_rate / 2 if rate is None else rate})
        return groups

    def compute_loss(self, net: nn.Module, batch: dict, context: StepContext) -> torch.Tensor:
        pixels, texts, positions = batch["pixels"], list(batch["text"]), batch["position"]
        repeats = self.data_config.image_repeat_in_forward if pixels.shape[1] == 1 else 1
        pixels = pixels.repeat(repeats, 1, 1, 1, 1)
        texts = texts * repeats
        generators = [g for r in range(repeats) for g in sample_generators(self.seed, positions, 0, r)]
        latents = encode_frames(self.vae, pixels, generators, context)
        input_ids, attention_mask = self.tokenize(texts, self.data_config.tokenizer_max_length)
        input_ids, attention_mask = input_ids.to(context.device), attention_mask.to(context.device)
        embeds = None
        if not self.train_text_encoder:
            with torch.no_grad():
                embeds = self.text_encoder(input_ids=input_ids, attention_mask=attention_mask)[0]

        generators = [g for r in range(repeats) for g in sample_generators(self.seed, positions, 2, r)]
        timesteps = per_sample_timesteps(generators, self.schedule.num_train_timesteps).to(context.device)
        noise = per_sample_normal(generators, latents.shape[1:]).to(context.device)
        noisy = self.schedule.add_noise(latents, noise, timesteps)
        output = net(noisy, timesteps, attention_mask, encoder_hidden_states=embeds, input_ids=input_ids)
        return losses.iddpm_hybrid_loss(output, latents, noisy, noise, timesteps, self.schedule)["loss"].mean()

    def export(self, net: nn.Module, folder: Path) -> list[Path]:
        """Motion module -> ``easyanimate_v1_mm.safetensors`` (the transformer's keys containing
        ``temporal``, as ``scripts/extra_motion_module.py``); LoRA -> ``<lora.output_name>.safetensors``."""
        if self.mode == "lora":
            metadata = {"ss_network_dim": self.lora_config.rank, "ss_network_alpha": self.lora_config.alpha,
                        "ss_base_model": "easyanimate_v1"}
            return [lora.save_kohya(self.networks, folder / f"{self.lora_config.output_name}.safetensors",
                                    self.lora_config.save_dtype, metadata)]
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in net.transformer.state_dict().items()
                   if is_motion_module_key(k, DIT_MOTION_KEY)}
        path = folder / "easyanimate_v1_mm.safetensors"
        save_file(tensors, str(path))
        return [path]

    def validation_samples(self, net: nn.Module, request: ValidationRequest) -> Optional[dict]:
        return self.validation_sampler(net, request) if self.validation_sampler else None
