"""EasyAnimate nodes: v1 and v5.1 loaders, kohya LoRA, and one text-to-video sampler for both."""

from __future__ import annotations

import dataclasses
from contextlib import ExitStack, nullcontext
from typing import Any

import torch

from ..pipelines.easyanimate import pipeline as ea_pipeline
from ..pipelines.easyanimate import schedulers
from . import comfy_bridge

io = comfy_bridge.io
CATEGORY = "Animate Suite/EasyAnimate"
MODEL = comfy_bridge.EASYANIMATE_MODEL
FOLDER_KEYS = ("easyanimate", "diffusers")
PRECISION_TOOLTIP = ("Weights and compute dtype. auto: bf16/fp16 on a GPU that runs them well, fp32 on CPU. "
                     "The T5/VAE parts that overflow in fp16 are kept in fp32 automatically.")
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


class AnimateSuiteEasyAnimateV1Loader(io.ComfyNode):
    DISPLAY_NAME = "EasyAnimate v1 Loader (Animate Suite)"

    @classmethod
    def define_schema(cls):
        return comfy_bridge.schema(
            cls, "Loads EasyAnimate v1: the PixArt-XL-2-512x512 diffusers folder (transformer, T5 encoder and "
            "tokenizer, VAE) plus easyanimate_v1_mm.safetensors, the motion module placed in every DiT block.", CATEGORY,
            inputs=[
                comfy_bridge.file_combo("base_model", comfy_bridge.folder_choices(FOLDER_KEYS),
                                        "The PixArt-XL-2-512x512 diffusers folder in models/easyanimate or models/diffusers."),
                comfy_bridge.file_combo("motion_module", comfy_bridge.file_choices("easyanimate"),
                                        "easyanimate_v1_mm.safetensors in models/easyanimate."),
                comfy_bridge.precision_input(PRECISION_TOOLTIP),
            ],
            outputs=[comfy_bridge.output(MODEL, "model", "EasyAnimate v1, for the LoRA and Sampler nodes.")])

    @classmethod
    def execute(cls, base_model, motion_module, precision):
        from ..pipelines.easyanimate import loading

        dtype = comfy_bridge.pick_dtype(precision)
        folder = comfy_bridge.model_folder_path(base_model, "base_model")
        motion_path = comfy_bridge.model_file_path("easyanimate", motion_module, "EasyAnimate v1 motion module")
        return io.NodeOutput(_wrap("v1", loading.load_v1(folder, motion_path, dtype), dtype))


class AnimateSuiteEasyAnimateV51Loader(io.ComfyNode):
    DISPLAY_NAME = "EasyAnimate v5.1 Loader (Animate Suite)"

    @classmethod
    def define_schema(cls):
        return comfy_bridge.schema(
            cls, "Loads an EasyAnimate v5.1 diffusers folder (EasyAnimateV5.1-7b/12b-zh-diffusers: transformer, "
            "Qwen2-VL text encoder, Magvit VAE, flow-matching scheduler) from disk, for the same Sampler node.", CATEGORY,
            inputs=[
                comfy_bridge.file_combo("model", comfy_bridge.folder_choices(FOLDER_KEYS),
                                        "An EasyAnimateV5.1-*-diffusers folder in models/easyanimate or models/diffusers."),
                comfy_bridge.precision_input(PRECISION_TOOLTIP),
            ],
            outputs=[comfy_bridge.output(MODEL, "model", "EasyAnimate v5.1, for the LoRA and Sampler nodes (sampler 'Flow').")])

    @classmethod
    def execute(cls, model, precision):
        from ..pipelines.easyanimate import loading

        dtype = comfy_bridge.pick_dtype(precision)
        folder = comfy_bridge.model_folder_path(model, "model")
        return io.NodeOutput(_wrap("v5.1", loading.load_v51(folder, dtype), dtype))


