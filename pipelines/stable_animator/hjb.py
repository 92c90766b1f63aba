"""HJB-based face optimisation: refine the predicted clean latents so decoded faces keep the identity.

At each refined denoising step the predicted x0 is optimised with Adam (a fresh optimiser per step,
learning rate ``eta * (1 - step / steps)``) against a face loss: decode x0 with the VAE, crop each
frame's face box, resize it to 112x112, embed it with ArcFace and take ``mean |1 - cos(embedding,
reference embedding)|`` over the frames. The Euler step then continues from the refined x0. All of
it runs in float32, as the reference does.

Memory: the decoder mixes frames only within a decode chunk and the embedder treats crops one by
one, so the loss is a sum of per-chunk terms; each chunk is decoded, embedded and back-propagated on
its own (with the decoder's gradient checkpointing on), which gives the same gradient as one big
backward pass at a fraction of the memory.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ...core.errors import InputError
from .models_face import FACE_CROP_SIZE

Box = tuple[int, int, int, int]  # y_min, y_max, x_min, x_max, inclusive
MASK_THRESHOLD = 0.5
ASPECT_TOLERANCE = 0.02


@dataclass
class FaceOptimization:
    """HJB settings; steps are 0-based and both ends are refined."""

    enabled: bool = True
    start_step: int = 0
    end_step: int = 20
    iterations: int = 3
    learning_rate: float = 0.1  # eta: step i uses eta * (1 - i / steps)

    def refines(self, step: int) -> bool:
        return self.enabled and self.start_step <= step <= self.end_step

    def step_learning_rate(self, step: int, steps: int) -> float:
        return self.learning_rate * (1.0 - step / steps)


def face_box(mask: torch.Tensor) -> Box | None:
    """Bounding box of the mask's face pixels (value > 0.5), or None for an empty mask."""
    ys, xs = torch.where(mask > MASK_THRESHOLD)
    if ys.numel() == 0:
        return None
    return int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())


