"""What one training step of each method computes, what it trains and what it exports.

The networks come from the method's own package through a *factory* named in the recipe
(``model.factory: "package.module:function"``, a leading ``.`` meaning this pack). The factory receives
the recipe's ``model`` mapping and returns the models below; that is the whole interface between the
trainer and the model code.

AnimateAnyone, ``factory(model_config: dict, stage: int) -> AnimateAnyoneModels``:
- ``net``: an ``nn.Module`` with children ``reference_unet`` (ReferenceNet), ``denoising_unet`` (the UNet3D;
  for stage 1 built without motion modules, for stage 2 with them) and ``pose_guider``, whose
  ``forward(noisy_latents [B,4,F,h,w], timesteps [B] long, reference_latents [B,4,h,w] or None,
  clip_embeds [B,1,768], pose [B,3,F,H,W] in 0..1) -> prediction [B,4,F,h,w]`` runs the PoseGuider, the
  ReferenceNet at timestep 0 (writing its attention bank) unless ``reference_latents`` is None (an
  unconditional batch: ReferenceNet not run, plain self-attention), then the denoising UNet reading the
  bank; the bank of the previous call is dropped first (kept until then so gradient checkpointing can
  recompute with it) (wired: ``pipelines/animate_anyone/training.py``);
- ``vae``: diffusers ``AutoencoderKL``; ``image_encoder``: transformers ``CLIPVisionModelWithProjection``.

EasyAnimate v1, ``factory(model_config: dict) -> EasyAnimateModels`` (wired: ``pipelines/easyanimate/training.py``):
- ``transformer``: called as ``transformer(latents [B,4,F,h,w], timestep=[B], encoder_hidden_states=[B,L,D],
  encoder_attention_mask=[B,L])`` and returning (a tensor, a tuple whose first item is, or an object with
  ``.sample`` holding) ``[B,8,F,h,w]``: predicted noise then the learned-variance values. An optional
  ``grid_multiple`` attribute (latent sides must be multiples of it) lets the recipe's sizes be checked first;
- ``vae``: diffusers ``AutoencoderKL``; ``text_encoder``: transformers ``T5EncoderModel``;
- ``tokenize(texts, max_length) -> (input_ids [B,L], attention_mask [B,L])``: padded to ``max_length``
  (``data.tokenizer_max_length``, 120 in the reference), truncated, with special tokens (``T5Tokenizer``).

Either may set ``validation_sampler(net, request) -> {name: uint8 frames [N,H,W,3]}``, called every
``validation.every_steps`` steps on the main process with the trained weights (EMA ones when EMA is on).
A sampler with a ``check_options(options)`` method has ``validation.options`` checked before training.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

import torch
from torch import nn

from ..easyanimate.models import is_motion_module_key
from ...core.errors import InputError
from . import datasets, lora, losses, selection
from .sampling import BATCH, NOISE, numpy_rng, torch_generator

VAE_SCALE = 0.18215  # both methods hard-code the SD VAE latent scale
VAE_FACTOR = 8  # the SD VAE's pixels per latent
VAE_MINI_BATCH = 16  # frames per VAE call (EasyAnimate's --vae_mini_batch), to bound the encoder's memory
DEFAULT_FACTORIES = {
    "animate-anyone": ".pipelines.animate_anyone.training:build_training_models",
    "easyanimate": ".pipelines.easyanimate.training:build_training_models",
}


@dataclass
class ValidationRequest:
    step: int
    options: dict
    device: torch.device
    dtype: torch.dtype
    seed: int


ValidationSampler = Callable[[nn.Module, ValidationRequest], dict]


@dataclass
class AnimateAnyoneModels:
    net: nn.Module
    vae: nn.Module
    image_encoder: nn.Module
    validation_sampler: Optional[ValidationSampler] = None


@dataclass
class EasyAnimateModels:
    transformer: nn.Module
    vae: nn.Module
    text_encoder: nn.Module
    tokenize: Callable[[list], tuple]
    validation_sampler: Optional[ValidationSampler] = None


@dataclass
class StepContext:
    """What a loss computation needs besides the batch."""

    seed: int
    device: torch.device
    weight_dtype: torch.dtype
    batch_number: int  # this micro-batch's number in the whole job (distinct per process)


class TrainingTask(Protocol):
    name: str
    net: nn.Module
    rule: selection.ParameterRule
    frozen_modules: list
    find_unused_parameters: bool
    dataset: Any
    group_of: Optional[Callable[[int], Any]]

    def optimizer_groups(self, trainable: list, learning_rate: float) -> list[dict]: ...

    def compute_loss(self, net: nn.Module, batch: dict, context: StepContext) -> torch.Tensor: ...

    def export(self, net: nn.Module, folder: Path) -> list[Path]: ...

    def validation_samples(self, net: nn.Module, request: ValidationRequest) -> Optional[dict]: ...


# --- factories ------------------------------------------------------------------------------------------


def resolve_callable(spec: str, input_name: str, what: str) -> Callable:
    """``"package.module:function"``; a leading ``.`` is relative to this pack."""
    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name:
        raise InputError(input_name, f"is '{spec}'", "'package.module:function'")
    pack = __package__.rsplit(".", 2)[0]
    absolute = pack + module_name if module_name.startswith(".") else module_name
    try:
        module = importlib.import_module(absolute)
    except ModuleNotFoundError as error:
        if error.name and (absolute == error.name or absolute.startswith(error.name + ".")):
            raise InputError(input_name, f"'{spec}' is not available in this installation",
                             f"{what}, or another '{input_name}'") from None
        raise
    function = getattr(module, function_name, None)
    if not callable(function):
        raise InputError(input_name, f"'{module_name}' has no function '{function_name}'", f"{what}")
    return function


def build_task(config) -> "TrainingTask":
    spec = config.model.get("factory", DEFAULT_FACTORIES[config.method])
    factory = resolve_callable(spec, "model.factory", f"the {config.method} model code wired for training")
    model_config = {k: v for k, v in config.model.items() if k != "factory"}
    models = factory(model_config, config.stage) if config.method == "animate-anyone" else factory(model_config)
    check_options = getattr(models.validation_sampler, "check_options", None)
    if check_options is not None and config.validation.every_steps:
        check_options(dict(config.validation.options))
    if config.method == "animate-anyone":
        return AnimateAnyoneTask(config, models)
    return EasyAnimateTask(config, models)


# --- shared helpers -------------------------------------------------------------------------------------


def per_sample_normal(generators: list[torch.Generator], shape: tuple) -> torch.Tensor:
    return torch.stack([torch.randn(shape, generator=g) for g in generators])


def per_sample_timesteps(generators: list[torch.Generator], count: int) -> torch.Tensor:
    return torch.cat([torch.randint(0, count, (1,), generator=g) for g in generators])


def sample_generators(seed: int, positions, purpose: int, repeat: int = 0) -> list[torch.Generator]:
    return [torch_generator(seed, NOISE, int(p), repeat, purpose) for p in positions]


@torch.no_grad()
def encode_frames(vae: nn.Module, pixels: torch.Tensor, generators: list[torch.Generator],
                  context: StepContext) -> torch.Tensor:
    """``[B,F,3,H,W]`` in -1..1 -> latents ``[B,4,F,h,w]`` (float32): a sample of the VAE posterior times 0.18215,
    with each sample's own noise."""
    batch, frames = pixels.shape[:2]
    means, stds = [], []
    for chunk in pixels.flatten(0, 1).split(VAE_MINI_BATCH):
        posterior = vae.encode(chunk.to(context.device, context.weight_dtype)).latent_dist
        means.append(posterior.mean.float())
        stds.append(posterior.std.float())
    mean, std = torch.cat(means), torch.cat(stds)
    eps = per_sample_normal(generators, (frames, *mean.shape[1:])).flatten(0, 1).to(context.device)
    latents = (mean + std * eps) * VAE_SCALE
    return latents.unflatten(0, (batch, frames)).transpose(1, 2).contiguous()


