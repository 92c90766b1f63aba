"""Reference attention: the denoising UNet's spatial self-attention also attends to the ReferenceNet.

Write: the ReferenceNet runs once on the reference latents (timestep 0, the CLIP image embedding as
context); each spatial transformer block records the input of its self-attention (``norm1`` output,
``(1, tokens, channels)``). Read: the block of the same name in the denoising UNet attends with its
own tokens as queries and ``[own tokens, reference tokens]`` as keys/values, the same ``attn1``
weights for both. The reference projects the reference tokens again for every frame, window and step;
here their keys and values are projected once per job and reused.

Classifier-free guidance as in the reference: the unconditional half of the batch (the first half)
uses plain self-attention (no reference tokens).

Training (``ReferenceBank``, ``install_training_attention``): the same attention, but per sample (sample
``i`` of the batch attends to the features of its own reference, repeated over its frames), with
gradients flowing into the ReferenceNet, and installed for good so that gradient checkpointing
recomputes exactly what the forward pass computed. An empty bank means plain self-attention (the
reference's unconditional training batches). The recorded features pass through float16, because
the reference hands them over in float16 (``ReferenceAttentionControl.update``); this keeps fp32 runs
bit-compatible with it and halves the memory they take.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

FEATURE_DTYPE = torch.float16


def self_attention_layers(unet: nn.Module) -> dict[str, nn.Module]:
    """``attn1`` of every spatial transformer block, by block name (the same names in both UNets)."""
    from diffusers.models.attention import BasicTransformerBlock

    return {name: block.attn1 for name, block in unet.named_modules() if isinstance(block, BasicTransformerBlock)}


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    batch, tokens, inner = x.shape
    return x.view(batch, tokens, heads, inner // heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    batch, heads, tokens, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, tokens, heads * head_dim)


def _attend(attn, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    out = _merge_heads(F.scaled_dot_product_attention(q, k, v, scale=attn.scale))
    return attn.to_out[1](attn.to_out[0](out))


class _Recorder:
    """Keeps the input of a ReferenceNet self-attention, then runs the layer's own processor."""

    def __init__(self, store: dict[str, torch.Tensor], name: str, processor):
        self.store = store
        self.name = name
        self.processor = processor

    def __call__(self, attn, hidden_states, *args, **kwargs):
        self.store[self.name] = hidden_states.detach().to(FEATURE_DTYPE)
        return self.processor(attn, hidden_states, *args, **kwargs)


