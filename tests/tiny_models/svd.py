"""A tiny random Stable Video Diffusion img2vid model, saved the two ways SVD is published.

- ``save_diffusers_folder``: ``model_index.json``, ``unet/``, ``vae/``, ``image_encoder/``, ``scheduler/``,
  ``feature_extractor/`` as on the hub (stabilityai/stable-video-diffusion-img2vid-xt).
- ``save_single_file``: one ``.safetensors`` in Stability's sgm layout (``model.diffusion_model.*``,
  ``first_stage_model.*``, ``conditioner.embedders.0.open_clip.model.visual.*``,
  ``conditioner.embedders.3.encoder.*``). The renaming here is written from the sgm module layout
  (VideoUNet input/middle/output blocks, VideoDecoder, OpenCLIP VisionTransformer), independently of
  the pack's converter, so a converter bug cannot hide behind a matching inverse.

The shipped scheduler and feature-extractor configs are used unchanged; the network configs are tiny
but keep every structural feature of the real ones (2 resnets per level, cross-attention and plain
levels, 768-wide added-time embedding, 224px CLIP input).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from . import save_weights, seeded

SHIPPED_CONFIGS = Path(__file__).resolve().parents[2] / "pipelines" / "svd" / "configs" / "svd_xt"
NUM_FRAMES = 4

UNET_CONFIG = {
    "_class_name": "UNetSpatioTemporalConditionModel",
    "addition_time_embed_dim": 256,
    "block_out_channels": [32, 64],
    "cross_attention_dim": 32,
    "down_block_types": ["CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"],
    "in_channels": 8,
    "layers_per_block": 2,
    "num_attention_heads": [2, 4],
    "num_frames": NUM_FRAMES,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": 768,
    "sample_size": 8,
    "transformer_layers_per_block": 1,
    "up_block_types": ["UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"],
}
VAE_CONFIG = {
    "_class_name": "AutoencoderKLTemporalDecoder",
    "block_out_channels": [32, 64],
    "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
    "force_upcast": True,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "out_channels": 3,
    "sample_size": 32,
    "scaling_factor": 0.18215,
}
IMAGE_ENCODER_CONFIG = {
    "architectures": ["CLIPVisionModelWithProjection"],
    "model_type": "clip_vision_model",
    "hidden_act": "gelu",
    "hidden_size": 32,
    "image_size": 224,
    "intermediate_size": 48,
    "layer_norm_eps": 1e-05,
    "num_attention_heads": 4,
    "num_channels": 3,
    "num_hidden_layers": 2,
    "patch_size": 32,
    "projection_dim": 32,
}


def configs() -> dict[str, dict]:
    return {
        "unet": UNET_CONFIG,
        "vae": VAE_CONFIG,
        "image_encoder": IMAGE_ENCODER_CONFIG,
        "scheduler": json.loads((SHIPPED_CONFIGS / "scheduler.json").read_text()),
        "feature_extractor": json.loads((SHIPPED_CONFIGS / "feature_extractor.json").read_text()),
    }


def _jitter(module: torch.nn.Module, generator: torch.Generator) -> torch.nn.Module:
    # Default inits leave norms at 1 and biases at 0; small noise makes every weight matter.
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)
    return module.eval()


def build(seed: int = 0) -> dict[str, torch.nn.Module]:
    """Random-weight modules: unet, vae, image_encoder, plus ``first_stage_encoder`` (see below)."""
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    generator = seeded(seed)
    unet = _jitter(UNetSpatioTemporalConditionModel.from_config(UNET_CONFIG), generator)
    vae = _jitter(AutoencoderKLTemporalDecoder.from_config(VAE_CONFIG), generator)
    fields = {k: v for k, v in IMAGE_ENCODER_CONFIG.items() if k not in ("architectures",)}
    image_encoder = _jitter(CLIPVisionModelWithProjection(CLIPVisionConfig(**fields)), generator)
    # The sgm file holds a second VAE encoder (the first stage's own); give it different weights so a
    # loader that encodes with the wrong copy gives different frames.
    first_stage_encoder = _jitter(AutoencoderKLTemporalDecoder.from_config(VAE_CONFIG), generator).encoder
    return {"unet": unet, "vae": vae, "image_encoder": image_encoder, "first_stage_encoder": first_stage_encoder}


def image_decoder_vae(vae: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """The frame-by-frame variant (``svd_image_decoder``): the same encoder, a plain SD decoder."""
    from diffusers import AutoencoderKL

    config = {k: v for k, v in VAE_CONFIG.items() if not k.startswith("_")}
    plain = AutoencoderKL.from_config({**config, "up_block_types": ["UpDecoderBlock2D"] * len(config["block_out_channels"])})
    _jitter(plain, seeded(seed))
    with torch.no_grad():
        plain.encoder.load_state_dict(vae.encoder.state_dict())
        plain.quant_conv.load_state_dict(vae.quant_conv.state_dict())
        channels = config["latent_channels"]  # the sgm first stage has no post_quant_conv: an identity
        plain.post_quant_conv.weight.copy_(torch.eye(channels).reshape(channels, channels, 1, 1))
        plain.post_quant_conv.bias.zero_()
    return plain.eval()


def _write_json(data: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


def save_config_dir(folder: Path, **replaced: dict) -> Path:
    """The tiny configs (some ``replaced``) in the layout of the pack's ``configs/<variant>/`` folders."""
    for name, config in {**configs(), **replaced}.items():
        _write_json(config, Path(folder) / f"{name}.json")
    return Path(folder)


