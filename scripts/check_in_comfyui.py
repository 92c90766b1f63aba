"""Check the pack against a real ComfyUI checkout (run by hand, outside CI).

    python scripts/check_in_comfyui.py /path/to/ComfyUI [--python /path/to/comfy/venv/python]

1. Start-up: ComfyUI starts with the pack in custom_nodes/ (``--cpu --quick-test-for-ci``) and
   reports no import failure.
2. Streaming: a module converted by ``comfy_bridge.make_patcher`` is partially loaded by ComfyUI's
   real ``ModelPatcher`` (the meta device stands in for a GPU) and still runs forward.
3. Jobs: a server is started on loopback and prompts that need no model files (frames -> GIF,
   procedural clipart -> MP4) are queued over HTTP; the files they write are checked.

ComfyUI itself needs torchvision, so use a Python environment where ComfyUI's requirements are
installed (``--python``). Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PACK = Path(__file__).resolve().parents[1]
LINK_NAME = "ComfyUI-Animate-Suite"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def check_startup(comfy_dir: Path, python: str) -> None:
    result = subprocess.run([python, "main.py", "--cpu", "--quick-test-for-ci"], cwd=comfy_dir,
                            capture_output=True, text=True, timeout=600)
    log = result.stdout + result.stderr
    pack_lines = [line for line in log.splitlines() if LINK_NAME in line]
    print("\n".join(pack_lines) or "(no line mentions the pack)")
    if any("IMPORT FAILED" in line for line in pack_lines):
        raise SystemExit("start-up: the pack failed to import:\n" + log[-4000:])
    if not pack_lines:
        raise SystemExit("start-up: ComfyUI did not load the pack:\n" + log[-4000:])
    print("start-up: ok")


def check_streaming(comfy_dir: Path, python: str) -> None:
    code = f"""
import sys, torch
sys.path.insert(0, {str(comfy_dir)!r})
sys.argv = ["main.py", "--cpu"]
import comfy.options
comfy.options.enable_args_parsing()
import comfy.model_patcher
sys.path.insert(0, {str(comfy_dir / 'custom_nodes')!r})
import importlib
bridge = importlib.import_module("{LINK_NAME}.nodes.comfy_bridge")
ops = bridge._lowvram_ops()
assert ops is not None, "this ComfyUI's comfy.ops cannot cast weights on the fly"
class WithTable(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = torch.nn.Sequential(*[torch.nn.Linear(64, 64) for _ in range(8)])
        self.table = torch.nn.Parameter(torch.zeros(64))  # a tensor no comfy.ops layer owns

    def forward(self, x):
        return self.layers(x) + self.table

model = WithTable()
bridge._swap_to_comfy_ops(model, ops)
meta = torch.device("meta")
patcher = comfy.model_patcher.ModelPatcher(model, load_device=meta, offload_device=torch.device("cpu"))
size = patcher.model_size()
patcher.load(meta, lowvram_model_memory=int(size * 0.4), full_load=False)
devices = sorted({{p.device.type for p in model.parameters()}})
assert devices == ["cpu", "meta"], devices
assert model.model_lowvram
bridge.place_unstreamed_tensors(model, meta)
out = model(torch.randn(2, 64, device=meta))
print("streaming: partial load", devices, "forward ok", tuple(out.shape))
"""
    subprocess.run([python, "-c", code], check=True, timeout=600)


def _post(url: str, payload: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


# Jobs that need no model files: (output node id, prompt in API format).
JOBS = {
    "frames -> GIF": {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 4, "color": 16711680}},
        "2": {"class_type": "AnimateSuiteSaveAnimation", "inputs": {
            "images": ["1", 0], "fps": 8.0, "filename_prefix": "check/anim", "format": "gif", "loop": 0, "quality": 80}},
    },
    "procedural clipart -> MP4": {
        "1": {"class_type": "AnimateSuiteLoadClipart", "inputs": {
            "svg": "(pack example) gingerbread.svg", "canvas": 256, "keypoints": "side files, else detect",
            "complexity": 0.5, "max_tri_area": 30.0, "min_tri_angle": 20.0}},
        "2": {"class_type": "AnimateSuiteAnimateClipart", "inputs": {
            "clipart": ["1", 0], "motion": "wave", "frames": 12, "fps": 12.0, "amplitude": 1.0, "speed": 0.5,
            "loop": True, "fixed_start": True, "seed": 0}},
        "3": {"class_type": "AnimateSuiteRenderClipart", "inputs": {"animation": ["2", 0], "size": 256, "background": "white"}},
        "4": {"class_type": "AnimateSuiteSaveAnimation", "inputs": {
            "images": ["3", 0], "fps": ["2", 1], "filename_prefix": "check/clipart", "format": "mp4", "loop": 0, "quality": 80}},
    },
}


def _run_job(base: str, output_dir: Path, label: str, prompt: dict) -> None:
    prompt_id = _post(base + "/prompt", {"prompt": prompt, "client_id": "animate-suite-check"})["prompt_id"]
    for _ in range(600):
        with urllib.request.urlopen(f"{base}/history/{prompt_id}", timeout=10) as response:
            history = json.loads(response.read())
        if prompt_id in history and history[prompt_id]["status"].get("completed") is not None:
            break
        time.sleep(0.5)
    else:
        raise SystemExit(f"job {label}: the prompt did not finish")
    status = history[prompt_id]["status"]
    if status["status_str"] != "success":
        raise SystemExit(f"job {label}: {json.dumps(status['messages'])[-3000:]}")
    save_node = max(prompt, key=int)
    entry = history[prompt_id]["outputs"][save_node]["images"][0]
    written = output_dir / entry["subfolder"] / entry["filename"]
    assert written.is_file(), written
    print(f"job {label}: ok", written.name)


def check_job(comfy_dir: Path, python: str) -> None:
    port = _free_port()
    output_dir = Path(tempfile.mkdtemp(prefix="animate_suite_out_"))
    server = subprocess.Popen([python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
                               "--output-directory", str(output_dir)], cwd=comfy_dir,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(base + "/system_stats", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            raise SystemExit("job: the server did not come up")
        for label, prompt in JOBS.items():
            _run_job(base, output_dir, label, prompt)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(output_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("comfyui", type=Path)
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args()
    comfy_dir = args.comfyui.resolve()
    link = comfy_dir / "custom_nodes" / LINK_NAME
    created = not link.exists()
    if created:
        link.symlink_to(PACK, target_is_directory=True)
    try:
        check_startup(comfy_dir, args.python)
        check_streaming(comfy_dir, args.python)
        check_job(comfy_dir, args.python)
    finally:
        if created:
            os.unlink(link)


if __name__ == "__main__":
    main()
