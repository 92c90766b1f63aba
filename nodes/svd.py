"""SVD img2vid nodes: load the model, turn a photo into frames (Save Live Photo is with the video nodes)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core import images as image_ops
from ..core.checkpoints import WEIGHT_SUFFIXES
from ..core.errors import InputError
from ..pipelines.svd.pipeline import MOTION_PRESETS, MOTIONS, ORIENTATIONS
from ..pipelines.svd.samplers import SAMPLERS
from . import comfy_bridge

io = comfy_bridge.io
CATEGORY = "Animate Suite/SVD"
OUT_OF_MEMORY_ADVICE = (
    "Lower decode_chunk_size, frames or width/height, pick precision fp16/bf16 in the loader, or use "
    "context_frames (e.g. 14) for long clips."
)


_MOTION_TOOLTIP = "Presets set motion_bucket_id / noise_aug_strength / max_guidance: " + ", ".join(
    f"{name} {p.motion_bucket_id}/{p.noise_aug_strength}/{p.max_guidance}" for name, p in MOTION_PRESETS.items()
) + ". custom uses the values below."


@dataclass
class SVDModel:
    """What the loader hands to the sampler: the loaded parts, one ModelPatcher per module."""

    parts: object  # pipelines.svd.loading.SVDComponents
    patchers: list
    dtype: torch.dtype
    name: str


def svd_source_choices(folder_keys: tuple[str, ...] = ("diffusers",)) -> list[str]:
    """Every SVD source the SVD loader reads: single files in models/checkpoints, then diffusers folders
    (``key/name``) in the model folders ``folder_keys``. StableAnimator's loader lists its SVD-xt base this way."""
    return comfy_bridge.file_choices("checkpoints") + comfy_bridge.folder_choices(folder_keys)


def svd_source_path(choice: str, input_name: str, folder_keys: tuple[str, ...] = ("diffusers",)) -> str:
    """The file or folder behind a ``svd_source_choices`` entry."""
    if choice.partition("/")[0] in folder_keys and not choice.lower().endswith(WEIGHT_SUFFIXES):
        return comfy_bridge.model_folder_path(choice, input_name)
    return comfy_bridge.model_file_path("checkpoints", choice, input_name)


class AnimateSuiteSVDLoader(io.ComfyNode):
    DISPLAY_NAME = "SVD Loader (Animate Suite)"

    @classmethod
    def define_schema(cls):
        return comfy_bridge.schema(
            cls, "Loads Stable Video Diffusion img2vid (svd, svd_xt, svd_xt_1_1) from a single checkpoint file in "
            "models/checkpoints or a diffusers folder in models/diffusers. Image encoder, UNet and VAE each get "
            "their own ComfyUI model slot, so only the stage that runs sits in VRAM.", CATEGORY,
            inputs=[
                comfy_bridge.file_combo(
                    "model", svd_source_choices(),
                    "svd.safetensors (14 frames), svd_xt.safetensors / svd_xt_1_1.safetensors (25 frames) or their "
                    "fp16 variants from models/checkpoints, or a diffusers folder (diffusers/stable-video-diffusion-img2vid-xt)."),
                comfy_bridge.precision_input(
                    "auto: bf16/fp16 on a GPU, fp32 on CPU. With fp16 the VAE still runs in fp32 (the SD VAE overflows in fp16)."),
            ],
            outputs=[comfy_bridge.output(comfy_bridge.SVD_MODEL, "svd_model", "The SVD model for SVD Image to Video.")])

    @classmethod
    def execute(cls, model, precision):
        from ..pipelines.svd.loading import load_svd_components

        dtype = comfy_bridge.pick_dtype(precision)
        parts = load_svd_components(svd_source_path(model, "model"), dtype)
        patchers = [comfy_bridge.make_patcher(m) for m in (parts.image_encoder, parts.vae, parts.unet)]
        return io.NodeOutput(SVDModel(parts, patchers, dtype, model))


