"""What the real ComfyUI serves for every pack node (``/object_info``) still matches the definitions saved
workflows were made with.

``node_definitions_v1.json`` holds, per node id, what the v1 ``INPUT_TYPES``/``RETURN_TYPES`` declarations
gave before the nodes moved to the typed schema (``comfy_api.latest``): display name, category, output-node
flag, outputs (type, name) and every input in order (section, name, type, options without tooltips; for
file-listing combos only the marker, since their options and defaults depend on the folders). A UI workflow
stores widget values by position, so any change here would shift saved values.
"""

from __future__ import annotations

import json
from pathlib import Path

from realcomfy import http_json

SAVED = json.loads((Path(__file__).with_name("node_definitions_v1.json")).read_text())
# The one intended difference: a seed widget now asks for its control widget explicitly; v1 got the same
# widget from the front end's rule for INT inputs named seed (tests/workflow_check.py: widget_slots).
EXPLICIT_NOW = {"seed": {"control_after_generate": True}}


def served_inputs(info: dict) -> list[list]:
    inputs = []
    for section in ("required", "optional"):
        for name, spec in (info["input"].get(section) or {}).items():
            kind, options = spec[0], dict(spec[1]) if len(spec) > 1 else {}
            options.pop("tooltip", None)
            options.pop("multiselect", None)
            if options.get("multiline") is False:  # the typed schema spells out the v1 default
                del options["multiline"]
            if isinstance(kind, list) or kind == "COMBO":
                choices = kind if isinstance(kind, list) else options.get("options", [])
                kind, options = "COMBO", {**options, "options": choices}
                if options.get("file_listing"):
                    options = {"file_listing": True, "options": [], **{k: v for k, v in options.items()
                                                                        if k not in ("default", "options", "file_listing")}}
            for key, value in EXPLICIT_NOW.get(name, {}).items():
                if options.get(key) == value:
                    del options[key]
            inputs.append([section, name, kind, options])
    return inputs


def saved_inputs(node: dict) -> list[list]:
    inputs = []
    for section, name, kind, options in node["inputs"]:
        if options.get("file_listing"):
            options = {k: v for k, v in options.items() if k != "default"}
        inputs.append([section, name, kind, options])
    return inputs


def test_every_node_is_served_as_saved_workflows_expect(comfy_server):
    served = http_json(comfy_server.url + "/object_info")
    ours = {name: info for name, info in served.items() if name.startswith("AnimateSuite")}
    assert sorted(ours) == sorted(SAVED)
    problems = []
    for name, saved in SAVED.items():
        info = ours[name]
        got = {"display_name": info["display_name"], "category": info["category"], "output_node": info["output_node"],
               "outputs": [list(pair) for pair in zip(info["output"], info["output_name"])]}
        for key, value in got.items():
            if value != saved[key]:
                problems.append(f"{name}.{key}: saved {saved[key]!r}, served {value!r}")
        for before, now in zip(saved_inputs(saved), served_inputs(info), strict=False):
            if before != now:
                problems.append(f"{name} input: saved {before}, served {now}")
        if len(saved["inputs"]) != len(served_inputs(info)):
            problems.append(f"{name}: {len(saved['inputs'])} inputs saved, {len(served_inputs(info))} served")
        seeds = [spec for section in ("required", "optional") for n, spec in (info["input"].get(section) or {}).items()
                 if n == "seed"]
        problems += [f"{name}.seed has no control widget" for spec in seeds
                     if not spec[1].get("control_after_generate", True)]
    assert not problems, "\n".join(problems)
