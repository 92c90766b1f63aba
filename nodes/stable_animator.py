"""StableAnimator nodes: load the released weights, animate a reference person along pose frames."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.errors import InputError
from . import comfy_bridge
from .svd import svd_source_choices, svd_source_path

io = comfy_bridge.io
CATEGORY = "Animate Suite/StableAnimator"
FOLDER = "stable_animator"
MODEL = comfy_bridge.STABLE_ANIMATOR_MODEL
NO_FILE = "none"
SVD_BASE_FOLDERS = ("diffusers", FOLDER)
MAX_SEED = 0xFFFFFFFFFFFFFFFF


@dataclass
class StableAnimatorModel:
    """What the loader hands to the sampler: the modules, one ModelPatcher each, and the compute dtype."""

    models: object  # pipelines.stable_animator.loading.StableAnimatorModels
    patchers: list
    dtype: torch.dtype


def _file_input(role: str, name: str, tooltip: str, optional: bool = False):
    choices = comfy_bridge.file_choices(FOLDER)
    choices = [NO_FILE] + choices if optional else choices
    default = name if name in choices else (NO_FILE if optional else None)
    return comfy_bridge.file_combo(role, choices, tooltip, default=default)


def _svd_base_input():
    choices = svd_source_choices(SVD_BASE_FOLDERS)
    preferred = [c for c in choices if "img2vid-xt" in c.lower()
                 or ("svd_xt" in c.lower() and "image_decoder" not in c.lower())]
    preferred += [c for c in choices if c.endswith("/SVD")]
    return comfy_bridge.file_combo(
        "svd_base", choices, "The SVD-xt base (its VAE, image encoder and scheduler), from the same sources as the SVD "
        "loader: svd_xt.safetensors / svd_xt_1_1.safetensors in models/checkpoints, or a diffusers folder such as "
        "diffusers/stable-video-diffusion-img2vid-xt or the SVD/ folder of the StableAnimator release.",
        default=preferred[0] if preferred else None)


class AnimateSuiteStableAnimatorLoader(io.ComfyNode):
    DISPLAY_NAME = "StableAnimator Loader (Animate Suite)"

    @classmethod
    def define_schema(cls):
        return comfy_bridge.schema(
            cls, "Loads StableAnimator's released weights (unet.pth, pose_net.pth, face_encoder.pth and, for face "
            "optimisation, glintr100_torch.pth) from models/stable_animator, with the SVD-xt VAE and image "
            "encoder from an SVD-xt checkpoint (models/checkpoints) or diffusers folder. "
            "Every model is managed by ComfyUI (offloaded and partially loaded as VRAM requires).", CATEGORY,
            inputs=[
                _file_input("unet", "unet.pth", "StableAnimator's UNet (unet.pth, 6 GB) in models/stable_animator."),
                _file_input("pose_net", "pose_net.pth", "StableAnimator's PoseNet (pose_net.pth)."),
                _file_input("face_encoder", "face_encoder.pth", "StableAnimator's face encoder (face_encoder.pth)."),
                _file_input("face_embedder", "glintr100_torch.pth", "The ArcFace iresnet100 (glintr100_torch.pth) that "
                            "HJB face optimisation compares faces with; 'none' turns face optimisation off.", optional=True),
                _svd_base_input(),
                comfy_bridge.precision_input("Compute dtype of the UNet, PoseNet, face and image encoders; auto picks "
                                             "bf16/fp16 on a GPU and fp32 on CPU. The VAE and the face embedder always run in fp32."),
            ],
            outputs=[comfy_bridge.output(MODEL, "stable_animator", "The StableAnimator models, for the StableAnimator sampler.")])

    @classmethod
    def execute(cls, unet, pose_net, face_encoder, face_embedder, svd_base, precision):
        from ..pipelines.stable_animator import loading

        files = loading.StableAnimatorFiles(
            unet=comfy_bridge.model_file_path(FOLDER, unet, "StableAnimator UNet"),
            pose_net=comfy_bridge.model_file_path(FOLDER, pose_net, "StableAnimator PoseNet"),
            face_encoder=comfy_bridge.model_file_path(FOLDER, face_encoder, "StableAnimator face encoder"),
            face_embedder=None if face_embedder == NO_FILE else
            comfy_bridge.model_file_path(FOLDER, face_embedder, "ArcFace face embedder"),
            svd_base=svd_source_path(svd_base, "svd_base", SVD_BASE_FOLDERS),
        )
        dtype = comfy_bridge.pick_dtype(precision)
        models = loading.load_stable_animator(files, dtype)
        modules = [models.unet, models.pose_net, models.face_encoder, models.image_encoder, models.vae, models.face_embedder]
        patchers = [comfy_bridge.make_patcher(module) for module in modules if module is not None]
        return io.NodeOutput(StableAnimatorModel(models, patchers, dtype))


class AnimateSuiteStableAnimatorSampler(io.ComfyNode):
    DISPLAY_NAME = "StableAnimator (Animate Suite)"

    @classmethod
    def define_schema(cls):
        return comfy_bridge.schema(
            cls, "Animates the person in the reference image along the pose frames, keeping the face's identity "
            "(StableAnimator on SVD-xt), optionally refining faces during sampling with HJB face optimisation. "
            "Poses must be drawn on the reference's canvas (DWPose aligned to the reference); they and the "
            "reference are scaled to width x height.", CATEGORY,
            inputs=[
                MODEL.Input("stable_animator", tooltip="From the StableAnimator loader."),
                io.Image.Input("reference_image", tooltip="The person to animate (one image, any size)."),
                io.Image.Input("pose_frames", tooltip="One pose image per output frame, in StableAnimator's DWPose "
                               "drawing, on the reference's canvas (same aspect ratio as the reference)."),
                io.Int.Input("width", default=512, min=64, max=2048, step=64, tooltip="Output width, a multiple of 64 "
                             "(StableAnimator was trained at 512x512 and 576x1024)."),
                io.Int.Input("height", default=512, min=64, max=2048, step=64, tooltip="Output height, a multiple of 64."),
                io.Int.Input("steps", default=25, min=1, max=200, step=1, tooltip="Denoising steps (Euler)."),
                io.Float.Input("min_guidance_scale", default=3.0, min=0.0, max=20.0, step=0.05, tooltip="Guidance on "
                               "the first frame; it rises linearly to max_guidance_scale on the last. 1.0 on both skips "
                               "the unconditional pass."),
                io.Float.Input("max_guidance_scale", default=3.0, min=0.0, max=20.0, step=0.05,
                               tooltip="Guidance on the last frame."),
                io.Int.Input("fps", default=7, min=1, max=60, step=1, tooltip="Frame rate the motion is conditioned on "
                             "(SVD micro-conditioning; fps - 1 is used)."),
                io.Int.Input("motion_bucket_id", default=127, min=0, max=1023, step=1,
                             tooltip="SVD's motion amount conditioning."),
                io.Float.Input("noise_aug_strength", default=0.02, min=0.0, max=1.0, step=0.01,
                               tooltip="Noise added to the reference before encoding it."),
                io.Int.Input("tile_size", default=16, min=2, max=128, step=1, tooltip="Frames per denoising tile. Every "
                             "tile also holds frame 0; longer clips are covered by overlapping tiles blended with "
                             "triangular weights."),
                io.Int.Input("tile_overlap", default=4, min=1, max=127, step=1,
                             tooltip="Overlap between consecutive tiles (must be below tile_size)."),
                io.Int.Input("decode_chunk_size", default=4, min=1, max=128, step=1, tooltip="Frames the VAE decodes "
                             "together; more is smoother and uses more memory."),
                io.Int.Input("seed", default=0, min=0, max=MAX_SEED, step=1, control_after_generate=True,  # as seed_input, step kept
                             tooltip="Seed of the initial noise (drawn on the CPU: the same video on every device)."),
                io.Boolean.Input("face_optimization", default=True, tooltip="HJB face optimisation: refine the faces "
                                 "against the reference's identity during sampling. Needs the face embedder, "
                                 "face_embeds, face_masks and reference_face_mask; without them it is skipped "
                                 "with a warning, and it turns itself off if it runs out of GPU memory."),
                io.Int.Input("hjb_start_step", default=0, min=0, max=1000, step=1,
                             tooltip="First denoising step (0-based) whose faces are refined."),
                io.Int.Input("hjb_end_step", default=20, min=0, max=1000, step=1,
                             tooltip="Last denoising step (0-based, included) whose faces are refined."),
                io.Int.Input("hjb_iterations", default=3, min=1, max=50, step=1,
                             tooltip="Optimiser (Adam) iterations per refined step."),
                io.Float.Input("hjb_learning_rate", default=0.1, min=0.0, max=10.0, step=0.01,
                               tooltip="Learning rate at step 0; at step i it is learning_rate * (1 - i / steps)."),
                comfy_bridge.FACE_EMBEDS.Input("face_embeds", optional=True, tooltip="The raw 512-d ArcFace (antelopev2) "
                                               "embedding of the reference's largest face. Without it, identity comes from "
                                               "the CLIP embedding only."),
                io.Mask.Input("face_masks", optional=True, tooltip="One face mask per pose frame, on the pose canvas (any "
                              "size with the same aspect ratio); the bounding box of values > 0.5 is the face. Frames with "
                              "an empty mask are left out of the face optimisation."),
                io.Mask.Input("reference_face_mask", optional=True,
                              tooltip="The face mask of the reference image, for face optimisation."),
            ],
            outputs=[comfy_bridge.output(io.Image, "frames", "The generated frames, one per pose frame.")])

    @classmethod
    def execute(cls, stable_animator, reference_image, pose_frames, width, height, steps, min_guidance_scale,
                max_guidance_scale, fps, motion_bucket_id, noise_aug_strength, tile_size, tile_overlap,
                decode_chunk_size, seed, face_optimization, hjb_start_step, hjb_end_step, hjb_iterations,
                hjb_learning_rate, face_embeds=None, face_masks=None, reference_face_mask=None):
        from ..pipelines.stable_animator import hjb, pipeline

        if not isinstance(stable_animator, StableAnimatorModel):
            raise InputError("stable_animator", f"got {type(stable_animator).__name__}", "the StableAnimator loader's output")
        settings = pipeline.AnimationSettings(
            width=width, height=height, steps=steps, min_guidance_scale=min_guidance_scale,
            max_guidance_scale=max_guidance_scale, fps=fps, motion_bucket_id=float(motion_bucket_id),
            noise_aug_strength=noise_aug_strength, tile_size=tile_size, tile_overlap=tile_overlap,
            decode_chunk_size=decode_chunk_size, seed=seed)
        optimization = hjb.FaceOptimization(face_optimization, hjb_start_step, hjb_end_step, hjb_iterations,
                                            hjb_learning_rate)
        inputs = pipeline.AnimationInputs(reference_image, pose_frames, face_embeds, face_masks, reference_face_mask)
        ctx = comfy_bridge.run_context(stable_animator.patchers, stable_animator.dtype)
        advice = ("Lower width/height, tile_size or decode_chunk_size, turn off face_optimization, "
                  "or choose fp16/bf16 precision in the loader.")
        with comfy_bridge.out_of_memory_advice("animating with StableAnimator", advice):
            result = pipeline.animate(stable_animator.models, inputs, settings, optimization, ctx)
        return io.NodeOutput(comfy_bridge.to_intermediate(result.frames))


NODE_CLASSES = [AnimateSuiteStableAnimatorLoader, AnimateSuiteStableAnimatorSampler]
