"""Which frames each denoising pass sees: the reference's "uniform" context schedule.

Windows of ``size`` frames start every ``size - overlap`` frames; with ``closed_loop`` they run past the
end and wrap to the start (the video is treated as a loop), e.g. 64 frames, size 24, overlap 4:
``[0..23], [20..43], [40..63], [60..63, 0..19]``. ``stride`` > 1 adds passes over every 2nd, 4th, ...
frame (at most as many levels as the video is longer than a window, in powers of two). The reference
always calls it with step 0, so the layout is the same at every denoising step.
"""

from __future__ import annotations

import math


def uniform_windows(num_frames: int, size: int, stride: int = 1, overlap: int = 4,
                    closed_loop: bool = True) -> list[list[int]]:
    if num_frames <= size:
        return [list(range(num_frames))]
    if not 0 <= overlap < size:
        raise ValueError(f"context overlap {overlap} must be at least 0 and less than the window size {size}")
    levels = min(stride, math.ceil(math.log2(num_frames / size)) + 1)
    windows = []
    for level in range(levels):
        step = 1 << level
        end = num_frames + (0 if closed_loop else -overlap)
        for start in range(0, end, size * step - overlap):
            windows.append([index % num_frames for index in range(start, start + size * step, step)])
    return windows
