"""The real ComfyUI as test bed: one server per session on loopback, with a temporary base directory
(see realcomfy.py for where ComfyUI is found and what is skipped or failed without it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from realcomfy import (HERE, PACK_FOLDER_NAME, REPO, RESULTS, TABLE, USER_SETTINGS, comfyui_dir,  # noqa: E402
                       free_port, http_json, stop, unavailable, wait_for_server, write_torchvision_stub)


@pytest.fixture(scope="session")
def comfyui_path() -> Path:
    found = comfyui_dir()
    if found is None:
        unavailable("no ComfyUI at $COMFYUI_DIR or ../shared/comfyui")
    return found


@pytest.fixture(scope="session")
def comfy_base(comfyui_path, tmp_path_factory) -> SimpleNamespace:
    """A base directory with the tiny models and inputs the example workflows select."""
    import farm

    base = tmp_path_factory.mktemp("comfy_base")
    for name in ("models", "input", "output", "custom_nodes", "user", "temp"):
        (base / name).mkdir()
    (base / "custom_nodes" / PACK_FOLDER_NAME).symlink_to(REPO, target_is_directory=True)
    svd_configs = base / "tiny_svd_configs"
    started = time.monotonic()
    farm.build_models(base / "models", svd_configs)
    farm.build_inputs(base / "input")
    print(f"\ntiny models and inputs built in {time.monotonic() - started:.0f} s under {base}")
    return SimpleNamespace(root=base, models=base / "models", input=base / "input", output=base / "output",
                           svd_configs=svd_configs, stub=write_torchvision_stub(base / "stub"))


@pytest.fixture(scope="session")
def comfy_server(comfyui_path, comfy_base):
    """The real ComfyUI on loopback (CPU), its pack linked from this repository; stopped at the end."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = comfy_base.root / "server.log"
    env = {**os.environ, "ANIMATE_SUITE_TORCHVISION_STUB": str(comfy_base.stub),
           "ANIMATE_SUITE_SVD_CONFIGS": str(comfy_base.svd_configs), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, str(HERE / "launcher.py"), str(comfyui_path / "main.py"), "--cpu",
               "--listen", "127.0.0.1", "--port", str(port), "--base-directory", str(comfy_base.root),
               "--disable-auto-launch"]
    with open(log, "w") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=comfyui_path)
    try:
        wait_for_server(process, url, log)
        for key, value in USER_SETTINGS.items():
            http_json(f"{url}/settings/{key}", value)
        pack_lines = [line for line in log.read_text().splitlines() if PACK_FOLDER_NAME in line]
        assert not any("IMPORT FAILED" in line for line in pack_lines), "\n".join(pack_lines)
        yield SimpleNamespace(url=url, log=log, process=process, base=comfy_base)
    finally:
        stop(process)
        RESULTS.mkdir(exist_ok=True)
        shutil.copy(log, RESULTS / "server.log")


def pytest_terminal_summary(terminalreporter):
    if not TABLE:
        return
    header = "| workflow | seconds | outputs | preview seen |"
    lines = [header, "|---|---|---|---|"]
    lines += [f"| {row['workflow']} | {row['seconds']} | {row['outputs']} | {row['preview']} |" for row in TABLE]
    lines += [f"- {row['workflow']}: {problem}" for row in TABLE for problem in row.get("problems", [])]
    terminalreporter.write_sep("-", "real ComfyUI: example workflows")
    for line in lines:
        terminalreporter.write_line(line)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "table.md").write_text("\n".join(lines) + "\n")
    terminalreporter.write_line(f"(screenshots, logs and this table in {RESULTS})")
