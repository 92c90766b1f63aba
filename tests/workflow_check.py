"""Checks of node definitions (v1 dicts and typed v3 schemas, through the V1 view ComfyUI serves) and of UI-format workflows against them.

A UI-format workflow (what ComfyUI saves and the template browser loads) stores widget values by
position, so a node whose inputs change silently breaks saved workflows; these checks catch that.
"""

from __future__ import annotations

import inspect
from typing import Callable

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
UPLOAD_OPTIONS = ("image_upload", "video_upload", "animated_image_upload")
SEED_NAMES = ("seed", "noise_seed")


def input_kind(spec) -> str:
    """'COMBO' for list options, else the type string."""
    kind = spec[0]
    return "COMBO" if isinstance(kind, (list, tuple)) else kind


def input_options(spec) -> dict:
    return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def is_widget(spec) -> bool:
    return input_kind(spec) in WIDGET_TYPES and not input_options(spec).get("forceInput", False)


def widget_slots(input_types: dict) -> list[tuple[str, object]]:
    """The ordered widget values a UI workflow stores: (input name, spec), or (name, marker) for extras.

    As ComfyUI's frontend builds them: an INT with control_after_generate (default: inputs named
    seed/noise_seed) is followed by its control widget; a required upload combo adds an upload widget
    after all required inputs (it is inserted into the `required` dict last).
    """
    slots = []
    for section in ("required", "optional"):
        specs = input_types.get(section) or {}
        for name, spec in specs.items():
            if not is_widget(spec):
                continue
            slots.append((name, spec))
            control = input_options(spec).get("control_after_generate", name in SEED_NAMES)
            if input_kind(spec) == "INT" and control:
                slots.append((name + ":control", "CONTROL"))
        if section == "required" and any(
            input_kind(spec) == "COMBO" and any(input_options(spec).get(k) for k in UPLOAD_OPTIONS)
            for spec in specs.values()
        ):
            slots.append(("upload", "UPLOAD"))
    return slots


def check_node_definition(name: str, cls) -> list[str]:
    """Problems with one node class (empty when it is well formed)."""
    problems = []
    input_types = cls.INPUT_TYPES()
    if set(input_types) - {"required", "optional", "hidden"}:
        problems.append(f"{name}: unknown INPUT_TYPES sections {set(input_types) - {'required', 'optional', 'hidden'}}")
    for section in ("required", "optional"):
        for input_name, spec in (input_types.get(section) or {}).items():
            problems += [f"{name}.{input_name}: {p}" for p in _check_input_spec(spec)]
    returns = cls.RETURN_TYPES
    if not isinstance(returns, (tuple, list)) or not all(isinstance(t, str) for t in returns):
        problems.append(f"{name}: RETURN_TYPES must be a sequence of strings")
    for attribute in ("RETURN_NAMES", "OUTPUT_TOOLTIPS"):
        value = getattr(cls, attribute, None)
        if value is not None and len(value) != len(returns):
            problems.append(f"{name}: {attribute} has {len(value)} entries for {len(returns)} outputs")
    function = node_function(cls)
    if function is None:
        problems.append(f"{name}: FUNCTION '{cls.FUNCTION}' is not a method")
    else:
        # A typed node reads its hidden inputs from cls.hidden, not from arguments.
        passed = {k: v for k, v in input_types.items() if k != "hidden" or not hasattr(cls, "define_schema")}
        problems += _check_signature(name, function, passed)
    if not returns and not getattr(cls, "OUTPUT_NODE", False):
        problems.append(f"{name}: has no outputs and is not an OUTPUT_NODE")
    return problems


def node_function(cls):
    """What ComfyUI runs: a typed (v3) node's ``execute`` (its FUNCTION is a generic wrapper), a v1 node's FUNCTION."""
    if hasattr(cls, "define_schema"):
        return cls.execute
    return getattr(cls, cls.FUNCTION, None)


