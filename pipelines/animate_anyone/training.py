"""AnimateAnyone for the trainer (``pipelines/training``): the networks of both stages as ``AnimateAnyoneModels``
(what ``training_task.AnimateAnyoneTask`` trains).

The recipe's ``model`` mapping (``configs/animate_anyone_stage*.yaml``):
- ``base_unet`` (stage 1): an SD1.5-style diffusers UNet folder (``config.json`` + weights;
  ``sd-image-variations-diffusers/unet`` in the reference). The ReferenceNet and the denoising UNet
  (built without motion modules) both start from it, as ``train_stage_1.py`` does; the PoseGuider is new
  (PyTorch's initialisation, ``conv_out`` zeroed), its ``conv_in``/``blocks`` optionally taken from
  ``controlnet_openpose`` (a ControlNet file, e.g. ``control_v11p_sd15_openpose``: its
  ``controlnet_cond_embedding.*`` except ``conv_out``).
- ``stage1_dir``: a folder with ``denoising_unet.pth``, ``reference_unet.pth``, ``pose_guider.pth`` (a
  stage-1 output or the released files). Stage 2 starts from it; stage 1 may fine-tune it instead of
  ``base_unet``.
- ``motion_module_init`` (stage 2): AnimateDiff's ``mm_sd_v15_v2.ckpt`` or a released-layout
  ``motion_module.pth`` (the same keys), or null for new motion modules as AnimateDiff builds them
  (PyTorch's initialisation, ``proj_out`` zeroed so each starts as the identity, sinusoidal tables).
- ``vae``: the sd-vae-ft-mse folder or file; ``image_encoder``: the sd-image-variations ``image_encoder``
  folder or a CLIP ViT-L/14 vision file.
- ``config_dir`` (optional): a folder whose ``unet_config.json``, ``unet_additional_kwargs.json``,
  ``pose_guider.json`` replace the shipped SD1.5 / ``inference_v2.yaml`` ones; without it ``stage1_dir``
  may carry them (as the inference loader reads them from a weights folder). ``base_unet``'s own
  ``config.json`` always gives the UNet config.

Every file goes through the inference loaders' strict key checks (``loading.py``), in float32. Validation
samples come from the inference pipeline (``pipeline.animate``) run with the weights being trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ...core.checkpoints import check_keys, load_state_dict
from ...core.context import RunContext
from ...core.errors import CheckpointError, InputError
from ..training.tasks import ValidationRequest
from . import loading, pipeline, reference_attention
from ..motion_module import initialise_motion_modules
from .models_pose_guider import PoseGuider
from .models_unet import DenoisingUNet3D, MotionLayout, UNetShape, fold_frames, unfold_frames
from .settings import AnimateAnyoneSettings
from .training_task import AnimateAnyoneModels

MODEL_KEYS = ("base_unet", "stage1_dir", "controlnet_openpose", "motion_module_init", "vae", "image_encoder",
              "config_dir")
UNET_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
UNET_HEAD = ("conv_norm_out.", "conv_out.")  # in the SD UNet, not in the ReferenceNet (the reference drops it)
CONTROLNET_EMBEDDING = "controlnet_cond_embedding."
INIT_SEED = 0  # new PoseGuider / motion-module weights are the same in every run (and on every process)
VALIDATION_OPTIONS = {  # validation.options -> default (the reference's log_validation: 20 DDIM steps, cfg 3.5)
    "cases": [],  # [{"reference": image, "pose": image or pose video}, ...]
    "width": 512,
    "height": 512,
    "frames": 1,  # pose frames per case (stage 2 validates 24-frame clips)
    "steps": 20,
    "guidance": 3.5,
}


class AnimateAnyoneTrainingNet(nn.Module):
    """PoseGuider + ReferenceNet + denoising UNet as one module (what the trainer wraps), joined by a
    reference bank (``reference_attention.ReferenceBank``)."""

    def __init__(self, reference_unet: nn.Module, denoising_unet: DenoisingUNet3D, pose_guider: PoseGuider):
        super().__init__()
        self.reference_unet = reference_unet
        self.denoising_unet = denoising_unet
        self.pose_guider = pose_guider
        self.bank = reference_attention.install_training_attention(reference_unet, denoising_unet)

    def enable_gradient_checkpointing(self) -> None:
        self.reference_unet.enable_gradient_checkpointing()
        self.denoising_unet.enable_gradient_checkpointing()

    def forward(self, noisy_latents: torch.Tensor, timesteps: torch.Tensor, reference_latents: Optional[torch.Tensor],
                clip_embeds: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        frames = noisy_latents.shape[2]
        pose_features = unfold_frames(self.pose_guider(fold_frames(pose)), frames)
        # The bank of the previous call is dropped here, not at the end of this one: a checkpointed block
        # recomputed in the backward pass must read the same features.
        self.bank.clear()
        self.bank.frames = frames
        if reference_latents is not None:
            self.bank.writing = True
            try:
                self.reference_unet(reference_latents, torch.zeros_like(timesteps), encoder_hidden_states=clip_embeds,
                                    return_dict=False)
            finally:
                self.bank.writing = False
        return self.denoising_unet(noisy_latents, timesteps, clip_embeds, pose_features)


def build_training_models(model_config: dict, stage: int) -> AnimateAnyoneModels:
    """The recipe's ``model`` sources -> the stage's training net, the VAE and the CLIP image encoder."""
    check_model_keys(model_config, stage)
    config = module_configs(model_config)
    stage1_dir = _path(model_config, "stage1_dir")
    if stage == 1 and stage1_dir is None:
        reference_unet, denoising_unet = unets_from_sd(_path(model_config, "base_unet"), config)
        pose_guider = new_pose_guider(config, _path(model_config, "controlnet_openpose"))
    else:
        files = loading.AnimateAnyoneFiles.in_folder(stage1_dir)
        reference_unet = loading.load_reference_net(files.reference_unet, config)
        motion = _path(model_config, "motion_module_init")
        denoising_unet = (load_image_unet(files.denoising_unet, config) if stage == 1
                          else load_video_unet(files.denoising_unet, motion, config))
        pose_guider = loading.load_pose_guider(files.pose_guider, config)
    vae = loading.load_vae(_path(model_config, "vae"))
    image_encoder = loading.load_image_encoder(_path(model_config, "image_encoder"))
    net = AnimateAnyoneTrainingNet(reference_unet, denoising_unet, pose_guider)
    return AnimateAnyoneModels(net=net, vae=vae, image_encoder=image_encoder,
                               validation_sampler=ValidationSampler(vae, image_encoder, config.scheduler))


# --- recipe keys and configs -----------------------------------------------------------------------------


def check_model_keys(model_config: dict, stage: int) -> None:
    unknown = sorted(set(model_config) - set(MODEL_KEYS))
    if unknown:
        raise InputError(f"model.{unknown[0]}", "is not a known setting", "one of factory, " + ", ".join(MODEL_KEYS))
    for key in ("vae", "image_encoder"):
        if not model_config.get(key):
            raise InputError(f"model.{key}", "is not set", "the sd-vae-ft-mse folder" if key == "vae"
                             else "the sd-image-variations image_encoder folder")
    has_base, has_stage1 = bool(model_config.get("base_unet")), bool(model_config.get("stage1_dir"))
    if stage == 1 and has_base == has_stage1:
        raise InputError("model.base_unet", "and model.stage1_dir are both set" if has_base else "is not set",
                         "one of them: an SD1.5 UNet folder to start from, or stage-1 .pth files to fine-tune")
    if stage == 2 and not has_stage1:
        raise InputError("model.stage1_dir", "is not set",
                         "the stage-1 output folder (denoising_unet.pth, reference_unet.pth, pose_guider.pth)")
    used_only_with = {"controlnet_openpose": ("stage 1 from base_unet", stage == 1 and has_base),
                      "motion_module_init": ("stage 2", stage == 2), "base_unet": ("stage 1", stage == 1)}
    for key, (where, used) in used_only_with.items():
        if model_config.get(key) and not used:
            raise InputError(f"model.{key}", f"is set, but only {where} uses it", "null for this recipe")


def module_configs(model_config: dict) -> loading.AnimateAnyoneConfig:
    config = loading.AnimateAnyoneConfig.for_weights(_path(model_config, "config_dir") or _path(model_config, "stage1_dir"))
    base = _path(model_config, "base_unet")
    if base is None:
        return config
    unet = loading.read_json(base / "config.json")
    return loading.AnimateAnyoneConfig(unet, config.motion, config.scheduler, config.pose_guider)


def _path(model_config: dict, key: str) -> Optional[Path]:
    value = model_config.get(key)
    return Path(value).expanduser() if value else None


# --- networks --------------------------------------------------------------------------------------------


def image_unet(config: loading.AnimateAnyoneConfig) -> DenoisingUNet3D:
    """Stage 1's denoising UNet: the video UNet without motion modules."""
    return DenoisingUNet3D(UNetShape.from_config(config.unet), MotionLayout(resolutions=(), mid_block=False))