def scale_box(box: Box, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> Box:
    """The same region on an image of size ``to_hw`` (pixel edges scaled, inclusive indices kept)."""
    if from_hw == to_hw:
        return box
    sy, sx = to_hw[0] / from_hw[0], to_hw[1] / from_hw[1]
    y0, y1, x0, x1 = box
    return (int(y0 * sy), max(int(y0 * sy), round((y1 + 1) * sy) - 1),
            int(x0 * sx), max(int(x0 * sx), round((x1 + 1) * sx) - 1))


def aspect_differs(a_hw: tuple[int, int], b_hw: tuple[int, int]) -> bool:
    return abs((a_hw[1] / a_hw[0]) / (b_hw[1] / b_hw[0]) - 1) > ASPECT_TOLERANCE


def check_same_aspect(input_name: str, size_hw: tuple[int, int], other_hw: tuple[int, int], other_name: str) -> None:
    if aspect_differs(size_hw, other_hw):
        raise InputError(input_name, f"is {size_hw[1]}x{size_hw[0]} but {other_name} is {other_hw[1]}x{other_hw[0]}",
                         f"masks drawn on {other_name} (the same aspect ratio; they are scaled to fit)")


def mask_boxes(masks: torch.Tensor, input_name: str, canvas_hw: tuple[int, int], canvas_name: str,
               target_hw: tuple[int, int]) -> list[Box | None]:
    """Per mask: its face box on a ``target_hw`` image (None where the mask is empty).

    ``masks`` [N, h, w] are drawn on a canvas of ``canvas_hw`` (same aspect, any size).
    """
    check_same_aspect(input_name, tuple(masks.shape[-2:]), canvas_hw, canvas_name)
    boxes = []
    for mask in masks:
        box = face_box(mask)
        boxes.append(None if box is None else scale_box(box, tuple(mask.shape), target_hw))
    return boxes


def crop_faces(images: torch.Tensor, boxes: Sequence[Box]) -> torch.Tensor:
    """[N, 3, H, W] in [-1, 1] -> the boxed faces bilinearly resized to [N, 3, 112, 112]."""
    crops = [F.interpolate(image[None, :, y0:y1 + 1, x0:x1 + 1], size=(FACE_CROP_SIZE, FACE_CROP_SIZE),
                           mode="bilinear", align_corners=False)
             for image, (y0, y1, x0, x1) in zip(images, boxes)]
    return torch.cat(crops)


def reference_face_embedding(embedder: torch.nn.Module, reference: torch.Tensor, box: Box) -> torch.Tensor:
    """ArcFace embedding [1, 512] of the reference's face; ``reference`` is [1, 3, H, W] in 0..1."""
    image = (reference.float().to(next(embedder.parameters()).device) - 0.5) / 0.5
    with torch.no_grad():
        return embedder(crop_faces(image, [box]))


def _to_signed_unit_range(frames: torch.Tensor) -> torch.Tensor:
    """Decoder output -> the clamped [-1, 1] frames the reference feeds to the embedder."""
    frames = (frames / 2 + 0.5).clamp(0, 1)
    frames = (frames * 255).clamp(0, 255)
    return (frames / 255 - 0.5) / 0.5


class FaceIdentityLoss:
    """``mean |1 - cos(ArcFace(face crop of decode(x0)), reference)|`` over the frames that have a face box."""

    def __init__(self, vae, embedder, boxes: Sequence[Box | None], reference_embedding: torch.Tensor,
                 decode_chunk_size: int, check_interrupt: Callable[[], None] = lambda: None):
        self.vae = vae
        self.embedder = embedder
        self.boxes = list(boxes)
        self.frames_with_face = [i for i, box in enumerate(self.boxes) if box is not None]
        self.reference_embedding = reference_embedding
        self.decode_chunk_size = decode_chunk_size
        self.check_interrupt = check_interrupt

    def backward(self, z0: torch.Tensor) -> float:
        """The loss at ``z0`` [1, F, 4, h, w]; its gradient is accumulated into ``z0.grad``."""
        latents = z0.flatten(0, 1)
        count = len(self.frames_with_face)
        reference_embedding = self.reference_embedding
        if reference_embedding.is_inference():  # made under inference mode: an ordinary copy can enter autograd
            reference_embedding = reference_embedding.clone()
        total = 0.0
        for start in range(0, latents.shape[0], self.decode_chunk_size):
            self.check_interrupt()
            chunk = range(start, min(start + self.decode_chunk_size, latents.shape[0]))
            faces = [i for i in chunk if self.boxes[i] is not None]
            if not faces:
                continue
            frames = self.vae.decode(latents[chunk.start:chunk.stop] * (1 / self.vae.config.scaling_factor),
                                     num_frames=len(chunk)).sample
            frames = _to_signed_unit_range(frames.float())
            crops = crop_faces(frames[[i - chunk.start for i in faces]], [self.boxes[i] for i in faces])
            embeddings = self.embedder(crops)
            reference = reference_embedding.expand(len(faces), -1)
            loss = (1 - F.cosine_similarity(embeddings, reference, dim=1)).abs().sum() / count
            loss.backward()
            total += float(loss.detach())
        return total


def refine_x0(x0: torch.Tensor, loss: Callable[[torch.Tensor], float], learning_rate: float, iterations: int,
              on_iteration: Callable[[int, float], None] = lambda i, value: None) -> torch.Tensor:
    """``iterations`` Adam steps (torch defaults) on a float32 copy of ``x0`` against ``loss``.

    ``loss(z)`` returns the loss value and accumulates its gradient into ``z.grad``.
    """
    z0 = x0.detach().float().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([z0], lr=learning_rate)
    for iteration in range(iterations):
        optimizer.zero_grad()
        on_iteration(iteration, loss(z0))
        optimizer.step()
    return z0.detach()


@contextlib.contextmanager
def autograd_enabled(*modules: torch.nn.Module):
    """Gradients through ``modules`` even inside ``torch.inference_mode`` (how ComfyUI runs nodes).

    Weights created or moved under inference mode cannot take part in a backward pass; for the
    duration they are replaced by ordinary copies, and the VAE decoder recomputes activations
    (gradient checkpointing) instead of keeping them.
    """
    swapped: list[tuple[torch.nn.Module, str, dict, torch.Tensor]] = []
    checkpointed = []
    with torch.inference_mode(False), torch.enable_grad():
        try:
            for module in modules:
                for owner in module.modules():
                    for store in (owner._parameters, owner._buffers):
                        for name, tensor in store.items():
                            if tensor is not None and tensor.is_inference():
                                swapped.append((owner, name, store, tensor))
                                copy = tensor.clone()
                                store[name] = torch.nn.Parameter(copy, requires_grad=False) if store is owner._parameters else copy
                decoder = getattr(module, "decoder", None)
                if decoder is not None and hasattr(decoder, "gradient_checkpointing") and not decoder.gradient_checkpointing:
                    module.enable_gradient_checkpointing()
                    checkpointed.append(module)
            yield
        finally:
            for owner, name, store, tensor in swapped:
                store[name] = tensor
            for module in checkpointed:
                module.disable_gradient_checkpointing()
