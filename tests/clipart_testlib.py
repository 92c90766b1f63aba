"""Shared helpers for the clipart tests (import as ``clipart_testlib``)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CLIPART = SHARED / "data" / "clipart"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def clipart_names() -> list[str]:
    if not CLIPART.is_dir():
        return []
    return sorted(p.name for p in CLIPART.iterdir() if (p / f"{p.name}_scaled.svg").is_file())


def art_path(name: str) -> Path:
    return CLIPART / name / f"{name}_scaled.svg"


def side_path(name: str, suffix: str) -> Path:
    return CLIPART / name / f"{name}{suffix}"


def cairosvg():
    """cairosvg (a test-only dependency); CI installs it, elsewhere the test skips without it."""
    try:
        import cairosvg as module
    except (ImportError, OSError) as error:
        if os.environ.get("CI"):
            pytest.fail(f"cairosvg is not usable ({error}); requirements-dev.txt and .ci/run install it")
        pytest.skip(f"cairosvg is not usable: {error}")
    return module


def cairo_render(data: bytes, size: int) -> np.ndarray:
    """cairosvg's rendering on white, float [H, W, 3]."""
    from PIL import Image

    png = cairosvg().svg2png(bytestring=data, output_width=size, output_height=size, background_color="white")
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), np.float32) / 255.0


def assert_renders_like_cairosvg(data: bytes, drawing, size: int, limit: float = 0.01) -> np.ndarray:
    """Our rasteriser vs cairosvg on white: mean absolute error per channel below ``limit``."""
    from comfyui_animate_suite.svg.paths import layout_drawing
    from comfyui_animate_suite.svg.raster import rasterise

    layout, points = layout_drawing(drawing)
    ours = rasterise(layout, points, size=size, background=(1.0, 1.0, 1.0))[0].numpy()
    reference = cairo_render(data, size)
    error = np.abs(ours - reference).mean(axis=(0, 1))
    assert np.all(error < limit), f"mean abs error per channel {error}"
    return error


@pytest.fixture(scope="session")
def shared_clipart(shared_dir):
    """Names of the real clipart samples in ../shared/data/clipart (skips when absent). Test modules
    import this fixture: ``from clipart_testlib import shared_clipart``."""
    folder = shared_dir / "data" / "clipart"
    names = sorted(p.name for p in folder.iterdir() if (p / f"{p.name}_scaled.svg").is_file()) if folder.is_dir() else []
    if not names:
        pytest.skip("../shared/data/clipart holds no clipart")
    return names


def example_clipart(canvas: int = 256):
    """The pack's gingerbread example, rigged from its side files (11 keypoints, 10 bones)."""
    from comfyui_animate_suite.svg.animate import load_clipart

    return load_clipart(EXAMPLES / "gingerbread.svg", canvas)


@pytest.fixture(scope="session")
def tiny_t2v_folder(tmp_path_factory):
    """A tiny random text-to-video-ms-1.7b diffusers folder (tests/tiny_models/aniclipart_t2v.py), built once.
    Test modules import this fixture (and ``tiny_prior``) from here."""
    from tiny_models.aniclipart_t2v import build_t2v_folder

    return build_t2v_folder(tmp_path_factory.mktemp("t2v") / "text-to-video-ms-1.7b")


@pytest.fixture(scope="session")
def tiny_prior(tiny_t2v_folder):
    """The tiny prior loaded through the real loader (read-only in the tests)."""
    from comfyui_animate_suite.pipelines.aniclipart import loading

    return loading.load_t2v_prior(tiny_t2v_folder)