def _check_input_spec(spec) -> list[str]:
    problems = []
    if not isinstance(spec, tuple) or not spec:
        return [f"spec {spec!r} is not a tuple"]
    kind, options = input_kind(spec), input_options(spec)
    if not options.get("tooltip"):
        problems.append("has no tooltip")
    if kind in ("INT", "FLOAT"):
        low, high, default = options.get("min"), options.get("max"), options.get("default")
        if default is None:
            problems.append("has no default")
        elif (low is not None and default < low) or (high is not None and default > high):
            problems.append(f"default {default} outside [{low}, {high}]")
        if kind == "INT" and default is not None and not isinstance(default, int):
            problems.append(f"INT default {default!r} is not an int")
    if kind == "COMBO":
        choices = list(spec[0])
        default = options.get("default")
        if default is not None and default not in choices:
            problems.append(f"combo default {default!r} not among its options")
    if kind != "COMBO" and (not isinstance(kind, str) or kind != kind.upper()):
        problems.append(f"type {kind!r} is not an upper-case type name")
    return problems


def _check_signature(name: str, function, input_types: dict) -> list[str]:
    parameters = inspect.signature(function).parameters
    if any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
        return []
    problems = []
    for section in ("required", "optional", "hidden"):
        for input_name in input_types.get(section) or {}:
            if input_name not in parameters:
                problems.append(f"{name}: {function.__name__}() does not accept input '{input_name}'")
    for parameter in parameters.values():
        declared = any(parameter.name in (input_types.get(s) or {}) for s in ("required", "optional", "hidden"))
        if parameter.default is inspect.Parameter.empty and parameter.name != "self" and not declared:
            problems.append(f"{name}: {function.__name__}() needs '{parameter.name}', which no input provides")
    return problems


def _value_fits(spec, value, listing: bool) -> str | None:
    kind, options = input_kind(spec), input_options(spec)
    if kind == "INT":
        if not isinstance(value, int) or isinstance(value, bool):
            return f"{value!r} is not an INT"
    elif kind == "FLOAT":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return f"{value!r} is not a FLOAT"
    elif kind == "BOOLEAN":
        return None if isinstance(value, bool) else f"{value!r} is not a BOOLEAN"
    elif kind == "STRING":
        return None if isinstance(value, str) else f"{value!r} is not a STRING"
    elif kind == "COMBO":
        if value in list(spec[0]):
            return None
        return None if listing and isinstance(value, str) else f"{value!r} is not one of {list(spec[0])[:8]}"
    if kind in ("INT", "FLOAT"):
        low, high = options.get("min"), options.get("max")
        if (low is not None and value < low) or (high is not None and value > high):
            return f"{value} outside [{low}, {high}]"
    return None


def _types_compatible(a: str, b: str) -> bool:
    if a == "*" or b == "*":
        return True
    return bool(set(a.split(",")) & set(b.split(",")))


def check_workflow(workflow: dict, definitions: Callable[[str], tuple[dict, tuple] | None],
                   is_listing: Callable[[str, str], bool]) -> list[str]:
    """Problems in a UI-format workflow.

    ``definitions(class_type)`` returns (INPUT_TYPES dict, RETURN_TYPES) or None if unknown;
    ``is_listing(class_type, input_name)`` says a combo lists files, so any file name is acceptable.
    """
    problems = []
    nodes = {node["id"]: node for node in workflow.get("nodes", [])}
    if not nodes:
        return ["workflow has no nodes"]
    for node in nodes.values():
        problems += _check_ui_node(node, definitions, is_listing)
    for link in workflow.get("links", []):
        problems += _check_link(link, nodes, definitions)
    return problems


def _check_ui_node(node: dict, definitions, is_listing) -> list[str]:
    class_type = node.get("type")
    definition = definitions(class_type)
    label = f"node {node.get('id')} ({class_type})"
    if definition is None:
        return [f"{label}: unknown node type"]
    input_types, _ = definition
    slots = widget_slots(input_types)
    values = node.get("widgets_values", [])
    if isinstance(values, dict):
        return [f"{label}: widgets_values by name is not the UI format ComfyUI saves"]
    if len(values) != len(slots):
        return [f"{label}: {len(values)} widget values for {len(slots)} widgets {[n for n, _ in slots]}"]
    problems = []
    for (input_name, spec), value in zip(slots, values):
        if spec == "CONTROL":
            if value not in ("fixed", "increment", "decrement", "randomize"):
                problems.append(f"{label}: {input_name} {value!r} is not a control mode")
            continue
        if spec == "UPLOAD":
            continue
        error = _value_fits(spec, value, is_listing(class_type, input_name))
        if error:
            problems.append(f"{label}: widget '{input_name}' {error}")
    all_inputs = {**(input_types.get("required") or {}), **(input_types.get("optional") or {})}
    for socket in node.get("inputs", []):
        spec = all_inputs.get(socket["name"])
        if spec is None:
            problems.append(f"{label}: input '{socket['name']}' is not defined by the node")
        elif not _types_compatible(socket["type"], input_kind(spec)):
            problems.append(f"{label}: input '{socket['name']}' typed {socket['type']}, node says {input_kind(spec)}")
    required_sockets = [n for n, s in (input_types.get("required") or {}).items() if not is_widget(s)]
    linked = {s["name"] for s in node.get("inputs", []) if s.get("link") is not None}
    for name in required_sockets:
        if name not in linked:
            problems.append(f"{label}: required input '{name}' is not connected")
    return problems


