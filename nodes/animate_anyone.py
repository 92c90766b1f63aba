"""AnimateAnyone nodes: load the released Moore-AnimateAnyone files, animate a reference along pose frames."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path

import torch

from ..pipelines.animate_anyone.settings import FITS, AnimateAnyoneSettings
from ..core.errors import InputError
from . import comfy_bridge

io = comfy_bridge.io
CATEGORY = "Animate Suite/AnimateAnyone"
FOLDER = "animate_anyone"
MODEL = comfy_bridge.ANIMATE_ANYONE_MODEL
RELEASED = {
    "denoising_unet": ("denoising_unet.pth", "The denoising UNet (SD1.5 layout), denoising_unet.pth from patrolli/AnimateAnyone."),
    "reference_unet": ("reference_unet.pth", "The ReferenceNet, reference_unet.pth."),
    "pose_guider": ("pose_guider.pth", "The PoseGuider, pose_guider.pth."),
    "motion_module": ("motion_module.pth", "The motion modules, motion_module.pth."),
}
# Weight files that stand for a diffusers/transformers folder (its config.json sits next to them).
IMAGE_ENCODER_FILES = ("model.safetensors", "pytorch_model.bin")
VAE_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin", "diffusion_pytorch_model.fp16.safetensors")
DEFAULT_FPS = 24.0


@dataclass
class AnimateAnyoneModel:
    """What the loader hands to the sampler: the modules, one ModelPatcher each, the compute dtype."""

    models: object  # pipelines.animate_anyone.loading.AnimateAnyoneModels
    patchers: list
    dtype: torch.dtype


def _default(choices: list[str], name: str) -> dict:
    """The first choice with a file or folder called ``name`` as the widget default."""
    preferred = [choice for choice in choices if name in choice.split("/")]
    return {"default": preferred[0]} if preferred else {}


def _folder_weights(names: tuple[str, ...], other_folder: str) -> list[str]:
    """``animate_anyone/<.../name>`` for the folder-style weights there, plus every file in ``other_folder``."""
    inside = [f"{FOLDER}/{f}" for f in comfy_bridge.file_choices(FOLDER) if posixpath.basename(f) in names]
    return inside + [f"{other_folder}/{f}" for f in comfy_bridge.file_choices(other_folder)]


def _resolve(choice: str, allowed: tuple[str, ...], input_name: str) -> Path:
    key, _, name = choice.partition("/")
    if key not in allowed or not name:
        raise InputError(input_name, f"'{choice}' is not one of the listed files.",
                         "a choice starting with " + " or ".join(f"'{k}/'" for k in allowed))
    return Path(comfy_bridge.model_file_path(key, name, input_name))


class AnimateSuiteAnimateAnyoneLoader(io.ComfyNode):
    DISPLAY_NAME = "AnimateAnyone Loader (Animate Suite)"

    @classmethod
    def define_schema(cls):
        weights = comfy_bridge.file_choices(FOLDER)
        encoders = _folder_weights(IMAGE_ENCODER_FILES, "clip_vision")
        vaes = _folder_weights(VAE_FILES, "vae")
        released = [comfy_bridge.file_combo(role, weights, f"{tooltip} Looked up in models/{FOLDER}.", **_default(weights, name))
                    for role, (name, tooltip) in RELEASED.items()]
        return comfy_bridge.schema(
            cls, "Loads the released Moore-AnimateAnyone weights (denoising UNet, ReferenceNet, PoseGuider, motion "
            "modules) with the sd-image-variations CLIP image encoder and the sd-vae-ft-mse VAE. Every key of "
            "every file is checked; each model is managed (offloaded) by ComfyUI on its own.", CATEGORY,
            inputs=released + [
                comfy_bridge.file_combo(
                    "image_encoder", encoders, "CLIP ViT-L/14 image encoder with projection: the weights file inside the "
                    "image_encoder/ folder of lambdalabs/sd-image-variations-diffusers (in models/animate_anyone), or one "
                    "such file in models/clip_vision.", **_default(encoders, "image_encoder")),
                comfy_bridge.file_combo(
                    "vae", vaes, "The sd-vae-ft-mse VAE: the weights file inside its diffusers folder (in "
                    "models/animate_anyone) or a single VAE file in models/vae (e.g. vae-ft-mse-840000-ema-pruned.safetensors).",
                    **_default(vaes, "sd-vae-ft-mse")),
                comfy_bridge.precision_input("Compute precision. auto: bf16 or fp16 on GPUs that run them well, fp32 on CPU."),
            ],
            outputs=[comfy_bridge.output(MODEL, "model", "The AnimateAnyone models, for the AnimateAnyone sampler.")])

    @classmethod
    def execute(cls, denoising_unet, reference_unet, pose_guider, motion_module, image_encoder, vae, precision):
        from ..pipelines.animate_anyone.loading import AnimateAnyoneFiles, load_models

        dtype = comfy_bridge.pick_dtype(precision)
        released = {role: Path(comfy_bridge.model_file_path(FOLDER, value, role)) for role, value in
                    (("denoising_unet", denoising_unet), ("reference_unet", reference_unet),
                     ("pose_guider", pose_guider), ("motion_module", motion_module))}
        files = AnimateAnyoneFiles(**released,
                                   image_encoder=_resolve(image_encoder, (FOLDER, "clip_vision"), "image_encoder"),
                                   vae=_resolve(vae, (FOLDER, "vae"), "vae"))
        models = load_models(files, dtype)
        # transformers' CLIP keeps weights and buffers in non-leaf modules, which partial loading would leave
        # behind: it is small, so always load it whole.
        patchers = [comfy_bridge.make_patcher(module, streamable=name != "image_encoder")
                    for name, module in models.modules().items()]
        return io.NodeOutput(AnimateAnyoneModel(models, patchers, dtype))


class AnimateSuiteAnimateAnyoneSampler(io.ComfyNode):
    DISPLAY_NAME = "AnimateAnyone Sampler (Animate Suite)"

    @classmethod
    def define_schema(cls):
        return comfy_bridge.schema(
            cls, "Animates the character of a reference image along a sequence of rendered poses (DWPose skeletons, "
            "e.g. a pose video): one output frame per pose frame. Long sequences are sampled in overlapping "
            "context windows; the reference features are computed once per job.", CATEGORY,
            inputs=[
                MODEL.Input("model", tooltip="From the AnimateAnyone Loader."),
                io.Image.Input("reference_image", tooltip="The character to animate (one image). An alpha channel is ignored: put the character on a background first."),
                io.Image.Input("pose_frames", tooltip="Rendered pose frames (DWPose skeletons on black), best aligned to the reference. Frames of another size are resized to width x height (see fit)."),
                io.Int.Input("width", default=512, min=64, max=2048, step=8, tooltip="Output width, a multiple of 8."),
                io.Int.Input("height", default=784, min=64, max=2048, step=8, tooltip="Output height, a multiple of 8."),
                io.Int.Input("steps", default=30, min=1, max=200, tooltip="DDIM steps."),
                io.Float.Input("guidance", default=3.5, min=0.0, max=20.0, step=0.1, tooltip="Classifier-free guidance scale; 1 or less turns guidance off (twice as fast; as in the reference, overlapping windows are then summed, so use context_overlap 0)."),
                comfy_bridge.seed_input(42, 0xFFFFFFFFFFFFFFFF, "Seed of the initial noise (drawn on the CPU: the same video on any device)."),
                io.Int.Input("context_frames", default=24, min=1, max=32, tooltip="Frames per context window (the motion modules handle at most 32)."),
                io.Int.Input("context_overlap", default=4, min=0, max=31, tooltip="Frames shared by neighbouring windows; less than context_frames."),
                io.Int.Input("context_stride", default=1, min=1, max=8, tooltip="1: consecutive windows only; more adds windows over every 2nd, 4th, ... frame."),
                comfy_bridge.combo("fit", FITS, "How the reference and pose frames of another aspect reach width x height: stretch (as the reference), centre-crop or pad with black.", default="stretch"),
                io.Float.Input("pose_fps", default=DEFAULT_FPS, min=0.0, max=1000.0, force_input=True, optional=True,
                               tooltip="The pose video's fps (e.g. from Load Video), passed through to the fps output."),
            ],
            outputs=[comfy_bridge.output(io.Image, "frames", "The animated frames, one per pose frame."),
                     comfy_bridge.output(io.Float, "fps", f"The pose video's fps when pose_fps is connected, else {DEFAULT_FPS:g}.")])

    @classmethod
    def execute(cls, model, reference_image, pose_frames, width, height, steps, guidance, seed, context_frames,
                context_overlap, context_stride, fit, pose_fps=None):
        from ..pipelines.animate_anyone.pipeline import animate

        if not isinstance(model, AnimateAnyoneModel):
            raise InputError("model", f"got {type(model).__name__}.", "the output of the AnimateAnyone Loader")
        settings = AnimateAnyoneSettings(width, height, steps, guidance, seed, context_frames, context_overlap,
                                         context_stride, fit)
        context = comfy_bridge.run_context(model.patchers, model.dtype)
        advice = (f"Lower context_frames (now {context_frames}) or width x height (now {width}x{height}), "
                  "or load the models in fp16/bf16.")
        with comfy_bridge.out_of_memory_advice("animating with AnimateAnyone", advice):
            result = animate(model.models, reference_image, pose_frames, settings, context)
        fps = float(pose_fps) if pose_fps else DEFAULT_FPS
        return io.NodeOutput(comfy_bridge.to_intermediate(result.frames), fps)


NODE_CLASSES = [AnimateSuiteAnimateAnyoneLoader, AnimateSuiteAnimateAnyoneSampler]
