"""EasyAnimate nodes: v1 and v5.1 loaders, kohya LoRA, and one text-to-video sampler for both."""

from __future__ import annotations

import dataclasses
from contextlib import ExitStack, nullcontext
from typing import Any

import torch

from ..pipelines.easyanimate import pipeline as ea_pipeline
from ..pipelines.easyanimate import schedulers
from . import comfy_bridge

CATEGORY = "Animate Suite/EasyAnimate"
MODEL_TYPE = "ANIMATESUITE_EASYANIMATE_MODEL"
FOLDER_KEYS = ("easyanimate", "diffusers")
PRECISION_INPUT = (list(comfy_bridge.PRECISIONS), {
    "default": "auto",
    "tooltip": "Weights and compute dtype. auto: bf16/fp16 on a GPU that runs them well, fp32 on CPU. "
               "The T5/VAE parts that overflow in fp16 are kept in fp32 automatically."})
OOM_ADVICE = ("Lower frames or width/height, or load the model with precision fp16/bf16. "
              "The text encoder is only needed for encoding; ComfyUI offloads it when the transformer needs the room.")


@dataclasses.dataclass(frozen=True)
class AppliedLora:
    name: str
    strength: float
    transformer: dict  # weight key -> LoraLayer
    text_encoder: dict


@dataclasses.dataclass(frozen=True)
class EasyAnimateModel:
    """What the loaders hand the sampler: modules, one ModelPatcher each, the compute dtype, LoRAs."""

    version: str  # "v1" or "v5.1"
    components: Any  # loading.EasyAnimateV1 or loading.EasyAnimateV51
    patchers: dict  # "transformer" / "text_encoder" / "vae" -> ModelPatcher
    dtype: torch.dtype
    loras: tuple[AppliedLora, ...] = ()


def _wrap(version: str, components, dtype: torch.dtype) -> EasyAnimateModel:
    patchers = {name: comfy_bridge.make_patcher(getattr(components, name)) for name in ("transformer", "text_encoder", "vae")}
    return EasyAnimateModel(version=version, components=components, patchers=patchers, dtype=dtype)


class AnimateSuiteEasyAnimateV1Loader:
    DISPLAY_NAME = "EasyAnimate v1 Loader (Animate Suite)"
    DESCRIPTION = ("Loads EasyAnimate v1: the PixArt-XL-2-512x512 diffusers folder (transformer, T5 encoder and "
                   "tokenizer, VAE) plus easyanimate_v1_mm.safetensors, the motion module placed in every DiT block.")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = (MODEL_TYPE,)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("EasyAnimate v1, for the LoRA and Sampler nodes.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "base_model": comfy_bridge.listing_input(
                    comfy_bridge.folder_choices(FOLDER_KEYS),
                    "The PixArt-XL-2-512x512 diffusers folder in models/easyanimate or models/diffusers."),
                "motion_module": comfy_bridge.listing_input(
                    comfy_bridge.file_choices("easyanimate"), "easyanimate_v1_mm.safetensors in models/easyanimate."),
                "precision": PRECISION_INPUT,
            }
        }

    def load(self, base_model, motion_module, precision):
        from ..pipelines.easyanimate import loading

        dtype = comfy_bridge.pick_dtype(precision)
        folder = comfy_bridge.model_folder_path(base_model, "base_model")
        motion_path = comfy_bridge.model_file_path("easyanimate", motion_module, "EasyAnimate v1 motion module")
        return (_wrap("v1", loading.load_v1(folder, motion_path, dtype), dtype),)


class AnimateSuiteEasyAnimateV51Loader:
    DISPLAY_NAME = "EasyAnimate v5.1 Loader (Animate Suite)"
    DESCRIPTION = ("Loads an EasyAnimate v5.1 diffusers folder (EasyAnimateV5.1-7b/12b-zh-diffusers: transformer, "
                   "Qwen2-VL text encoder, Magvit VAE, flow-matching scheduler) from disk, for the same Sampler node.")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = (MODEL_TYPE,)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("EasyAnimate v5.1, for the LoRA and Sampler nodes (sampler 'Flow').",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": comfy_bridge.listing_input(
                    comfy_bridge.folder_choices(FOLDER_KEYS),
                    "An EasyAnimateV5.1-*-diffusers folder in models/easyanimate or models/diffusers."),
                "precision": PRECISION_INPUT,
            }
        }

    def load(self, model, precision):
        from ..pipelines.easyanimate import loading

        dtype = comfy_bridge.pick_dtype(precision)
        folder = comfy_bridge.model_folder_path(model, "model")
        return (_wrap("v5.1", loading.load_v51(folder, dtype), dtype),)


