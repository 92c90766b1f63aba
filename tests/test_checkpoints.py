"""Weights files load safely and strictly."""

import pickle

import pytest
import torch
from safetensors.torch import save_file

from comfyui_animate_suite.core import checkpoints
from comfyui_animate_suite.core.errors import CheckpointError, CheckpointMismatchError, ModelNotFoundError


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3, 4)
        self.norm = torch.nn.LayerNorm(4)


def _weights():
    torch.manual_seed(0)
    return Tiny().state_dict()


@pytest.mark.parametrize("suffix", [".safetensors", ".pth", ".bin", ".ckpt"])
def test_round_trip_every_format(tmp_path, suffix):
    weights = _weights()
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        save_file(weights, path)
    else:
        torch.save(weights, path)
    loaded = checkpoints.load_state_dict(path)
    assert loaded.keys() == weights.keys()
    for key in weights:
        assert torch.equal(loaded[key], weights[key])
    assert checkpoints.read_key_shapes(path) == {k: tuple(v.shape) for k, v in weights.items()}


def test_wrapped_state_dict_is_unwrapped(tmp_path):
    path = tmp_path / "w.pth"
    torch.save({"state_dict": _weights(), "epoch": 3}, path)
    assert set(checkpoints.load_state_dict(path)) == set(_weights())


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(1), "payload": Payload()}, path)
    with pytest.raises(CheckpointError, match="weights_only"):
        checkpoints.load_state_dict(path)
    assert "this must never run" not in capsys.readouterr().out


def test_truncated_files_give_a_clear_error(tmp_path):
    for suffix, save in ((".safetensors", save_file), (".pth", torch.save)):
        path = tmp_path / f"w{suffix}"
        save(_weights(), path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(CheckpointError, match="truncated"):
            checkpoints.load_state_dict(path)


def test_missing_file_names_the_folder(tmp_path):
    with pytest.raises(ModelNotFoundError, match=str(tmp_path)):
        checkpoints.load_state_dict(tmp_path / "nope.safetensors")


def test_unknown_suffix_is_refused(tmp_path):
    path = tmp_path / "w.npz"
    path.write_bytes(b"x")
    with pytest.raises(CheckpointError, match="unknown weights format"):
        checkpoints.load_state_dict(path)


def test_mismatch_names_file_model_and_keys():
    weights = _weights()
    weights["extra.weight"] = torch.zeros(2)
    del weights["norm.bias"]
    weights["proj.weight"] = torch.zeros(5, 3)
    with pytest.raises(CheckpointMismatchError) as info:
        checkpoints.load_into_module(Tiny(), weights, "/models/x.pth", "Tiny model")
    message = str(info.value)
    assert "/models/x.pth" in message and "Tiny model" in message
    assert "norm.bias" in message and "extra.weight" in message and "proj.weight (5, 3)!=(4, 3)" in message
    assert info.value.missing == ["norm.bias"] and info.value.unexpected == ["extra.weight"]


def test_matching_weights_load_and_follow_module_dtype():
    weights = _weights()
    module = Tiny().to(torch.float16)
    checkpoints.load_into_module(module, weights, "w", "Tiny")
    assert module.proj.weight.dtype == torch.float16
    assert torch.allclose(module.proj.weight.float(), weights["proj.weight"], atol=1e-3)


def test_ignored_missing_keys_are_allowed_but_nothing_else():
    weights = _weights()
    del weights["norm.bias"]
    checkpoints.load_into_module(Tiny(), weights, "w", "Tiny", ignore_missing=["norm.bias"])
    del weights["norm.weight"]
    with pytest.raises(CheckpointMismatchError, match="norm.weight"):
        checkpoints.load_into_module(Tiny(), weights, "w", "Tiny", ignore_missing=["norm.bias"])


def test_strip_prefix():
    assert checkpoints.strip_prefix({"a.b": 1, "c.d": 2}, "a.") == {"b": 1}


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_prefixes_select_one_component(tmp_path, suffix):
    weights = {"unet.a": torch.ones(2), "unet.b": torch.zeros(1), "vae.c": torch.ones(3)}
    path = tmp_path / f"bundle{suffix}"
    save_file(weights, path) if suffix == ".safetensors" else torch.save(weights, path)
    assert set(checkpoints.load_state_dict(path, prefixes=("unet.",))) == {"unet.a", "unet.b"}
    assert set(checkpoints.load_state_dict(path, prefixes=("vae.", "unet.b"))) == {"vae.c", "unet.b"}
    assert set(checkpoints.load_state_dict(path)) == set(weights)
