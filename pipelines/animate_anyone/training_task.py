"""AnimateAnyone's training task: what one step of stage 1 or 2 computes, what it trains and what it exports.

The trainer (``pipelines/training``) builds it from a recipe with ``method: animate-anyone`` (its ``TASKS``
table) and the models a factory returns (``training.py``'s ``build_training_models`` unless the recipe's
``model.factory`` names another):

``factory(model_config: dict, stage: int) -> AnimateAnyoneModels``:
- ``net``: an ``nn.Module`` with children ``reference_unet`` (ReferenceNet), ``denoising_unet`` (the UNet3D;
  for stage 1 built without motion modules, for stage 2 with them) and ``pose_guider``, whose
  ``forward(noisy_latents [B,4,F,h,w], timesteps [B] long, reference_latents [B,4,h,w] or None,
  clip_embeds [B,1,768], pose [B,3,F,H,W] in 0..1) -> prediction [B,4,F,h,w]`` runs the PoseGuider, the
  ReferenceNet at timestep 0 (writing its attention bank) unless ``reference_latents`` is None (an
  unconditional batch: ReferenceNet not run, plain self-attention), then the denoising UNet reading the
  bank; the bank of the previous call is dropped first (kept until then so gradient checkpointing can
  recompute with it) (wired: ``training.py``);
- ``vae``: diffusers ``AutoencoderKL``; ``image_encoder``: transformers ``CLIPVisionModelWithProjection``;
- ``validation_sampler`` (optional): see ``pipelines/training/tasks.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from ...core.errors import InputError
from ..motion_module import UNET_MOTION_KEY, is_motion_module_key
from ..training import losses
from ..training.config import from_dict
from ..training.sampling import BATCH, numpy_rng
from ..training.tasks import (StepContext, ValidationRequest, ValidationSampler, encode_frames, per_sample_normal,
                              per_sample_timesteps, sample_generators, save_state_dict)
from .training_data import AnimateAnyoneClips, AnimateAnyoneDataConfig, AnimateAnyoneFramePairs


@dataclass
class NoiseConfig:
    """The recipe's ``noise`` section."""

    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = "scaled_linear"
    zero_terminal_snr: bool = True
    prediction_type: str = "v_prediction"
    noise_offset: float = 0.05
    snr_gamma: float = 5.0  # 0 = plain MSE
    condition_drop_ratio: float = 0.1


@dataclass
class AnimateAnyoneModels:
    net: nn.Module
    vae: nn.Module
    image_encoder: nn.Module
    validation_sampler: Optional[ValidationSampler] = None


def trained_in_stage_1(name: str) -> bool:
    """The denoising UNet, the ReferenceNet except ``up_blocks.3`` and the PoseGuider (``train_stage_1.py``)."""
    child, _, rest = name.partition(".")
    if child == "reference_unet":
        return not rest.startswith("up_blocks.3.")
    return child in ("denoising_unet", "pose_guider")


def trained_in_stage_2(name: str) -> bool:
    """The denoising UNet's motion modules only (``train_stage_2.py``)."""
    return name.startswith("denoising_unet.") and is_motion_module_key(name, UNET_MOTION_KEY)


class AnimateAnyoneTask:
    """Stage 1 (image pairs; denoising UNet + ReferenceNet + PoseGuider) or stage 2 (24-frame clips;
    motion modules only), v-prediction with Min-SNR weights, noise offset and unconditional batches."""

    @staticmethod
    def read_recipe(config, data_section, noise_section) -> None:
        if config.stage not in (1, 2):
            raise InputError("stage", f"is {config.stage!r}", "1 or 2")
        config.data = from_dict(AnimateAnyoneDataConfig, data_section, "data")
        config.noise = from_dict(NoiseConfig, noise_section, "noise")
        if not config.data.meta_paths:
            raise InputError("data.meta_paths", "is empty", "one or more meta JSON files")

    @staticmethod
    def build_models(factory: Callable, model_config: dict, config) -> AnimateAnyoneModels:
        return factory(model_config, config.stage)

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
        self.rule = trained_in_stage_1 if self.stage == 1 else trained_in_stage_2
        # An unconditional stage-1 batch skips the (trained) ReferenceNet, so DDP must allow unused parameters.
        self.find_unused_parameters = self.stage == 1 and self.noise.condition_drop_ratio > 0
        self.dataset = self._dataset(config.data)
        self.group_of = None

    def _dataset(self, data):
        common = dict(meta_paths=data.meta_paths, width=data.width, height=data.height,
                      crop_scale=data.crop_scale, crop_ratio=data.crop_ratio, clip_size=data.clip_size)
        if self.stage == 1:
            return AnimateAnyoneFramePairs(sample_margin=data.sample_margin, **common)
        return AnimateAnyoneClips(n_sample_frames=data.n_sample_frames, sample_rate=data.sample_rate, **common)

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
