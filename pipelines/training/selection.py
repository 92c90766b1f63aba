"""Which parameters each stage/mode trains, as rules on parameter names.

Names are those of ``named_parameters()`` of the module the trainer wraps:
- AnimateAnyone: the training net with children ``reference_unet``, ``denoising_unet``, ``pose_guider``.
  Stage 1 trains the denoising UNet, the ReferenceNet except ``up_blocks.3`` and the PoseGuider
  (``train_stage_1.py``); stage 2 trains only parameters under ``motion_modules`` (``train_stage_2.py``).
- EasyAnimate: the training net with child ``transformer`` (and ``text_encoder`` when its LoRA trains).
  Motion-module mode trains parameters whose name contains one of ``trainable_modules`` (the reference
  passes ``attn_temporal``); LoRA mode trains only the LoRA adapters (see ``lora.py``).
Everything else is frozen (``requires_grad=False``) and is never handed to the optimiser.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch

from ...core.errors import InputError
from ..motion_module import UNET_MOTION_KEY, is_motion_module_key

ParameterRule = Callable[[str], bool]


def animate_anyone_stage1(name: str) -> bool:
    child, _, rest = name.partition(".")
    if child == "reference_unet":
        return not rest.startswith("up_blocks.3.")
    return child in ("denoising_unet", "pose_guider")


def animate_anyone_stage2(name: str) -> bool:
    return name.startswith("denoising_unet.") and is_motion_module_key(name, UNET_MOTION_KEY)


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