def unets_from_sd(base: Path, config: loading.AnimateAnyoneConfig) -> tuple[nn.Module, DenoisingUNet3D]:
    """ReferenceNet and denoising UNet, each with its own copy of the SD UNet weights."""
    weights = loading.weights_file(base, UNET_WEIGHTS, "SD1.5 UNet (diffusers folder) for AnimateAnyone stage 1")
    state = load_state_dict(weights)
    head = {k: v for k, v in state.items() if k.startswith(UNET_HEAD)}
    if not head:
        raise CheckpointError(f"'{weights}' has no {UNET_HEAD[1]}* keys: it is not a full SD UNet "
                              "(a ReferenceNet's reference_unet.pth goes under model.stage1_dir).")
    denoising = loading.assign_weights(lambda: image_unet(config), {k: v.clone() for k, v in state.items()},
                                       str(weights), "the denoising UNet (SD UNet keys)", torch.float32)
    reference = {k: v for k, v in state.items() if k not in head}
    reference_unet = loading.assign_weights(config.build_reference_net, reference, str(weights),
                                            "the ReferenceNet (SD UNet keys without the output head)", torch.float32)
    return reference_unet, denoising


def load_image_unet(path: Path, config: loading.AnimateAnyoneConfig) -> DenoisingUNet3D:
    state = loading.read_released(path, "denoising_unet")
    return loading.assign_weights(lambda: image_unet(config), state, str(path), "the denoising UNet", torch.float32)


