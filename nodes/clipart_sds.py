"""Text-guided clipart animation: the ModelScope text-to-video prior and the AniClipart SDS optimisation.

It takes the rigged clipart of Load Clipart SVG / Clipart Keypoints and returns the same animation type
as Animate Clipart, so Render Clipart Animation and Save Clipart SVG work for both modes.
"""

from __future__ import annotations

from ..pipelines.aniclipart.text_guided import FPS, PRESETS
from . import comfy_bridge
from .clipart import CATEGORY, CLIPART, CLIPART_ANIMATION

io = comfy_bridge.io
PRIOR = comfy_bridge.T2V_PRIOR
MODEL_URL = "https://huggingface.co/ali-vilab/text-to-video-ms-1.7b"


class T2VPriorModel:
    """The loaded prior: the modules (``prior``), one ModelPatcher each, and the compute dtype."""

    def __init__(self, prior, patchers, dtype):
        self.prior, self.patchers, self.dtype = prior, patchers, dtype


class AnimateSuiteLoadT2VPrior(io.ComfyNode):
    DISPLAY_NAME = "Load Text-to-Video Prior (Animate Suite)"

    @classmethod
    def define_schema(cls):
        return comfy_bridge.schema(
            cls, "Loads ModelScope text-to-video (text-to-video-ms-1.7b) from a diffusers folder in models/diffusers, "
            "the video prior that guides text-driven clipart animation. Nothing is downloaded.", CATEGORY,
            inputs=[
                comfy_bridge.file_combo("model", comfy_bridge.folder_choices(["diffusers"]),
                                        f"The text-to-video-ms-1.7b diffusers folder inside models/diffusers ({MODEL_URL})."),
                comfy_bridge.precision_input("auto: fp16/bf16 on a GPU, fp32 on CPU."),
            ],
            outputs=[comfy_bridge.output(PRIOR, "prior", "UNet3D, VAE, CLIP text encoder and noise schedule, each managed by ComfyUI.")])

    @classmethod
    def execute(cls, model, precision):
        from ..pipelines.aniclipart.loading import load_t2v_prior

        dtype = comfy_bridge.pick_dtype(precision)
        prior = load_t2v_prior(comfy_bridge.model_folder_path(model, "model"), dtype)
        patchers = [comfy_bridge.make_patcher(module) for module in (prior.unet, prior.vae, prior.text_encoder)]
        return io.NodeOutput(T2VPriorModel(prior, patchers, dtype))


class AnimateSuiteClipartTextAnimate(io.ComfyNode):
    DISPLAY_NAME = "Animate Clipart from Text (Animate Suite)"

    @classmethod
    def define_schema(cls):
        return comfy_bridge.schema(
            cls, "AniClipart: optimises every keypoint's looping Bézier trajectory so the animated clipart matches the "
            "prompt under the text-to-video prior (score distillation), keeping bone lengths; the ARAP mesh "
            "carries the artwork. Slow: minutes on a GPU. The animation renders and saves like Animate Clipart's.", CATEGORY,
            inputs=[
                CLIPART.Input("clipart", tooltip="The rigged clipart (keypoints, skeleton, mesh) from Load Clipart SVG or Clipart Keypoints."),
                PRIOR.Input("prior", tooltip="The text-to-video prior from Load Text-to-Video Prior."),
                io.String.Input("prompt", multiline=True, default="A man is dancing, waving his arms.", tooltip="What the clipart does, in English."),
                comfy_bridge.combo("preset", sorted(PRESETS), "aniclipart: the paper's 500 steps and 24 frames; fast: 150 steps, 16 frames.",
                                   default="aniclipart"),
                comfy_bridge.seed_input(0, 0xFFFFFFFF, "Seed of the initial trajectories and of the noise."),
                io.Int.Input("iterations", default=0, min=0, max=5000, tooltip="Optimisation steps; 0 uses the preset's."),
                io.Float.Input("guidance_scale", default=50.0, min=1.0, max=200.0, step=0.5,
                               tooltip="How strongly the prompt pulls (AniClipart uses 50)."),
                io.Float.Input("fps", default=FPS, min=1.0, max=60.0, step=1.0, optional=True,
                               tooltip="Frames per second of the animation (AniClipart: 8)."),
                io.Boolean.Input("fixed_start", default=True, optional=True, tooltip="Start at the input pose (frame 0 = the artwork)."),
            ],
            outputs=[comfy_bridge.output(io.Image, "frames", "The looping clip at the canvas size."),
                     comfy_bridge.output(CLIPART_ANIMATION, "animation", "Keypoint positions per frame with the rig: render it at "
                                         "any size or save it as SVG and motion JSON."),
                     comfy_bridge.output(io.Float, "fps", "Frames per second.")])

    @classmethod
    def execute(cls, clipart, prior, prompt, preset, seed, iterations, guidance_scale, fps=FPS, fixed_start=True):
        from ..pipelines.aniclipart.text_guided import animate_clipart, settings_for

        settings = settings_for(preset, iterations=iterations or None, guidance_scale=guidance_scale,
                                fix_start_points=fixed_start)
        ctx = comfy_bridge.run_context(prior.patchers, prior.dtype)
        with comfy_bridge.out_of_memory_advice("animating the clipart from text", "Use the fast preset or precision fp16."):
            animation, result = animate_clipart(clipart, prior.prior, prompt, settings, seed, fps, ctx)
        return io.NodeOutput(comfy_bridge.to_intermediate(result.frames), animation, float(fps))


NODE_CLASSES = [AnimateSuiteLoadT2VPrior, AnimateSuiteClipartTextAnimate]