def _check_link(link, nodes, definitions) -> list[str]:
    link_id, from_id, from_slot, to_id, to_slot, link_type = link[:6]
    source, target = nodes.get(from_id), nodes.get(to_id)
    if source is None or target is None:
        return [f"link {link_id}: connects a missing node"]
    problems = []
    source_definition = definitions(source["type"])
    if source_definition is not None:
        returns = source_definition[1]
        if from_slot >= len(returns):
            problems.append(f"link {link_id}: {source['type']} has no output {from_slot}")
        elif not _types_compatible(returns[from_slot], link_type):
            problems.append(f"link {link_id}: {source['type']} output {from_slot} is {returns[from_slot]}, link says {link_type}")
    sockets = target.get("inputs", [])
    if to_slot >= len(sockets):
        problems.append(f"link {link_id}: {target['type']} has no input socket {to_slot}")
    else:
        socket = sockets[to_slot]
        if socket.get("link") != link_id:
            problems.append(f"link {link_id}: {target['type']} input '{socket['name']}' does not point back to it")
        if not _types_compatible(socket["type"], link_type):
            problems.append(f"link {link_id}: into {target['type']}.{socket['name']} ({socket['type']}) but carries {link_type}")
    return problems


def check_api_workflow(prompt: dict, definitions: Callable[[str], tuple[dict, tuple] | None],
                       is_listing: Callable[[str, str], bool]) -> list[str]:
    """Problems in an API-format workflow (what POST /prompt executes): node types, inputs, values, links."""
    problems = []
    for node_id, node in prompt.items():
        class_type = node.get("class_type")
        definition = definitions(class_type)
        label = f"node {node_id} ({class_type})"
        if definition is None:
            problems.append(f"{label}: unknown node type")
            continue
        input_types, _ = definition
        specs = {**(input_types.get("required") or {}), **(input_types.get("optional") or {})}
        inputs = node.get("inputs", {})
        for name in (input_types.get("required") or {}):
            if name not in inputs:
                problems.append(f"{label}: required input '{name}' is missing")
        for name, value in inputs.items():
            spec = specs.get(name)
            if spec is None:
                problems.append(f"{label}: input '{name}' is not defined by the node")
            elif isinstance(value, list):
                problems += _check_api_link(label, name, spec, value, prompt, definitions)
            elif not is_widget(spec):
                problems.append(f"{label}: input '{name}' ({input_kind(spec)}) needs a link, got {value!r}")
            else:
                error = _value_fits(spec, value, is_listing(class_type, name))
                if error:
                    problems.append(f"{label}: input '{name}' {error}")
    return problems


def _check_api_link(label, name, spec, link, prompt, definitions) -> list[str]:
    if len(link) != 2 or str(link[0]) not in prompt:
        return [f"{label}: input '{name}' links to a missing node {link!r}"]
    source = definitions(prompt[str(link[0])].get("class_type"))
    if source is None:
        return []
    returns = source[1]
    if not isinstance(link[1], int) or link[1] >= len(returns):
        return [f"{label}: input '{name}' links to output {link[1]} that node {link[0]} lacks"]
    if not _types_compatible(returns[link[1]], input_kind(spec)):
        return [f"{label}: input '{name}' ({input_kind(spec)}) gets {returns[link[1]]} from node {link[0]}"]
    return []
