"""Helpers for tests (import as `import testlib`; conftest puts tests/ on sys.path)."""

from __future__ import annotations

import os
import shutil

import pytest


def require_tool(name: str) -> str:
    """Path of an external tool; CI installs them, so there a missing tool fails instead of skipping."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed; .ci/run installs it")
        pytest.skip(f"{name} is not installed")
    return path
