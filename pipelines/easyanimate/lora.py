"""Kohya-style LoRA files for EasyAnimate, as EasyAnimate's ``train_t2v_lora.py`` writes them.

Key naming (what a trainer must write for these files to load here and in EasyAnimate):

- one layer per adapted ``nn.Linear``, named ``<prefix>_<module path with '.' replaced by '_'>``:
  - transformer: prefix ``lora_unet_`` and EasyAnimate names the transformer root module ``""``,
    hence a double underscore: ``lora_unet__transformer_blocks_0_attn1_to_q``,
    ``lora_unet__transformer_blocks_0_attn_temporal_temporal_transformer_proj_in`` (motion module),
    ``lora_unet__adaln_single_linear``, ``lora_unet__proj_out``;
  - T5 text encoder: prefix ``lora_te``: ``lora_te_encoder_block_0_layer_0_SelfAttention_q``,
    ``lora_te_encoder_block_0_layer_1_DenseReluDense_wi_0``;
- per layer ``.lora_down.weight`` ``[rank, in]``, ``.lora_up.weight`` ``[out, rank]`` and optionally
  ``.alpha`` (a scalar; absent means a scale of 1).

The adapted weight is ``W + strength * (alpha / rank) * (up @ down)``, the product formed in float32.
Any ``nn.Linear`` of the model is a valid target (``lora_targets`` lists them); a single-underscore
``lora_unet_<path>`` spelling is accepted too.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

import torch
from torch import nn

from ...core import checkpoints
from ...core.errors import CheckpointError, CheckpointMismatchError

TRANSFORMER_PREFIX = "lora_unet"
TEXT_ENCODER_PREFIX = "lora_te"
_DOWN, _UP, _ALPHA = "lora_down.weight", "lora_up.weight", "alpha"


@dataclass(frozen=True)
class LoraLayer:
    """One adapted linear layer: ``delta = (alpha / rank) * up @ down``."""

    up: torch.Tensor
    down: torch.Tensor
    alpha: float | None = None

    @property
    def rank(self) -> int:
        return self.down.shape[0]

    @property
    def scale(self) -> float:
        return self.alpha / self.rank if self.alpha is not None else 1.0

    @property
    def shape(self) -> tuple[int, int]:
        return (self.up.shape[0], self.down.shape[1])

    def delta(self, strength: float) -> torch.Tensor:
        """``strength * scale * up @ down`` in float32, as EasyAnimate's merge forms it."""
        return (strength * self.scale) * torch.mm(self.up.float(), self.down.float())


def read_lora(path: str | Path) -> dict[str, LoraLayer]:
    """Kohya layer name -> ``LoraLayer`` for every layer of a LoRA file."""
    state_dict = checkpoints.load_state_dict(path)
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        layer, _, element = key.partition(".")
        parts.setdefault(layer, {})[element] = value
    layers, broken = {}, []
    for name, elements in parts.items():
        down, up = elements.get(_DOWN), elements.get(_UP)
        unknown = set(elements) - {_DOWN, _UP, _ALPHA}
        if down is None or up is None or unknown or down.ndim != 2 or up.ndim != 2 or up.shape[1] != down.shape[0]:
            broken.append(name)
            continue
        alpha = elements.get(_ALPHA)
        layers[name] = LoraLayer(up=up, down=down, alpha=None if alpha is None else float(alpha.item()))
    if broken or not layers:
        sample = ", ".join(sorted(broken)[:5]) or "(no layers)"
        raise CheckpointError(
            f"'{Path(path).name}' is not a kohya-style linear LoRA (layers need '.{_DOWN}' [rank, in], "
            f"'.{_UP}' [out, rank] and optionally '.{_ALPHA}'): {len(broken)} layers do not fit, e.g. {sample}.")
    return layers


def kohya_name(prefix: str, module_path: str) -> str:
    """The kohya layer name of the ``nn.Linear`` at ``module_path`` (its path in the transformer or T5).

    EasyAnimate's ``LoRANetwork`` names a layer ``"<prefix>.<container path>.<path below>"`` with every
    ``.`` made ``_``. The transformer's container is the transformer itself (path ``""``, hence the double
    underscore); T5's containers are its ``T5LayerSelfAttention`` / ``T5LayerFF`` layers, so the two paths
    join into the layer's own path. The trainer writes with this too (``training_task.py``'s LoRA targets).
    """
    separator = "__" if prefix == TRANSFORMER_PREFIX else "_"
    return f"{prefix}{separator}{module_path.replace('.', '_')}"


def lora_targets(module: nn.Module, prefix: str) -> dict[str, str]:
    """Kohya layer name -> weight key of every ``nn.Linear`` in ``module``."""
    return {kohya_name(prefix, name): f"{name}.weight"
            for name, child in module.named_modules() if name and isinstance(child, nn.Linear)}


@dataclass
class LoraMatch:
    """A LoRA file's layers matched to a model: weight key -> layer, per module."""

    transformer: dict[str, LoraLayer] = field(default_factory=dict)
    text_encoder: dict[str, LoraLayer] = field(default_factory=dict)
    unmatched: list[str] = field(default_factory=list)
    wrong_shape: list[str] = field(default_factory=list)

    def check(self, source: str, model_name: str) -> "LoraMatch":
        """Refuse a LoRA with layers this model lacks (a LoRA for another model), naming them."""
        if self.unmatched or self.wrong_shape:
            raise CheckpointMismatchError(source, model_name, unexpected=self.unmatched, wrong_shape=self.wrong_shape)
        return self


def _weight_shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in module.state_dict().items()}


def match_lora(layers: Mapping[str, LoraLayer], transformer: nn.Module, text_encoder: nn.Module | None) -> LoraMatch:
    """Match kohya layer names to the transformer's and text encoder's linear layers."""
    match = LoraMatch()
    modules = {TRANSFORMER_PREFIX: (transformer, match.transformer), TEXT_ENCODER_PREFIX: (text_encoder, match.text_encoder)}
    targets, shapes = {}, {}
    for prefix, (module, found) in modules.items():
        if module is None:
            continue
        module_shapes = _weight_shapes(module)
        for name, key in lora_targets(module, prefix).items():
            targets[name] = (key, found)
            shapes[name] = module_shapes[key]
            if prefix == TRANSFORMER_PREFIX:  # other trainers write lora_unet_<path>
                targets.setdefault(name.replace("lora_unet__", "lora_unet_", 1), (key, found))
                shapes.setdefault(name.replace("lora_unet__", "lora_unet_", 1), module_shapes[key])
    for name, layer in layers.items():
        if name not in targets:
            match.unmatched.append(name)
        elif layer.shape != shapes[name]:
            match.wrong_shape.append(f"{name} {layer.shape}!={shapes[name]}")
        else:
            key, found = targets[name]
            found[key] = layer
    return match


@contextmanager
def merged(module: nn.Module, layers: Mapping[str, LoraLayer], strength: float) -> Iterator[nn.Module]:
    """``module`` with the LoRA merged at ``strength``; its weights are restored exactly afterwards."""
    parameters = dict(module.named_parameters())
    backup = {}
    try:
        with torch.no_grad():
            for key, layer in layers.items():
                weight = parameters[key]
                backup[key] = weight.detach().to("cpu", copy=True)
                weight += layer.delta(strength).to(weight.device)
        yield module
    finally:
        with torch.no_grad():
            for key, original in backup.items():
                parameters[key].copy_(original)