def save_diffusers_folder(models: dict, folder: Path, dtype: torch.dtype = torch.float32) -> Path:
    folder = Path(folder)
    tiny = configs()
    _write_json({"_class_name": "StableVideoDiffusionPipeline", "_diffusers_version": "0.24.0"}, folder / "model_index.json")
    variant = ".fp16" if dtype == torch.float16 else ""
    for name, stem in (("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"), ("image_encoder", "model")):
        _write_json(tiny[name], folder / name / "config.json")
        weights = {k: v.to(dtype) for k, v in models[name].state_dict().items() if k != "vision_model.embeddings.position_ids"}
        save_weights(weights, folder / name / f"{stem}{variant}.safetensors")
    _write_json(tiny["scheduler"], folder / "scheduler" / "scheduler_config.json")
    _write_json(tiny["feature_extractor"], folder / "feature_extractor" / "preprocessor_config.json")
    return folder


# ----------------------------------------------------------------------------- sgm layout


def sgm_unet(state_dict: dict, config: dict = UNET_CONFIG) -> dict:
    """diffusers UNetSpatioTemporalConditionModel keys -> sgm VideoUNet keys (``model.diffusion_model.*``)."""
    per_level = config["layers_per_block"]
    attention_up = [kind.startswith("CrossAttn") for kind in config["up_block_types"]]
    fixed = {"conv_in": "input_blocks.0.0", "time_embedding.linear_1": "time_embed.0",
             "time_embedding.linear_2": "time_embed.2", "add_embedding.linear_1": "label_emb.0.0",
             "add_embedding.linear_2": "label_emb.0.2", "conv_norm_out": "out.0", "conv_out": "out.2"}
    resnet_leaves = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
                     "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
    out = {}
    for key, value in state_dict.items():
        kind = "plain"
        if (m := re.match(r"(\w+\.linear_\d|conv_in|conv_norm_out|conv_out)\.(weight|bias)$", key)):
            block, leaf = fixed[m[1]], m[2]
        elif (m := re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)", key)):
            kind, leaf = m[1], m[3]
            block = "middle_block.1" if kind == "attentions" else f"middle_block.{2 * int(m[2])}"
        elif (m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key)):
            level, kind, layer, leaf = int(m[1]), m[2], int(m[3]), m[4]
            block = f"input_blocks.{1 + level * (per_level + 1) + layer}.{0 if kind == 'resnets' else 1}"
        elif (m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key)):
            block, leaf = f"input_blocks.{(int(m[1]) + 1) * (per_level + 1)}.0.op", m[2]
        elif (m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key)):
            level, kind, layer, leaf = int(m[1]), m[2], int(m[3]), m[4]
            block = f"output_blocks.{level * (per_level + 1) + layer}.{0 if kind == 'resnets' else 1}"
        elif (m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key)):
            level = int(m[1])
            slot = 2 if attention_up[level] else 1
            block, leaf = f"output_blocks.{level * (per_level + 1) + per_level}.{slot}.conv", m[2]
        else:
            raise AssertionError(f"unexpected UNet key {key}")
        if kind == "resnets":
            part, _, rest = leaf.partition(".")
            if part in ("spatial_res_block", "temporal_res_block"):
                name, _, tail = rest.partition(".")
                leaf = ("time_stack." if part == "temporal_res_block" else "") + f"{resnet_leaves[name]}.{tail}"
        elif kind == "attentions":
            leaf = leaf.replace("temporal_transformer_blocks.", "time_stack.")
            leaf = leaf.replace("time_pos_embed.linear_1.", "time_pos_embed.0.").replace("time_pos_embed.linear_2.", "time_pos_embed.2.")
        out[f"model.diffusion_model.{block}.{leaf}"] = value
    return out


def _sgm_vae_encoder(state_dict: dict) -> dict:
    """diffusers ``Encoder`` keys (no ``encoder.`` prefix) -> sgm ``Encoder`` keys."""
    out = {}
    for key, value in state_dict.items():
        new = key
        new = re.sub(r"^down_blocks\.(\d+)\.resnets\.(\d+)\.", r"down.\1.block.\2.", new)
        new = re.sub(r"^down_blocks\.(\d+)\.downsamplers\.0\.conv\.", r"down.\1.downsample.conv.", new)
        new = re.sub(r"^mid_block\.resnets\.(\d+)\.", lambda m: f"mid.block_{int(m[1]) + 1}.", new)
        new = _sgm_attention(new)
        new = new.replace("conv_shortcut", "nin_shortcut").replace("conv_norm_out", "norm_out")
        out[new] = _as_1x1(new, value)
    return out


