"""Reading model weights safely and putting them into modules with every key accounted for.

- ``.safetensors``/``.sft`` are read with safetensors; ``.pth/.pt/.ckpt/.bin`` with
  ``torch.load(weights_only=True)``, which refuses pickled code.
- ``load_into_module`` is always strict: a file whose keys or shapes do not fit the module raises
  ``CheckpointMismatchError`` naming the file, the model and a sample of the offending keys.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Iterable, Mapping

import torch

from .errors import CheckpointError, CheckpointMismatchError, ModelNotFoundError

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
WEIGHT_SUFFIXES = SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES

StateDict = dict[str, torch.Tensor]


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise ModelNotFoundError("Model file", f"'{path.name}'", [str(path.parent)])


def _load_safetensors(path: Path, device: str, prefixes: tuple[str, ...] = ()) -> StateDict:
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        if not prefixes:
            return load_file(str(path), device=device)
        with safe_open(str(path), framework="pt", device=device) as handle:
            return {key: handle.get_tensor(key) for key in handle.keys() if key.startswith(prefixes)}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(
            f"'{path}' is not a readable safetensors file ({error}). "
            "It may be truncated or not a model file; download it again."
        ) from None


def _load_pickle(path: Path, device: str) -> StateDict:
    try:
        loaded = torch.load(str(path), map_location=device, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"'{path}' holds Python objects besides tensors, so it is not loaded "
            f"(only weights are accepted, torch.load weights_only=True): {str(error).splitlines()[0]}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as error:
        raise CheckpointError(
            f"'{path}' could not be read as a PyTorch checkpoint ({str(error).splitlines()[0]}). "
            "It may be truncated; download it again."
        ) from None
    return _unwrap_state_dict(loaded, path)


def _unwrap_state_dict(loaded, path: Path) -> StateDict:
    # Training scripts often save {"state_dict": {...}} or {"module": {...}}; the weights are inside.
    if isinstance(loaded, Mapping) and loaded and not any(isinstance(v, torch.Tensor) for v in loaded.values()):
        for wrapper in ("state_dict", "module", "model"):
            inner = loaded.get(wrapper)
            if isinstance(inner, Mapping):
                loaded = inner
                break
    if not isinstance(loaded, Mapping):
        raise CheckpointError(f"'{path}' does not contain a state dict (found {type(loaded).__name__}).")
    not_tensors = [k for k, v in loaded.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(
            f"'{path}' has entries that are not tensors (e.g. '{not_tensors[0]}'); it is not a weights file."
        )
    return dict(loaded)


def load_state_dict(path: str | os.PathLike, device: str = "cpu", prefixes: Iterable[str] = ()) -> StateDict:
    """Read the tensors of a weights file onto ``device``: all, or only keys starting with one of ``prefixes``.

    With ``prefixes``, a safetensors file reads just those tensors (one component of a bundled
    checkpoint never costs the memory of the whole file).
    """
    path = Path(path)
    _require_file(path)
    prefixes = tuple(prefixes)
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        return _load_safetensors(path, device, prefixes)
    if suffix in PICKLE_SUFFIXES:
        loaded = _load_pickle(path, device)
        return {k: v for k, v in loaded.items() if k.startswith(prefixes)} if prefixes else loaded
    raise CheckpointError(f"'{path}' has an unknown weights format; expected one of {', '.join(WEIGHT_SUFFIXES)}.")


def read_key_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a weights file. Reads only the header for safetensors."""
    path = Path(path)
    _require_file(path)
    if path.suffix.lower() in SAFETENSORS_SUFFIXES:
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
        except (SafetensorError, OSError, ValueError) as error:
            raise CheckpointError(f"'{path}' is not a readable safetensors file ({error}).") from None
    return {key: tuple(value.shape) for key, value in load_state_dict(path, "meta").items()}


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> StateDict:
    """The entries under ``prefix``, with the prefix removed."""
    return {key[len(prefix):]: value for key, value in state_dict.items() if key.startswith(prefix)}


def check_keys(
    module: torch.nn.Module,
    key_shapes: Mapping[str, tuple[int, ...]],
    source: str,
    model_name: str,
    ignore_missing: Iterable[str] = (),
) -> None:
    """Raise ``CheckpointMismatchError`` unless ``key_shapes`` covers ``module`` exactly."""
    expected = {key: tuple(value.shape) for key, value in module.state_dict().items()}
    ignored = set(ignore_missing)
    missing = [k for k in expected if k not in key_shapes and k not in ignored]
    unexpected = [k for k in key_shapes if k not in expected]
    wrong_shape = [
        f"{k} {tuple(key_shapes[k])}!={expected[k]}"
        for k in expected
        if k in key_shapes and tuple(key_shapes[k]) != expected[k]
    ]
    if missing or unexpected or wrong_shape:
        raise CheckpointMismatchError(source, model_name, missing, unexpected, wrong_shape)


def load_into_module(
    module: torch.nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    source: str | os.PathLike,
    model_name: str,
    ignore_missing: Iterable[str] = (),
) -> torch.nn.Module:
    """Strictly load ``state_dict`` into ``module`` (dtype follows the module)."""
    ignored = list(ignore_missing)
    check_keys(module, {k: tuple(v.shape) for k, v in state_dict.items()}, str(source), model_name, ignored)
    module.load_state_dict(dict(state_dict), strict=not ignored)
    return module
