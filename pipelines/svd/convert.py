"""Official single-file SVD checkpoints (Stability's ``sgm`` layout) -> diffusers module state dicts.

What a single file (``svd.safetensors``, ``svd_xt.safetensors``, ``svd_xt_1_1.safetensors``, fp16
variants) holds, by key prefix, and where each part goes:

=============================================================  =====================================
``model.diffusion_model.*``                                    UNet (sgm VideoUNet) -> UNetSpatioTemporalConditionModel
``first_stage_model.decoder.*``                                temporal VAE decoder -> AutoencoderKLTemporalDecoder.decoder
``conditioner.embedders.<k>.encoder.encoder.*``, ``.quant_conv.*``
                                                               the VAE encoder the conditioner uses for the input
                                                               frame (k = 3 in svd.yaml / svd_xt.yaml)
                                                               -> AutoencoderKLTemporalDecoder.encoder / quant_conv
``conditioner.embedders.0.open_clip.model.visual.*``           OpenCLIP ViT-H/14 image tower -> CLIPVisionModelWithProjection
=============================================================  =====================================

Keys that are read but deliberately not used (``SingleFileLayout.leftovers``, each with the reason):

- ``first_stage_model.encoder.*``: the first stage's own encoder. img2vid never encodes with it
  (the conditioner's copy above encodes the input frame, as in the reference sampler); it is used
  only when a file lacks the conditioner copy, with an identity ``quant_conv`` (as ComfyUI does).
- ``conditioner.embedders.<k>.encoder.decoder.*`` / ``.post_quant_conv.*``: the decoder half of the
  conditioner's autoencoder, never run (that embedder only encodes).
- ``conditioner.embedders.0.open_clip.model.*`` outside ``visual.``: OpenCLIP text-tower remnants
  (token/positional embedding, ln_final, text_projection, logit_scale); SVD conditions on the image only.

Every other key must convert; anything unknown raises ``CheckpointMismatchError``. The fps, motion
bucket and noise-augmentation embedders have no weights.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

import torch

from ...core.checkpoints import StateDict
from ...core.errors import CheckpointError, CheckpointMismatchError
from ..motion_module import UNET_MOTION_KEY, is_motion_module_key

UNET_PREFIX = "model.diffusion_model."
IMAGE_ENCODER_PREFIX = "conditioner.embedders.0.open_clip.model.visual."
OPEN_CLIP_PREFIX = "conditioner.embedders.0.open_clip.model."
FIRST_STAGE_PREFIX = "first_stage_model."
DECODER_PREFIX = FIRST_STAGE_PREFIX + "decoder."
FIRST_STAGE_ENCODER_PREFIX = FIRST_STAGE_PREFIX + "encoder."
_CONDITIONER_AE = re.compile(r"^(conditioner\.embedders\.\d+\.encoder\.)encoder\.conv_in\.weight$")

# A key every SVD img2vid UNet has (a temporal resblock) and the width of its added-time embedding.
_SVD_MARKER = UNET_PREFIX + "input_blocks.1.0.time_stack.in_layers.0.weight"
_ADDED_TIME_KEY = UNET_PREFIX + "label_emb.0.0.weight"
_SVD_ADDED_TIME_WIDTH = 768  # fps, motion bucket, noise augmentation: 3 x 256

KeyShapes = Mapping[str, tuple[int, ...]]


# ----------------------------------------------------------------------------- what the file is


@dataclass
class SingleFileLayout:
    """Which keys of a single file feed which module, and which are known leftovers."""

    vae_encoder_prefix: str  # "<conditioner ae>.encoder." or "first_stage_model.encoder."
    quant_conv_prefix: str | None  # None: the file has none, an identity is used
    temporal_decoder: bool
    leftovers: dict[str, str] = field(default_factory=dict)  # key -> reason

    def prefixes(self, component: str) -> tuple[str, ...]:
        if component == "unet":
            return (UNET_PREFIX,)
        if component == "image_encoder":
            return (IMAGE_ENCODER_PREFIX,)
        if component == "vae":
            extra = (self.quant_conv_prefix,) if self.quant_conv_prefix else ()
            return (self.vae_encoder_prefix, DECODER_PREFIX) + extra
        raise KeyError(component)


def _guess_family(keys: Iterable[str]) -> str:
    keys = set(keys)

    def has(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in keys)

    if _ADDED_TIME_KEY in keys and has(UNET_PREFIX) and any("time_stack" in k for k in keys):
        return "Stable Video 3D (SV3D), a multi-view orbit model"
    if has("conditioner.embedders.1.model.") or has("conditioner.embedders.0.transformer."):
        return "Stable Diffusion XL"
    if has("cond_stage_model.transformer."):
        return "Stable Diffusion 1.x"
    if has("cond_stage_model.model."):
        return "Stable Diffusion 2.x"
    if has("model.diffusion_model.double_blocks.") or has("double_blocks."):
        return "a Flux/HunyuanVideo-style DiT"
    if has("model.diffusion_model."):
        return "an image diffusion model without temporal layers"
    if has("down_blocks.") and any(is_motion_module_key(k, UNET_MOTION_KEY) for k in keys):
        return "an AnimateDiff motion module"
    if has("down_blocks.") or has("transformer_blocks."):
        return "a bare diffusers model file (for a diffusers folder, pick the folder instead)"
    if has("encoder.conv_in.") or has("decoder.conv_in."):
        return "a standalone VAE"
    if has("vision_model.") or has("visual."):
        return "a CLIP vision model"
    return "an unknown model"


def check_family(key_shapes: KeyShapes, source: str) -> None:
    """Raise a clear ``CheckpointError`` unless the file is an SVD img2vid checkpoint."""
    width = key_shapes.get(_ADDED_TIME_KEY, (0, 0))
    if _SVD_MARKER in key_shapes and len(width) == 2 and width[1] == _SVD_ADDED_TIME_WIDTH:
        return
    raise CheckpointError(
        f"'{source}' is not a Stable Video Diffusion img2vid checkpoint: it looks like "
        f"{_guess_family(key_shapes)}. Choose svd.safetensors, svd_xt.safetensors or svd_xt_1_1.safetensors "
        "(from the checkpoints folder) or a diffusers stable-video-diffusion folder."
    )


def describe(key_shapes: KeyShapes, source: str) -> SingleFileLayout:
    """Check the family and sort every key of a single file into a module or a documented leftover."""
    check_family(key_shapes, source)
    temporal = any(k.startswith(DECODER_PREFIX) and "time_stack" in k for k in key_shapes)
    conditioner_ae = sorted({m.group(1) for k in key_shapes if (m := _CONDITIONER_AE.match(k))})
    leftovers: dict[str, str] = {}
    if conditioner_ae:
        ae = conditioner_ae[0]
        layout = SingleFileLayout(ae + "encoder.", ae + "quant_conv.", temporal, leftovers)
        for key in key_shapes:
            if key.startswith(FIRST_STAGE_ENCODER_PREFIX):
                leftovers[key] = "first-stage encoder; the conditioner's copy encodes the input frame"
            elif key.startswith((ae + "decoder.", ae + "post_quant_conv.")):
                leftovers[key] = "decoder half of the conditioner's autoencoder (it only encodes)"
    else:
        layout = SingleFileLayout(FIRST_STAGE_ENCODER_PREFIX, None, temporal, leftovers)
    for key in key_shapes:
        if key.startswith(OPEN_CLIP_PREFIX) and not key.startswith(IMAGE_ENCODER_PREFIX):
            leftovers[key] = "OpenCLIP text-tower remnant; SVD conditions on the image only"
    used = tuple(p for c in ("unet", "image_encoder", "vae") for p in layout.prefixes(c))
    unknown = [k for k in key_shapes if not k.startswith(used) and k not in leftovers]
    if unknown:
        raise CheckpointMismatchError(source, "Stable Video Diffusion (single file)", unexpected=unknown)
    return layout


# ----------------------------------------------------------------------------- renaming machinery

Transform = Callable[[torch.Tensor], torch.Tensor]


class _Renamer:
    """Maps the keys of one component by block prefix; unmatched keys are reported, never dropped."""

    def __init__(self, blocks: dict[str, tuple[str, Callable[[str], str]]]):
        self.blocks = blocks  # original block prefix -> (diffusers prefix, leaf renamer)

    def __call__(self, key: str) -> str | None:
        parts = key.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            block = ".".join(parts[:cut])
            if block in self.blocks:
                new_prefix, leaf = self.blocks[block]
                renamed = leaf(".".join(parts[cut:]))
                return f"{new_prefix}.{renamed}" if renamed is not None else None
        return None


def _same(leaf: str) -> str:
    return leaf


def _replace_head(table: dict[str, str]) -> Callable[[str], str | None]:
    """Rename the leading components of a leaf (``in_layers.0.weight`` -> ``norm1.weight``)."""

    def rename(leaf: str) -> str | None:
        for old, new in table.items():
            if leaf == old or leaf.startswith(old + "."):
                return new + leaf[len(old):]
        return None

    return rename


def _convert(state_dict: StateDict, rename: Callable[[str], str | None], source: str, model_name: str,
             transforms: Mapping[str, Transform] = {}, original_name: Callable[[str], str] = str) -> StateDict:
    converted: StateDict = {}
    unknown = []
    for key, value in state_dict.items():
        new_key = rename(key)
        if new_key is None:
            unknown.append(original_name(key))
            continue
        transform = next((t for suffix, t in transforms.items() if new_key.endswith(suffix)), None)
        converted[new_key] = transform(value) if transform else value
    if unknown:
        raise CheckpointMismatchError(source, model_name, unexpected=unknown)
    return converted


# ----------------------------------------------------------------------------- UNet

_RESNET = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
           "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}
_resnet_leaf = _replace_head(_RESNET)


def _unet_resnet(leaf: str) -> str | None:
    if leaf.startswith("time_stack."):
        inner = _resnet_leaf(leaf[len("time_stack."):])
        return f"temporal_res_block.{inner}" if inner else None
    if leaf == "time_mixer.mix_factor":
        return leaf
    inner = _resnet_leaf(leaf)
    return f"spatial_res_block.{inner}" if inner else None


_unet_attention = _replace_head({
    "time_stack": "temporal_transformer_blocks",
    "time_pos_embed.0": "time_pos_embed.linear_1",
    "time_pos_embed.2": "time_pos_embed.linear_2",
    "transformer_blocks": "transformer_blocks",
    "time_mixer": "time_mixer",
    "norm": "norm",
    "proj_in": "proj_in",
    "proj_out": "proj_out",
})


def _unet_blocks(config: Mapping) -> dict[str, tuple[str, Callable[[str], str]]]:
    """sgm block prefixes (input_blocks.i.j, middle_block.k, output_blocks.i.j) -> diffusers prefixes."""
    levels = len(config["block_out_channels"])
    per_level = config["layers_per_block"]
    blocks = {
        "input_blocks.0.0": ("conv_in", _same),
        "time_embed.0": ("time_embedding.linear_1", _same),
        "time_embed.2": ("time_embedding.linear_2", _same),
        "label_emb.0.0": ("add_embedding.linear_1", _same),
        "label_emb.0.2": ("add_embedding.linear_2", _same),
        "out.0": ("conv_norm_out", _same),
        "out.2": ("conv_out", _same),
        "middle_block.0": ("mid_block.resnets.0", _unet_resnet),
        "middle_block.1": ("mid_block.attentions.0", _unet_attention),
        "middle_block.2": ("mid_block.resnets.1", _unet_resnet),
    }
    index = 0
    for level, kind in enumerate(config["down_block_types"]):
        for layer in range(per_level):
            index += 1
            blocks[f"input_blocks.{index}.0"] = (f"down_blocks.{level}.resnets.{layer}", _unet_resnet)
            if kind.startswith("CrossAttn"):
                blocks[f"input_blocks.{index}.1"] = (f"down_blocks.{level}.attentions.{layer}", _unet_attention)
        if level < levels - 1:
            index += 1
            blocks[f"input_blocks.{index}.0.op"] = (f"down_blocks.{level}.downsamplers.0.conv", _same)
    index = 0
    for level, kind in enumerate(config["up_block_types"]):
        attention = kind.startswith("CrossAttn")
        for layer in range(per_level + 1):
            blocks[f"output_blocks.{index}.0"] = (f"up_blocks.{level}.resnets.{layer}", _unet_resnet)
            if attention:
                blocks[f"output_blocks.{index}.1"] = (f"up_blocks.{level}.attentions.{layer}", _unet_attention)
            if layer == per_level and level < levels - 1:
                slot = 2 if attention else 1
                blocks[f"output_blocks.{index}.{slot}.conv"] = (f"up_blocks.{level}.upsamplers.0.conv", _same)
            index += 1
    return blocks


def convert_unet(state_dict: StateDict, unet_config: Mapping, source: str) -> StateDict:
    """``model.diffusion_model.*`` (prefix already removed) -> UNetSpatioTemporalConditionModel keys."""
    return _convert(state_dict, _Renamer(_unet_blocks(unet_config)), source, "the SVD UNet",
                    original_name=lambda key: UNET_PREFIX + key)


# ----------------------------------------------------------------------------- VAE

_VAE_RESNET = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2", "nin_shortcut": "conv_shortcut"}
_vae_resnet_leaf = _replace_head(_VAE_RESNET)
_vae_attention = _replace_head({"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"})
_VIDEO_RESNET_TIME = _replace_head({"in_layers.0": "norm1", "in_layers.2": "conv1", "out_layers.0": "norm2",
                                     "out_layers.3": "conv2"})


def _video_resnet(leaf: str) -> str | None:
    if leaf.startswith("time_stack."):
        inner = _VIDEO_RESNET_TIME(leaf[len("time_stack."):])
        return f"temporal_res_block.{inner}" if inner else None
    if leaf == "mix_factor":
        return "time_mixer.mix_factor"
    inner = _vae_resnet_leaf(leaf)
    return f"spatial_res_block.{inner}" if inner else None


def _vae_blocks(levels: int, per_level: int, temporal: bool) -> dict[str, tuple[str, Callable[[str], str]]]:
    decoder_resnet = _video_resnet if temporal else _vae_resnet_leaf
    blocks = {
        "encoder.conv_in": ("encoder.conv_in", _same),
        "encoder.norm_out": ("encoder.conv_norm_out", _same),
        "encoder.conv_out": ("encoder.conv_out", _same),
        "encoder.mid.block_1": ("encoder.mid_block.resnets.0", _vae_resnet_leaf),
        "encoder.mid.block_2": ("encoder.mid_block.resnets.1", _vae_resnet_leaf),
        "encoder.mid.attn_1": ("encoder.mid_block.attentions.0", _vae_attention),
        "quant_conv": ("quant_conv", _same),
        "decoder.conv_in": ("decoder.conv_in", _same),
        "decoder.norm_out": ("decoder.conv_norm_out", _same),
        "decoder.conv_out": ("decoder.conv_out", _same),
        "decoder.mid.attn_1": ("decoder.mid_block.attentions.0", _vae_attention),
    }
    if temporal:
        blocks["decoder.conv_out.time_mix_conv"] = ("decoder.time_conv_out", _same)
    for block in range(1, per_level + 1):
        blocks[f"decoder.mid.block_{block}"] = (f"decoder.mid_block.resnets.{block - 1}", decoder_resnet)
    for level in range(levels):
        for layer in range(per_level):
            blocks[f"encoder.down.{level}.block.{layer}"] = (f"encoder.down_blocks.{level}.resnets.{layer}", _vae_resnet_leaf)
        blocks[f"encoder.down.{level}.downsample.conv"] = (f"encoder.down_blocks.{level}.downsamplers.0.conv", _same)
        up = levels - 1 - level  # sgm numbers decoder levels from the lowest resolution up
        for layer in range(per_level + 1):
            blocks[f"decoder.up.{level}.block.{layer}"] = (f"decoder.up_blocks.{up}.resnets.{layer}", decoder_resnet)
        blocks[f"decoder.up.{level}.upsample.conv"] = (f"decoder.up_blocks.{up}.upsamplers.0.conv", _same)
    return blocks


def _squeeze_1x1(weight: torch.Tensor) -> torch.Tensor:
    # sgm's attention projections are 1x1 convolutions; diffusers' are linear layers.
    return weight.reshape(weight.shape[0], weight.shape[1]) if weight.ndim == 4 else weight


def convert_vae(state_dict: StateDict, layout: SingleFileLayout, vae_config: Mapping, source: str) -> StateDict:
    """The VAE keys of a single file (full names) -> AutoencoderKLTemporalDecoder (or AutoencoderKL) keys."""
    relative: StateDict = {}
    original: dict[str, str] = {}
    sources = [(layout.vae_encoder_prefix, "encoder."), (DECODER_PREFIX, "decoder.")]
    if layout.quant_conv_prefix:
        sources.append((layout.quant_conv_prefix, "quant_conv."))
    for key, value in state_dict.items():
        for prefix, local in sources:
            if key.startswith(prefix):
                relative[local + key[len(prefix):]] = value
                original[local + key[len(prefix):]] = key
    levels = len(vae_config["block_out_channels"])
    blocks = _vae_blocks(levels, vae_config["layers_per_block"], layout.temporal_decoder)
    attention_weights = {f".to_{p}.weight": _squeeze_1x1 for p in ("q", "k", "v")} | {".to_out.0.weight": _squeeze_1x1}
    converted = _convert(relative, _Renamer(blocks), source, "the SVD VAE", attention_weights, original.__getitem__)
    if layout.quant_conv_prefix is None:
        converted.update(identity_conv("quant_conv", 2 * vae_config["latent_channels"], converted["encoder.conv_out.weight"]))
    if not layout.temporal_decoder:
        converted.update(identity_conv("post_quant_conv", vae_config["latent_channels"], converted["decoder.conv_in.weight"]))
    return converted


def identity_conv(name: str, channels: int, like: torch.Tensor) -> StateDict:
    """A 1x1 convolution that passes its input through (for layouts that have none)."""
    weight = torch.eye(channels, dtype=like.dtype).reshape(channels, channels, 1, 1)
    return {f"{name}.weight": weight, f"{name}.bias": torch.zeros(channels, dtype=like.dtype)}


# ----------------------------------------------------------------------------- OpenCLIP image tower

_CLIP_TOP = {
    "class_embedding": "vision_model.embeddings.class_embedding",
    "conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "ln_pre.weight": "vision_model.pre_layrnorm.weight",
    "ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "ln_post.weight": "vision_model.post_layernorm.weight",
    "ln_post.bias": "vision_model.post_layernorm.bias",
}
_CLIP_LAYER = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
               "attn.out_proj": "self_attn.out_proj"}
_RESBLOCK = re.compile(r"^transformer\.resblocks\.(\d+)\.(.+)$")


def convert_open_clip_visual(state_dict: StateDict, source: str) -> StateDict:
    """``…open_clip.model.visual.*`` (prefix removed) -> CLIPVisionModelWithProjection keys.

    OpenCLIP keeps q/k/v in one ``in_proj`` matrix (rows q, then k, then v) and applies the
    projection as ``x @ proj``; transformers has separate q/k/v layers and a linear projection.
    """
    converted: StateDict = {}
    unknown = []
    for key, value in state_dict.items():
        if key in _CLIP_TOP:
            converted[_CLIP_TOP[key]] = value
            continue
        if key == "proj":
            converted["visual_projection.weight"] = value.t().contiguous()
            continue
        match = _RESBLOCK.match(key)
        if match is None:
            unknown.append(IMAGE_ENCODER_PREFIX + key)
            continue
        layer, leaf = match.groups()
        prefix = f"vision_model.encoder.layers.{layer}."
        if leaf in ("attn.in_proj_weight", "attn.in_proj_bias"):
            kind = "weight" if leaf.endswith("weight") else "bias"
            for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                converted[f"{prefix}self_attn.{name}.{kind}"] = part.contiguous()
            continue
        renamed = _replace_head(_CLIP_LAYER)(leaf)
        if renamed is None:
            unknown.append(IMAGE_ENCODER_PREFIX + key)
        else:
            converted[prefix + renamed] = value
    if unknown:
        raise CheckpointMismatchError(source, "the SVD image encoder (OpenCLIP ViT-H/14)", unexpected=unknown)
    return converted
