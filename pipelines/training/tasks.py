"""The interface between the trainer and each method's training task, and the helpers tasks share.

A recipe's ``method`` picks a task class from ``TASKS`` and a model factory from ``DEFAULT_FACTORIES``
(``model.factory: "package.module:function"`` in the recipe replaces the latter; a leading ``.`` means this
pack). Both tables name their modules by dotted path, imported only when a recipe asks for them, so this
package depends on no method. The tasks live beside their methods:

- AnimateAnyone stages 1 and 2: ``pipelines/animate_anyone/training_task.py`` (``AnimateAnyoneTask``; the
  factory returns ``AnimateAnyoneModels``, wired in ``pipelines/animate_anyone/training.py``; the datasets in
  ``training_data.py``);
- EasyAnimate v1 LoRA and motion module: ``pipelines/easyanimate/training_task.py`` (``EasyAnimateTask``; the
  factory returns ``EasyAnimateModels``, wired in ``pipelines/easyanimate/training.py``; the datasets in
  ``training_data.py``).

Each task module's docstring gives its factory's signature and what the returned models must do. A task
class has ``read_recipe(config, data_section, noise_section)`` (checks the method's top-level keys and sets
``config.data`` / ``config.noise`` to its typed sections; ``config.parse_config`` calls it) and
``build_models(factory, model_config, config)`` (how its factory is called), and is built as
``Task(config, models)``; the instance then follows ``TrainingTask`` below.

The models may set ``validation_sampler(net, request) -> {name: uint8 frames [N,H,W,3]}``, called every
``validation.every_steps`` steps on the main process with the trained weights (EMA ones when EMA is on).
A sampler with a ``check_options(options)`` method has ``validation.options`` checked before training.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

import torch
from torch import nn

from ...core.errors import InputError
from .. import sd_vae
from . import selection
from .sampling import NOISE, torch_generator

VAE_FACTOR = 8  # the SD VAE's pixels per latent
VAE_MINI_BATCH = 16  # frames per VAE call (EasyAnimate's --vae_mini_batch), to bound the encoder's memory
DEFAULT_FACTORIES = {
    "animate-anyone": ".pipelines.animate_anyone.training:build_training_models",
    "easyanimate": ".pipelines.easyanimate.training:build_training_models",
}
TASKS = {
    "animate-anyone": ".pipelines.animate_anyone.training_task:AnimateAnyoneTask",
    "easyanimate": ".pipelines.easyanimate.training_task:EasyAnimateTask",
}


@dataclass
class ValidationRequest:
    step: int
    options: dict
    device: torch.device
    dtype: torch.dtype
    seed: int


ValidationSampler = Callable[[nn.Module, ValidationRequest], dict]


@dataclass
class StepContext:
    """What a loss computation needs besides the batch."""

    seed: int
    device: torch.device
    weight_dtype: torch.dtype
    batch_number: int  # this micro-batch's number in the whole job (distinct per process)


class TrainingTask(Protocol):
    name: str
    net: nn.Module
    rule: selection.ParameterRule
    frozen_modules: list
    find_unused_parameters: bool
    dataset: Any
    group_of: Optional[Callable[[int], Any]]

    def optimizer_groups(self, trainable: list, learning_rate: float) -> list[dict]: ...

    def compute_loss(self, net: nn.Module, batch: dict, context: StepContext) -> torch.Tensor: ...

    def export(self, net: nn.Module, folder: Path) -> list[Path]: ...

    def validation_samples(self, net: nn.Module, request: ValidationRequest) -> Optional[dict]: ...


# --- factories ------------------------------------------------------------------------------------------


def resolve_callable(spec: str, input_name: str, what: str) -> Callable:
    """``"package.module:function"``; a leading ``.`` is relative to this pack."""
    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name:
        raise InputError(input_name, f"is '{spec}'", "'package.module:function'")
    pack = __package__.rsplit(".", 2)[0]
    absolute = pack + module_name if module_name.startswith(".") else module_name
    try:
        module = importlib.import_module(absolute)
    except ModuleNotFoundError as error:
        if error.name and (absolute == error.name or absolute.startswith(error.name + ".")):
            raise InputError(input_name, f"'{spec}' is not available in this installation",
                             f"{what}, or another '{input_name}'") from None
        raise
    function = getattr(module, function_name, None)
    if not callable(function):
        raise InputError(input_name, f"'{module_name}' has no function '{function_name}'", f"{what}")
    return function


def task_class_of(method: str) -> type:
    return resolve_callable(TASKS[method], "method", f"the {method} training task")


def build_task(config) -> "TrainingTask":
    spec = config.model.get("factory", DEFAULT_FACTORIES[config.method])
    factory = resolve_callable(spec, "model.factory", f"the {config.method} model code wired for training")
    task_class = task_class_of(config.method)
    model_config = {k: v for k, v in config.model.items() if k != "factory"}
    models = task_class.build_models(factory, model_config, config)
    check_options = getattr(models.validation_sampler, "check_options", None)
    if check_options is not None and config.validation.every_steps:
        check_options(dict(config.validation.options))
    return task_class(config, models)


# --- shared helpers -------------------------------------------------------------------------------------


def per_sample_normal(generators: list[torch.Generator], shape: tuple) -> torch.Tensor:
    return torch.stack([torch.randn(shape, generator=g) for g in generators])


def per_sample_timesteps(generators: list[torch.Generator], count: int) -> torch.Tensor:
    return torch.cat([torch.randint(0, count, (1,), generator=g) for g in generators])


def sample_generators(seed: int, positions, purpose: int, repeat: int = 0) -> list[torch.Generator]:
    return [torch_generator(seed, NOISE, int(p), repeat, purpose) for p in positions]


@torch.no_grad()
def encode_frames(vae: nn.Module, pixels: torch.Tensor, generators: list[torch.Generator],
                  context: StepContext) -> torch.Tensor:
    """``[B,F,3,H,W]`` in -1..1 -> latents ``[B,4,F,h,w]`` (float32): a sample of the SD VAE posterior, scaled,
    with each sample's own noise."""
    batch, frames = pixels.shape[:2]
    posteriors = [sd_vae.encode_posterior(vae, chunk.to(context.device, context.weight_dtype))
                  for chunk in pixels.flatten(0, 1).split(VAE_MINI_BATCH)]
    mean, std = (torch.cat(parts) for parts in zip(*posteriors))
    eps = per_sample_normal(generators, (frames, *mean.shape[1:])).flatten(0, 1).to(context.device)
    latents = sd_vae.scaled_sample(mean, std, eps)
    return latents.unflatten(0, (batch, frames)).transpose(1, 2).contiguous()


def unwrap_output(output) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        return output[0]
    return output.sample


def save_state_dict(tensors: dict[str, torch.Tensor], path: Path) -> Path:
    """A plain ``{key: tensor}`` ``.pth`` (what ``torch.save(model.state_dict())`` writes in the references)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, path)
    return path
