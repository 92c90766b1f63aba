"""The training loop, on ``accelerate``: one process or many (``accelerate launch``/``torchrun``), on GPUs or CPU.

- Data parallel: the trained network is wrapped in DDP; each process reads its own batches of the
  shared sample stream (``sampling.py``).
- ``solver.optimizer_sharding: zero1``: each process keeps the AdamW state of 1/N of the parameters
  (``torch.distributed.optim.ZeroRedundancyOptimizer``, ZeRO stage 1). Why not FSDP for AnimateAnyone
  stage 1: its weights and gradients (two SD1.5 UNets, ~1.7 B parameters, ~14 GB in float32) fit one
  training GPU; the AdamW state (another ~14 GB) is what pushed the seed onto 4 GPUs, and sharding it
  removes (N-1)/N of it without touching the forward pass. FSDP would also shard the ReferenceNet ->
  UNet attention bank hooks and a partly frozen ReferenceNet, and it is not testable on CPU; ZeRO-1 is.
- Mixed precision fp16/bf16 via accelerate (trained weights stay float32; frozen models run in the
  half type), gradient checkpointing where the model offers it, gradient accumulation with DDP's
  gradient sync skipped on the inner micro-steps, gradient clipping, optional EMA.
- Checkpoints (``checkpointing.py``) resume bit-exactly: weights, optimiser, scheduler, EMA, loss
  scaler, data position and random states.
- Progress every ``log_every`` steps (loss, learning rate, seconds per step) on the main process and in
  ``<output_dir>/metrics.jsonl``; released-layout model files under ``<output_dir>/models/``; validation
  samples every ``validation.every_steps`` steps under ``<output_dir>/validation/``.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from ...core.errors import InputError
from . import checkpointing, selection
from .checkpointing import ResumeError, TrainState
from .datasets import DatasetError
from .ema import ParameterEMA
from .sampling import SampleKeyDataset, StreamBatchSampler
from .tasks import StepContext, TrainingTask, ValidationRequest

HALF_TYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class TrainerCallback:
    """Hooks the loop calls on the main process."""

    def on_step_end(self, step: int, total: int, logs: dict) -> None: ...

    def on_checkpoint(self, step: int, folder: Path) -> None: ...

    def on_validation(self, step: int, paths: list[Path]) -> None: ...


class ProgressPrinter(TrainerCallback):
    def __init__(self, every: int = 10, write=print):
        self.every, self.write = max(1, every), write

    def on_step_end(self, step: int, total: int, logs: dict) -> None:
        if step % self.every == 0 or step == total:
            self.write(f"step {step}/{total}  loss {logs['loss']:.5f}  lr {logs['lr']:.3e}  "
                       f"{logs['seconds_per_step']:.2f} s/step")

    def on_checkpoint(self, step: int, folder: Path) -> None:
        self.write(f"checkpoint {folder}")

    def on_validation(self, step: int, paths: list[Path]) -> None:
        self.write(f"validation samples: {', '.join(str(p) for p in paths)}")


class MetricsFile(TrainerCallback):
    """One JSON line per optimiser step in ``<output_dir>/metrics.jsonl``."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_step_end(self, step: int, total: int, logs: dict) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": step, **logs}) + "\n")


@dataclass
class TrainResult:
    step: int
    losses: list[float] = field(default_factory=list)  # the mean loss of each optimiser step of this run
    exports: list[Path] = field(default_factory=list)
    output_dir: Optional[Path] = None


def _has_accelerator_device() -> bool:
    if torch.cuda.is_available():
        return True
    xpu = getattr(torch, "xpu", None)
    return bool(xpu is not None and xpu.is_available()) or torch.backends.mps.is_available()


