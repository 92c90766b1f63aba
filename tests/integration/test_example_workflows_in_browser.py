"""Every example workflow, opened and queued in the real ComfyUI front end (headless Chromium).

One test per ``example_workflows/*.json`` (a new file is covered by adding it). ``tests/web/
run_workflow.mjs`` loads it with ``app.loadGraphData``, shrinks the expensive widgets (``SHRINK``) so it
finishes on CPU, queues it with ``app.queuePrompt`` and reports what the page shows. Asserted, all at
once so one run lists every problem of a workflow: every node type known, no dialog on load (missing
nodes, missing models), every pack node's widget values right after loading equal to those stored in the
file (before the shrinking; a node whose widgets moved would shift them), the prompt accepted (no validation error), success, each output node's files on
disk and a visible preview in it, no overlapping node boxes after the run, no console error from the
pack's web extension. Screenshots and the per-workflow table go to ``tests/integration/results/``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from realcomfy import REPO, RESULTS, SHRINK, TABLE, ZERO_MEANS_PRESET, http_json, unavailable

BROWSER_DIR = REPO / "tests" / "web"
WORKFLOWS = sorted((REPO / "example_workflows").glob("*.json"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
WORKFLOW_TIMEOUT = 900  # seconds for one queued workflow on CPU (the tiny models take far less)

@pytest.fixture(scope="session")
def browser_tools():
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed")
    if not Path(CHROMIUM).is_file():
        unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set $CHROMIUM)")
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        unavailable("playwright-core is not installed (cd tests/web && npm ci)")
    return node


def run_in_browser(node: str, server: str, workflow: Path, screenshot: Path) -> dict:
    shrink = json.dumps({"lower": SHRINK, "zeroMeansPreset": ZERO_MEANS_PRESET})
    command = [node, str(BROWSER_DIR / "run_workflow.mjs"), "--server", server, "--workflow", str(workflow),
               "--shrink", shrink, "--screenshot", str(screenshot), "--timeout", str(WORKFLOW_TIMEOUT)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=WORKFLOW_TIMEOUT + 300)
    if result.returncode != 0:
        pytest.fail(f"the browser script failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def output_nodes(workflow: dict, object_info: dict) -> dict[str, str]:
    """id -> type of the workflow's output nodes (those ComfyUI runs as targets)."""
    return {str(node["id"]): node["type"] for node in workflow["nodes"]
            if object_info.get(node["type"], {}).get("output_node")}


def files_of(entry: dict) -> list[dict]:
    return [item for value in entry.values() if isinstance(value, list)
            for item in value if isinstance(item, dict) and "filename" in item]


def saved_files(entry: dict, base) -> list[Path]:
    """Where the files an output node reported are: media items (filename, subfolder, type) and the bare
    file names of text-only outputs (Save Pose JSON), found under the output folder."""
    paths = []
    for item in files_of(entry):
        folder = base.output if item.get("type", "output") == "output" else base.root / item["type"]
        paths.append(folder / item.get("subfolder", "") / item["filename"])
    if not paths:
        for name in entry.get("text", []):
            paths += list(base.output.rglob(name)) or [base.output / name]
    return paths


def file_problems(outputs: dict, expected: dict[str, str], base) -> list[str]:
    problems = []
    for node_id, node_type in expected.items():
        paths = saved_files(outputs.get(node_id, {}), base)
        if not paths:
            problems.append(f"output node {node_type}#{node_id} reported no file")
        problems += [f"{node_type}#{node_id}: {path} is missing or empty" for path in paths
                     if not path.is_file() or path.stat().st_size == 0]
    return problems


def report_problems(report: dict, expected: dict[str, str], base) -> list[str]:
    problems = []
    if report["missingNodeTypes"]:
        problems.append(f"node types the server does not know: {report['missingNodeTypes']}")
    problems += [f"dialog on load: {text}" for text in report["dialogsOnLoad"]]
    problems += [f"widget values changed on load: {text}" for text in report["widgetMismatches"]]
    reply = report.get("promptReply") or {}
    if report["promptStatus"] != 200 or reply.get("node_errors"):
        problems.append(f"prompt refused ({report['promptStatus']}): {json.dumps(reply)[:1500]}")
        return problems
    status = report["status"]
    if status.get("status_str") != "success":
        errors = [m[1] for m in status.get("messages", []) if m[0] == "execution_error"]
        detail = [f"{e.get('node_type')}: {e.get('exception_message', '').strip()}" for e in errors]
        problems.append(f"status {status.get('status_str')}: {detail or status}")
        return problems
    problems += file_problems(report["outputs"], expected, base)
    problems += [f"no preview shown in output node {expected.get(i, '?')}#{i}"
                 for i, seen in report["previews"].items() if not seen and files_of(report["outputs"][i])]
    problems += [f"overlapping nodes after the run: {pair}" for pair in report["overlaps"]]
    problems += [f"web extension error: {error}" for error in report["extensionErrors"]]
    return problems


@pytest.mark.slow
@pytest.mark.parametrize("workflow_path", WORKFLOWS, ids=lambda path: path.stem)
def test_example_workflow_runs_from_the_front_end(workflow_path, comfy_server, browser_tools):
    RESULTS.mkdir(exist_ok=True)
    workflow = json.loads(workflow_path.read_text())
    expected = output_nodes(workflow, http_json(comfy_server.url + "/object_info"))
    started = time.monotonic()
    report = run_in_browser(browser_tools, comfy_server.url, workflow_path, RESULTS / f"{workflow_path.stem}.png")
    (RESULTS / f"{workflow_path.stem}.json").write_text(json.dumps(report, indent=1))
    problems = report_problems(report, expected, comfy_server.base)
    outputs = sorted({path.name for entry in report.get("outputs", {}).values()
                      for path in saved_files(entry, comfy_server.base)})
    seen = {i: found for i, found in report.get("previews", {}).items() if files_of(report["outputs"][i])}
    TABLE.append({
        "workflow": workflow_path.stem,
        "seconds": f"{report.get('seconds', time.monotonic() - started):.1f}",
        "outputs": ", ".join(outputs) or "none",
        "preview": ", ".join(f"{expected.get(i, i)}: {'yes' if s else 'NO'}" for i, s in seen.items()) or "-",
        "problems": problems,
    })
    assert not problems, f"{workflow_path.name} in the real front end:\n- " + "\n- ".join(problems)