def _sgm_attention(key: str) -> str:
    key = key.replace("mid_block.attentions.0.", "mid.attn_1.")
    for new, old in (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")):
        key = key.replace(f"mid.attn_1.{new}.", f"mid.attn_1.{old}.")
    return key


def _as_1x1(key: str, value: torch.Tensor) -> torch.Tensor:
    if re.search(r"attn_1\.(q|k|v|proj_out)\.weight$", key):
        return value.reshape(*value.shape, 1, 1)
    return value


def _sgm_vae_decoder(state_dict: dict, config: dict = VAE_CONFIG) -> dict:
    """diffusers ``TemporalDecoder`` keys (no ``decoder.`` prefix) -> sgm ``VideoDecoder`` keys."""
    levels = len(config["block_out_channels"])
    out = {}
    for key, value in state_dict.items():
        new = re.sub(r"^up_blocks\.(\d+)\.", lambda m: f"up.{levels - 1 - int(m[1])}.", key)
        new = re.sub(r"^(up\.\d+)\.resnets\.(\d+)\.", r"\1.block.\2.", new)
        new = re.sub(r"^(up\.\d+)\.upsamplers\.0\.conv\.", r"\1.upsample.conv.", new)
        new = re.sub(r"^mid_block\.resnets\.(\d+)\.", lambda m: f"mid.block_{int(m[1]) + 1}.", new)
        new = _sgm_attention(new)
        new = new.replace("spatial_res_block.", "").replace("time_mixer.mix_factor", "mix_factor")
        for diffusers_name, sgm_name in (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"), ("conv2", "out_layers.3")):
            new = new.replace(f"temporal_res_block.{diffusers_name}.", f"time_stack.{sgm_name}.")
        new = new.replace("conv_shortcut", "nin_shortcut").replace("conv_norm_out", "norm_out")
        new = new.replace("time_conv_out.", "conv_out.time_mix_conv.")
        out[new] = _as_1x1(new, value)
    return out


def _open_clip_visual(state_dict: dict, config: dict = IMAGE_ENCODER_CONFIG) -> dict:
    """transformers CLIP vision keys -> OpenCLIP ``VisionTransformer`` keys."""
    top = {"vision_model.embeddings.class_embedding": "class_embedding",
           "vision_model.embeddings.patch_embedding.weight": "conv1.weight",
           "vision_model.embeddings.position_embedding.weight": "positional_embedding",
           "vision_model.pre_layrnorm.weight": "ln_pre.weight", "vision_model.pre_layrnorm.bias": "ln_pre.bias",
           "vision_model.post_layernorm.weight": "ln_post.weight", "vision_model.post_layernorm.bias": "ln_post.bias"}
    out = {top[k]: v for k, v in state_dict.items() if k in top}
    out["proj"] = state_dict["visual_projection.weight"].t().contiguous()
    layers = config["num_hidden_layers"]
    for i in range(layers):
        src, dst = f"vision_model.encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[f"{dst}attn.in_proj_{kind}"] = torch.cat([state_dict[f"{src}self_attn.{p}_proj.{kind}"] for p in "qkv"])
            for new, old in (("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"), ("mlp.fc1", "mlp.c_fc"),
                             ("mlp.fc2", "mlp.c_proj"), ("self_attn.out_proj", "attn.out_proj")):
                out[f"{dst}{old}.{kind}"] = state_dict[f"{src}{new}.{kind}"]
    return out


def single_file_state_dict(models: dict, unet_config: dict = UNET_CONFIG, vae_config: dict = VAE_CONFIG,
                           image_encoder_config: dict = IMAGE_ENCODER_CONFIG) -> dict:
    """All modules in the sgm single-file layout (the configs describe the modules' structure)."""
    unet = sgm_unet(models["unet"].state_dict(), unet_config)
    vae = models["vae"].state_dict()
    encoder = {k[len("encoder."):]: v for k, v in vae.items() if k.startswith("encoder.")}
    decoder = {k[len("decoder."):]: v for k, v in vae.items() if k.startswith("decoder.")}
    conditioner_ae = "conditioner.embedders.3.encoder."
    out = dict(unet)
    out.update({f"{conditioner_ae}encoder.{k}": v for k, v in _sgm_vae_encoder(encoder).items()})
    out.update({f"{conditioner_ae}quant_conv.{k[len('quant_conv.'):]}": v for k, v in vae.items() if k.startswith("quant_conv.")})
    first_stage = models.get("first_stage_encoder")
    first_stage = first_stage.state_dict() if first_stage is not None else encoder
    out.update({f"first_stage_model.encoder.{k}": v for k, v in _sgm_vae_encoder(first_stage).items()})
    out.update({f"first_stage_model.decoder.{k}": v for k, v in _sgm_vae_decoder(decoder, vae_config).items()})
    clip = {k: v for k, v in models["image_encoder"].state_dict().items() if k != "vision_model.embeddings.position_ids"}
    out.update({f"conditioner.embedders.0.open_clip.model.visual.{k}": v
                for k, v in _open_clip_visual(clip, image_encoder_config).items()})
    return out


def save_single_file(models: dict, path: Path, dtype: torch.dtype = torch.float32) -> Path:
    return save_weights({k: v.to(dtype) for k, v in single_file_state_dict(models).items()}, path)
