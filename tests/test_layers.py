"""The pack's layers: core -> pose / svg / tools -> pipelines -> nodes. A module may import its own layer and the
ones below it, never one above (lazy imports inside functions included). ComfyUI itself is reached only
through nodes/comfy_bridge.py (tests/test_pack_loading.py)."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYERS = {"core": 0, "pose": 1, "svg": 1, "tools": 1, "pipelines": 2, "nodes": 3}


def _imported_pack_folders(path: Path):
    """(line, top folder) of every pack module ``path`` imports, relative or absolute."""
    package = list(path.relative_to(REPO).parts[:-1])
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)]
            target = base + (node.module.split(".") if node.module else [])
            if not target:  # "from .. import x" at the pack root: x is the folder
                target = [alias.name for alias in node.names]
            for folder in {target[0]} if target else set():
                yield node.lineno, folder
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                parts = name.split(".")
                if parts[0] == "comfyui_animate_suite" and len(parts) > 1:
                    yield node.lineno, parts[1]


def test_no_module_imports_a_layer_above_its_own():
    climbs = []
    for path in sorted(REPO.glob("*/**/*.py")):
        folder = path.relative_to(REPO).parts[0]
        if folder not in LAYERS:
            continue
        for line, imported in _imported_pack_folders(path):
            if imported in LAYERS and LAYERS[imported] > LAYERS[folder]:
                climbs.append(f"{path.relative_to(REPO)}:{line} ({folder}) imports {imported}")
    assert not climbs, "\n".join(climbs)


def test_the_layer_check_sees_a_climb():
    fake = REPO / "core" / "_layer_probe_tmp.py"
    fake.write_text("def f():\n    from ..pipelines.svd import loading\n")
    try:
        assert [folder for _, folder in _imported_pack_folders(fake)] == ["pipelines"]
    finally:
        fake.unlink()


def test_shared_pipeline_modules_import_no_method_package():
    """Modules directly in pipelines/ (e.g. the motion module) serve several methods, so they depend on none."""
    methods = {p.name for p in (REPO / "pipelines").iterdir() if (p / "__init__.py").exists()}
    leaks = []
    for path in sorted((REPO / "pipelines").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                if node.module.split(".")[0] in methods:
                    leaks.append(f"{path.relative_to(REPO)}:{node.lineno} imports pipelines.{node.module}")
            if isinstance(node, ast.ImportFrom) and node.level == 1 and not node.module:
                leaks += [f"{path.relative_to(REPO)}:{node.lineno} imports pipelines.{a.name}"
                          for a in node.names if a.name in methods]
    assert not leaks, "\n".join(leaks)
