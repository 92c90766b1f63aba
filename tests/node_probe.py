"""What a node hands to the pack's own code, recorded so tests can see an input arrive.

``record_calls`` watches every call made from a frame in ``nodes/`` into ``core/``, ``pipelines/``, ``pose/`` or
``svg/`` (the node -> pipeline boundary) and keeps the called function's name with a summary of its
arguments. ``summarize`` turns arguments and node outputs into plain, comparable values: tensors and
arrays become content hashes, dataclasses their fields, models their type name. Two runs of a node
that received the same inputs give equal summaries; an input that reaches the pipeline (as a setting,
a tensor, a path or a dtype) changes them.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import math
import os
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

PIPELINE_FOLDERS = ("core", "pose", "svg", "tools", "pipelines")  # every layer below nodes/
MAX_DEPTH = 5
MAX_ITEMS = 64
MAX_WRAPPERS = 4  # decorator frames looked through between a node and the pipeline function it calls


def _digest(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()[:16]


def summarize(value, depth: int = 0):
    """A plain, comparable summary of ``value`` (content, not identity)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return "nan" if math.isnan(value) else value
    if isinstance(value, (torch.dtype, torch.device, Path, enum.Enum)):
        return str(value)
    if isinstance(value, torch.Tensor):
        data = value.detach().to("cpu")
        if data.device.type == "meta" or data.is_sparse:
            return ("tensor", tuple(data.shape), str(data.dtype))
        return ("tensor", tuple(data.shape), str(data.dtype), _digest(data.contiguous().view(-1).view(torch.uint8).numpy().tobytes()))
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return ("array", value.shape, [summarize(v, depth + 1) for v in value.ravel()[:MAX_ITEMS]])
        return ("array", value.shape, str(value.dtype), _digest(np.ascontiguousarray(value).tobytes()))
    if isinstance(value, torch.nn.Module) or depth >= MAX_DEPTH:
        return type(value).__name__
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # Private fields are caches filled on first use, not inputs.
        return (type(value).__name__, {f.name: summarize(getattr(value, f.name), depth + 1)
                                       for f in dataclasses.fields(value) if not f.name.startswith("_")})
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda item: str(item[0]))[:MAX_ITEMS]
        return {str(key): summarize(item, depth + 1) for key, item in items}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [summarize(item, depth + 1) for item in list(items)[:MAX_ITEMS]] + ([len(value)] if len(value) > MAX_ITEMS else [])
    if hasattr(value, "tobytes") and hasattr(value, "size") and hasattr(value, "mode"):  # a PIL image
        return ("image", value.mode, value.size, _digest(value.tobytes()))
    if callable(value):
        return getattr(value, "__qualname__", type(value).__name__)
    state = getattr(value, "__dict__", None)
    if isinstance(state, dict):
        return (type(value).__name__, summarize({k: v for k, v in state.items() if not k.startswith("_")}, depth + 1))
    return type(value).__name__


class CallRecorder:
    """Records calls from the pack's ``nodes/`` into its pipeline folders while active."""

    def __init__(self, pack_root: str):
        root = os.path.realpath(pack_root)
        self._roots = {os.path.abspath(pack_root), root}
        self.calls: list[tuple[str, object]] = []

    def _folder(self, filename: str) -> str | None:
        """``nodes`` or a pipeline folder for the pack's own code; None elsewhere (a .venv inside the
        checkout included)."""
        for root in self._roots:
            if filename.startswith(root + os.sep):
                folder = filename[len(root) + 1:].split(os.sep, 1)[0]
                return folder if folder in PIPELINE_FOLDERS + ("nodes",) else None
        return None

    def _calling_folder(self, frame) -> str | None:
        """The pack folder of the nearest pack frame up the stack; frames outside the pack (decorators
        such as ``torch.no_grad``, context managers) in between are looked through."""
        caller = frame.f_back
        for _ in range(MAX_WRAPPERS + 1):
            if caller is None:
                return None
            folder = self._folder(caller.f_code.co_filename)
            if folder is not None:
                return folder
            caller = caller.f_back
        return None

    def __call__(self, frame, event, arg):
        if event != "call" or frame.f_back is None:
            return
        if self._folder(frame.f_code.co_filename) not in PIPELINE_FOLDERS:
            return
        if self._calling_folder(frame) != "nodes":
            return
        code = frame.f_code
        arguments = {name: frame.f_locals.get(name) for name in code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]}
        arguments.pop("self", None)
        self.calls.append((code.co_qualname if hasattr(code, "co_qualname") else code.co_name, summarize(arguments)))


@contextmanager
def record_calls(pack_root: str):
    recorder = CallRecorder(pack_root)
    previous = sys.getprofile()
    sys.setprofile(recorder)
    threading.setprofile(recorder)
    try:
        yield recorder
    finally:
        sys.setprofile(previous)
        threading.setprofile(None)
