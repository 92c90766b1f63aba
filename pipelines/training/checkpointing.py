"""Training checkpoints: everything the next optimiser step depends on, so a resumed run continues
bit-exactly.

``<output_dir>/checkpoints/checkpoint-<step>/`` holds
- ``trainable.safetensors``: the trained parameters (float32), by name; frozen weights are not copied,
  they are read again from the model files the recipe names;
- ``optimizer.pt``: the optimiser state (with a sharded optimiser, gathered from every process first);
- ``scheduler.pt``, ``scaler.pt`` (fp16 only), ``ema.safetensors`` (EMA only);
- ``state.json``: step, batches consumed (the data position), processes, per-device batch size;
- ``rng-<process>.pt``: each process's torch (CPU and CUDA), NumPy and Python random states.
Everything is read back with ``torch.load(weights_only=True)`` or safetensors.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ...core.errors import AnimateSuiteError

PREFIX = "checkpoint-"


class ResumeError(AnimateSuiteError):
    """A checkpoint cannot be resumed (missing, from another run layout, unreadable)."""


@dataclass
class TrainState:
    step: int = 0  # optimiser steps done
    rounds: int = 0  # micro-batches done by each process (the data position)
    world_size: int = 1
    batch_size: int = 1
    ema_updates: int = 0


def checkpoint_dir(output_dir: Path, step: int) -> Path:
    return Path(output_dir) / "checkpoints" / f"{PREFIX}{step:07d}"


def list_checkpoints(output_dir: Path) -> list[Path]:
    folder = Path(output_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def resolve_resume(resume: str | Path, output_dir: Path) -> Path:
    """``latest`` (the newest complete checkpoint of ``output_dir``) or a checkpoint folder."""
    if str(resume) == "latest":
        found = list_checkpoints(output_dir)
        if not found:
            raise ResumeError(f"--resume latest: no checkpoint in '{Path(output_dir) / 'checkpoints'}'")
        return found[-1]
    path = Path(resume)
    if not (path / "state.json").is_file():
        raise ResumeError(f"--resume: '{path}' is not a checkpoint folder (no state.json)")
    return path


def prune(output_dir: Path, keep_last: Optional[int]) -> None:
    if keep_last is None:
        return
    for old in list_checkpoints(output_dir)[:-keep_last] if keep_last > 0 else list_checkpoints(output_dir):
        shutil.rmtree(old, ignore_errors=True)


# --- random states --------------------------------------------------------------------------------------


def capture_rng_state() -> dict:
    numpy_state = np.random.get_state()
    python_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(numpy_state[1].astype(np.int64)),
        "numpy_meta": [int(numpy_state[2]), int(numpy_state[3]), float(numpy_state[4])],
        "python": torch.tensor(python_state[1], dtype=torch.int64),
        "python_gauss": [] if python_state[2] is None else [float(python_state[2])],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    position, has_gauss, cached = state["numpy_meta"]
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), int(position), int(has_gauss), cached))
    gauss = state["python_gauss"][0] if state["python_gauss"] else None
    random.setstate((3, tuple(int(v) for v in state["python"].tolist()), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --- files ----------------------------------------------------------------------------------------------


def write_state(folder: Path, state: TrainState) -> None:
    (folder / "state.json").write_text(json.dumps(asdict(state), indent=1), encoding="utf-8")


def read_state(folder: Path) -> TrainState:
    try:
        return TrainState(**json.loads((folder / "state.json").read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as error:
        raise ResumeError(f"'{folder / 'state.json'}' is not readable ({error})") from None


def save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().to("cpu", torch.float32).contiguous() for k, v in tensors.items()}, str(path))


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    from ...core.checkpoints import load_state_dict
    from ...core.errors import CheckpointError

    try:
        return load_state_dict(path)
    except CheckpointError as error:
        raise ResumeError(str(error)) from None


def torch_save(obj, path: Path) -> None:
    torch.save(obj, path)


def torch_load(path: Path):
    if not path.is_file():
        raise ResumeError(f"checkpoint file '{path}' is missing")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ResumeError(f"checkpoint file '{path}' is not readable ({str(error).splitlines()[0]})") from None
