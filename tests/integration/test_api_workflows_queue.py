"""Every ``example_workflows/api/*.json`` through the pack's ``queue`` command against the real server.

The expensive inputs are lowered with ``--set`` by the same names and rules as the browser test; the
command must exit 0 and download every file the workflow's output nodes save.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from realcomfy import REPO, SHRINK, ZERO_MEANS_PRESET, http_json

API_WORKFLOWS = sorted((REPO / "example_workflows" / "api").glob("*.json"))


def shrink_settings(prompt: dict) -> list[str]:
    settings = []
    for node_id, node in sorted(prompt.items()):
        for name, value in node["inputs"].items():
            if name not in SHRINK or isinstance(value, (list, bool)) or not isinstance(value, (int, float)):
                continue
            if value > SHRINK[name] or (value == 0 and name in ZERO_MEANS_PRESET):
                settings += ["--set", f"{node_id}.{name}={SHRINK[name]}"]
    return settings


@pytest.mark.slow
@pytest.mark.parametrize("workflow_path", API_WORKFLOWS, ids=lambda path: path.stem)
def test_api_workflow_runs_through_the_queue_command(workflow_path, comfy_server, tmp_path):
    prompt = json.loads(workflow_path.read_text())
    object_info = http_json(comfy_server.url + "/object_info")
    outputs = [i for i, node in prompt.items() if object_info[node["class_type"]].get("output_node")]
    command = [sys.executable, "-m", "comfyui_animate_suite", "queue", str(workflow_path), "--server", comfy_server.url,
               "--out", str(tmp_path), "--timeout", "900", *shrink_settings(prompt)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, f"queue exited {result.returncode}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    (job,) = [folder for folder in tmp_path.iterdir() if folder.is_dir()]
    history = http_json(f"{comfy_server.url}/history/{job.name}")[job.name]
    for node_id in outputs:
        names = [item["filename"] for value in history["outputs"][node_id].values() if isinstance(value, list)
                 for item in value if isinstance(item, dict) and "filename" in item]
        assert names, f"output node {node_id} saved nothing"
        for name in names:
            downloaded = list(job.rglob(name))
            assert downloaded and downloaded[0].stat().st_size > 0, f"{name} was not downloaded into {job}"
