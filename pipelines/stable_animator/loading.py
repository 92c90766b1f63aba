"""Loading StableAnimator's released weights (``FrancisRing/StableAnimator``, folder ``Animation/``).

- ``unet.pth``: the full SVD-xt UNet state dict with StableAnimator's processors installed
  (``…attn2.processor.id_to_k/id_to_v`` keys). Its config is the SVD-xt UNet config shipped in
  ``configs/unet_config.json``; a ``unet_config.json`` next to ``unet.pth`` takes its place (for
  models trained at another size).
- ``pose_net.pth``: PoseNet, its width is the UNet's first block width.
- ``face_encoder.pth``: FusionFaceId; token width = the UNet's cross-attention width, CLIP width = the
  image encoder's projection width.
- ``glintr100_torch.pth`` (optional, for HJB face optimisation): ArcFace iresnet100; the block counts
  are read off the file, and its weights are used in float32 whatever they are stored in.
- the SVD-xt base (temporal VAE, CLIP image encoder, Euler scheduler settings) from any source the SVD
  loader reads (``pipelines.svd.loading``): a single ``svd_xt*.safetensors`` file or a diffusers folder
  (``vae/ image_encoder/ scheduler/``, e.g. the release's ``SVD/`` folder). StableAnimator replaces the
  whole UNet, so the base's UNet is never read.

Every file is read with ``weights_only=True`` and must fit its module exactly (no missing, unexpected
or mis-shaped keys). Modules are built on the ``meta`` device and take the file's tensors, so loading
the 6 GB UNet needs its size in memory once, not twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ...core import checkpoints
from ...core.errors import CheckpointError
from ..svd.loading import load_svd_components
from . import models_face, models_pose, models_unet

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
UNET_CONFIG_NAME = "unet_config.json"
ID_EMBEDDING_DIM = 512


@dataclass
class StableAnimatorFiles:
    unet: Path
    pose_net: Path
    face_encoder: Path
    face_embedder: Path | None = None  # glintr100_torch.pth; only HJB needs it
    svd_base: Path | None = None  # SVD-xt single file or diffusers folder, as the SVD loader takes


@dataclass
class StableAnimatorModels:
    unet: models_unet.StableAnimatorUNet
    pose_net: models_pose.PoseNet
    face_encoder: models_face.FusionFaceId
    image_encoder: torch.nn.Module
    vae: torch.nn.Module
    scheduler_config: dict
    face_embedder: models_face.IResNet | None = None

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.conv_in.weight.dtype


def unet_config(unet_path: str | Path) -> dict:
    """The UNet config: ``unet_config.json`` beside the weights if present, else SVD-xt's."""
    beside = Path(unet_path).with_name(UNET_CONFIG_NAME)
    return json.loads((beside if beside.is_file() else CONFIG_DIR / UNET_CONFIG_NAME).read_text())


def load_strict(build: Callable[[dict], torch.nn.Module], path: str | Path, model_name: str,
                dtype: torch.dtype) -> torch.nn.Module:
    """Build a module on ``meta`` from the file's state dict, check every key, and adopt the file's tensors."""
    state_dict = checkpoints.load_state_dict(path)
    with torch.device("meta"):
        module = build(state_dict)
    checkpoints.check_keys(module, {k: tuple(v.shape) for k, v in state_dict.items()}, str(path), model_name)
    module.load_state_dict(state_dict, strict=True, assign=True)
    del state_dict  # the module now holds the only reference, so the dtype conversion below frees as it goes
    if any(t.is_meta for t in (*module.parameters(), *module.buffers())):
        raise CheckpointError(f"'{path}' left part of {model_name} without weights.")
    return module.to(dtype).eval().requires_grad_(False)


def load_unet(path: str | Path, dtype: torch.dtype = torch.float32) -> models_unet.StableAnimatorUNet:
    config = unet_config(path)
    return load_strict(lambda _sd: models_unet.build_unet(config), path, "the StableAnimator UNet (unet.pth)", dtype)


def load_pose_net(path: str | Path, channels: int, dtype: torch.dtype = torch.float32) -> models_pose.PoseNet:
    return load_strict(lambda _sd: models_pose.PoseNet(channels), path, "StableAnimator's PoseNet (pose_net.pth)", dtype)


def load_face_encoder(path: str | Path, token_dim: int, clip_dim: int,
                      dtype: torch.dtype = torch.float32) -> models_face.FusionFaceId:
    def build(_sd):
        return models_face.FusionFaceId(token_dim, ID_EMBEDDING_DIM, clip_dim, models_unet.FACE_TOKENS)

    return load_strict(build, path, "StableAnimator's face encoder (face_encoder.pth)", dtype)


def load_face_embedder(path: str | Path) -> models_face.IResNet:
    """The ArcFace IResNet, always float32 (HJB runs in float32 as the reference does)."""
    def build(state_dict):
        features = state_dict["fc.weight"].shape[0] if "fc.weight" in state_dict else ID_EMBEDDING_DIM
        return models_face.IResNet(models_face.iresnet_blocks(state_dict), features)

    return load_strict(build, path, "the ArcFace face embedder (glintr100_torch.pth)", torch.float32)


def load_stable_animator(files: StableAnimatorFiles, dtype: torch.dtype = torch.float32) -> StableAnimatorModels:
    """All StableAnimator modules on CPU, eval mode, no grad. The VAE and face embedder stay float32."""
    if files.svd_base is None:
        raise CheckpointError("StableAnimator needs the SVD-xt base (svd_xt.safetensors or a diffusers folder).")
    base = load_svd_components(files.svd_base, dtype, which=("image_encoder", "vae"), vae_dtype=torch.float32)
    if type(base.vae).__name__ != "AutoencoderKLTemporalDecoder":
        raise CheckpointError(f"'{files.svd_base}' holds SVD's frame-by-frame image decoder; StableAnimator decodes "
                              "with SVD-xt's temporal VAE (svd_xt.safetensors or svd_xt_1_1.safetensors).")
    unet = load_unet(files.unet, dtype)
    return StableAnimatorModels(
        unet=unet,
        pose_net=load_pose_net(files.pose_net, unet.config.block_out_channels[0], dtype),
        face_encoder=load_face_encoder(files.face_encoder, unet.config.cross_attention_dim,
                                       base.image_encoder.config.projection_dim, dtype),
        image_encoder=base.image_encoder,
        vae=base.vae,
        scheduler_config=base.scheduler_config,
        face_embedder=load_face_embedder(files.face_embedder) if files.face_embedder else None,
    )
