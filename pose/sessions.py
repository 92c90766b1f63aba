"""onnxruntime sessions: provider choice, a cache shared across runs, batching and clear errors.

onnxruntime is imported only when a model is opened. The CUDA provider is used when the installed
onnxruntime has it (``onnxruntime-gpu``), otherwise the CPU; the choice is logged once per model.
Sessions are cached by (path, size, mtime, providers), so a second run reuses the loaded model.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core.errors import CheckpointError, ModelNotFoundError

log = logging.getLogger("animate_suite")

# Accelerated providers in order of preference; the CPU provider is always appended.
ACCELERATED_PROVIDERS = ("CUDAExecutionProvider", "ROCMExecutionProvider", "DmlExecutionProvider",
                         "CoreMLExecutionProvider")
CPU = "CPUExecutionProvider"
DEVICES = ("auto", "cpu")
MAX_CACHED_SESSIONS = 8
DEFAULT_MAX_BATCH = 32

_cache: "OrderedDict[tuple, object]" = OrderedDict()  # file key -> InferenceSession
_cache_lock = threading.Lock()


class OnnxRuntimeMissing(CheckpointError):
    """onnxruntime is not installed in ComfyUI's Python."""


def onnxruntime_module():
    """The ``onnxruntime`` module, or a clear error saying how to install it."""
    if importlib.util.find_spec("onnxruntime") is None:
        raise OnnxRuntimeMissing(
            "onnxruntime is not installed in the Python that runs ComfyUI. Install 'onnxruntime-gpu' "
            "(NVIDIA GPUs) or 'onnxruntime' (CPU) with that Python's pip, then restart ComfyUI."
        )
    import onnxruntime

    return onnxruntime


def choose_providers(device: str = "auto") -> list[str]:
    """The providers to ask for: the first accelerated one available (unless ``device='cpu'``), then CPU."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, not {device!r}")
    if device == "cpu":
        return [CPU]
    available = onnxruntime_module().get_available_providers()
    chosen = [p for p in ACCELERATED_PROVIDERS if p in available][:1]
    return chosen + [CPU]


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple
    type: str

    @property
    def fixed_batch(self) -> int | None:
        """The batch size the model is fixed to, or None when the first dimension is dynamic."""
        first = self.shape[0] if self.shape else None
        return first if isinstance(first, int) and first > 0 else None


class OnnxModel:
    """One loaded ONNX file: its session, input/output specs and a batched ``run``."""

    def __init__(self, path: str | os.PathLike, session, what: str):
        self.path = Path(path)
        self.session = session
        self.what = what
        self.inputs = [TensorSpec(i.name, tuple(i.shape), i.type) for i in session.get_inputs()]
        self.outputs = [TensorSpec(o.name, tuple(o.shape), o.type) for o in session.get_outputs()]
        self.providers = list(session.get_providers())

    @property
    def input(self) -> TensorSpec:
        return self.inputs[0]

    def describe(self) -> str:
        ins = ", ".join(f"{t.name}{list(t.shape)}" for t in self.inputs)
        outs = ", ".join(f"{t.name}{list(t.shape)}" for t in self.outputs)
        return f"inputs {ins}; outputs {outs}"

    def run(self, batch: np.ndarray, max_batch: int = DEFAULT_MAX_BATCH, check_interrupt=None) -> list[np.ndarray]:
        """Run ``batch`` through the model in as few calls as the model allows; outputs concatenated."""
        if len(batch) == 0:
            return [np.zeros((0,) + tuple(d if isinstance(d, int) else 0 for d in o.shape[1:]), np.float32)
                    for o in self.outputs]
        step = self.input.fixed_batch or max(1, max_batch)
        names = [o.name for o in self.outputs]
        pieces: list[list[np.ndarray]] = []
        for start in range(0, len(batch), step):
            if check_interrupt is not None:
                check_interrupt()
            chunk = np.ascontiguousarray(batch[start:start + step], dtype=np.float32)
            pieces.append(self.session.run(names, {self.input.name: chunk}))
        return [np.concatenate([p[i] for p in pieces], 0) for i in range(len(names))]


def _file_key(path: Path, providers: Sequence[str]) -> tuple:
    stat = path.stat()
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns, tuple(providers))


def load(path: str | os.PathLike, what: str, device: str = "auto", source: str = "") -> OnnxModel:
    """An ``OnnxModel`` for ``path`` (cached). Missing files and unreadable graphs raise clear errors."""
    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(what, f"'{path.name}'", [str(path.parent)], source)
    providers = choose_providers(device)
    key = _file_key(path, providers)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return OnnxModel(path, _cache[key], what)
    ort = onnxruntime_module()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    # Grow CUDA memory only as needed, so the sessions leave VRAM to ComfyUI's models.
    requested = [(p, {"arena_extend_strategy": "kSameAsRequested"}) if p == "CUDAExecutionProvider" else p
                 for p in providers]
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=requested)
    except Exception as error:  # onnxruntime raises its own exception types for bad files
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"'{path}' could not be opened as an ONNX model for {what} ({first_line[:300]}). "
            "The file may be truncated or not an ONNX model; download it again."
        ) from None
    model = OnnxModel(path, session, what)
    if providers[0] != CPU and providers[0] not in model.providers:
        log.warning("%s: onnxruntime could not start %s (see its message above); %s runs on the CPU",
                    what, providers[0], path.name)
    else:
        log.info("%s: %s on %s", what, path.name, ", ".join(model.providers))
    with _cache_lock:
        _cache[key] = session
        while len(_cache) > MAX_CACHED_SESSIONS:
            _cache.popitem(last=False)
    return model