def _fresh_accelerate_state() -> None:
    """accelerate keeps one global state per process; a second run in the same process may use another
    precision. Only ever done outside a distributed job."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def _adamw_class(solver):
    if not solver.use_8bit_adam:
        return torch.optim.AdamW
    try:
        import bitsandbytes
    except ImportError:
        raise InputError("solver.use_8bit_adam", "is on, but bitsandbytes is not installed",
                         "pip install bitsandbytes (CUDA only), or use_8bit_adam: false") from None
    return bitsandbytes.optim.AdamW8bit


def build_optimizer(groups: list[dict], solver, num_processes: int) -> torch.optim.Optimizer:
    cls = _adamw_class(solver)
    options = dict(betas=(solver.adam_beta1, solver.adam_beta2), weight_decay=solver.adam_weight_decay,
                   eps=solver.adam_epsilon)
    if solver.optimizer_sharding == "zero1" and num_processes > 1:
        from torch.distributed.optim import ZeroRedundancyOptimizer

        sharded = ZeroRedundancyOptimizer(groups[0]["params"], optimizer_class=cls, lr=groups[0]["lr"], **options)
        for group in groups[1:]:
            sharded.add_param_group(group)
        return sharded
    return cls(groups, lr=groups[0]["lr"], **options)


def _reraised_dataset_error(error: Exception) -> Optional[DatasetError]:
    """A DatasetError raised in a data-loader worker comes back as a traceback text; keep its message."""
    text = str(error)
    marker = "DatasetError: "
    if "DatasetError" in text and marker in text:
        return DatasetError(text.rsplit(marker, 1)[-1].strip())
    return None


class Trainer:
    def __init__(self, task: TrainingTask, config, callbacks: tuple[TrainerCallback, ...] = (), log_every: int = 10,
                 write=print):
        self.task, self.config = task, config
        self.output_dir = Path(config.output_dir)
        self.log_every = log_every
        self.write = write
        self.callbacks = list(callbacks)
        self._active_callbacks: list[TrainerCallback] = []

    # --- set-up ---------------------------------------------------------------------------------------

    def _accelerator(self):
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs

        _fresh_accelerate_state()
        solver = self.config.solver
        return Accelerator(
            gradient_accumulation_steps=solver.gradient_accumulation_steps,
            mixed_precision=solver.mixed_precision,
            cpu=not _has_accelerator_device(),
            step_scheduler_with_optimizer=False,
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=self.task.find_unused_parameters)],
        )

    def total_steps(self, num_processes: int) -> int:
        solver, data = self.config.solver, self.config.data
        if solver.max_train_steps is not None:
            return solver.max_train_steps
        samples_per_step = data.batch_size * num_processes * solver.gradient_accumulation_steps
        return solver.num_train_epochs * math.ceil(len(self.task.dataset) / samples_per_step)

    def _prepare_models(self, accelerator, weight_dtype):
        net = self.task.net
        trainable = selection.apply_rule(net, self.task.rule, self.task.name)
        if self.config.solver.gradient_checkpointing:
            selection.enable_gradient_checkpointing(net)
        if weight_dtype != torch.float32:
            selection.cast_frozen_children(net, weight_dtype)
        for module in self.task.frozen_modules:
            selection.freeze(module)
            module.to(accelerator.device)
            if weight_dtype != torch.float32:
                torch.nn.Module.to(module, weight_dtype)  # not diffusers' override, which warns about fp32-kept parts
        net.train()
        return accelerator.prepare_model(net), trainable

    def _learning_rate(self, num_processes: int) -> float:
        solver = self.config.solver
        if solver.scale_lr:
            return solver.learning_rate * solver.gradient_accumulation_steps * self.config.data.batch_size * num_processes
        return solver.learning_rate

    def _loader(self, accelerator, start_round: int):
        data = self.config.data
        sampler = StreamBatchSampler(len(self.task.dataset), data.batch_size, self.config.seed,
                                     rank=accelerator.process_index, world_size=accelerator.num_processes,
                                     start_round=start_round, group_of=self.task.group_of)
        return torch.utils.data.DataLoader(SampleKeyDataset(self.task.dataset, self.config.seed), batch_sampler=sampler,
                                           num_workers=data.num_workers)

    # --- checkpoints ----------------------------------------------------------------------------------

    def _save_checkpoint(self, accelerator, run, state: TrainState) -> Path:
        folder = checkpointing.checkpoint_dir(self.output_dir, state.step)
        optimizer = run["optimizer"].optimizer
        if hasattr(optimizer, "consolidate_state_dict"):
            optimizer.consolidate_state_dict(to=0)  # collective: every process takes part
        if accelerator.is_main_process:
            folder.mkdir(parents=True, exist_ok=True)
            checkpointing.save_tensors({n: p for n, p in run["trainable"]}, folder / "trainable.safetensors")
            checkpointing.torch_save(optimizer.state_dict(), folder / "optimizer.pt")
            checkpointing.torch_save(run["scheduler"].state_dict(), folder / "scheduler.pt")
            if accelerator.scaler is not None:
                checkpointing.torch_save(accelerator.scaler.state_dict(), folder / "scaler.pt")
            if run["ema"] is not None:
                checkpointing.save_tensors(run["ema"].state_dict(), folder / "ema.safetensors")
        accelerator.wait_for_everyone()
        checkpointing.torch_save(checkpointing.capture_rng_state(), folder / f"rng-{accelerator.process_index}.pt")
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            checkpointing.write_state(folder, state)  # last, so a half-written checkpoint is never "latest"
            checkpointing.prune(self.output_dir, self.config.checkpoint.keep_last)
            for callback in self._active_callbacks:
                callback.on_checkpoint(state.step, folder)
        return folder

    def _load_checkpoint(self, accelerator, run, resume) -> TrainState:
        folder = checkpointing.resolve_resume(resume, self.output_dir)
        state = checkpointing.read_state(folder)
        expected = (accelerator.num_processes, self.config.data.batch_size)
        if (state.world_size, state.batch_size) != expected:
            raise ResumeError(f"'{folder}' was written by {state.world_size} process(es) with batch size "
                              f"{state.batch_size}; this run has {expected[0]} with {expected[1]}. Resume with the same.")
        saved = checkpointing.load_tensors(folder / "trainable.safetensors")
        names = {n for n, _ in run["trainable"]}
        if set(saved) != names:
            raise ResumeError(f"'{folder}' trained other parameters than this recipe "
                              f"({len(set(saved) ^ names)} names differ); is it from another stage or mode?")
        with torch.no_grad():
            for name, parameter in run["trainable"]:
                parameter.copy_(saved[name])
        run["optimizer"].load_state_dict(checkpointing.torch_load(folder / "optimizer.pt"))
        run["scheduler"].load_state_dict(checkpointing.torch_load(folder / "scheduler.pt"))
        if accelerator.scaler is not None:
            accelerator.scaler.load_state_dict(checkpointing.torch_load(folder / "scaler.pt"))
        if run["ema"] is not None:
            run["ema"].load_state_dict(checkpointing.load_tensors(folder / "ema.safetensors"), state.ema_updates)
        checkpointing.restore_rng_state(checkpointing.torch_load(folder / f"rng-{accelerator.process_index}.pt"))
        if accelerator.is_main_process:
            self.write(f"resumed from {folder} at step {state.step}")
        return state

    # --- outputs --------------------------------------------------------------------------------------

    def _export(self, accelerator, run, name: str) -> list[Path]:
        if not accelerator.is_main_process:
            return []
        net = accelerator.unwrap_model(run["net"])
        with run["ema"].swapped_in() if run["ema"] is not None else nullcontext():
            return self.task.export(net, self.output_dir / "models" / name)

    def _validate(self, accelerator, run, step: int, weight_dtype) -> None:
        if accelerator.is_main_process:
            net = accelerator.unwrap_model(run["net"])
            request = ValidationRequest(step, dict(self.config.validation.options), accelerator.device, weight_dtype,
                                        self.config.seed)
            net.eval()
            try:
                with run["ema"].swapped_in() if run["ema"] is not None else nullcontext(), torch.no_grad():
                    samples = self.task.validation_samples(net, request)
            finally:
                net.train()
            if samples:
                paths = self._write_samples(step, samples)
                for callback in self._active_callbacks:
                    callback.on_validation(step, paths)
        accelerator.wait_for_everyone()

    def _write_samples(self, step: int, samples: dict) -> list[Path]:
        from ...core.video import write_gif

        folder = self.output_dir / "validation" / f"step-{step:07d}"
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, frames in samples.items():
            path = folder / f"{name}.gif"
            write_gif(frames, path, fps=8)
            paths.append(path)
        return paths

    # --- the loop -------------------------------------------------------------------------------------

    def train(self, resume: str | Path | None = None) -> TrainResult:
        accelerator = self._accelerator()
        result = self._train(accelerator, resume)
        accelerator.wait_for_everyone()
        accelerator.end_training()  # ends the process group of a distributed run
        return result

    def _train(self, accelerator, resume) -> TrainResult:
        from diffusers.optimization import get_scheduler

        solver = self.config.solver
        weight_dtype = HALF_TYPES[solver.mixed_precision]
        net, trainable = self._prepare_models(accelerator, weight_dtype)
        groups = self.task.optimizer_groups(trainable, self._learning_rate(accelerator.num_processes))
        optimizer = accelerator.prepare_optimizer(build_optimizer(groups, solver, accelerator.num_processes),
                                                  device_placement=False)
        total = self.total_steps(accelerator.num_processes)
        scheduler = get_scheduler(solver.lr_scheduler, optimizer=optimizer.optimizer,
                                  num_warmup_steps=solver.lr_warmup_steps, num_training_steps=total)
        ema = ParameterEMA(trainable, solver.ema_decay) if solver.ema_decay is not None else None
        run = {"net": net, "trainable": trainable, "optimizer": optimizer, "scheduler": scheduler, "ema": ema}
        state = TrainState(world_size=accelerator.num_processes, batch_size=self.config.data.batch_size)
        if resume:
            state = self._load_checkpoint(accelerator, run, resume)
        self._active_callbacks = []
        if accelerator.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            self._active_callbacks = [ProgressPrinter(self.log_every, self.write),
                                      MetricsFile(self.output_dir / "metrics.jsonl"), *self.callbacks]
        result = TrainResult(step=state.step, output_dir=self.output_dir)
        batches = iter(self._loader(accelerator, state.rounds))
        parameters = [p for _, p in trainable]
        while state.step < total:
            started = time.perf_counter()
            micro_losses = []
            for _ in range(solver.gradient_accumulation_steps):
                batch = self._next(batches)
                context = StepContext(self.config.seed, accelerator.device, weight_dtype,
                                      batch_number=state.rounds * accelerator.num_processes + accelerator.process_index)
                with accelerator.accumulate(net):
                    loss = self.task.compute_loss(net, batch, context)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and solver.max_grad_norm > 0:
                        accelerator.clip_grad_norm_(parameters, solver.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                state.rounds += 1
                micro_losses.append(loss.detach().float())
            if not optimizer.step_was_skipped:
                scheduler.step()
            state.step += 1
            if ema is not None:
                ema.update()
                state.ema_updates = ema.updates
            step_loss = accelerator.gather(torch.stack(micro_losses).mean().reshape(1)).mean().item()
            result.losses.append(step_loss)
            self._after_step(accelerator, run, state, total, step_loss, time.perf_counter() - started, result, weight_dtype)
        result.step = state.step
        if result.losses and not self._checkpoint_due(state.step):
            self._save_checkpoint(accelerator, run, state)
        result.exports += self._export(accelerator, run, "final")
        del batches
        return result

    def _checkpoint_due(self, step: int) -> bool:
        every = self.config.checkpoint.every_steps
        return bool(every) and step % every == 0

    def _after_step(self, accelerator, run, state, total, loss, seconds, result, weight_dtype) -> None:
        step = state.step
        if accelerator.is_main_process:
            logs = {"loss": loss, "lr": run["scheduler"].get_last_lr()[0], "seconds_per_step": seconds}
            for callback in self._active_callbacks:
                callback.on_step_end(step, total, logs)
        if self._checkpoint_due(step):
            self._save_checkpoint(accelerator, run, state)
        export_every = self.config.checkpoint.export_every_steps or self.config.checkpoint.every_steps
        if export_every and step % export_every == 0 and step < total:
            result.exports += self._export(accelerator, run, f"step-{step:07d}")
        validation_every = self.config.validation.every_steps
        if validation_every and step % validation_every == 0:
            self._validate(accelerator, run, step, weight_dtype)

    def _next(self, batches) -> dict:
        try:
            return next(batches)
        except DatasetError:
            raise
        except Exception as error:
            converted = _reraised_dataset_error(error)
            if converted is not None:
                raise converted from None
            raise

