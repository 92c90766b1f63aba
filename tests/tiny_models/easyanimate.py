"""Tiny EasyAnimate models in the released layouts.

- v1: a PixArt-style diffusers folder (``transformer/`` holding only the non-temporal keys,
  ``text_encoder/`` T5, ``tokenizer/`` with a freshly trained ``spiece.model``, ``vae/``,
  ``model_index.json``) plus a motion-module file holding every key with ``temporal`` in its name,
  as EasyAnimate's ``scripts/extra_motion_module.py`` writes it;
- kohya LoRA files (``lora_unet__*``, ``lora_te_*``);
- v5.1: a diffusers ``EasyAnimatePipeline`` folder written by ``save_pretrained`` (tiny transformer,
  Magvit VAE, Qwen2-VL encoder, byte-level Qwen2 tokenizer with a chat template).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from comfyui_animate_suite.pipelines.easyanimate import loading
from comfyui_animate_suite.pipelines.easyanimate.models import EasyAnimateV1Transformer, TransformerConfig
from comfyui_animate_suite.pipelines.motion_module import DIT_MOTION_KEY, is_motion_module_key

from . import save_weights, seeded

V1_TRANSFORMER_CONFIG = {
    "_class_name": "Transformer2DModel", "activation_fn": "gelu-approximate", "attention_bias": True,
    "attention_head_dim": 16, "attention_type": "default", "caption_channels": 32, "cross_attention_dim": 64,
    "double_self_attention": False, "dropout": 0.0, "in_channels": 4, "norm_elementwise_affine": False,
    "norm_eps": 1e-06, "norm_num_groups": 32, "norm_type": "ada_norm_single", "num_attention_heads": 4,
    "num_embeds_ada_norm": 1000, "num_layers": 2, "num_vector_embeds": None, "only_cross_attention": False,
    "out_channels": 8, "patch_size": 2, "sample_size": 8, "upcast_attention": False, "use_linear_projection": False,
}
T5_CONFIG = {"vocab_size": 64, "d_model": 32, "d_kv": 8, "d_ff": 48, "num_layers": 2, "num_heads": 4,
             "feed_forward_proj": "gated-gelu", "dropout_rate": 0.0, "pad_token_id": 0, "eos_token_id": 1,
             "is_encoder_decoder": False, "use_cache": False}
TOKENIZER_CORPUS = [
    "a snowy forest landscape with a dirt road running through it",
    "strange motion trajectory, a poor composition and deformed video, worst quality",
    "the quick brown fox jumps over the lazy dog at night",
]
V1_MOTION_MODULE = "easyanimate_v1_mm.safetensors"


@dataclass
class TinyV1:
    base: Path  # the PixArt-style folder
    motion_module: Path


def v1_transformer(seed: int = 0) -> EasyAnimateV1Transformer:
    """A tiny v1 transformer with random weights (motion module included, proj_out not zeroed)."""
    seeded(seed)
    config = TransformerConfig.from_pixart(V1_TRANSFORMER_CONFIG)
    model = EasyAnimateV1Transformer(config, loading.v1_motion_module_config())
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "scale_shift_table" in name:
                parameter.mul_(0.1)
    return model.eval()


def write_t5_tokenizer(folder: Path) -> Path:
    """A T5 tokenizer folder as PixArt ships it: ``spiece.model`` + ``tokenizer_config.json``."""
    import sentencepiece

    folder.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(TOKENIZER_CORPUS * 20), model_writer=model, vocab_size=60, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, hard_vocab_limit=False, minloglevel=2)
    (folder / "spiece.model").write_bytes(model.getvalue())
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "T5Tokenizer", "extra_ids": 0, "legacy": True, "eos_token": "</s>",
        "pad_token": "<pad>", "unk_token": "<unk>", "model_max_length": 512}))
    return folder


def write_t5(folder: Path, seed: int = 0) -> Path:
    from transformers import T5Config, T5EncoderModel

    seeded(seed)
    T5EncoderModel(T5Config(**T5_CONFIG)).save_pretrained(str(folder))
    return folder


def tiny_vae(seed: int = 0):
    from diffusers import AutoencoderKL

    seeded(seed)
    blocks = 4  # a VAE factor of 8, as the SD VAE
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16,) * blocks,
                         down_block_types=("DownEncoderBlock2D",) * blocks, up_block_types=("UpDecoderBlock2D",) * blocks,
                         layers_per_block=1, norm_num_groups=8, sample_size=64)


def write_v1(root: Path, seed: int = 0, name: str = "PixArt-XL-2-512x512") -> TinyV1:
    """A tiny EasyAnimate v1 release: ``root/<name>/`` and ``root/easyanimate_v1_mm.safetensors``."""
    base = Path(root) / name
    state_dict = v1_transformer(seed).state_dict()
    (base / "transformer").mkdir(parents=True, exist_ok=True)
    (base / "transformer" / "config.json").write_text(json.dumps(V1_TRANSFORMER_CONFIG))
    save_weights({k: v for k, v in state_dict.items() if not is_motion_module_key(k, DIT_MOTION_KEY)},
                 base / "transformer" / "diffusion_pytorch_model.safetensors")
    motion_module = save_weights({k: v for k, v in state_dict.items() if is_motion_module_key(k, DIT_MOTION_KEY)},
                                 Path(root) / V1_MOTION_MODULE)
    write_t5(base / "text_encoder", seed)
    write_t5_tokenizer(base / "tokenizer")
    tiny_vae(seed).save_pretrained(str(base / "vae"))
    (base / "model_index.json").write_text(json.dumps({
        "_class_name": "PixArtAlphaPipeline", "scheduler": ["diffusers", "DPMSolverMultistepScheduler"],
        "text_encoder": ["transformers", "T5EncoderModel"], "tokenizer": ["transformers", "T5Tokenizer"],
        "transformer": ["diffusers", "Transformer2DModel"], "vae": ["diffusers", "AutoencoderKL"]}))
    return TinyV1(base=base, motion_module=motion_module)


def write_lora(path: Path, layers: dict[str, tuple[int, int]], rank: int = 2, alpha: float | None = 1.0,
               seed: int = 0) -> Path:
    """A kohya LoRA file: kohya layer name -> (out, in) of the adapted weight."""
    generator = seeded(seed)
    tensors = {}
    for name, (out_features, in_features) in layers.items():
        tensors[f"{name}.lora_down.weight"] = torch.randn(rank, in_features, generator=generator) / in_features**0.5
        tensors[f"{name}.lora_up.weight"] = torch.randn(out_features, rank, generator=generator) / rank**0.5
        if alpha is not None:
            tensors[f"{name}.alpha"] = torch.tensor(float(alpha))
    return save_weights(tensors, path)


def v1_lora_layers(transformer, text_encoder, every: int = 3) -> dict[str, tuple[int, int]]:
    """Every ``every``-th linear layer of both modules, in kohya naming (motion module included)."""
    from comfyui_animate_suite.pipelines.easyanimate.lora import TEXT_ENCODER_PREFIX, TRANSFORMER_PREFIX, lora_targets

    layers = {}
    for module, prefix in ((transformer, TRANSFORMER_PREFIX), (text_encoder, TEXT_ENCODER_PREFIX)):
        shapes = {key: tuple(value.shape) for key, value in module.state_dict().items()}
        for index, (name, key) in enumerate(sorted(lora_targets(module, prefix).items())):
            if index % every == 0:
                layers[name] = shapes[key]
    return layers


# ----------------------------------------------------------------------------- v5.1

QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% for content in message['content'] %}"
    "{{ content['text'] }}{% endfor %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def tiny_qwen2_tokenizer():
    """A byte-level Qwen2 tokenizer (one token per byte) with a chat template."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import Qwen2Tokenizer

    vocab = {char: index for index, char in enumerate(ByteLevel.alphabet())}
    for special in ("<|endoftext|>", "<|im_start|>", "<|im_end|>"):
        vocab[special] = len(vocab)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], unk_token="<|endoftext|>", eos_token="<|endoftext|>",
                               pad_token="<|endoftext|>")
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    return tokenizer