def load_video_unet(denoising_path: Path, motion_path: Optional[Path],
                    config: loading.AnimateAnyoneConfig) -> DenoisingUNet3D:
    """Stage 2's denoising UNet: stage-1 weights plus AnimateDiff motion modules (a file, or new ones)."""
    if motion_path is not None:
        return loading.load_denoising_unet(denoising_path, motion_path, config)
    state = loading.read_released(denoising_path, "denoising_unet")
    with torch.device("meta"):
        unet = config.build_denoising_unet()
    fresh = initialise_motion_modules(unet, INIT_SEED)
    check_keys(unet, {k: tuple(v.shape) for k, v in state.items()}, str(denoising_path),
               "the denoising UNet under new motion modules", ignore_missing=fresh)
    unet.load_state_dict(state, strict=False, assign=True)  # every key checked just above
    return unet.eval().requires_grad_(False)


@torch.no_grad()
def new_pose_guider(config: loading.AnimateAnyoneConfig, controlnet: Optional[Path]) -> PoseGuider:
    """PyTorch's initialisation with ``conv_out`` zeroed; ``conv_in``/``blocks`` from a ControlNet when given."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(INIT_SEED)
        guider = config.build_pose_guider()
    nn.init.zeros_(guider.conv_out.weight)
    nn.init.zeros_(guider.conv_out.bias)
    if controlnet is not None:
        embedding = {k[len(CONTROLNET_EMBEDDING):]: v for k, v in load_state_dict(controlnet).items()
                     if k.startswith(CONTROLNET_EMBEDDING) and not k.startswith(CONTROLNET_EMBEDDING + "conv_out.")}
        if not embedding:
            raise CheckpointError(f"'{controlnet}' has no {CONTROLNET_EMBEDDING}* keys: it is not a ControlNet file.")
        keep = [k for k in guider.state_dict() if k.startswith("conv_out.")]
        check_keys(guider, {k: tuple(v.shape) for k, v in embedding.items()}, str(controlnet),
                   "the PoseGuider (ControlNet conditioning embedding)", ignore_missing=keep)
        guider.load_state_dict(embedding, strict=False)  # every key checked just above
    return guider


# --- validation ------------------------------------------------------------------------------------------


@dataclass
class ValidationSampler:
    """Pose-to-video samples with the weights being trained, one per case of ``validation.options``."""

    vae: nn.Module
    image_encoder: nn.Module
    scheduler_config: dict

    def check_options(self, options: dict) -> None:
        unknown = sorted(set(options) - set(VALIDATION_OPTIONS))
        if unknown:
            raise InputError(f"validation.options.{unknown[0]}", "is not a known setting",
                             "one of " + ", ".join(VALIDATION_OPTIONS))
        cases = options.get("cases")
        if not isinstance(cases, list) or not cases:
            raise InputError("validation.options.cases", f"is {cases!r}", "a list of {reference: image, pose: image or video}")
        for index, case in enumerate(cases):
            if not isinstance(case, dict) or set(case) != {"reference", "pose"}:
                raise InputError(f"validation.options.cases[{index}]", f"is {case!r}", "{reference: ..., pose: ...}")
            for key in ("reference", "pose"):
                if not Path(case[key]).expanduser().exists():
                    raise InputError(f"validation.options.cases[{index}].{key}", f"'{case[key]}' does not exist",
                                     "an existing image" + (" or pose video" if key == "pose" else ""))

    def __call__(self, net: AnimateAnyoneTrainingNet, request: ValidationRequest) -> dict:
        from PIL import Image

        from ...core.video import DecodeOptions, read_frames

        options = {**VALIDATION_OPTIONS, **request.options}
        models = loading.AnimateAnyoneModels(net.reference_unet, net.denoising_unet, net.pose_guider,
                                             self.image_encoder, self.vae, self.scheduler_config)
        settings = AnimateAnyoneSettings(width=options["width"], height=options["height"], steps=options["steps"],
                                         guidance=options["guidance"], seed=request.seed, context_overlap=0,
                                         context_frames=min(options["frames"], net.denoising_unet.max_frames))
        context = RunContext(device=request.device, dtype=request.dtype)
        # Under mixed precision the frozen modules are in the half type and the trained ones in float32.
        mixed = torch.autocast(request.device.type, dtype=request.dtype, enabled=request.dtype != torch.float32)
        samples = {}
        for index, case in enumerate(options["cases"]):
            reference = Image.open(Path(case["reference"]).expanduser()).convert("RGB")
            poses, _ = read_frames(Path(case["pose"]).expanduser(), DecodeOptions(frame_cap=options["frames"]))
            with mixed:
                frames = pipeline.animate(models, reference, [Image.fromarray(p) for p in poses], settings, context).frames
            samples[f"case-{index}"] = (frames * 255).round().to(torch.uint8).numpy()
        return samples
