"""What a pipeline receives from whoever runs it: device, dtype, model staging, progress, interruption.

Pipelines never import ComfyUI. Inside ComfyUI, ``nodes/comfy_bridge.py`` builds a RunContext whose
stager is ComfyUI's model manager (``load_models_gpu``) and whose progress goes to the node's
progress bar; from Python or the CLI the defaults below move modules with ``.to()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol, Sequence

import torch

ProgressCallback = Callable[[int, int, Optional["PIL.Image.Image"]], None]  # noqa: F821


class ModelStager(Protocol):
    """Puts the modules a pipeline stage needs on the compute device."""

    def stage(self, modules: Sequence[torch.nn.Module], memory_required: int = 0) -> None: ...


class MoveToDeviceStager:
    """Stager for use outside ComfyUI: modules staged earlier go back to ``offload_device``."""

    def __init__(self, device: torch.device, offload_device: torch.device | None = None):
        self.device = torch.device(device)
        self.offload_device = torch.device(offload_device) if offload_device is not None else None
        self._resident: list[torch.nn.Module] = []

    def stage(self, modules: Sequence[torch.nn.Module], memory_required: int = 0) -> None:
        wanted = [m for m in modules if m is not None]
        if self.offload_device is not None:
            for module in self._resident:
                if not any(module is m for m in wanted):
                    module.to(self.offload_device)
        for module in wanted:
            module.to(self.device)
        self._resident = wanted


def _no_progress(step: int, total: int, preview=None) -> None:
    return None


def _no_interrupt() -> None:
    return None


@dataclass
class RunContext:
    """Everything environment-specific a pipeline call needs.

    ``progress(step, total, preview)`` is called after each unit of work; ``preview`` is an
    optional PIL image, computed only when ``wants_preview`` is set. ``check_interrupt()``
    raises when the user cancelled; pipelines call it inside every long loop.
    """

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32
    stager: ModelStager | None = None
    progress: ProgressCallback = _no_progress
    check_interrupt: Callable[[], None] = _no_interrupt
    wants_preview: bool = False

    def __post_init__(self):
        self.device = torch.device(self.device)
        if self.stager is None:
            self.stager = MoveToDeviceStager(self.device)

    def stage(self, *modules: torch.nn.Module, memory_required: int = 0) -> None:
        """Make ``modules`` ready on ``device`` before a stage uses them."""
        self.stager.stage(list(modules), memory_required=memory_required)

    def report(self, step: int, total: int, preview_fn: Callable[[], object] | None = None) -> None:
        """Report progress; ``preview_fn`` is only called when a preview is wanted."""
        preview = preview_fn() if (self.wants_preview and preview_fn is not None) else None
        self.progress(step, total, preview)
