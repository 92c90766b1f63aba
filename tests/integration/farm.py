"""Tiny random-weight models and small input files, laid out as a user's ComfyUI has them.

``build_models(models_dir, svd_configs)`` writes every model family the example workflows load, in the
official file layouts, under the file names the workflows select (from ``tests/tiny_models``);
``build_inputs(input_dir)`` writes the photos and videos they name (drawn so the tiny DWPose and face
graphs find a person and a face in them).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from tiny_models import aniclipart_t2v as tiny_t2v
from tiny_models import animate_anyone as tiny_aa
from tiny_models import easyanimate as tiny_ea
from tiny_models import pose as tiny_pose
from tiny_models import save_weights, seeded
from tiny_models import stable_animator as tiny_sa
from tiny_models import svd as tiny_svd

SHARED_PHOTO = Path(__file__).resolve().parents[3] / "shared" / "data" / "photos" / "turn-live-photos-test2.jpg"


def write_svd_xt(path: Path, config_root: Path) -> Path:
    """``svd_xt.safetensors`` for both SVD and StableAnimator: StableAnimator's tiny base (temporal VAE,
    64-wide CLIP projection) with an SVD UNet whose cross-attention takes that projection, as one sgm file;
    its tiny configs go to ``<config_root>/svd_xt/``."""
    from diffusers import UNetSpatioTemporalConditionModel

    base = tiny_sa.build_svd_base()
    unet_config = {**tiny_svd.UNET_CONFIG, "cross_attention_dim": tiny_sa.CLIP_PROJECTION_DIM}
    seeded(3)
    unet = UNetSpatioTemporalConditionModel.from_config(unet_config)
    with torch.no_grad():  # no zero-initialised output layers: every path changes the frames
        for parameter in unet.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
    vae_config = {"_class_name": "AutoencoderKLTemporalDecoder",
                  **{k: v for k, v in base["vae"].config.items() if not k.startswith("_")}}
    encoder_config = base["image_encoder"].config.to_dict()
    modules = {**base, "unet": unet, "first_stage_encoder": copy.deepcopy(base["vae"].encoder)}  # no shared tensors
    state = tiny_svd.single_file_state_dict(modules, unet_config=unet_config, vae_config=vae_config,
                                            image_encoder_config=encoder_config)
    save_weights(state, path)
    tiny_svd.save_config_dir(Path(config_root) / "svd_xt", unet=unet_config, vae=vae_config,
                             image_encoder=encoder_config, scheduler=tiny_sa.SCHEDULER_CONFIG)
    return Path(path)


def write_animate_anyone(folder: Path) -> None:
    """The released layout (four .pth, image_encoder/, sd-vae-ft-mse/ with the .bin the workflow picks)."""
    tiny_aa.make_release(folder)
    vae = folder / "sd-vae-ft-mse"
    from safetensors.torch import load_file

    torch.save(load_file(str(vae / "diffusion_pytorch_model.safetensors")), vae / "diffusion_pytorch_model.bin")
    (vae / "diffusion_pytorch_model.safetensors").unlink()


def write_easyanimate_v1(models: Path) -> None:
    """PixArt folder + motion module in models/easyanimate, the portrait LoRA in models/loras."""
    from transformers import T5EncoderModel

    release = tiny_ea.write_v1(models / "easyanimate")
    text_encoder = T5EncoderModel.from_pretrained(str(release.base / "text_encoder"))
    layers = tiny_ea.v1_lora_layers(tiny_ea.v1_transformer(), text_encoder)
    tiny_ea.write_lora(models / "loras" / "easyanimate_portrait_lora.safetensors", layers)


def build_models(models: Path, svd_configs: Path) -> None:
    models, svd_configs = Path(models), Path(svd_configs)
    write_svd_xt(models / "checkpoints" / "svd_xt.safetensors", svd_configs)
    tiny_pose.build_dwpose(models / "dwpose")
    tiny_pose.build_face_pack(models / "insightface" / "antelopev2")
    write_animate_anyone(models / "animate_anyone")
    tiny_sa.write_weights(models / "stable_animator")
    write_easyanimate_v1(models)
    tiny_ea.write_v51(models / "easyanimate" / "EasyAnimateV5.1-7b-zh-diffusers")
    tiny_t2v.build_t2v_folder(models / "diffusers" / "text-to-video-ms-1.7b")


# ----------------------------------------------------------------------------- inputs


def _scene(width: int, height: int, box: tuple[int, int, int, int]) -> np.ndarray:
    frame = np.full((height, width, 3), 50, np.uint8)
    tiny_pose.draw_face(frame, *box)  # bright channel 0: the tiny person and face detectors see it
    return frame


def _moving(width: int, height: int, frames: int) -> np.ndarray:
    return np.stack([_scene(width, height, (20 + 2 * i, 16 + i, 60 + 2 * i, 100 + i)) for i in range(frames)])


def _photo(path: Path) -> None:
    from PIL import Image

    if SHARED_PHOTO.is_file():
        with Image.open(SHARED_PHOTO) as image:
            image.convert("RGB").resize((128, 96)).save(path, quality=90)
    else:
        Image.fromarray(_scene(128, 96, (40, 20, 80, 80))).save(path, quality=90)


def build_inputs(inputs: Path) -> None:
    from PIL import Image

    from comfyui_animate_suite.core.video import write_video

    inputs = Path(inputs)
    inputs.mkdir(parents=True, exist_ok=True)
    _photo(inputs / "photo.jpg")
    Image.fromarray(_scene(96, 128, (24, 16, 72, 112))).save(inputs / "reference.png")
    for name in ("dance.mp4", "driving_video.mp4", "your_video.mp4"):
        write_video(_moving(96, 128, 8), inputs / name, fps=8.0, quality=90)



def _write_t2v(models: Path) -> None:
    tiny_t2v.build_t2v_folder(models / "diffusers" / "text-to-video-ms-1.7b")


# What each loader family needs, for tests that load one family at a time.
FAMILY_BUILDERS = {
    "svd": lambda models: write_svd_xt(models / "checkpoints" / "svd_xt.safetensors", models.parent / "tiny_svd_configs"),
    "animate_anyone": lambda models: write_animate_anyone(models / "animate_anyone"),
    "stable_animator": lambda models: (tiny_sa.write_weights(models / "stable_animator"),
                                       write_svd_xt(models / "checkpoints" / "svd_xt.safetensors",
                                                    models.parent / "tiny_svd_configs")),
    "easyanimate_v1": write_easyanimate_v1,
    "easyanimate_v51": lambda models: tiny_ea.write_v51(models / "easyanimate" / "EasyAnimateV5.1-7b-zh-diffusers"),
    "t2v_prior": _write_t2v,
}


def build_family(name: str, models: Path) -> None:
    FAMILY_BUILDERS[name](Path(models))
