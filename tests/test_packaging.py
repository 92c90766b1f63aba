"""Packaging stays installable and friendly to existing ComfyUI installs."""

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = ("torch", "torchvision", "torchaudio", "opencv-python", "opencv-python-headless",
             "opencv-contrib-python", "opencv-contrib-python-headless", "spandrel")


def _pyproject():
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _requirement_names(lines):
    names = []
    for line in lines:
        line = line.split("#")[0].strip()
        if line:
            names.append(re.split(r"[<>=!~\[; ]", line)[0].lower())
    return names


def test_every_python_package_is_packaged():
    declared = set(_pyproject()["tool"]["setuptools"]["packages"])
    found = {"comfyui_animate_suite"}
    top_level = [d for d in REPO.iterdir() if d.is_dir() and not d.name.startswith(".")
                 and d.name not in ("tests", "benchmarks", "scripts", "build")]
    for folder in top_level:
        for init in folder.rglob("__init__.py"):
            found.add("comfyui_animate_suite." + ".".join(init.parent.relative_to(REPO).parts))
    assert found == declared


def test_requirements_match_project_dependencies_and_never_name_torch():
    requirements = _requirement_names((REPO / "requirements.txt").read_text().splitlines())
    dependencies = _requirement_names(_pyproject()["project"]["dependencies"])
    assert sorted(requirements) == sorted(dependencies)
    assert not set(requirements) & set(FORBIDDEN)
    assert all(not re.search(r"==|<", line) for line in (REPO / "requirements.txt").read_text().splitlines()
               if line.strip() and not line.startswith("#")), "pins and upper bounds fight other packs"


def test_registry_metadata():
    project = _pyproject()
    comfy = project["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"] and comfy["Icon"]
    assert project["project"]["name"] and project["project"]["version"] and project["project"]["license"]
    assert "Repository" in project["project"]["urls"]


def test_requires_comfyui_names_a_version_with_the_typed_node_schema():
    # The nodes are comfy_api.latest io.ComfyNode classes; the real-ComfyUI suite runs them in 0.3.64.
    required = _pyproject()["tool"]["comfy"]["requires-comfyui"]
    match = re.fullmatch(r">=(\d+)\.(\d+)\.(\d+)", required)
    assert match and tuple(map(int, match.groups())) >= (0, 3, 64), required


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    assert "<!-- test-command -->" in readme
    assert "README.md" in (REPO / ".ci" / "run").read_text()
