"""Tiny random-weight models in the official key layouts and file formats, one module per family.

Every loader test builds its model here and saves it exactly as the official release is saved
(``.pth`` state dicts, single-file ``.safetensors``, diffusers folders), then loads it through the
pack's real loader. Keep models small enough that a forward pass takes milliseconds on CPU.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file


def seeded(seed: int = 0) -> torch.Generator:
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def save_weights(state_dict: dict, path: Path) -> Path:
    """Save like the official files: ``.safetensors`` via safetensors, anything else via torch.save."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {key: value.detach().contiguous().cpu() for key, value in state_dict.items()}
    if path.suffix == ".safetensors":
        save_file(tensors, str(path))
    else:
        torch.save(tensors, path)
    return path
