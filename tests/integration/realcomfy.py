"""Helpers of the real-ComfyUI tests (import as ``import realcomfy``; conftest puts this folder on sys.path).

ComfyUI is found at ``$COMFYUI_DIR`` or ``../shared/comfyui`` (next to the repository). Without it the
tests skip, except in CI (``CI`` set), where they fail. The ComfyUI folder is never written: models,
inputs, outputs, user settings and ``custom_nodes/ComfyUI-Animate-Suite`` (a link to this repository) live
in a temporary ``--base-directory``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PACK_FOLDER_NAME = "ComfyUI-Animate-Suite"
RESULTS = HERE / "results"
SERVER_START_TIMEOUT = 240
# Settings of a user who has seen the tutorial: no template browser pops up over the first page load.
USER_SETTINGS = {"Comfy.TutorialCompleted": True}

def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def unavailable(reason: str):
    """Skip outside CI; in CI what the suite needs is installed by .ci/run, so its absence fails."""
    if in_ci():
        pytest.fail(f"{reason} (CI installs it: see .ci/run)")
    pytest.skip(reason)


def comfyui_dir() -> Path | None:
    configured = os.environ.get("COMFYUI_DIR")
    candidate = Path(configured) if configured else REPO.parent / "shared" / "comfyui"
    return candidate.resolve() if (candidate / "main.py").is_file() else None


def write_torchvision_stub(folder: Path) -> Path:
    """An import-only torchvision (see launcher.py); ComfyUI never calls it for the models used here."""
    package = folder / "torchvision"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "transforms.py").write_text("")
    return folder


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_json(url: str, payload: dict | None = None, timeout: float = 30):
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = response.read()
    return json.loads(body) if body else None


def wait_for_server(process: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"ComfyUI exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            http_json(url + "/system_stats", timeout=2)
            return
        except (OSError, urllib.error.URLError):
            time.sleep(0.5)
    pytest.fail(f"ComfyUI did not answer /system_stats in {SERVER_START_TIMEOUT} s:\n{log.read_text()[-4000:]}")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)


# Widget name -> the value it is lowered to (never raised), so that every workflow finishes on CPU with the
# tiny models: image sizes, sampling steps, frame counts, optimisation iterations, context windows.
SHRINK = {
    "width": 64, "height": 64, "size": 128, "canvas": 128, "steps": 2, "frames": 5, "frame_cap": 6, "iterations": 2,
    "context_frames": 4, "context_overlap": 2, "tile_size": 4, "tile_overlap": 2,
    "hjb_end_step": 2, "hjb_iterations": 1,
}
# Where 0 stands for a preset (SVD's 25 frames, AniClipart's iteration count) the widget is set as well.
ZERO_MEANS_PRESET = ["frames", "iterations"]

# Rows of the per-workflow table, printed at the end of the session (conftest's terminal summary).
TABLE: list[dict] = []
