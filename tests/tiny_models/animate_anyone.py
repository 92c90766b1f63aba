"""A tiny Moore-AnimateAnyone release: random weights, the released file names, key layouts and formats.

``make_release(folder)`` writes what users download (``pretrained_weights/`` of the reference):
``denoising_unet.pth`` (SD1.5 UNet keys, no motion modules), ``motion_module.pth`` (only
``*.motion_modules.*`` keys, full prefixes), ``reference_unet.pth`` (no ``conv_norm_out``/``conv_out``),
``pose_guider.pth``, ``image_encoder/`` (transformers folder with ``pytorch_model.bin``, which still
carries the ``position_ids`` buffer older transformers saved) and ``sd-vae-ft-mse/`` (diffusers folder),
plus the reference's config files at tiny size next to them (the loader picks those up).
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
    "block_out_channels": [32, 32, 64, 64],
    "norm_num_groups": 32,
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
MAX_WINDOW = 16
MOTION_CONFIG = {
    "use_inflated_groupnorm": True,
    "unet_use_cross_frame_attention": False,
    "unet_use_temporal_attention": False,
    "use_motion_module": True,
    "motion_module_resolutions": [1, 2, 4, 8],
    "motion_module_mid_block": True,
    "motion_module_decoder_only": False,
    "motion_module_type": "Vanilla",
    "motion_module_kwargs": {
        "num_attention_heads": 8,
        "num_transformer_block": 1,
        "attention_block_types": ["Temporal_Self", "Temporal_Self"],
        "temporal_position_encoding": True,
        "temporal_position_encoding_max_len": MAX_WINDOW,
        "temporal_attention_dim_div": 1,
    },
}
POSE_GUIDER_CONFIG = {"conditioning_channels": 3, "block_out_channels": [8, 8, 16, 16]}
IMAGE_ENCODER_CONFIG = {
    "architectures": ["CLIPVisionModelWithProjection"],
    "hidden_act": "quick_gelu",
    "hidden_size": 32,
    "image_size": 224,
    "intermediate_size": 37,
    "layer_norm_eps": 1e-05,
    "model_type": "clip_vision_model",
    "num_attention_heads": 4,
    "num_channels": 3,
    "num_hidden_layers": 2,
    "patch_size": 32,
    "projection_dim": 32,
}
VAE_CONFIG = {
    "_class_name": "AutoencoderKL",
    "act_fn": "silu",
    "block_out_channels": [32, 32, 32, 32],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 1,
    "norm_num_groups": 32,
    "sample_size": 64,
    "scaling_factor": 0.18215,
}


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def _randomise(module: torch.nn.Module, generator: torch.Generator) -> torch.nn.Module:
    """Every weight random (norms around 1), so zero-initialised layers take part too."""
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if name.endswith("pos_encoder.pe") or name.endswith("position_ids"):
                continue
            if "norm" in name and name.endswith("weight"):
                tensor.copy_(1.0 + 0.1 * torch.randn(tensor.shape, generator=generator))
            else:
                fan_in = tensor[0].numel() if tensor.ndim > 1 else tensor.numel()
                tensor.copy_(torch.randn(tensor.shape, generator=generator) / max(fan_in, 1) ** 0.5)
    return module


def build_modules(seed: int = 0) -> dict[str, torch.nn.Module]:
    """Our modules at tiny size with random weights (the source of the release files)."""
    from diffusers import AutoencoderKL
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from comfyui_animate_suite.pipelines.animate_anyone.loading import AnimateAnyoneConfig

    generator = seeded(seed)
    config = AnimateAnyoneConfig(UNET_CONFIG, MOTION_CONFIG, {}, POSE_GUIDER_CONFIG)
    vision = {k: v for k, v in IMAGE_ENCODER_CONFIG.items() if k not in ("architectures", "model_type")}
    vae_config = {k: v for k, v in VAE_CONFIG.items() if not k.startswith("_")}
    return {
        "reference_net": _randomise(config.build_reference_net(), generator),
        "denoising_unet": _randomise(config.build_denoising_unet(), generator),
        "pose_guider": _randomise(config.build_pose_guider(), generator),
        "image_encoder": _randomise(CLIPVisionModelWithProjection(CLIPVisionConfig(**vision)), generator),
        "vae": _randomise(AutoencoderKL(**vae_config), generator),
    }


def write_configs(folder: Path) -> None:
    folder = Path(folder)
    _write_json(folder / "unet_config.json", UNET_CONFIG)
    _write_json(folder / "unet_additional_kwargs.json", MOTION_CONFIG)
    _write_json(folder / "pose_guider.json", POSE_GUIDER_CONFIG)


def make_release(folder: Path, seed: int = 0):
    """Write the tiny release into ``folder``; returns its ``AnimateAnyoneFiles``."""
    from comfyui_animate_suite.pipelines.animate_anyone.loading import AnimateAnyoneFiles

    folder = Path(folder)
    modules = build_modules(seed)
    unet_state = modules["denoising_unet"].state_dict()
    save_weights({k: v for k, v in unet_state.items() if "motion_modules." not in k}, folder / "denoising_unet.pth")
    save_weights({k: v for k, v in unet_state.items() if "motion_modules." in k}, folder / "motion_module.pth")
    save_weights(modules["reference_net"].state_dict(), folder / "reference_unet.pth")
    save_weights(modules["pose_guider"].state_dict(), folder / "pose_guider.pth")

    encoder_state = dict(modules["image_encoder"].state_dict())
    positions = (IMAGE_ENCODER_CONFIG["image_size"] // IMAGE_ENCODER_CONFIG["patch_size"]) ** 2 + 1
    encoder_state["vision_model.embeddings.position_ids"] = torch.arange(positions).unsqueeze(0)
    save_weights(encoder_state, folder / "image_encoder" / "pytorch_model.bin")
    _write_json(folder / "image_encoder" / "config.json", IMAGE_ENCODER_CONFIG)
    save_weights(modules["vae"].state_dict(), folder / "sd-vae-ft-mse" / "diffusion_pytorch_model.safetensors")
    _write_json(folder / "sd-vae-ft-mse" / "config.json", VAE_CONFIG)
    write_configs(folder)
    return AnimateAnyoneFiles.in_folder(folder)


def to_ldm_vae(state: dict) -> dict:
    """Diffusers AutoencoderKL keys -> the original LDM layout of single VAE files (e.g. vae-ft-mse-*.safetensors)."""
    blocks = len(VAE_CONFIG["block_out_channels"])
    renames = [
        (".mid_block.resnets.0.", ".mid.block_1."), (".mid_block.resnets.1.", ".mid.block_2."),
        (".mid_block.attentions.0.group_norm.", ".mid.attn_1.norm."),
        (".mid_block.attentions.0.to_q.", ".mid.attn_1.q."), (".mid_block.attentions.0.to_k.", ".mid.attn_1.k."),
        (".mid_block.attentions.0.to_v.", ".mid.attn_1.v."),
        (".mid_block.attentions.0.to_out.0.", ".mid.attn_1.proj_out."),
        ("conv_norm_out.", "norm_out."), (".conv_shortcut.", ".nin_shortcut."),
    ]
    for i in range(blocks):
        renames += [
            (f"encoder.down_blocks.{i}.resnets.", f"encoder.down.{i}.block."),
            (f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample."),
            (f"decoder.up_blocks.{i}.resnets.", f"decoder.up.{blocks - 1 - i}.block."),
            (f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{blocks - 1 - i}.upsample."),
        ]
    converted = {}
    for key, value in state.items():
        for old, new in renames:
            key = key.replace(old, new)
        if ".attn_1." in key and key.endswith("weight") and value.ndim == 2:
            value = value[:, :, None, None]  # LDM stores the VAE attention projections as 1x1 convs
        converted[key] = value
    return converted


def write_training_sources(folder: Path, seed: int = 1):
    """What the training recipes start from, at tiny size, next to a tiny release (``release/``):
    an SD UNet diffusers folder (``sd-image-variations-diffusers/unet``: ``config.json`` + safetensors),
    a ControlNet-openpose file (``controlnet_cond_embedding.*`` among other ControlNet keys, ``.bin``) and
    AnimateDiff's ``mm_sd_v15_v2.ckpt`` (the released motion-module key layout)."""
    from types import SimpleNamespace

    from diffusers import UNet2DConditionModel

    folder = Path(folder)
    files = make_release(folder / "release", seed)
    generator = seeded(seed + 1)
    unet = _randomise(UNet2DConditionModel(**UNET_CONFIG), generator)
    base_unet = folder / "sd-image-variations-diffusers" / "unet"
    save_weights(unet.state_dict(), base_unet / "diffusion_pytorch_model.safetensors")
    _write_json(base_unet / "config.json", {"_class_name": "UNet2DConditionModel", **UNET_CONFIG})

    guider = build_modules(seed + 2)["pose_guider"]
    controlnet = {f"controlnet_cond_embedding.{k}": v for k, v in guider.state_dict().items()}
    controlnet["controlnet_cond_embedding.conv_out.weight"] = torch.randn(32, 16, 3, 3, generator=generator)
    controlnet["controlnet_down_blocks.0.weight"] = torch.randn(32, 32, 1, 1, generator=generator)
    controlnet["conv_in.weight"] = torch.randn(32, 4, 3, 3, generator=generator)
    controlnet_path = save_weights(controlnet, folder / "control_v11p_sd15_openpose" / "diffusion_pytorch_model.bin")

    motion = {k: v for k, v in build_modules(seed + 3)["denoising_unet"].state_dict().items() if "motion_modules." in k}
    motion_path = save_weights(motion, folder / "mm_sd_v15_v2.ckpt")
    return SimpleNamespace(release=files, release_dir=folder / "release", base_unet=base_unet,
                           controlnet=controlnet_path, motion_module=motion_path)
