"""LoRA adapters on Linear layers, written as kohya files.

Which layers: a ``LoRATargets`` rule, given by the method, picks *containers* (the root module itself, or
every module of given class names) and gives every ``nn.Linear`` below a container an adapter, except paths
containing one of ``exclude``; its ``layer_name(prefix, path)`` names each layer in the file (EasyAnimate v1's
rules: ``pipelines/easyanimate/training_task.py``, named with ``pipelines/easyanimate/lora.py``'s
``kohya_name``, which reads these files for inference).

File layout: per layer ``NAME.lora_down.weight`` [r, in], ``NAME.lora_up.weight`` [out, r] and ``NAME.alpha``
(0-d float32), applied as ``W += multiplier * (alpha / r) * lora_up @ lora_down``.

During training the adapter is a child ``lora_adapter`` of the Linear it adapts (parameter names
``<linear path>.lora_adapter.down.weight`` / ``.up.weight``) and a forward hook adds its output, so the
base model's own parameter names and values never change.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from ...core.errors import InputError

ADAPTER_NAME = "lora_adapter"
SAVE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class LoRATargets:
    """Which Linear layers of a model get LoRA, and the names of their file keys."""

    prefix: str
    layer_name: Callable[[str, str], str]  # (prefix, the Linear's path in the model) -> its name in the file
    container_classes: Optional[tuple[str, ...]] = None  # None: the root module is the one container
    exclude: tuple[str, ...] = field(default_factory=tuple)  # skip paths (below the container) containing these


def find_targets(model: nn.Module, targets: LoRATargets) -> dict[str, tuple[str, nn.Linear]]:
    """kohya name -> (path of the Linear inside ``model``, the Linear)."""
    if targets.container_classes is None:
        containers = [("", model)]
    else:
        containers = [(path, module) for path, module in model.named_modules()
                      if type(module).__name__ in targets.container_classes]
    found: dict[str, tuple[str, nn.Linear]] = {}
    for container_path, container in containers:
        for child_path, child in container.named_modules():
            if not isinstance(child, nn.Linear) or ADAPTER_NAME in child_path.split("."):
                continue
            if any(fragment in child_path for fragment in targets.exclude):
                continue
            full_path = f"{container_path}.{child_path}" if container_path else child_path
            name = targets.layer_name(targets.prefix, full_path)
            if name in found and found[name][1] is not child:
                raise ValueError(f"two layers map to the LoRA name '{name}'")
            found[name] = (full_path, child)
    return found


class LoRAAdapter(nn.Module):
    """``up(down(x)) * multiplier * alpha / rank``; ``up`` starts at zero so training starts from the base model."""

    def __init__(self, in_features: int, out_features: int, rank: int, alpha: float,
                 generator: Optional[torch.Generator] = None):
        super().__init__()
        self.rank = rank
        self.down = nn.Linear(in_features, rank, bias=False)
        self.up = nn.Linear(rank, out_features, bias=False)
        self.register_buffer("alpha", torch.tensor(float(alpha)))
        self.multiplier = 1.0
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5), generator=generator)
        nn.init.zeros_(self.up.weight)

    @property
    def scale(self) -> float:
        return float(self.alpha) / self.rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x.to(self.down.weight.dtype))) * (self.multiplier * self.scale)


def _add_adapter_output(linear: nn.Linear, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
    return output + getattr(linear, ADAPTER_NAME)(inputs[0]).to(output.dtype)


@dataclass
class LoRANetwork:
    """The adapters of one model, by kohya name."""

    adapters: dict[str, LoRAAdapter]
    paths: dict[str, str]  # kohya name -> path of the adapted Linear

    def parameters(self):
        for adapter in self.adapters.values():
            yield from adapter.parameters()

    def state_dict(self, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        """The kohya-format tensors."""
        tensors = {}
        for name, adapter in sorted(self.adapters.items()):
            tensors[f"{name}.lora_down.weight"] = adapter.down.weight.detach().to("cpu", dtype).contiguous()
            tensors[f"{name}.lora_up.weight"] = adapter.up.weight.detach().to("cpu", dtype).contiguous()
            tensors[f"{name}.alpha"] = adapter.alpha.detach().to("cpu", torch.float32).clone()
        return tensors


def inject_lora(model: nn.Module, targets: LoRATargets, rank: int, alpha: float, seed: int = 0) -> LoRANetwork:
    """Give every target Linear of ``model`` a fresh adapter (in the Linear's device, float32).

    The starting weights come from ``seed`` and the targets' prefix alone (adapters in model order), so a recipe
    starts from the same adapters in every run and on every process."""
    if rank < 1:
        raise InputError("lora.rank", f"is {rank}", "1 or more")
    found = find_targets(model, targets)
    if not found:
        raise InputError("model", f"has no Linear layer for LoRA prefix '{targets.prefix}'", "the model this recipe is for")
    generator = torch.Generator().manual_seed(zlib.crc32(f"{seed}:{targets.prefix}".encode()))  # CPU generators keep 32 bits
    adapters = {}
    for name, (_, linear) in found.items():
        adapter = LoRAAdapter(linear.in_features, linear.out_features, rank, alpha, generator).to(linear.weight.device)
        linear.add_module(ADAPTER_NAME, adapter)
        linear.register_forward_hook(_add_adapter_output)
        adapters[name] = adapter
    return LoRANetwork(adapters, {name: path for name, (path, _) in found.items()})


def save_kohya(networks: list[LoRANetwork], path: str | Path, dtype: str = "fp32",
               metadata: Optional[dict[str, str]] = None) -> Path:
    """Write the adapters of ``networks`` as one kohya-format safetensors file."""
    from safetensors.torch import save_file

    if dtype not in SAVE_DTYPES:
        raise InputError("lora.save_dtype", f"is '{dtype}'", "one of " + ", ".join(SAVE_DTYPES))
    tensors: dict[str, torch.Tensor] = {}
    for network in networks:
        tensors.update(network.state_dict(SAVE_DTYPES[dtype]))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={key: str(value) for key, value in (metadata or {}).items()})
    return path