def tiny_v51_components(seed: int = 0) -> dict:
    from diffusers import AutoencoderKLMagvit, EasyAnimateTransformer3DModel, FlowMatchEulerDiscreteScheduler
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    seeded(seed)
    transformer = EasyAnimateTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4, time_embed_dim=2,
        text_embed_dim=32, num_layers=1, sample_width=16, sample_height=16, patch_size=2)
    seeded(seed)
    vae = AutoencoderKLMagvit(
        in_channels=3, out_channels=3,
        down_block_types=("SpatialDownBlock3D",) + ("SpatialTemporalDownBlock3D",) * 3,
        up_block_types=("SpatialUpBlock3D",) + ("SpatialTemporalUpBlock3D",) * 3,
        block_out_channels=(8, 8, 8, 8), latent_channels=4, layers_per_block=1, norm_num_groups=2,
        spatial_group_norm=False)
    seeded(seed)
    text_encoder = Qwen2VLForConditionalGeneration(Qwen2VLConfig(
        text_config=dict(vocab_size=272, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         rope_scaling={"type": "mrope", "mrope_section": [1, 1, 2]},
                         bos_token_id=256, eos_token_id=256, pad_token_id=256),
        vision_config=dict(depth=1, embed_dim=16, hidden_size=32, num_heads=2, mlp_ratio=2, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2, in_channels=3),
        image_token_id=260, video_token_id=261, vision_start_token_id=262, vision_end_token_id=263))
    return {"transformer": transformer.eval(), "vae": vae.eval(), "text_encoder": text_encoder.eval(),
            "tokenizer": tiny_qwen2_tokenizer(), "scheduler": FlowMatchEulerDiscreteScheduler()}


def write_v51(folder: Path, seed: int = 0) -> Path:
    """A tiny EasyAnimate v5.1 diffusers folder, saved by diffusers' own ``EasyAnimatePipeline``."""
    from diffusers import EasyAnimatePipeline

    EasyAnimatePipeline(**tiny_v51_components(seed)).save_pretrained(str(folder))
    return Path(folder)
