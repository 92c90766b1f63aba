"""The frame-window schedules (core/frame_windows.py): what each promises, checked over many clip lengths."""

import itertools

import pytest
import torch

from comfyui_animate_suite.core import frame_windows as fw
from comfyui_animate_suite.core.errors import InputError

# (frames, window, overlap) with clips shorter than, equal to and longer than the window
CASES = [(frames, window, overlap) for frames, window in itertools.product((1, 5, 8, 9, 17, 23, 40), (4, 8, 16))
         for overlap in range(1, window)]


@pytest.mark.parametrize("name", fw.WINDOW_SCHEDULES)
def test_every_schedule_covers_every_frame_and_a_short_clip_is_one_window(name):
    schedule = fw.WINDOW_SCHEDULES[name]
    for frames, window, overlap in CASES:
        windows = schedule.windows(frames, window, overlap)
        assert set().union(*map(set, windows)) == set(range(frames)), (name, frames, window, overlap)
        assert all(0 <= i < frames for w in windows for i in w)
        if frames <= window:
            assert windows == [list(range(frames))]
        else:
            assert all(len(w) == window for w in windows), (name, frames, window, overlap)


def test_overlapping_windows_are_contiguous_overlap_enough_and_end_at_the_last_frame():
    for frames, window, overlap in CASES:
        windows = fw.overlapping_windows(frames, window, overlap)
        assert windows[0][0] == 0 and windows[-1][-1] == frames - 1
        assert all(w == list(range(w[0], w[0] + min(window, frames))) for w in windows)
        assert all(b[0] <= a[-1] + 1 - overlap for a, b in zip(windows, windows[1:]))
        assert [b[0] - a[0] for a, b in zip(windows[:-2], windows[1:-1])] == [window - overlap] * (len(windows) - 2)