class AnimateSuiteEasyAnimateLoRA:
    DISPLAY_NAME = "EasyAnimate LoRA (Animate Suite)"
    DESCRIPTION = ("Applies a kohya-style EasyAnimate LoRA (lora_unet_* for the transformer, lora_te_* for the text "
                   "encoder) at a strength, as ComfyUI weight patches; the loaded model itself stays unchanged. "
                   "A LoRA made for another model is refused with the layers that do not match.")
    CATEGORY = CATEGORY
    FUNCTION = "apply"
    RETURN_TYPES = (MODEL_TYPE,)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The model with the LoRA applied.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MODEL_TYPE, {"tooltip": "An EasyAnimate model from a loader (or another LoRA node)."}),
                "lora": comfy_bridge.listing_input(comfy_bridge.file_choices("loras"),
                                                   "A kohya-style EasyAnimate LoRA in models/loras."),
                "strength": ("FLOAT", {"default": 0.55, "min": -2.0, "max": 2.0, "step": 0.01,
                                       "tooltip": "LoRA multiplier (EasyAnimate's default is 0.55); 0 turns it off."}),
            }
        }

    def apply(self, model, lora, strength):
        from ..pipelines.easyanimate import lora as lora_files

        path = comfy_bridge.model_file_path("loras", lora, "EasyAnimate LoRA")
        match = lora_files.match_lora(lora_files.read_lora(path), model.components.transformer,
                                      model.components.text_encoder).check(path, f"EasyAnimate {model.version}")
        patchers = dict(model.patchers)
        for part, layers in (("transformer", match.transformer), ("text_encoder", match.text_encoder)):
            if layers:
                values = {key: (layer.up, layer.down, layer.alpha) for key, layer in layers.items()}
                patchers[part] = comfy_bridge.with_lora_patches(patchers[part], values, strength)
        applied = AppliedLora(lora, strength, match.transformer, match.text_encoder)
        return (dataclasses.replace(model, patchers=patchers, loras=model.loras + (applied,)),)


def loras_merged_if_needed(model: EasyAnimateModel):
    """ComfyUI applies LoRA weight patches when it loads a patcher; a runtime that does not gets them merged
    here for the job and restored afterwards."""
    if comfy_bridge.runtime_patches_weights() or not model.loras:
        return nullcontext()
    from ..pipelines.easyanimate import lora as lora_files

    stack = ExitStack()
    for applied in model.loras:
        stack.enter_context(lora_files.merged(model.components.transformer, applied.transformer, applied.strength))
        stack.enter_context(lora_files.merged(model.components.text_encoder, applied.text_encoder, applied.strength))
    return stack


class AnimateSuiteEasyAnimateSampler:
    DISPLAY_NAME = "EasyAnimate Sampler (Animate Suite)"
    DESCRIPTION = ("Text-to-video with EasyAnimate v1 or v5.1: encodes the prompts, denoises the video latents "
                   "and decodes the frames. v1 defaults: 512x512, 80 frames at 12 fps, 30 steps, guidance 6, DPM++.")
    CATEGORY = CATEGORY
    FUNCTION = "generate"
    RETURN_TYPES = ("IMAGE", "FLOAT")
    RETURN_NAMES = ("images", "fps")
    OUTPUT_TOOLTIPS = ("The video frames.", "The model's frame rate (v1: 12, v5.1: 8).")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MODEL_TYPE, {"tooltip": "An EasyAnimate model from a loader or the LoRA node."}),
                "prompt": ("STRING", {"multiline": True, "default": "A snowy forest landscape with a dirt road running through it.",
                                      "tooltip": "What the video shows."}),
                "negative_prompt": ("STRING", {"multiline": True, "default": ea_pipeline.V1_NEGATIVE_PROMPT,
                                               "tooltip": "What to steer away from (EasyAnimate v1's default)."}),
                "width": ("INT", {"default": ea_pipeline.V1_SIZE, "min": 32, "max": 2048, "step": 32,
                                  "tooltip": "Video width: a multiple of 32 for v1 (its 2x2 motion-module grid), 16 for v5.1."}),
                "height": ("INT", {"default": ea_pipeline.V1_SIZE, "min": 32, "max": 2048, "step": 32,
                                   "tooltip": "Video height: a multiple of 32 for v1, 16 for v5.1."}),
                "frames": ("INT", {"default": ea_pipeline.V1_FRAMES, "min": 1, "max": 1024,
                                   "tooltip": "Number of frames (v1 was trained on 80; v5.1 on 49, in steps of 4 plus 1)."}),
                "steps": ("INT", {"default": ea_pipeline.V1_STEPS, "min": 1, "max": 1000, "tooltip": "Sampling steps."}),
                "guidance": ("FLOAT", {"default": ea_pipeline.V1_GUIDANCE, "min": 0.0, "max": 30.0, "step": 0.1,
                                       "tooltip": "Classifier-free guidance scale; 1 or less turns it off."}),
                "seed": ("INT", {"default": ea_pipeline.V1_SEED, "min": 0, "max": 0xFFFFFFFFFFFFFFFF,
                                 "tooltip": "Noise seed (drawn on the CPU: the same video on any GPU)."}),
                "sampler": (list(schedulers.SAMPLERS), {"default": schedulers.V1_DEFAULT_SAMPLER,
                                                        "tooltip": "v1: DPM++, Euler, Euler A, PNDM or DDIM with v1's schedule. v5.1: Flow."}),
            }
        }

    def generate(self, model, prompt, negative_prompt, width, height, frames, steps, guidance, seed, sampler):
        request = ea_pipeline.VideoRequest(prompt=prompt, negative_prompt=negative_prompt, width=width, height=height,
                                           frames=frames, steps=steps, guidance=guidance, seed=seed, sampler=sampler)
        generate = ea_pipeline.generate_v1 if model.version == "v1" else ea_pipeline.generate_v51
        context = comfy_bridge.run_context(model.patchers.values(), model.dtype)
        with comfy_bridge.out_of_memory_advice(f"sampling EasyAnimate {model.version} ({frames} frames at {width}x{height})",
                                               OOM_ADVICE), loras_merged_if_needed(model):
            result = generate(model.components, request, context)
        return (comfy_bridge.to_intermediate(result.frames), float(result.fps))


NODE_CLASSES = [AnimateSuiteEasyAnimateV1Loader, AnimateSuiteEasyAnimateV51Loader, AnimateSuiteEasyAnimateLoRA,
                AnimateSuiteEasyAnimateSampler]
