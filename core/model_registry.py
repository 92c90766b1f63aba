"""Which model files each method needs, in which ComfyUI model folders, and where they are published.

This table is data only (no torch, no file access at import). ``find`` and ``report`` look files up
through a ``ModelLocator``: inside ComfyUI that is ``folder_paths`` (so ``extra_model_paths.yaml``
works), from the CLI it is a plain ``models/`` directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Protocol

from .checkpoints import WEIGHT_SUFFIXES
from .errors import ModelNotFoundError

ONNX_SUFFIXES = (".onnx",)

# Folder keys the pack registers with ComfyUI, with the file suffixes listed in them.
# Standard ComfyUI folders (checkpoints, vae, clip_vision, diffusers) are reused, not registered.
PACK_FOLDERS: dict[str, tuple[str, ...]] = {
    "animate_anyone": WEIGHT_SUFFIXES,
    "stable_animator": WEIGHT_SUFFIXES + ONNX_SUFFIXES,
    "easyanimate": WEIGHT_SUFFIXES,
    "dwpose": ONNX_SUFFIXES,
    "insightface": ONNX_SUFFIXES,
}

FILE = "file"
FOLDER = "folder"  # a directory of model files (a diffusers folder, an ONNX model pack)


@dataclass(frozen=True)
class ModelFile:
    """One file (or diffusers folder) a family needs, with every name it is accepted under."""

    role: str
    names: tuple[str, ...]
    folders: tuple[str, ...]
    kind: str = FILE
    required: bool = True
    note: str = ""

    @property
    def name(self) -> str:
        return self.names[0]


@dataclass(frozen=True)
class ModelFamily:
    key: str
    title: str
    source: str
    files: tuple[ModelFile, ...] = field(default_factory=tuple)

    def file(self, role: str) -> ModelFile:
        for item in self.files:
            if item.role == role:
                return item
        raise KeyError(f"{self.key} has no model file role '{role}'")


class ModelLocator(Protocol):
    def roots(self, folder_key: str) -> list[str]:
        """Absolute directories that hold ``folder_key`` models, in search order."""


class DirectoryLocator:
    """``<models_dir>/<folder_key>`` plus any extra directories per key (for the CLI and tests)."""

    def __init__(self, models_dir: str | os.PathLike, extra: dict[str, Iterable[str]] | None = None):
        self.models_dir = Path(models_dir)
        self.extra = {key: [str(p) for p in paths] for key, paths in (extra or {}).items()}

    def roots(self, folder_key: str) -> list[str]:
        return [str(self.models_dir / folder_key)] + self.extra.get(folder_key, [])


def _matches(path: Path, kind: str) -> bool:
    if kind == FOLDER:
        return path.is_dir() and any(child.is_file() or child.is_dir() for child in path.iterdir())
    return path.is_file()


def find(item: ModelFile, locator: ModelLocator) -> Path | None:
    """First match for ``item`` directly in a root or one sub-folder down (users group files)."""
    for folder_key in item.folders:
        for root in map(Path, locator.roots(folder_key)):
            if not root.is_dir():
                continue
            for name in item.names:
                if _matches(root / name, item.kind):
                    return root / name
            for sub in sorted(p for p in root.iterdir() if p.is_dir()):
                for name in item.names:
                    if _matches(sub / name, item.kind):
                        return sub / name
    return None


def searched_dirs(item: ModelFile, locator: ModelLocator) -> list[str]:
    return [root for key in item.folders for root in locator.roots(key)]


def require(family: ModelFamily, role: str, locator: ModelLocator) -> Path:
    """The path of ``family``'s ``role`` file, or a ``ModelNotFoundError`` saying where to put it."""
    item = family.file(role)
    path = find(item, locator)
    if path is None:
        names = " or ".join(f"'{n}'" for n in item.names)
        raise ModelNotFoundError(f"{family.title} ({item.role})", names, searched_dirs(item, locator), family.source)
    return path


def report(locator: ModelLocator, families: Iterable[ModelFamily] | None = None) -> list[dict]:
    """Per family and file: found path or the directories searched. Used by the ``models`` CLI."""
    rows = []
    for family in families if families is not None else FAMILIES:
        for item in family.files:
            path = find(item, locator)
            rows.append(
                {
                    "family": family.key,
                    "title": family.title,
                    "role": item.role,
                    "names": list(item.names),
                    "required": item.required,
                    "found": str(path) if path else None,
                    "searched": searched_dirs(item, locator),
                    "source": family.source,
                    "note": item.note,
                }
            )
    return rows


def _f(role, names, folders, kind=FILE, required=True, note=""):
    names = (names,) if isinstance(names, str) else tuple(names)
    folders = (folders,) if isinstance(folders, str) else tuple(folders)
    return ModelFile(role, names, folders, kind, required, note)


