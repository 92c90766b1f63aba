"""One latent preview for every method (core/latent_preview.py): which frame, which colours."""

import numpy as np
import pytest
import torch

from comfyui_animate_suite.core.latent_preview import SD_LATENT_RGB, latent_frame_rgb, latent_preview


def _marked_video(frames=5, channels=4):
    """[1, F, C, h, w] latents, zero except the middle frame, which is one latent colour."""
    latents = torch.zeros(1, frames, channels, 3, 2)
    latents[0, frames // 2, 0] = 1.0
    return latents


def test_the_middle_frame_is_shown_in_either_layout():
    video = _marked_video()
    expected = latent_frame_rgb(video[0, 2])
    assert not torch.equal(expected, latent_frame_rgb(video[0, 0]))
    for frame_dim, latents in ((1, video), (2, video.transpose(1, 2))):
        assert np.array_equal(np.asarray(latent_preview(latents, frame_dim)), expected.numpy())
    with pytest.raises(ValueError, match="frame_dim"):
        latent_preview(video, 3)


def test_sd_latents_map_linearly_to_rgb_around_grey():
    assert (latent_frame_rgb(torch.zeros(4, 2, 2)) == 128).all()  # (0 + 1) / 2 of 255, rounded
    rgb = latent_frame_rgb(_marked_video()[0, 2]).float() / 255
    assert torch.allclose(rgb[0, 0], ((SD_LATENT_RGB[0] + 1) / 2).clamp(0, 1), atol=0.5 / 255)
    assert latent_frame_rgb(torch.full((4, 1, 1), 1e3)).dtype == torch.uint8  # clamped, not wrapped


def test_normalized_format_stretches_each_of_the_first_three_channels():
    frame = torch.randn(16, 4, 5) * 7 + 3
    rgb = latent_frame_rgb(frame, "normalized")
    assert rgb.shape == (4, 5, 3) and rgb.dtype == torch.uint8
    assert (rgb.amin(dim=(0, 1)) == 0).all() and (rgb.amax(dim=(0, 1)) == 255).all()
    in_order = rgb[..., 1].flatten()[frame[1].flatten().argsort()]
    assert (in_order[1:] >= in_order[:-1]).all()  # a monotone stretch
    with pytest.raises(ValueError, match="unknown"):
        latent_frame_rgb(frame, "flux")
