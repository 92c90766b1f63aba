"""Which parameters each stage/mode trains, as rules on parameter names.

Names are those of ``named_parameters()`` of the module the trainer wraps; each task picks its rule
(``task.rule``): AnimateAnyone's per stage (``pipelines/animate_anyone/training_task.py``), EasyAnimate's
``name_contains(trainable_modules)`` (motion module; the reference passes ``attn_temporal``) or
``lora_adapters`` (see ``lora.py``). Everything else is frozen (``requires_grad=False``) and is never
handed to the optimiser.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch

from ...core.errors import InputError

ParameterRule = Callable[[str], bool]


def name_contains(fragments: Iterable[str]) -> ParameterRule:
    fragments = tuple(fragments)

    def rule(name: str) -> bool:
        return any(fragment in name for fragment in fragments)

    return rule


def lora_adapters(name: str) -> bool:
    from .lora import ADAPTER_NAME

    return f".{ADAPTER_NAME}." in name


def apply_rule(module: torch.nn.Module, rule: ParameterRule, what: str) -> list[tuple[str, torch.nn.Parameter]]:
    """Set ``requires_grad`` on every parameter of ``module`` by ``rule``; returns the trainable ones.

    Raises when nothing matches: a model with other parameter names than the rule expects.
    """
    trainable = []
    for name, parameter in module.named_parameters():
        selected = rule(name)
        parameter.requires_grad_(selected)
        if selected:
            trainable.append((name, parameter))
    if not trainable:
        raise InputError("model", f"has no parameter that {what} trains", "the model this recipe is for")
    return trainable


def freeze(*modules: torch.nn.Module) -> None:
    for module in modules:
        if module is not None:
            module.requires_grad_(False)
            module.eval()


def cast_frozen_children(module: torch.nn.Module, dtype: torch.dtype) -> list[str]:
    """Cast each direct child without trainable parameters to ``dtype`` (the reference keeps only the
    trained networks in float32 under mixed precision). Returns the names of the children cast."""
    cast = []
    for name, child in module.named_children():
        parameters = list(child.parameters())
        if parameters and not any(p.requires_grad for p in parameters):
            torch.nn.Module.to(child, dtype)
            cast.append(name)
    return cast


def enable_gradient_checkpointing(module: torch.nn.Module) -> list[str]:
    """Turn on gradient checkpointing where the model offers it (diffusers' ``enable_gradient_checkpointing``).

    The module itself if it has the method, else each direct child that has it. Returns what was switched on.
    """
    if hasattr(module, "enable_gradient_checkpointing"):
        module.enable_gradient_checkpointing()
        return [type(module).__name__]
    enabled = []
    for name, child in module.named_children():
        if hasattr(child, "enable_gradient_checkpointing"):
            child.enable_gradient_checkpointing()
            enabled.append(name)
    if not enabled:
        raise InputError("solver.gradient_checkpointing", "is on, but the model offers no gradient checkpointing",
                         "false for this model")
    return enabled