def unwrap_output(output) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        return output[0]
    return output.sample


def save_state_dict(tensors: dict[str, torch.Tensor], path: Path) -> Path:
    """A plain ``{key: tensor}`` ``.pth`` (what ``torch.save(model.state_dict())`` writes in the references)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, path)
    return path


# --- AnimateAnyone --------------------------------------------------------------------------------------


class AnimateAnyoneTask:
    """Stage 1 (image pairs; denoising UNet + ReferenceNet + PoseGuider) or stage 2 (24-frame clips;
    motion modules only), v-prediction with Min-SNR weights, noise offset and unconditional batches."""

    def __init__(self, config, models: AnimateAnyoneModels):
        self.stage = config.stage
        self.name = f"animate-anyone stage {self.stage}"
        self.noise = config.noise
        self.seed = config.seed
        self.schedule = losses.NoiseSchedule.create(
            self.noise.num_train_timesteps, self.noise.beta_start, self.noise.beta_end,
            self.noise.beta_schedule, self.noise.zero_terminal_snr)
        self.net, self.vae, self.image_encoder = models.net, models.vae, models.image_encoder
        self.validation_sampler = models.validation_sampler
        self.frozen_modules = [self.vae, self.image_encoder]
        self.rule = selection.animate_anyone_stage1 if self.stage == 1 else selection.animate_anyone_stage2
        # An unconditional stage-1 batch skips the (trained) ReferenceNet, so DDP must allow unused parameters.
        self.find_unused_parameters = self.stage == 1 and self.noise.condition_drop_ratio > 0
        self.dataset = self._dataset(config.data)
        self.group_of = None

    def _dataset(self, data):
        common = dict(meta_paths=data.meta_paths, width=data.width, height=data.height,
                      crop_scale=data.crop_scale, crop_ratio=data.crop_ratio, clip_size=data.clip_size)
        if self.stage == 1:
            return datasets.AnimateAnyoneFramePairs(sample_margin=data.sample_margin, **common)
        return datasets.AnimateAnyoneClips(n_sample_frames=data.n_sample_frames, sample_rate=data.sample_rate, **common)

    def optimizer_groups(self, trainable: list, learning_rate: float) -> list[dict]:
        return [{"params": [p for _, p in trainable], "lr": learning_rate}]

    def drops_condition(self, context: StepContext) -> bool:
        """One draw per micro-batch, as the reference (``random.random() < uncond_ratio`` per forward)."""
        draw = numpy_rng(self.seed, BATCH, context.batch_number).random()
        return losses.drop_condition(draw, self.noise.condition_drop_ratio)

    @torch.no_grad()
    def encode_reference(self, batch: dict, drop: bool, context: StepContext):
        clip_pixels = batch["clip_reference"].to(context.device, context.weight_dtype)
        if drop:
            clip_pixels = torch.zeros_like(clip_pixels)  # the reference zeroes the CLIP *input*, not the embedding
        clip_embeds = self.image_encoder(pixel_values=clip_pixels).image_embeds.unsqueeze(1).float()
        if drop:
            return None, clip_embeds
        generators = sample_generators(self.seed, batch["position"], 1)
        reference = encode_frames(self.vae, batch["reference"].unsqueeze(1), generators, context)[:, :, 0]
        return reference, clip_embeds

    def compute_loss(self, net: nn.Module, batch: dict, context: StepContext) -> torch.Tensor:
        pixels, pose = batch["pixels"], batch["pose"]
        if pixels.ndim == 4:  # stage 1: one frame
            pixels, pose = pixels.unsqueeze(1), pose.unsqueeze(1)
        positions = batch["position"]
        latents = encode_frames(self.vae, pixels, sample_generators(self.seed, positions, 0), context)
        drop = self.drops_condition(context)
        reference, clip_embeds = self.encode_reference(batch, drop, context)

        generators = sample_generators(self.seed, positions, 2)
        timesteps = per_sample_timesteps(generators, self.schedule.num_train_timesteps).to(context.device)
        noise = per_sample_normal(generators, latents.shape[1:]).to(context.device)
        if self.noise.noise_offset > 0:
            offset = per_sample_normal(generators, (latents.shape[1],) + (1,) * (latents.ndim - 2)).to(context.device)
            noise = losses.offset_noise(noise, offset, self.noise.noise_offset)

        noisy = self.schedule.add_noise(latents, noise, timesteps)
        pose = pose.transpose(1, 2).to(context.device)  # [B,3,F,H,W]
        prediction = net(noisy, timesteps, reference, clip_embeds, pose)
        target = self.schedule.target(self.noise.prediction_type, latents, noise, timesteps)
        weights = None
        if self.noise.snr_gamma > 0:
            weights = losses.min_snr_weights(self.schedule.snr(timesteps), self.noise.snr_gamma,
                                             self.noise.prediction_type)
        return losses.weighted_mse(prediction, target, weights)

    def export(self, net: nn.Module, folder: Path) -> list[Path]:
        """The released file layout: stage 1 -> ``denoising_unet.pth``, ``reference_unet.pth``,
        ``pose_guider.pth`` (full state dicts; no motion-module keys); stage 2 -> ``motion_module.pth``
        (the denoising UNet's keys containing ``motion_module``)."""
        denoising = net.denoising_unet.state_dict()
        if self.stage == 2:
            return [save_state_dict({k: v for k, v in denoising.items() if "motion_module" in k},
                                    folder / "motion_module.pth")]
        return [
            save_state_dict({k: v for k, v in denoising.items() if "motion_module" not in k}, folder / "denoising_unet.pth"),
            save_state_dict(net.reference_unet.state_dict(), folder / "reference_unet.pth"),
            save_state_dict(net.pose_guider.state_dict(), folder / "pose_guider.pth"),
        ]

    def validation_samples(self, net: nn.Module, request: ValidationRequest) -> Optional[dict]:
        return self.validation_sampler(net, request) if self.validation_sampler else None


# --- EasyAnimate ----------------------------------------------------------------------------------------


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
                models.transformer, lora.easyanimate_transformer_targets(config.lora.include_motion_module),
                config.lora.rank, config.lora.alpha))
            if train_text_encoder:
                self.networks.append(lora.inject_lora(models.text_encoder, lora.t5_text_encoder_targets(),
                                                      config.lora.rank, config.lora.alpha))
            self.rule = selection.lora_adapters
        else:
            self.rule = selection.name_contains(config.trainable_modules)
        self.net = EasyAnimateTrainingNet(models.transformer, models.text_encoder if train_text_encoder else None)
        self.frozen_modules = [self.vae] + ([] if train_text_encoder else [self.text_encoder])
        self.find_unused_parameters = False
        data = config.data
        check_sizes(data, getattr(models.transformer, "grid_multiple", 1))
        self.dataset = datasets.EasyAnimateMedia(
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
                   if is_motion_module_key(k)}
        path = folder / "easyanimate_v1_mm.safetensors"
        save_file(tensors, str(path))
        return [path]

    def validation_samples(self, net: nn.Module, request: ValidationRequest) -> Optional[dict]:
        return self.validation_sampler(net, request) if self.validation_sampler else None