class AnimateSuiteSVDImageToVideo(io.ComfyNode):
    DISPLAY_NAME = "SVD Image to Video (Animate Suite)"

    @classmethod
    def define_schema(cls):
        return comfy_bridge.schema(
            cls, "Turns one photo into a short clip with Stable Video Diffusion. The photo is cropped, padded or "
            "stretched to width x height (swapped for portrait photos), then image encoder, UNet and VAE run "
            "one after another. Pick a motion preset for predictable motion, or 'custom' for the raw values. "
            "Outputs frames and fps for Save Animation / Save Live Photo.", CATEGORY,
            inputs=[
                comfy_bridge.SVD_MODEL.Input("svd_model", tooltip="From SVD Loader."),
                io.Image.Input("image", tooltip="The photo to animate (the first image of a batch)."),
                io.Int.Input("width", default=1024, min=64, max=4096, step=64, tooltip="Clip width for a landscape photo (SVD was trained at 1024x576)."),
                io.Int.Input("height", default=576, min=64, max=4096, step=64, tooltip="Clip height for a landscape photo; portrait photos swap width and height (see orientation)."),
                comfy_bridge.combo("resize_mode", image_ops.RESIZE_MODES, "crop fills the frame (cuts the edges), pad letterboxes the whole photo, stretch ignores the aspect.", default="crop"),
                io.Int.Input("frames", default=0, min=0, max=1024, tooltip="Frames to generate; 0 uses the model's own (14 svd, 25 svd_xt). More than that uses context windows."),
                io.Int.Input("steps", default=25, min=1, max=500, tooltip="Sampling steps."),
                comfy_bridge.combo("motion", MOTIONS, _MOTION_TOOLTIP, default="custom"),
                io.Int.Input("motion_bucket_id", default=127, min=0, max=1023, tooltip="More motion with higher values (trained on 0..255). Used when motion is custom."),
                io.Int.Input("fps", default=7, min=1, max=120, tooltip="Frame rate of the clip; the model is conditioned on fps - 1, as in the reference."),
                io.Float.Input("noise_aug_strength", default=0.02, min=0.0, max=10.0, step=0.01, tooltip="Noise added to the photo before encoding: more motion, less likeness. Used when motion is custom."),
                io.Float.Input("min_guidance", default=1.0, min=0.0, max=50.0, step=0.1, tooltip="Guidance of the first frame; it rises linearly to max_guidance at the last."),
                io.Float.Input("max_guidance", default=3.0, min=0.0, max=50.0, step=0.1, tooltip="Guidance of the last frame. Used when motion is custom."),
                comfy_bridge.seed_input(0, 0xFFFFFFFFFFFFFFFF, "Random seed; the same seed gives the same clip on any device."),
                io.Int.Input("decode_chunk_size", default=8, min=0, max=1024, tooltip="Frames the VAE decodes at once (0: all). Lower uses less VRAM; halved automatically on out-of-memory."),
                comfy_bridge.combo("sampler", SAMPLERS, "euler: the reference (Euler, Karras sigmas, v-prediction); euler_ancestral: more variation; dpmpp_2m: sharper in few steps.", default="euler"),
                comfy_bridge.combo("orientation", ORIENTATIONS, "auto swaps width and height to match a portrait or landscape photo; 'as set' keeps them.", default="auto", optional=True),
                io.Int.Input("context_frames", default=0, min=0, max=1024, optional=True, tooltip="Window length for clips longer than the model's frame count; 0 uses the model's own."),
                io.Int.Input("context_overlap", default=4, min=0, max=1023, optional=True, tooltip="Frames neighbouring windows share; their predictions are blended with linear ramps."),
            ],
            outputs=[comfy_bridge.output(io.Image, "frames", "The generated frames."),
                     comfy_bridge.output(io.Float, "fps", "The fps the clip was conditioned on, for the save nodes.")])

    @classmethod
    def execute(cls, svd_model, image, width, height, resize_mode, frames, steps, motion, motion_bucket_id, fps,
                noise_aug_strength, min_guidance, max_guidance, seed, decode_chunk_size, sampler,
                orientation="auto", context_frames=0, context_overlap=4):
        from ..pipelines.svd.pipeline import SVDSettings, generate

        if not isinstance(svd_model, SVDModel):
            raise InputError("svd_model", f"got {type(svd_model).__name__}", "the output of SVD Loader")
        settings = SVDSettings(
            width=width, height=height, resize_mode=resize_mode, orientation=orientation, num_frames=frames,
            steps=steps, motion_bucket_id=motion_bucket_id, fps=fps, noise_aug_strength=noise_aug_strength,
            min_guidance=min_guidance, max_guidance=max_guidance, seed=seed, decode_chunk_size=decode_chunk_size,
            sampler=sampler, motion=motion, context_frames=context_frames, context_overlap=context_overlap,
        )
        ctx = comfy_bridge.run_context(svd_model.patchers, svd_model.dtype)
        with comfy_bridge.out_of_memory_advice("generating the SVD clip", OUT_OF_MEMORY_ADVICE):
            clip = generate(svd_model.parts, image, settings, ctx)
        return io.NodeOutput(comfy_bridge.to_intermediate(clip), float(fps))


NODE_CLASSES = [AnimateSuiteSVDLoader, AnimateSuiteSVDImageToVideo]
