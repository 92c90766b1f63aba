"""AnimateAnyone sampling settings (no torch import, so the CLI parser stays fast)."""

from __future__ import annotations

from dataclasses import dataclass

FITS = ("stretch", "crop", "pad")


@dataclass
class AnimateAnyoneSettings:
    """Sampling settings; the defaults are the reference's ``scripts/pose2vid.py`` ones.

    ``fit``: how a reference or pose frame of another aspect reaches width x height: stretched (as the
    reference does), centre-cropped or padded with black to the target aspect first.
    """

    width: int = 512
    height: int = 784
    steps: int = 30
    guidance: float = 3.5
    seed: int = 42
    context_frames: int = 24
    context_overlap: int = 4
    context_stride: int = 1
    fit: str = "stretch"
