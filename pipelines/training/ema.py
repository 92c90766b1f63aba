"""Exponential moving average of the trained parameters (EasyAnimate's ``--use_ema``).

The decay follows diffusers' ``EMAModel`` without warm-up, which the reference uses: the n-th update
uses ``min(max_decay, n / (n + 9))`` (0 for the first, so the average starts at the weights). Only the
trained parameters are averaged; frozen ones never change, so their average is themselves.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


def ema_decay(update: int, max_decay: float) -> float:
    """Decay of update number ``update`` (1-based)."""
    if update <= 1:
        return 0.0
    return min(max_decay, update / (update + 9))


class ParameterEMA:
    def __init__(self, named_parameters: list[tuple[str, torch.nn.Parameter]], max_decay: float):
        self.parameters = dict(named_parameters)
        self.max_decay = max_decay
        self.updates = 0
        self.shadow = {name: p.detach().float().clone() for name, p in self.parameters.items()}

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        decay = ema_decay(self.updates, self.max_decay)
        for name, parameter in self.parameters.items():
            self.shadow[name].lerp_(parameter.detach().float(), 1.0 - decay)

    @contextmanager
    def swapped_in(self) -> Iterator[None]:
        """The averaged weights in the model for the duration of the block (validation, export)."""
        saved = {name: p.detach().clone() for name, p in self.parameters.items()}
        with torch.no_grad():
            for name, parameter in self.parameters.items():
                parameter.copy_(self.shadow[name])
        try:
            yield
        finally:
            with torch.no_grad():
                for name, parameter in self.parameters.items():
                    parameter.copy_(saved[name])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, tensors: dict[str, torch.Tensor], updates: int) -> None:
        if set(tensors) != set(self.shadow):
            raise ValueError("the EMA state does not match the trained parameters")
        for name, value in tensors.items():
            self.shadow[name].copy_(value)
        self.updates = updates