class AnimateSuiteEasyAnimateLoRA(io.ComfyNode):
    DISPLAY_NAME = "EasyAnimate LoRA (Animate Suite)"

    @classmethod
    def define_schema(cls):
        return comfy_bridge.schema(
            cls, "Applies a kohya-style EasyAnimate LoRA (lora_unet_* for the transformer, lora_te_* for the text "
            "encoder) at a strength, as ComfyUI weight patches; the loaded model itself stays unchanged. "
            "A LoRA made for another model is refused with the layers that do not match.", CATEGORY,
            inputs=[
                MODEL.Input("model", tooltip="An EasyAnimate model from a loader (or another LoRA node)."),
                comfy_bridge.file_combo("lora", comfy_bridge.file_choices("loras"), "A kohya-style EasyAnimate LoRA in models/loras."),
                io.Float.Input("strength", default=0.55, min=-2.0, max=2.0, step=0.01,
                               tooltip="LoRA multiplier (EasyAnimate's default is 0.55); 0 turns it off."),
            ],
            outputs=[comfy_bridge.output(MODEL, "model", "The model with the LoRA applied.")])

    @classmethod
    def execute(cls, model, lora, strength):
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
        return io.NodeOutput(dataclasses.replace(model, patchers=patchers, loras=model.loras + (applied,)))


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


class AnimateSuiteEasyAnimateSampler(io.ComfyNode):
    DISPLAY_NAME = "EasyAnimate Sampler (Animate Suite)"

    @classmethod
    def define_schema(cls):
        return comfy_bridge.schema(
            cls, "Text-to-video with EasyAnimate v1 or v5.1: encodes the prompts, denoises the video latents "
            "and decodes the frames. v1 defaults: 512x512, 80 frames at 12 fps, 30 steps, guidance 6, DPM++.", CATEGORY,
            inputs=[
                MODEL.Input("model", tooltip="An EasyAnimate model from a loader or the LoRA node."),
                io.String.Input("prompt", multiline=True, default="A snowy forest landscape with a dirt road running through it.",
                                tooltip="What the video shows."),
                io.String.Input("negative_prompt", multiline=True, default=ea_pipeline.V1_NEGATIVE_PROMPT,
                                tooltip="What to steer away from. The default is EasyAnimate v1's; v5.1's own is: "
                                f"{ea_pipeline.V51_NEGATIVE_PROMPT}"),
                io.Int.Input("width", default=ea_pipeline.V1_SIZE, min=32, max=2048, step=32,
                             tooltip="Video width: a multiple of 32 for v1 (its 2x2 motion-module grid), 16 for v5.1."),
                io.Int.Input("height", default=ea_pipeline.V1_SIZE, min=32, max=2048, step=32,
                             tooltip="Video height: a multiple of 32 for v1, 16 for v5.1."),
                io.Int.Input("frames", default=ea_pipeline.V1_FRAMES, min=1, max=1024,
                             tooltip="Number of frames (v1 was trained on 80; v5.1 on 49, in steps of 4 plus 1)."),
                io.Int.Input("steps", default=ea_pipeline.V1_STEPS, min=1, max=1000, tooltip="Sampling steps."),
                io.Float.Input("guidance", default=ea_pipeline.V1_GUIDANCE, min=0.0, max=30.0, step=0.1,
                               tooltip="Classifier-free guidance scale; 1 or less turns it off."),
                comfy_bridge.seed_input(ea_pipeline.V1_SEED, 0xFFFFFFFFFFFFFFFF, "Noise seed (drawn on the CPU: the same video on any GPU)."),
                comfy_bridge.combo("sampler", schedulers.SAMPLERS, "v1: DPM++, Euler, Euler A, PNDM or DDIM with v1's schedule. v5.1: Flow.",
                                   default=schedulers.V1_DEFAULT_SAMPLER),
            ],
            outputs=[comfy_bridge.output(io.Image, "images", "The video frames."),
                     comfy_bridge.output(io.Float, "fps", "The model's frame rate (v1: 12, v5.1: 8).")])

    @classmethod
    def execute(cls, model, prompt, negative_prompt, width, height, frames, steps, guidance, seed, sampler):
        request = ea_pipeline.VideoRequest(prompt=prompt, negative_prompt=negative_prompt, width=width, height=height,
                                           frames=frames, steps=steps, guidance=guidance, seed=seed, sampler=sampler)
        generate = ea_pipeline.generate_v1 if model.version == "v1" else ea_pipeline.generate_v51
        context = comfy_bridge.run_context(model.patchers.values(), model.dtype)
        with comfy_bridge.out_of_memory_advice(f"sampling EasyAnimate {model.version} ({frames} frames at {width}x{height})",
                                               OOM_ADVICE), loras_merged_if_needed(model):
            result = generate(model.components, request, context)
        return io.NodeOutput(comfy_bridge.to_intermediate(result.frames), float(result.fps))


NODE_CLASSES = [AnimateSuiteEasyAnimateV1Loader, AnimateSuiteEasyAnimateV51Loader, AnimateSuiteEasyAnimateLoRA,
                AnimateSuiteEasyAnimateSampler]
