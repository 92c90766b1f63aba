"""Frame conversions and resizing shared by every method.

Frames follow ComfyUI's IMAGE layout: float32 tensors ``[N, H, W, C]`` in 0..1, C = 3.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InputError

RESIZE_MODES = ("crop", "pad", "stretch")
MAX_SIDE = 8192
# The normalisation of OpenAI CLIP image encoders (and of the image encoders trained from them).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def check_image_batch(images: torch.Tensor, input_name: str = "images", allow_empty: bool = False) -> torch.Tensor:
    """Validate an IMAGE batch; grey becomes RGB, alpha is dropped (composited on nothing)."""
    if not isinstance(images, torch.Tensor):
        raise InputError(input_name, f"got {type(images).__name__}", "an IMAGE batch (tensor [N,H,W,C])")
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4:
        raise InputError(input_name, f"has shape {tuple(images.shape)}", "an IMAGE batch [N,H,W,C]")
    if images.shape[0] == 0 and not allow_empty:
        raise InputError(input_name, "is an empty batch (0 frames)", "at least one frame")
    channels = images.shape[-1]
    if channels == 1:
        images = images.expand(*images.shape[:-1], 3)
    elif channels == 4:
        images = images[..., :3]
    elif channels != 3:
        raise InputError(input_name, f"has {channels} channels", "1 (grey), 3 (RGB) or 4 (RGBA)")
    height, width = images.shape[1:3]
    if max(height, width) > MAX_SIDE:
        raise InputError(input_name, f"is {width}x{height}", f"at most {MAX_SIDE} pixels per side; resize it first")
    if images.is_floating_point() and not bool(torch.isfinite(images).all()):
        raise InputError(input_name, "has NaN or infinite pixel values", "finite values in 0..1 (check the node that made them)")
    return images.float()


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """IMAGE batch -> uint8 numpy ``[N,H,W,3]``."""
    return (images.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).cpu().numpy()


def from_uint8(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``[N,H,W,3]`` (or one ``[H,W,3]``) -> IMAGE batch."""
    array = np.asarray(frames)
    if array.ndim == 3:
        array = array[None]
    return torch.from_numpy(np.ascontiguousarray(array)).float().div_(255.0)


def open_image(path, input_name: str):
    """A fully decoded RGB PIL image, or an InputError naming ``input_name`` when the file is not one."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        reason = "it is not an image PIL can read" if isinstance(error, UnidentifiedImageError) else "it is damaged or cut short"
        raise InputError(input_name, f"'{Path(path).name}' cannot be decoded ({reason})", "a complete PNG/JPEG/WebP image") from None


def pil_to_uint8(image) -> np.ndarray:
    """A PIL image -> uint8 ``[H,W,3]``; alpha is composited on black, grey expanded."""
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        background = np.zeros((image.height, image.width, 3), np.float32)
        rgba = np.asarray(image, np.float32) / 255.0
        rgb = rgba[..., :3] * rgba[..., 3:] + background * (1 - rgba[..., 3:])
        return (rgb * 255.0).round().astype(np.uint8)
    return np.asarray(image.convert("RGB"))


def fit_size(width: int, height: int, target_width: int, target_height: int, mode: str) -> tuple[int, int, int, int]:
    """For ``mode`` crop/pad: the scaled size (w, h) and the offsets (x, y) of the target inside it."""
    if mode == "stretch":
        return target_width, target_height, 0, 0
    scale_w, scale_h = target_width / width, target_height / height
    scale = max(scale_w, scale_h) if mode == "crop" else min(scale_w, scale_h)
    scaled_w, scaled_h = max(1, round(width * scale)), max(1, round(height * scale))
    return scaled_w, scaled_h, (scaled_w - target_width) // 2, (scaled_h - target_height) // 2


def resize_batch(images: torch.Tensor, width: int, height: int, mode: str = "crop") -> torch.Tensor:
    """Resize an IMAGE batch to exactly ``width`` x ``height``.

    crop: scale to cover, centre-crop; pad: scale to fit, pad with black; stretch: ignore aspect.
    """
    if mode not in RESIZE_MODES:
        raise InputError("resize_mode", f"'{mode}' is unknown", "one of " + ", ".join(RESIZE_MODES))
    if width <= 0 or height <= 0:
        raise InputError("width/height", f"{width}x{height}", "positive sizes")
    n, h, w, c = images.shape
    if (w, h) == (width, height):
        return images
    scaled_w, scaled_h, x, y = fit_size(w, h, width, height, mode)
    chw = images.permute(0, 3, 1, 2)
    antialias = scaled_w < w or scaled_h < h
    scaled = F.interpolate(chw, size=(scaled_h, scaled_w), mode="bilinear", align_corners=False, antialias=antialias)
    if mode == "crop":
        scaled = scaled[:, :, y:y + height, x:x + width]
    elif mode == "pad":
        canvas = scaled.new_zeros((n, c, height, width))
        canvas[:, :, -y:-y + scaled_h, -x:-x + scaled_w] = scaled
        scaled = canvas
    return scaled.clamp(0, 1).permute(0, 2, 3, 1).contiguous()


def frame_resizer(width: int, height: int, mode: str = "crop") -> Callable[[np.ndarray], np.ndarray] | None:
    """A resize of one uint8 frame ``[H,W,3]`` to ``width`` x ``height`` (``resize_batch``), for decoders that
    resize frame by frame; a side of 0 follows the frame's aspect; None when both are 0 (keep the size)."""
    if not width and not height:
        return None

    def resize(frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        target_w = width or max(1, round(w * height / h))
        target_h = height or max(1, round(h * width / w))
        return to_uint8(resize_batch(from_uint8(frame), target_w, target_h, mode))[0]

    return resize


def round_to_multiple(value: int, multiple: int) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)