def test_ramp_weights_ramp_only_towards_neighbours_and_every_frame_keeps_weight():
    for frames, window, overlap in CASES:
        weight_sum = torch.zeros(frames)
        for window_frames in fw.overlapping_windows(frames, window, overlap):
            start, end = window_frames[0], window_frames[-1] + 1
            weights = fw.ramp_weights(window_frames, frames, overlap)
            assert weights.shape == (end - start,) and 0 < weights.min() and weights.max() <= 1
            edge = 1 / (overlap + 1)
            assert torch.isclose(weights[0], torch.tensor(edge if start > 0 else 1.0))
            assert torch.isclose(weights[-1], torch.tensor(edge if end < frames else 1.0))
            assert (weights[overlap:len(weights) - overlap] == 1).all()  # away from the overlaps
            if start > 0:  # rises from the left neighbour
                rising = weights[:min(overlap, len(weights)) // 2 + 1]
                assert (rising[1:] >= rising[:-1]).all()
            weight_sum[start:end] += weights
        assert weight_sum.min() > 0


def test_uniform_windows_step_by_window_minus_overlap_and_wrap_only_in_a_closed_loop():
    for frames, window, overlap in CASES:
        if frames <= window:
            continue
        closed = fw.uniform_windows(frames, window, overlap=overlap)
        assert [w[0] for w in closed] == list(range(0, frames, window - overlap))
        assert all(w == [i % frames for i in range(w[0], w[0] + window)] for w in closed)
        opened = fw.uniform_windows(frames, window, overlap=overlap, closed_loop=False)
        assert opened == closed[:len(opened)] and all(w[0] < frames - overlap for w in opened)


def test_uniform_stride_adds_levels_over_every_2nd_4th_frame_up_to_the_clip_length():
    windows = fw.uniform_windows(40, 8, stride=8, overlap=0)  # 40 / 8 frames: ceil(log2(5)) + 1 = 4 levels
    steps = sorted({w[1] - w[0] for w in windows})
    assert steps == [1, 2, 4, 8]
    assert all(w[1] - w[0] == w[-1] - w[-2] for w in windows)
    with pytest.raises(ValueError):
        fw.uniform_windows(30, 8, overlap=8)


def test_frame_tiles_hold_frame_zero_then_consecutive_frames_and_end_at_the_last_frame():
    for frames, size, overlap in CASES:
        if size < 2:
            continue
        tiles = fw.frame_tiles(frames, size, overlap)
        assert all(tile[0] == 0 for tile in tiles)
        assert all(tile[1:] == list(range(tile[1], tile[1] + len(tile) - 1)) for tile in tiles if len(tile) > 1)
        assert tiles[-1][-1] == frames - 1
        starts = [tile[1] for tile in tiles[:-1] if len(tile) > 1]
        assert all(b - a == size - overlap for a, b in zip(starts, starts[1:]))
    with pytest.raises(InputError, match="tile_overlap"):
        fw.frame_tiles(20, 8, 0)
    with pytest.raises(InputError, match="tile_size"):
        fw.frame_tiles(20, 1, 0)
    assert fw.tile_length(16, 5) == 5 and fw.tile_length(16, 40) == 16


def test_tile_weights_are_a_symmetric_triangle_peaking_in_the_middle():
    for length in range(1, 20):
        weights = fw.tile_weights(list(range(length)), length, 0)
        assert torch.allclose(weights, weights.flip(0)) and 0 < weights.min() and weights.max() <= 1
        assert torch.allclose(weights[0], torch.tensor(1 / length))
        half = weights[: (length + 1) // 2]
        assert (half[1:] > half[:-1]).all()


def test_equal_weights_average_the_uniform_windows():
    assert torch.equal(fw.equal_weights([3, 4, 0], 5, 1), torch.ones(3))


@pytest.mark.parametrize("name", fw.WINDOW_SCHEDULES)
@pytest.mark.parametrize("frame_dim", (1, 2))
def test_window_blend_is_the_weighted_average_of_every_window_holding_a_frame(name, frame_dim):
    schedule = fw.WINDOW_SCHEDULES[name]
    frames, size, overlap = 11, 4, 2
    shape = [2, 3, 3, 5, 5]
    shape[frame_dim] = frames
    blend = fw.WindowBlend(torch.zeros(shape), frame_dim)
    generator = torch.Generator().manual_seed(0)
    added = []  # (window, prediction, weights)
    for window in schedule.windows(frames, size, overlap):
        window_shape = list(shape)
        window_shape[frame_dim] = len(window)
        prediction = torch.randn(window_shape, generator=generator)
        weights = schedule.weights(window, frames, overlap)
        blend.add(window, prediction, weights)
        added.append((window, prediction, weights))
    average = blend.average()
    for frame in range(frames):
        parts = [(p.select(frame_dim, w.index(frame)), wt[w.index(frame)]) for w, p, wt in added if frame in w]
        expected = sum(wt * p for p, wt in parts) / sum(wt for _, wt in parts)
        torch.testing.assert_close(average.select(frame_dim, frame), expected)
    assert blend.weight_sum.min() > 0


def test_the_references_own_layouts():
    """The layouts the references document: Moore-AnimateAnyone's uniform schedule, StableAnimator's tiles."""
    assert fw.uniform_windows(64, 24, overlap=4) == [list(range(0, 24)), list(range(20, 44)), list(range(40, 64)),
                                                     list(range(60, 64)) + list(range(0, 20))]
    assert fw.uniform_windows(7, 4, overlap=1) == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 0, 1, 2]]
    assert fw.uniform_windows(7, 4, overlap=1, closed_loop=False) == [[0, 1, 2, 3], [3, 4, 5, 6]]
    strided = fw.uniform_windows(40, 16, overlap=0, stride=4)  # levels capped at ceil(log2(40/16)) + 1 = 3
    assert [w[1] - w[0] for w in strided] == [1] * 3 + [2] * 2 + [4]
    assert fw.frame_tiles(40, 16, 4)[:3] == [[0, *range(1, 16)], [0, *range(13, 28)], [0, *range(25, 40)]]
    assert torch.allclose(fw.tile_weights([0, 1, 2, 3], 10, 2), torch.tensor([0.25, 0.75, 0.75, 0.25]))
