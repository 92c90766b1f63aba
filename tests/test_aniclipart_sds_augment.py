"""Frame augmentation without torchvision: perspective warp with white fill, then a square resized crop."""

from __future__ import annotations

import torch

from comfyui_animate_suite.pipelines.aniclipart import augment


def _dot_image(size=32, x=3, y=4):
    image = torch.ones(1, 3, size, size)
    image[..., y, x] = 0.0
    return image


def _darkest(image):
    flat = image[0, 0].argmin()
    return (flat % image.shape[-1]).item(), (flat // image.shape[-1]).item()


def test_homography_maps_the_four_corners():
    source = [[0, 0], [31, 0], [31, 31], [0, 31]]
    moved = [[4, 2], [27, 6], [30, 29], [1, 25]]
    matrix = augment.homography(source, moved)
    for (x, y), (u, v) in zip(source, moved):
        point = matrix @ torch.tensor([x, y, 1.0], dtype=torch.float64)
        assert torch.allclose(point[:2] / point[2], torch.tensor([u, v], dtype=torch.float64), atol=1e-9)


def test_identity_warp_and_full_crop_leave_frames_unchanged():
    frames = torch.rand(3, 3, 32, 32)
    corners = [[0, 0], [31, 0], [31, 31], [0, 31]]
    assert torch.allclose(augment.warp_perspective(frames, corners, corners), frames, atol=1e-5)
    assert torch.allclose(augment.resized_crop(frames, (0, 0, 32, 32)), frames, atol=1e-6)
    no_distortion = augment.FrameAugmentation(distortion=0.0, crop_scale=(1.0, 1.0))
    assert torch.allclose(no_distortion(frames, torch.Generator().manual_seed(0)), frames, atol=1e-5)


def test_perspective_moves_content_with_the_corner_and_fills_white():
    source = [[0, 0], [31, 0], [31, 31], [0, 31]]
    moved = [[8, 8], [31, 0], [31, 31], [0, 31]]  # only the top-left corner moves inwards
    image = _dot_image(x=0, y=0)
    image[..., 0, 1] = 0.0
    warped = augment.warp_perspective(image, source, moved)
    x, y = _darkest(warped)
    assert 6 <= x <= 10 and 6 <= y <= 10
    assert torch.allclose(warped[..., 0, 0], torch.ones(3), atol=1e-6)  # uncovered corner is white
    white = augment.warp_perspective(torch.ones(1, 3, 32, 32), source, moved)
    assert torch.allclose(white, torch.ones_like(white), atol=1e-5)  # no seam along the warped border


def test_crop_boxes_stay_inside_and_cover_the_scale():
    generator = torch.Generator().manual_seed(1)
    for _ in range(200):
        top, left, height, width = augment.random_crop_box(64, 64, (0.4, 1.0), (1.0, 1.0), generator)
        assert height == width and 0 <= top <= 64 - height and 0 <= left <= 64 - width
        assert 0.4 * 64 * 64 - 2 * 64 <= height * width <= 64 * 64


def test_random_corners_stay_within_the_distortion():
    generator = torch.Generator().manual_seed(2)
    for _ in range(100):
        source, moved = augment.random_perspective_corners(64, 48, 0.5, generator)
        assert source == [[0, 0], [63, 0], [63, 47], [0, 47]]
        for (sx, sy), (mx, my) in zip(source, moved):
            assert abs(sx - mx) <= 16 + 1 and abs(sy - my) <= 12 + 1


def test_one_draw_for_all_frames_and_gradients_flow():
    frame = torch.rand(1, 3, 32, 32)
    frames = torch.cat([frame, frame, torch.rand(1, 3, 32, 32)]).requires_grad_(True)
    out = augment.FrameAugmentation()(frames, torch.Generator().manual_seed(5))
    assert out.shape == frames.shape
    assert torch.equal(out[0], out[1]) and not torch.equal(out[0], out[2])
    out.sum().backward()
    assert frames.grad.abs().sum() > 0
    same = augment.FrameAugmentation()(frames.detach(), torch.Generator().manual_seed(5))
    assert torch.equal(same, out.detach())
