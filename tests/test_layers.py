"""The pack's layers: core -> pose / svg / tools -> pipelines -> nodes. A module may import its own layer and the
ones below it, never one above (lazy imports inside functions included). ComfyUI itself is reached only
through nodes/comfy_bridge.py (tests/test_pack_loading.py). Inside pipelines/, the trainer (pipelines/training)
imports no method package: each method's training task sits beside its method and imports the trainer."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYERS = {"core": 0, "pose": 1, "svg": 1, "tools": 1, "pipelines": 2, "nodes": 3}


def _imported_pack_modules(package: list, source: str):
    """(line, module path as a list of names from the pack root) of every pack module ``source`` imports,
    relative or absolute; ``package`` is the importing module's folder, e.g. ``["pipelines", "training"]``.
    ``from X import name`` gives ``X`` plus ``name`` (a name may be a module)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)]
            target = base + (node.module.split(".") if node.module else [])
            for alias in node.names:
                yield node.lineno, target + [alias.name]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [f"{node.module}.{a.name}" for a in node.names])
            for name in names:
                parts = name.split(".")
                if parts[0] == "comfyui_animate_suite" and len(parts) > 1:
                    yield node.lineno, parts[1:]


def _imported_pack_folders(path: Path):
    """(line, top folder) of every pack module ``path`` imports, relative or absolute."""
    package = list(path.relative_to(REPO).parts[:-1])
    for line, module in _imported_pack_modules(package, path.read_text()):
        yield line, module[0]


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


def _method_imports(package: list, source: str) -> list:
    """(line, method) of every method package ``source`` imports (not the trainer, not a shared module
    directly in pipelines/ such as the motion module)."""
    methods = {p.name for p in (REPO / "pipelines").iterdir() if (p / "__init__.py").exists()} - {"training"}
    return [(line, module[1]) for line, module in _imported_pack_modules(package, source)
            if module[0] == "pipelines" and len(module) > 1 and module[1] in methods]


def test_the_trainer_imports_no_method_package():
    """``pipelines/training`` names each method's task and model code by dotted path (``tasks.TASKS``,
    ``tasks.DEFAULT_FACTORIES``); the tasks live beside their methods and import the trainer, not the reverse."""
    package = ["pipelines", "training"]
    found = [f"{path.relative_to(REPO)}:{line} imports pipelines.{method}"
             for path in sorted((REPO / "pipelines" / "training").glob("*.py"))
             for line, method in _method_imports(package, path.read_text())]
    assert not found, "\n".join(found)
    probe = "from ..easyanimate.models import TransformerConfig\nfrom . import tasks\nfrom .. import sd_vae\n"
    assert _method_imports(package, probe) == [(1, "easyanimate")]


def test_shared_pipeline_modules_import_no_method_package():
    """Modules directly in pipelines/ (the motion module, the SD VAE) serve several methods, so they depend on none."""
    shared = sorted((REPO / "pipelines").glob("*.py"))
    assert {"motion_module.py", "sd_vae.py"} <= {path.name for path in shared}
    found = [f"{path.relative_to(REPO)}:{line} imports pipelines.{method}"
             for path in shared for line, method in _method_imports(["pipelines"], path.read_text())]
    assert not found, "\n".join(found)


def test_no_module_imports_another_modules_private_name():
    """What a module shares it names publicly; ``_name`` stays inside its module."""
    found = []
    for path in sorted(REPO.glob("*/**/*.py")):
        if path.relative_to(REPO).parts[0] not in LAYERS:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("comfyui_animate_suite")):
                found += [f"{path.relative_to(REPO)}:{node.lineno} imports {alias.name}" for alias in node.names
                          if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert not found, "\n".join(found)
