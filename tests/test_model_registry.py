"""Model families: lookup, clear errors, the `models` CLI."""

import json
import subprocess
import sys

import pytest

from comfyui_animate_suite import cli
from comfyui_animate_suite.core import model_registry
from comfyui_animate_suite.core.errors import ModelNotFoundError
from comfyui_animate_suite.core.model_registry import DirectoryLocator


def test_every_family_is_complete_and_unique():
    keys = [family.key for family in model_registry.FAMILIES]
    assert len(keys) == len(set(keys))
    for family in model_registry.FAMILIES:
        assert family.source.startswith("https://"), family.key
        assert family.files, family.key
        roles = [item.role for item in family.files]
        assert len(roles) == len(set(roles)), family.key
        for item in family.files:
            assert item.names and item.folders


def test_pack_folders_are_the_ones_families_use():
    standard = {"checkpoints", "vae", "clip_vision", "diffusers"}
    used = {folder for family in model_registry.FAMILIES for item in family.files for folder in item.folders}
    assert used - standard == set(model_registry.PACK_FOLDERS)


def test_find_in_root_and_one_subfolder(tmp_path):
    family = model_registry.ANIMATE_ANYONE
    (tmp_path / "animate_anyone" / "release").mkdir(parents=True)
    (tmp_path / "animate_anyone" / "pose_guider.pth").write_bytes(b"x")
    (tmp_path / "animate_anyone" / "release" / "denoising_unet.pth").write_bytes(b"x")
    locator = DirectoryLocator(tmp_path)
    assert model_registry.require(family, "pose_guider", locator) == tmp_path / "animate_anyone" / "pose_guider.pth"
    assert model_registry.require(family, "denoising_unet", locator).parent.name == "release"


def test_folder_models_need_a_non_empty_directory(tmp_path):
    model_pack = model_registry.INSIGHTFACE.file("model_pack")
    assert model_registry.find(model_pack, DirectoryLocator(tmp_path)) is None
    pack = tmp_path / "insightface" / "antelopev2"
    pack.mkdir(parents=True)
    assert model_registry.find(model_pack, DirectoryLocator(tmp_path)) is None
    (pack / "glintr100.onnx").write_bytes(b"x")
    assert model_registry.find(model_pack, DirectoryLocator(tmp_path)) == pack


def test_extra_directories_are_searched_after_the_default(tmp_path):
    extra = tmp_path / "elsewhere"
    extra.mkdir()
    (extra / "yolox_l.onnx").write_bytes(b"x")
    locator = DirectoryLocator(tmp_path / "models", {"dwpose": [extra]})
    assert model_registry.require(model_registry.DWPOSE, "detector", locator) == extra / "yolox_l.onnx"


def test_missing_model_error_names_folder_file_and_source(tmp_path):
    with pytest.raises(ModelNotFoundError) as info:
        model_registry.require(model_registry.DWPOSE, "pose", DirectoryLocator(tmp_path))
    message = str(info.value)
    assert "dw-ll_ucoco_384.onnx" in message
    assert str(tmp_path / "dwpose") in message
    assert "huggingface.co/yzd-v/DWPose" in message


def test_models_command_lists_found_and_missing(tmp_path, capsys):
    (tmp_path / "dwpose").mkdir()
    (tmp_path / "dwpose" / "yolox_l.onnx").write_bytes(b"x")
    assert cli.main(["models", "--models-dir", str(tmp_path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    detector = next(r for r in rows if r["family"] == "dwpose" and r["role"] == "detector")
    pose = next(r for r in rows if r["family"] == "dwpose" and r["role"] == "pose")
    assert detector["found"] == str(tmp_path / "dwpose" / "yolox_l.onnx")
    assert pose["found"] is None and pose["searched"] == [str(tmp_path / "dwpose")]
    assert {r["family"] for r in rows} == {f.key for f in model_registry.FAMILIES}


def test_models_command_runs_as_a_module(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "comfyui_animate_suite", "models", "--models-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "DWPose" in result.stdout and "MISSING" in result.stdout and "published at" in result.stdout


def test_models_dir_defaults_to_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("COMFYUI_MODELS_DIR", str(tmp_path))
    assert cli.default_models_dir() == tmp_path
