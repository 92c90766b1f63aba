"""Helpers shared by the training tests (import as `import training_testlib`; conftest puts tests/ on sys.path)."""

from __future__ import annotations

import torch

from comfyui_animate_suite.pipelines.training.sampling import SampleKeyDataset
from comfyui_animate_suite.pipelines.training.tasks import StepContext


def quiet(*_):
    return None


def frozen_state(task) -> dict[str, torch.Tensor]:
    """Every tensor of the trained net and of the frozen modules, copied."""
    modules = {"net": task.net, **{f"frozen{i}": m for i, m in enumerate(task.frozen_modules)}}
    return {f"{prefix}.{k}": v.detach().clone() for prefix, m in modules.items() for k, v in m.state_dict().items()}


def changed_keys(before: dict, after: dict) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


def evaluation_loss(task, seed: int) -> float:
    """The loss on a fixed set of samples, noise and timesteps (not seen in training)."""
    dataset = SampleKeyDataset(task.dataset, seed)
    total = 0.0
    with torch.no_grad():
        for k in range(4):
            batch = torch.utils.data.default_collate([dataset[(0, 1000 + 2 * k)], dataset[(1, 1001 + 2 * k)]])
            total += task.compute_loss(task.net, batch, StepContext(seed, torch.device("cpu"), torch.float32, 10**6)).item()
    return total / 4
