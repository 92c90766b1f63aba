"""Training recipes as typed settings, read from YAML.

A recipe file has the sections below; every key is optional except where a section says otherwise, and
unknown keys are refused (a typo must not silently fall back to a default). The ``data`` and ``noise``
sections are the method's: its task class (``tasks.TASKS``) types them in ``read_recipe``. The shipped recipes in
``configs/`` spell out every reference hyper-parameter. Relative paths are taken from the current
directory, as the reference scripts do.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ...core.errors import InputError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
RECIPES = {
    "animate_anyone_stage1": "animate_anyone_stage1.yaml",
    "animate_anyone_stage2": "animate_anyone_stage2.yaml",
    "easyanimate_lora": "easyanimate_lora.yaml",
    "easyanimate_motion_module": "easyanimate_motion_module.yaml",
}
MIXED_PRECISIONS = ("no", "fp16", "bf16")
SHARDINGS = ("none", "zero1")


@dataclass
class SolverConfig:
    max_train_steps: Optional[int] = None
    num_train_epochs: Optional[int] = None  # used when max_train_steps is not set
    gradient_accumulation_steps: int = 1
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    learning_rate: float = 1e-5
    scale_lr: bool = False  # multiply by accumulation x batch x processes
    lr_scheduler: str = "constant"  # any diffusers.optimization scheduler name
    lr_warmup_steps: int = 0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_weight_decay: float = 1e-2
    adam_epsilon: float = 1e-8
    use_8bit_adam: bool = False
    max_grad_norm: float = 1.0
    optimizer_sharding: str = "none"  # "zero1": each process keeps 1/N of the AdamW state
    ema_decay: Optional[float] = None  # e.g. 0.9999; None = no EMA


@dataclass
class CheckpointConfig:
    every_steps: int = 500
    keep_last: Optional[int] = None  # older checkpoint folders are deleted; None keeps all
    export_every_steps: Optional[int] = None  # released-layout model files; None = with each checkpoint


@dataclass
class ValidationConfig:
    every_steps: int = 0  # 0 = no validation samples
    options: dict = field(default_factory=dict)  # passed to the method's sampler (prompts, reference images, ...)


@dataclass
class LoRAConfig:
    rank: int = 128
    alpha: float = 64.0
    include_motion_module: bool = True  # LoRA on the attn_temporal Linear layers too
    train_text_encoder: bool = False
    text_encoder_lr: Optional[float] = None  # None = learning_rate / 2, as the reference
    save_dtype: str = "fp32"
    output_name: str = "easyanimate_lora"


@dataclass
class TrainConfig:
    method: str
    seed: int = 42
    output_dir: str = "training_output"
    stage: Optional[int] = None  # AnimateAnyone: 1 or 2
    mode: Optional[str] = None  # EasyAnimate: lora or motion_module
    model: dict = field(default_factory=dict)  # factory + model paths, read by the method's factory
    data: Any = None  # typed by the method's task
    noise: Any = None  # typed by the method's task
    solver: SolverConfig = field(default_factory=SolverConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    trainable_modules: list = field(default_factory=lambda: ["attn_temporal"])  # EasyAnimate motion_module
    source: str = ""  # the file it was read from


def _fail(key: str, problem: str, expected: str = "") -> InputError:
    return InputError(key, problem, expected)


def _coerce(value, annotation, key: str):
    origin = typing.get_origin(annotation)
    if origin is typing.Union:
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, options[0], key)
    if dataclasses.is_dataclass(annotation):
        return from_dict(annotation, value, key)
    if annotation is bool:
        if not isinstance(value, bool):
            raise _fail(key, f"is {value!r}", "true or false")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(key, f"is {value!r}", "a whole number")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(key, f"is {value!r}", "a number")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise _fail(key, f"is {value!r}", "text")
        return value
    if annotation is list or origin is list:
        if not isinstance(value, list):
            raise _fail(key, f"is {value!r}", "a list")
        return value
    if annotation is dict:
        if not isinstance(value, dict):
            raise _fail(key, f"is {value!r}", "a mapping")
        return value
    return value


def from_dict(cls, data, prefix: str = ""):
    """Build dataclass ``cls`` from ``data``, refusing unknown keys and wrong types (named with their path)."""
    where = prefix or "config"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _fail(where, f"is {type(data).__name__}", "a mapping of settings")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise _fail(f"{prefix + '.' if prefix else ''}{unknown[0]}", "is not a known setting",
                    f"one of {', '.join(sorted(known))}")
    values = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        values[name] = _coerce(value, hints[name], key)
    return cls(**values)


def _require(condition: bool, key: str, problem: str, expected: str) -> None:
    if not condition:
        raise _fail(key, problem, expected)


def _validate_solver(solver: SolverConfig) -> None:
    _require(solver.mixed_precision in MIXED_PRECISIONS, "solver.mixed_precision",
             f"is '{solver.mixed_precision}'", "one of " + ", ".join(MIXED_PRECISIONS))
    _require(solver.optimizer_sharding in SHARDINGS, "solver.optimizer_sharding",
             f"is '{solver.optimizer_sharding}'", "one of " + ", ".join(SHARDINGS))
    _require(solver.gradient_accumulation_steps >= 1, "solver.gradient_accumulation_steps",
             f"is {solver.gradient_accumulation_steps}", "1 or more")
    _require(solver.max_train_steps is not None or solver.num_train_epochs is not None, "solver.max_train_steps",
             "is not set (nor solver.num_train_epochs)", "a number of optimiser steps")
    _require(solver.learning_rate > 0, "solver.learning_rate", f"is {solver.learning_rate}", "a positive number")
    _require(solver.ema_decay is None or 0 < solver.ema_decay < 1, "solver.ema_decay", f"is {solver.ema_decay}",
             "a number between 0 and 1, or null")


def parse_config(data: dict, source: str = "") -> TrainConfig:
    """A ``TrainConfig`` from a parsed YAML mapping; the method's task (``tasks.TASKS``) types its own sections."""
    from .tasks import TASKS, task_class_of

    if not isinstance(data, dict):
        raise _fail("config", f"'{source}' does not hold a mapping of settings", "a YAML recipe")
    data = dict(data)
    method = data.get("method")
    _require(method in TASKS, "method", f"is {method!r}", "one of " + ", ".join(TASKS))
    data_section, noise_section = data.pop("data", None), data.pop("noise", None)
    config = from_dict(TrainConfig, data)
    config.source = source
    task_class_of(method).read_recipe(config, data_section, noise_section)
    _validate_solver(config.solver)
    return config


def load_config(path: str | Path) -> TrainConfig:
    """Read a recipe: a YAML path, or the name of a shipped recipe (see ``RECIPES``)."""
    import yaml

    path = CONFIG_DIR / RECIPES[str(path)] if str(path) in RECIPES else Path(path)
    if not path.is_file():
        raise _fail("config", f"'{path}' does not exist", "a YAML recipe file or one of " + ", ".join(RECIPES))
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise _fail("config", f"'{path}' is not valid YAML ({error})", "a YAML recipe file") from None
    return parse_config(data, str(path))