SVD = ModelFamily(
    "svd",
    "Stable Video Diffusion img2vid",
    "https://huggingface.co/stabilityai/stable-video-diffusion-img2vid-xt (also -img2vid, -img2vid-xt-1-1)",
    (
        _f(
            "checkpoint",
            ("svd_xt.safetensors", "svd_xt_1_1.safetensors", "svd.safetensors",
             "svd_xt_image_decoder.safetensors", "svd_image_decoder.safetensors",
             "svd_xt.fp16.safetensors", "svd.fp16.safetensors"),
            "checkpoints",
            note="single-file checkpoint; or a diffusers folder below",
        ),
        _f(
            "diffusers",
            ("stable-video-diffusion-img2vid-xt", "stable-video-diffusion-img2vid-xt-1-1",
             "stable-video-diffusion-img2vid"),
            "diffusers",
            FOLDER,
            required=False,
            note="diffusers folder with unet/ vae/ image_encoder/ scheduler/",
        ),
    ),
)

ANIMATE_ANYONE = ModelFamily(
    "animate_anyone",
    "AnimateAnyone (Moore-AnimateAnyone)",
    "https://huggingface.co/patrolli/AnimateAnyone (image encoder: lambdalabs/sd-image-variations-diffusers; "
    "VAE: stabilityai/sd-vae-ft-mse)",
    (
        _f("denoising_unet", "denoising_unet.pth", "animate_anyone"),
        _f("reference_unet", "reference_unet.pth", "animate_anyone"),
        _f("pose_guider", "pose_guider.pth", "animate_anyone"),
        _f("motion_module", "motion_module.pth", "animate_anyone"),
        _f("image_encoder", "image_encoder", ("animate_anyone", "clip_vision"), FOLDER,
           note="sd-image-variations-diffusers/image_encoder (CLIP ViT-L/14 with projection)"),
        _f("vae", ("sd-vae-ft-mse", "vae"), ("animate_anyone", "vae"), FOLDER),
    ),
)

STABLE_ANIMATOR = ModelFamily(
    "stable_animator",
    "StableAnimator",
    "https://huggingface.co/FrancisRing/StableAnimator (folder Animation/; SVD-xt base from the SVD family)",
    (
        _f("unet", "unet.pth", "stable_animator"),
        _f("pose_net", "pose_net.pth", "stable_animator"),
        _f("face_encoder", "face_encoder.pth", "stable_animator"),
        _f("face_recognition", "glintr100_torch.pth", "stable_animator",
           required=False, note="ArcFace iresnet100, only for HJB face optimisation"),
    ),
)

EASYANIMATE = ModelFamily(
    "easyanimate",
    "EasyAnimate",
    "https://pai-aigc-photog.oss-cn-hangzhou.aliyuncs.com/easyanimate/Motion_Module/easyanimate_v1_mm.safetensors "
    "(v1 motion module, listed in github.com/aigc-apps/EasyAnimate at 362521e), "
    "https://huggingface.co/PixArt-alpha/PixArt-XL-2-512x512 (v1 base, diffusers folder), "
    "https://huggingface.co/alibaba-pai/EasyAnimateV5.1-7b-zh-diffusers (v5.1)",
    (
        _f("v1_motion_module", "easyanimate_v1_mm.safetensors", "easyanimate"),
        _f("v1_base", ("PixArt-XL-2-512x512",), ("easyanimate", "diffusers"), FOLDER),
        _f("v5_1", ("EasyAnimateV5.1-7b-zh-diffusers", "EasyAnimateV5.1-12b-zh-diffusers"),
           ("easyanimate", "diffusers"), FOLDER, required=False),
    ),
)

# comfyui_controlnet_aux keeps these two files in custom_nodes/comfyui_controlnet_aux/ckpts/yzd-v/DWPose:
# point a `dwpose:` entry of extra_model_paths.yaml at that folder, or name it in the loader's model_dir.
_AUX_NOTE = "comfyui_controlnet_aux's copy: ckpts/yzd-v/DWPose (extra_model_paths.yaml `dwpose:` or the loader's model_dir)"
DWPOSE = ModelFamily(
    "dwpose",
    "DWPose (whole-body pose, ONNX)",
    "https://huggingface.co/yzd-v/DWPose",
    (
        _f("detector", "yolox_l.onnx", "dwpose", note=_AUX_NOTE),
        _f("pose", "dw-ll_ucoco_384.onnx", "dwpose", note=_AUX_NOTE),
    ),
)

INSIGHTFACE = ModelFamily(
    "insightface",
    "InsightFace face analysis (ONNX)",
    "https://github.com/deepinsight/insightface/releases (antelopev2 or buffalo_l model pack)",
    (
        _f("model_pack", ("antelopev2", "buffalo_l"), "insightface", FOLDER, note="unzipped model pack folder"),
    ),
)

MODELSCOPE_T2V = ModelFamily(
    "modelscope_t2v",
    "ModelScope text-to-video (AniClipart's video prior)",
    "https://huggingface.co/ali-vilab/text-to-video-ms-1.7b",
    (_f("diffusers", "text-to-video-ms-1.7b", "diffusers", FOLDER),),
)

FAMILIES: tuple[ModelFamily, ...] = (SVD, ANIMATE_ANYONE, STABLE_ANIMATOR, EASYANIMATE, DWPOSE, INSIGHTFACE, MODELSCOPE_T2V)


def family(key: str) -> ModelFamily:
    for item in FAMILIES:
        if item.key == key:
            return item
    raise KeyError(f"unknown model family '{key}'")
