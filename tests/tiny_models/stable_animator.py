"""Tiny random StableAnimator release + SVD-xt base, in the official layouts and file formats.

- ``<weights_dir>/unet.pth`` (processors installed, so with ``…attn2.processor.id_to_k/id_to_v``),
  ``unet_config.json`` beside it (the tiny size), ``pose_net.pth``, ``face_encoder.pth`` and
  ``glintr100_torch.pth`` (an IResNet with one block per stage, stored in float16 like the fixture's);
- ``<base_dir>/{vae,image_encoder,scheduler}``: an SVD-xt-style diffusers folder;
- or the same base as an sgm single file (``svd_xt_*.safetensors``, written by ``tiny_models.svd``'s
  single-file writer) with the configs the SVD loader needs for it (``<config_root>/svd_xt/``).

Every parameter is random (no zero-initialised layers), so each path affects the output.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from . import save_weights, seeded

UNET_CONFIG = {
    "sample_size": 8,
    "in_channels": 8,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlockSpatioTemporal", "CrossAttnDownBlockSpatioTemporal",
                         "CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"],
    "up_block_types": ["UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal",
                       "CrossAttnUpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"],
    "block_out_channels": [32, 32, 64, 64],
    "addition_time_embed_dim": 16,
    "projection_class_embeddings_input_dim": 48,
    "layers_per_block": 1,
    "cross_attention_dim": 64,
    "transformer_layers_per_block": 1,
    "num_attention_heads": [2, 2, 4, 4],
    "num_frames": 16,
}
CLIP_PROJECTION_DIM = 64
FACE_EMBEDDER_BLOCKS = (1, 1, 1, 1)
# SVD-xt's scheduler settings.
SCHEDULER_CONFIG = {
    "_class_name": "EulerDiscreteScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
    "interpolation_type": "linear", "num_train_timesteps": 1000, "prediction_type": "v_prediction",
    "sigma_max": 700.0, "sigma_min": 0.002, "steps_offset": 1, "timestep_spacing": "leading",
    "timestep_type": "continuous", "use_karras_sigmas": True,
}


def _randomize(module: torch.nn.Module, generator: torch.Generator) -> torch.nn.Module:
    """Small random weights everywhere; norm scales around 1 (as the parity fixture's)."""
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if not tensor.is_floating_point():
                continue
            noise = torch.randn(tensor.shape, generator=generator)
            if name.endswith("running_var"):
                tensor.copy_(1 + 0.1 * noise.abs())
            elif ("norm" in name or ".bn" in name or name.startswith("bn") or "features" in name) and name.endswith("weight"):
                tensor.copy_(1 + 0.1 * noise)
            elif name.endswith("scale"):
                tensor.copy_(2 + 0.1 * noise)
            else:
                tensor.copy_(0.05 * noise)
    return module


def write_weights(weights_dir: Path, seed: int = 0, face_embedder: bool = True) -> dict[str, Path]:
    """The four released files (and the tiny unet_config.json) in ``weights_dir``."""
    from comfyui_animate_suite.pipelines.stable_animator import models_face, models_pose, models_unet

    generator = seeded(seed)
    weights_dir = Path(weights_dir)
    weights_dir.mkdir(parents=True, exist_ok=True)
    (weights_dir / "unet_config.json").write_text(json.dumps(UNET_CONFIG))
    paths = {
        "unet": save_weights(_randomize(models_unet.build_unet(UNET_CONFIG), generator).state_dict(), weights_dir / "unet.pth"),
        "pose_net": save_weights(_randomize(models_pose.PoseNet(UNET_CONFIG["block_out_channels"][0]), generator).state_dict(),
                                 weights_dir / "pose_net.pth"),
        "face_encoder": save_weights(_randomize(models_face.FusionFaceId(
            UNET_CONFIG["cross_attention_dim"], 512, CLIP_PROJECTION_DIM, models_unet.FACE_TOKENS), generator).state_dict(),
            weights_dir / "face_encoder.pth"),
    }
    if face_embedder:
        embedder = _randomize(models_face.IResNet(FACE_EMBEDDER_BLOCKS), generator)
        state = {k: v.half() if v.is_floating_point() else v for k, v in embedder.state_dict().items()}
        paths["face_embedder"] = save_weights(state, weights_dir / "glintr100_torch.pth")
    return paths


def build_svd_base(seed: int = 0) -> dict[str, torch.nn.Module]:
    """The tiny SVD-xt base modules: temporal VAE (8x down, as SVD's) and CLIP image encoder."""
    from diffusers import AutoencoderKLTemporalDecoder
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    generator = seeded(seed + 1)
    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=(32, 32, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 4,
        layers_per_block=1, latent_channels=4, sample_size=64,
    )
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, image_size=224,
        patch_size=32, projection_dim=CLIP_PROJECTION_DIM, hidden_act="quick_gelu"))
    return {"vae": _randomize(vae, generator).eval(), "image_encoder": _randomize(encoder, generator).eval()}


def write_svd_base(base_dir: Path, seed: int = 0) -> Path:
    """A tiny SVD-xt-style diffusers folder: vae/, image_encoder/, scheduler/."""
    base_dir = Path(base_dir)
    for name, module in build_svd_base(seed).items():
        module.save_pretrained(base_dir / name)
    (base_dir / "scheduler").mkdir(parents=True, exist_ok=True)
    (base_dir / "scheduler" / "scheduler_config.json").write_text(json.dumps(SCHEDULER_CONFIG))
    return base_dir


def write_svd_base_single_file(path: Path, config_root: Path, seed: int = 0) -> Path:
    """The same base (same weights as ``write_svd_base``) as an sgm single file, as ``svd_xt.safetensors`` is
    published, plus ``<config_root>/svd_xt/`` with its configs in the layout of ``pipelines/svd/configs``.

    The file also holds a tiny SVD UNet (a real single file has one); StableAnimator never reads it.
    """
    from diffusers import UNetSpatioTemporalConditionModel

    from . import svd

    base = build_svd_base(seed)
    vae_config = {"_class_name": "AutoencoderKLTemporalDecoder",
                  **{k: v for k, v in base["vae"].config.items() if not k.startswith("_")}}
    encoder_config = base["image_encoder"].config.to_dict()
    # The file's own first-stage encoder gets other weights, so a loader reading the wrong copy is caught.
    other_encoder = build_svd_base(seed + 1)["vae"].encoder
    modules = {**base, "unet": UNetSpatioTemporalConditionModel.from_config(svd.UNET_CONFIG),
               "first_stage_encoder": other_encoder}
    save_weights(svd.single_file_state_dict(modules, vae_config=vae_config, image_encoder_config=encoder_config), path)
    svd.save_config_dir(Path(config_root) / "svd_xt", vae=vae_config, image_encoder=encoder_config,
                        scheduler=SCHEDULER_CONFIG)
    return Path(path)


def load_tiny(tmp_path: Path, face_embedder: bool = True):
    """Write the tiny release and base under ``tmp_path`` and load them with the real loader."""
    from comfyui_animate_suite.pipelines.stable_animator import loading

    paths = write_weights(tmp_path / "stable_animator", face_embedder=face_embedder)
    base = write_svd_base(tmp_path / "svd")
    files = loading.StableAnimatorFiles(paths["unet"], paths["pose_net"], paths["face_encoder"],
                                        paths.get("face_embedder"), base)
    return loading.load_stable_animator(files)
