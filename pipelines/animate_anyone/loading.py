"""Loading the released Moore-AnimateAnyone files exactly as users download them.

- ``reference_unet.pth``, ``denoising_unet.pth``, ``motion_module.pth``, ``pose_guider.pth``: plain
  state dicts, read with ``torch.load(weights_only=True)``. The denoising UNet is the union of
  ``denoising_unet.pth`` (SD1.5 keys) and ``motion_module.pth`` (``*.motion_modules.*`` keys); every key
  of every file must land in our modules and every weight of the modules must come from a file.
- ``image_encoder``: the sd-image-variations folder (``config.json`` + ``pytorch_model.bin`` or
  ``model.safetensors``) or one CLIP ViT-L/14 vision file (transformers key layout) from ComfyUI's
  ``clip_vision`` folder.
- ``vae``: the sd-vae-ft-mse diffusers folder or one VAE file (diffusers or original LDM key layout)
  from ComfyUI's ``vae`` folder.

Module configs ship in ``configs/``. A weights folder may carry its own ``unet_config.json``,
``unet_additional_kwargs.json``, ``scheduler_config.json`` or ``pose_guider.json`` (as the reference's
config files are named), which then replace the shipped ones; that is how smaller test models and
re-trained variants load through this same code.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ...core.checkpoints import check_keys, load_into_module, load_state_dict
from ...core.errors import CheckpointError, ModelNotFoundError
from ..motion_module import UNET_MOTION_KEY, is_motion_module_key
from .models_pose_guider import PoseGuider, build_pose_guider
from .models_unet import DenoisingUNet3D, UNetShape, build_denoising_unet, build_reference_net

log = logging.getLogger("animate_suite")

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
UNET_CONFIG = "unet_config.json"
MOTION_CONFIG = "unet_additional_kwargs.json"
SCHEDULER_CONFIG = "scheduler_config.json"
POSE_GUIDER_CONFIG = "pose_guider.json"
IMAGE_ENCODER_CONFIG = "image_encoder_config.json"
VAE_CONFIG = "vae_config.json"

RELEASED_FILES = {
    "denoising_unet": "denoising_unet.pth",
    "reference_unet": "reference_unet.pth",
    "pose_guider": "pose_guider.pth",
    "motion_module": "motion_module.pth",
}
IMAGE_ENCODER_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
VAE_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
               "diffusion_pytorch_model.fp16.safetensors")


def read_json(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"'{path}' is not a readable JSON config ({error}).") from None
    return {key: value for key, value in data.items() if not key.startswith("_")}


def _config(name: str, folder: Path | None) -> dict:
    own = Path(folder) / name if folder is not None else None
    if own is not None and own.is_file():
        log.info("AnimateAnyone: using %s from %s", name, folder)
        return read_json(own)
    return read_json(CONFIG_DIR / name)


@dataclass(frozen=True)
class AnimateAnyoneConfig:
    """The module and scheduler configs (the reference's config files, in its own formats)."""

    unet: dict
    motion: dict
    scheduler: dict
    pose_guider: dict

    @classmethod
    def for_weights(cls, folder: str | Path | None = None) -> "AnimateAnyoneConfig":
        """Configs a weights folder carries, else the shipped SD1.5 / inference_v2 ones."""
        folder = Path(folder) if folder is not None else None
        return cls(_config(UNET_CONFIG, folder), _config(MOTION_CONFIG, folder),
                   _config(SCHEDULER_CONFIG, folder), _config(POSE_GUIDER_CONFIG, folder))

    @property
    def embedding_channels(self) -> int:
        """Width of the UNet's first block: the PoseGuider's output and ReferenceNet's first features."""
        return UNetShape.from_config(self.unet).block_out_channels[0]

    def build_reference_net(self) -> nn.Module:
        return build_reference_net(self.unet)

    def build_denoising_unet(self) -> DenoisingUNet3D:
        return build_denoising_unet(self.unet, self.motion)

    def build_pose_guider(self) -> PoseGuider:
        return build_pose_guider(self.pose_guider, self.embedding_channels)


@dataclass
class AnimateAnyoneFiles:
    """Where each released file is; ``image_encoder``/``vae`` may be a folder or one weights file."""

    denoising_unet: Path
    reference_unet: Path
    pose_guider: Path
    motion_module: Path
    image_encoder: Path
    vae: Path

    @classmethod
    def in_folder(cls, folder: str | Path) -> "AnimateAnyoneFiles":
        """The reference's ``pretrained_weights`` layout: the four .pth files, image_encoder/, sd-vae-ft-mse/."""
        folder = Path(folder)
        return cls(**{role: folder / name for role, name in RELEASED_FILES.items()},
                   image_encoder=folder / "image_encoder", vae=folder / "sd-vae-ft-mse")


@dataclass
class AnimateAnyoneModels:
    reference_net: nn.Module
    denoising_unet: DenoisingUNet3D
    pose_guider: PoseGuider
    image_encoder: nn.Module
    vae: nn.Module
    scheduler_config: dict

    def modules(self) -> dict[str, nn.Module]:
        return {"reference_net": self.reference_net, "denoising_unet": self.denoising_unet,
                "pose_guider": self.pose_guider, "image_encoder": self.image_encoder, "vae": self.vae}


# ----------------------------------------------------------------------------- the four .pth files


def released_role(keys) -> str | None:
    """Which released AnimateAnyone file a state dict looks like (to name a mixed-up file)."""
    keys = set(keys)
    if keys and all(is_motion_module_key(key, UNET_MOTION_KEY) for key in keys):
        return "motion_module"
    if any(key.startswith("down_blocks.") for key in keys):
        return "denoising_unet" if "conv_out.weight" in keys else "reference_unet"
    if {"conv_in.weight", "blocks.0.weight", "conv_out.weight"} <= keys:
        return "pose_guider"
    return None


def read_released(path: Path, role: str) -> dict[str, torch.Tensor]:
    state = load_state_dict(path)
    found = released_role(state)
    if found is not None and found != role:
        raise CheckpointError(
            f"'{path}' is AnimateAnyone's {RELEASED_FILES[found]}, not its {RELEASED_FILES[role]}: "
            f"choose {RELEASED_FILES[role]} for {role}."
        )
    return state


def assign_weights(build: Callable[[], nn.Module], state: dict, source: str, what: str,
                    dtype: torch.dtype) -> nn.Module:
    """Build ``module`` without allocating random weights, check every key, then adopt the tensors."""
    with torch.device("meta"):
        module = build()
    check_keys(module, {key: tuple(value.shape) for key, value in state.items()}, source, what)
    for key in list(state):
        state[key] = state[key].to(dtype)  # one at a time, so an fp32 file never sits in memory twice
    module.load_state_dict(state, strict=True, assign=True)
    left = [name for name, tensor in list(module.named_parameters()) + list(module.named_buffers()) if tensor.is_meta]
    if left:
        raise RuntimeError(f"{what}: {left[:3]} were not loaded")
    return module.eval().requires_grad_(False)


def load_reference_net(path: Path, config: AnimateAnyoneConfig, dtype=torch.float32) -> nn.Module:
    state = read_released(Path(path), "reference_unet")
    return assign_weights(config.build_reference_net, state, str(path), "the ReferenceNet", dtype)


def load_denoising_unet(denoising_path: Path, motion_path: Path, config: AnimateAnyoneConfig,
                        dtype=torch.float32) -> DenoisingUNet3D:
    motion = read_released(Path(motion_path), "motion_module")
    denoising = read_released(Path(denoising_path), "denoising_unet")
    # As the reference loads them: motion modules first, then denoising_unet.pth on top.
    state = {**motion, **denoising}
    del motion, denoising
    source = f"{denoising_path} + {Path(motion_path).name}"
    return assign_weights(config.build_denoising_unet, state, source, "the denoising UNet with motion modules", dtype)


def load_pose_guider(path: Path, config: AnimateAnyoneConfig, dtype=torch.float32) -> PoseGuider:
    state = read_released(Path(path), "pose_guider")
    return assign_weights(config.build_pose_guider, state, str(path), "the PoseGuider", dtype)


# ----------------------------------------------------------------------------- image encoder and VAE


def weights_file(path: Path, names: tuple[str, ...], what: str) -> Path:
    """``path`` itself, or the first of ``names`` inside the folder ``path``."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        for name in names:
            if (path / name).is_file():
                return path / name
        raise ModelNotFoundError(what, " or ".join(f"'{n}'" for n in names), [str(path)])
    raise ModelNotFoundError(what, f"'{path.name}'", [str(path.parent)])


def _clip_vision_config(data: dict):
    from transformers import CLIPVisionConfig

    if data.get("model_type") == "clip":  # a full CLIP config: its vision half and projection size
        vision = dict(data.get("vision_config") or {})
        vision["projection_dim"] = data.get("projection_dim", vision.get("projection_dim", 512))
        data = vision
    data = {key: value for key, value in data.items() if key not in ("architectures", "model_type", "transformers_version")}
    return CLIPVisionConfig(**data)


def _vision_tower(state: dict, module: nn.Module) -> dict:
    # A full CLIP file also holds the text tower (not needed); older transformers saved position_ids.
    expected = module.state_dict()
    if any(key.startswith("text_model.") for key in state):
        state = {k: v for k, v in state.items() if k.startswith(("vision_model.", "visual_projection."))}
    return {k: v for k, v in state.items() if k in expected or not k.endswith("position_ids")}


def load_image_encoder(path: Path, dtype=torch.float32) -> nn.Module:
    """CLIP vision model with projection (``image_embeds`` is what AnimateAnyone uses)."""
    from transformers import CLIPVisionModelWithProjection

    weights = weights_file(path, IMAGE_ENCODER_WEIGHTS, "AnimateAnyone image encoder")
    config_file = weights.parent / "config.json"
    config = _clip_vision_config(read_json(config_file if config_file.is_file() else CONFIG_DIR / IMAGE_ENCODER_CONFIG))
    what = "the CLIP image encoder (ViT-L/14 with projection, transformers layout)"
    with torch.device("meta"):  # check the file before spending time on building the real model
        probe = CLIPVisionModelWithProjection(config)
    state = _vision_tower(load_state_dict(weights), probe)
    check_keys(probe, {key: tuple(value.shape) for key, value in state.items()}, str(weights), what)
    model = CLIPVisionModelWithProjection(config)
    load_into_module(model, state, weights, what)
    return model.to(dtype).eval().requires_grad_(False)


_OLD_VAE_ATTENTION = {".query.": ".to_q.", ".key.": ".to_k.", ".value.": ".to_v.", ".proj_attn.": ".to_out.0."}


def _diffusers_vae_keys(state: dict, config: dict) -> dict:
    """Original LDM single files and old diffusers folders -> today's diffusers key names."""
    if any(".down.0.block.0." in key for key in state):
        from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

        return convert_ldm_vae_checkpoint(state, config)
    renamed = {}
    for key, value in state.items():
        for old, new in _OLD_VAE_ATTENTION.items():
            key = key.replace(old, new)
        renamed[key] = value
    return renamed


def load_vae(path: Path, dtype=torch.float32) -> nn.Module:
    from diffusers import AutoencoderKL

    weights = weights_file(path, VAE_WEIGHTS, "AnimateAnyone VAE (sd-vae-ft-mse)")
    config_file = weights.parent / "config.json"
    config = read_json(config_file if config_file.is_file() else CONFIG_DIR / VAE_CONFIG)
    vae = AutoencoderKL.from_config(config)
    state = _diffusers_vae_keys(load_state_dict(weights), config)
    load_into_module(vae, state, weights, "the VAE (AutoencoderKL, sd-vae-ft-mse)")
    return vae.to(dtype).eval().requires_grad_(False)


# ----------------------------------------------------------------------------- everything


def load_models(files: AnimateAnyoneFiles, dtype: torch.dtype = torch.float32,
                config: AnimateAnyoneConfig | None = None) -> AnimateAnyoneModels:
    """Load all five models; configs come from the denoising UNet's folder when it carries them."""
    config = config or AnimateAnyoneConfig.for_weights(Path(files.denoising_unet).parent)
    return AnimateAnyoneModels(
        reference_net=load_reference_net(files.reference_unet, config, dtype),
        denoising_unet=load_denoising_unet(files.denoising_unet, files.motion_module, config, dtype),
        pose_guider=load_pose_guider(files.pose_guider, config, dtype),
        image_encoder=load_image_encoder(files.image_encoder, dtype),
        vae=load_vae(files.vae, dtype),
        scheduler_config=config.scheduler,
    )