class ReferenceReader:
    """Self-attention over ``[own tokens, reference tokens]`` (the denoising UNet side)."""

    def __init__(self, features: torch.Tensor, guided: bool):
        self.features = features  # (1, reference tokens, channels), FEATURE_DTYPE
        self.guided = guided
        self._keys_values: tuple[torch.Tensor, torch.Tensor] | None = None

    def _reference_keys_values(self, attn, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cached = self._keys_values
        if cached is None or cached[0].device != like.device or cached[0].dtype != like.dtype:
            tokens = self.features.to(device=like.device, dtype=like.dtype)
            cached = (_split_heads(attn.to_k(tokens), attn.heads), _split_heads(attn.to_v(tokens), attn.heads))
            self._keys_values = cached
        return cached

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        x = hidden_states
        q, k, v = (_split_heads(layer(x), attn.heads) for layer in (attn.to_q, attn.to_k, attn.to_v))
        uncond = x.shape[0] // 2 if self.guided else 0
        ref_k, ref_v = self._reference_keys_values(attn, q)
        cond = x.shape[0] - uncond
        k_cond = torch.cat([k[uncond:], ref_k.expand(cond, -1, -1, -1)], dim=2)
        v_cond = torch.cat([v[uncond:], ref_v.expand(cond, -1, -1, -1)], dim=2)
        out_cond = _attend(attn, q[uncond:], k_cond, v_cond)
        if not uncond:
            return out_cond
        out_uncond = _attend(attn, q[:uncond], k[:uncond], v[:uncond])
        return torch.cat([out_uncond, out_cond], dim=0)


@contextmanager
def _processors(layers: dict[str, nn.Module], processors: dict[str, object]) -> Iterator[None]:
    originals = {name: layer.processor for name, layer in layers.items()}
    try:
        for name, layer in layers.items():
            layer.processor = processors[name]
        yield
    finally:
        for name, layer in layers.items():
            layer.processor = originals[name]


def record_reference_features(reference_net: nn.Module, reference_latents: torch.Tensor,
                              image_embeds: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run the ReferenceNet once (timestep 0) and return each block's self-attention input."""
    layers = self_attention_layers(reference_net)
    store: dict[str, torch.Tensor] = {}
    with _processors(layers, {name: _Recorder(store, name, layer.processor) for name, layer in layers.items()}):
        timestep = torch.zeros((), dtype=torch.long, device=reference_latents.device)
        reference_net(reference_latents, timestep, encoder_hidden_states=image_embeds, return_dict=False)
    return store


@contextmanager
def reading_reference(unet: nn.Module, features: dict[str, torch.Tensor], guided: bool) -> Iterator[None]:
    """Within the block, ``unet``'s self-attention also attends to ``features``."""
    layers = self_attention_layers(unet)
    if set(layers) != set(features):
        missing = sorted(set(layers) - set(features))[:3]
        raise ValueError(f"the ReferenceNet and the denoising UNet differ in their transformer blocks (e.g. {missing})")
    with _processors(layers, {name: ReferenceReader(features[name], guided) for name in layers}):
        yield


# ----------------------------------------------------------------------------- training


class ReferenceBank:
    """The ReferenceNet's self-attention inputs of one training forward: block name -> ``(B, tokens, C)``."""

    def __init__(self):
        self.features: dict[str, torch.Tensor] = {}
        self.frames = 1
        self.writing = False

    def clear(self) -> None:
        self.features = {}


class BankWriter:
    """ReferenceNet side: records its self-attention input (keeping the graph) while the bank is writing."""

    def __init__(self, bank: ReferenceBank, name: str, processor):
        self.bank = bank
        self.name = name
        self.processor = processor

    def __call__(self, attn, hidden_states, *args, **kwargs):
        if self.bank.writing:
            self.bank.features[self.name] = hidden_states.to(FEATURE_DTYPE)
        return self.processor(attn, hidden_states, *args, **kwargs)


class BankReader:
    """Denoising-UNet side: self-attention over ``[own tokens, own sample's reference tokens]``."""

    def __init__(self, bank: ReferenceBank, name: str, processor):
        self.bank = bank
        self.name = name
        self.processor = processor

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        features = self.bank.features.get(self.name)
        if features is None:
            return self.processor(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)
        x = hidden_states
        q, k, v = (_split_heads(layer(x), attn.heads) for layer in (attn.to_q, attn.to_k, attn.to_v))
        tokens = features.to(x.dtype)
        frames = self.bank.frames
        ref_k = _split_heads(attn.to_k(tokens), attn.heads).repeat_interleave(frames, dim=0)
        ref_v = _split_heads(attn.to_v(tokens), attn.heads).repeat_interleave(frames, dim=0)
        return _attend(attn, q, torch.cat([k, ref_k], dim=2), torch.cat([v, ref_v], dim=2))


def install_training_attention(reference_net: nn.Module, unet: nn.Module) -> ReferenceBank:
    """Wire ``reference_net``'s self-attention layers to write into a new bank and ``unet``'s to read from it."""
    writers, readers = self_attention_layers(reference_net), self_attention_layers(unet)
    if set(writers) != set(readers):
        missing = sorted(set(readers) ^ set(writers))[:3]
        raise ValueError(f"the ReferenceNet and the denoising UNet differ in their transformer blocks (e.g. {missing})")
    bank = ReferenceBank()
    for name, layer in writers.items():
        layer.processor = BankWriter(bank, name, layer.processor)
    for name, layer in readers.items():
        layer.processor = BankReader(bank, name, layer.processor)
    return bank
