"""Starts the real ComfyUI on the CPU torch wheel: ``python launcher.py <ComfyUI>/main.py [ComfyUI args]``.

- transformers (and its image utilities) is imported first, then an import-only ``torchvision`` stand-in
  (``ANIMATE_SUITE_TORCHVISION_STUB``, a folder holding ``torchvision/``) goes on the path: ComfyUI's
  ``comfy/sd.py`` imports torchvision at module level for models the pack never uses, and the real wheels do
  not load with the CPU torch wheel (see ../shared/comfyui-NOTES.md).
- ``ANIMATE_SUITE_SVD_CONFIGS``: the SVD loader reads the architecture of a single ``.safetensors`` from the
  configs the pack ships; the tests' tiny single file has its own tiny configs, so the loader module's
  ``CONFIGS_DIR`` is pointed there when the pack imports it (what the node tests do with monkeypatch).
- then ComfyUI's ``main.py`` runs as ``__main__``.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import runpy
import sys
from pathlib import Path

import transformers  # noqa: F401  (before the torchvision stand-in becomes importable)
import transformers.image_utils  # noqa: F401

SVD_LOADING_MODULE = "pipelines.svd.loading"


class _SetSVDConfigs(importlib.abc.MetaPathFinder):
    """Sets ``CONFIGS_DIR`` on the pack's SVD loading module right after it executes."""

    def __init__(self, configs: Path):
        self.configs = configs

    def find_spec(self, fullname, path, target=None):
        if not fullname.endswith(SVD_LOADING_MODULE):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        run_module = spec.loader.exec_module
        configs = self.configs

        def exec_module(module):
            run_module(module)
            module.CONFIGS_DIR = configs

        spec.loader.exec_module = exec_module
        return spec


def main() -> None:
    stub = os.environ.get("ANIMATE_SUITE_TORCHVISION_STUB")
    if stub:
        sys.path.insert(0, stub)
    configs = os.environ.get("ANIMATE_SUITE_SVD_CONFIGS")
    if configs:
        sys.meta_path.insert(0, _SetSVDConfigs(Path(configs)))
    main_py = Path(sys.argv[1]).resolve()
    sys.argv = [str(main_py), *sys.argv[2:]]
    sys.path.insert(0, str(main_py.parent))
    os.chdir(main_py.parent)
    runpy.run_path(str(main_py), run_name="__main__")


if __name__ == "__main__":
    main()
