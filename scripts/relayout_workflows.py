"""Space out the example workflows so no node box covers another once the front end has drawn previews.

    python scripts/relayout_workflows.py [RESULTS_DIR]

Reads the node boxes the real-ComfyUI suite measured after each run (``tests/integration/results/<stem>.json``,
written by ``tests/web/run_workflow.mjs``: previews, DOM widgets and notes at their real size) and moves
nodes in ``example_workflows/<stem>.json`` until no two boxes overlap: a node overlapping one in its own
column moves down with everything below it in that column, otherwise it moves right with everything to
its right. Sizes are stored too, so the front end opens the workflow at the measured size. Run the suite,
then this, then the suite again (it checks the overlaps).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GAP = 30
MAX_MOVES = 500


def _overlap(a: dict, b: dict) -> bool:
    return (min(a["x"] + a["w"], b["x"] + b["w"]) - max(a["x"], b["x"]) > -GAP / 2
            and min(a["y"] + a["h"], b["y"] + b["h"]) - max(a["y"], b["y"]) > -GAP / 2)


def _same_column(a: dict, b: dict) -> bool:
    return abs(a["x"] - b["x"]) < min(a["w"], b["w"]) / 2


def _first_overlap(boxes: list[dict]) -> tuple[dict, dict] | None:
    ordered = sorted(boxes, key=lambda box: (box["x"], box["y"]))
    for index, first in enumerate(ordered):
        for second in ordered[index + 1:]:
            if _overlap(first, second):
                return first, second
    return None


def spread(boxes: list[dict]) -> list[dict]:
    """The boxes moved (in place) until none overlaps another, keeping reading order."""
    for _ in range(MAX_MOVES):
        pair = _first_overlap(boxes)
        if pair is None:
            return boxes
        fixed, moving = pair
        if _same_column(fixed, moving):
            shift = fixed["y"] + fixed["h"] + GAP - moving["y"]
            for box in boxes:
                if _same_column(box, moving) and box["y"] >= moving["y"]:
                    box["y"] += shift
        else:
            shift = fixed["x"] + fixed["w"] + GAP - moving["x"]
            for box in boxes:
                if box["x"] >= moving["x"]:
                    box["x"] += shift
    raise RuntimeError("the layout did not settle")


def relayout(workflow_path: Path, report_path: Path) -> int:
    workflow = json.loads(workflow_path.read_text())
    measured = {box["id"]: box for box in json.loads(report_path.read_text()).get("boxes", [])}
    if not measured:
        return 0
    before = {node_id: (box["x"], box["y"]) for node_id, box in measured.items()}
    spread(list(measured.values()))
    moved = 0
    for node in workflow["nodes"]:
        box = measured.get(node["id"])
        if box is None:
            continue
        dx, dy = box["x"] - before[node["id"]][0], box["y"] - before[node["id"]][1]
        node["pos"] = [round(node["pos"][0] + dx), round(node["pos"][1] + dy)]
        node["size"] = [round(value) for value in box["size"]]  # the body, without the title bar
        moved += bool(dx or dy)
    workflow_path.write_text(json.dumps(workflow, indent=2) + "\n")
    return moved


def main(argv: list[str]) -> int:
    results = Path(argv[0]) if argv else REPO / "tests" / "integration" / "results"
    for workflow_path in sorted((REPO / "example_workflows").glob("*.json")):
        report = results / f"{workflow_path.stem}.json"
        if report.is_file():
            print(f"{workflow_path.stem}: {relayout(workflow_path, report)} nodes moved")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
