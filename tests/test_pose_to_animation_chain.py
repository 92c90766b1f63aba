"""The example workflows' chains, node to node under the ComfyUI stand-in, on tiny models:

reference image + driving frames -> DWPose Estimator (both) -> Align Pose -> Render Pose ->
- AnimateAnyone convention -> AnimateAnyone sampler;
- StableAnimator convention + Face Embedding + Face Masks -> StableAnimator sampler with HJB on.

Each output goes into the next node as ComfyUI would pass it, so a change in one node's output type,
shape, canvas, mask count or embedding width that the next node cannot take fails here.
"""

import logging
import shutil

import numpy as np
import pytest
import torch

from tiny_models import animate_anyone as tiny_aa
from tiny_models import pose as tiny_pose
from tiny_models import stable_animator as tiny_sa

FRAMES = 2
AA_RELEASE = "tiny_chain_release"
SA_RELEASE = "tiny_chain_release"
SA_BASE = "diffusers/tiny-chain-svd-xt"
REFERENCE_BOX = (16, 8, 47, 71)  # a person filling most of the reference (x1, y1, x2, y2)
DRIVING_BOXES = ((30, 20, 45, 51), (34, 22, 49, 53))  # smaller and elsewhere on the driving frames


def _picture(width, height, box):
    frame = np.full((height, width, 3), 50, np.uint8)
    tiny_pose.draw_face(frame, *box)  # bright channel 0: the tiny person detector and face detector both see it
    return frame


def _images(frames) -> torch.Tensor:
    return torch.from_numpy(np.stack(frames)).float() / 255.0


@pytest.fixture(scope="module")
def models_installed(comfy):
    tiny_pose.build_dwpose(comfy.models / "dwpose")
    tiny_pose.build_face_pack(comfy.models / "insightface" / "buffalo_l")
    tiny_aa.make_release(comfy.models / "animate_anyone" / AA_RELEASE)
    tiny_sa.write_weights(comfy.models / "stable_animator" / SA_RELEASE)
    tiny_sa.write_svd_base(comfy.models / SA_BASE)
    yield comfy
    for folder in (comfy.models / "animate_anyone" / AA_RELEASE, comfy.models / "stable_animator" / SA_RELEASE,
                   comfy.models / SA_BASE):
        shutil.rmtree(folder)  # other tests list these model folders


@pytest.fixture
def run(models_installed):
    def execute(class_type, **inputs):
        with torch.inference_mode():  # as ComfyUI runs every node
            return models_installed.runtime.execute_node(class_type, **inputs)

    return execute


def _aligned_poses(run, convention, reference, driving):
    (dwpose,) = run("AnimateSuiteDWPoseLoader", detector="yolox_l.onnx", pose_model="dw-ll_ucoco_384.onnx", device="cpu")
    parts = dict(convention=convention, body=True, hands=True, face=True, width=0, height=0)
    _, reference_pose = run("AnimateSuiteDWPoseEstimator", dwpose=dwpose, images=reference, **parts)
    driving_images, driving_pose = run("AnimateSuiteDWPoseEstimator", dwpose=dwpose, images=driving, **parts)
    assert driving_images.shape[0] == FRAMES and len(driving_pose) == FRAMES
    assert all(frame["people"] for frame in reference_pose + driving_pose), "the tiny detector found nobody"
    (aligned,) = run("AnimateSuiteAlignPose", reference_pose=reference_pose, driving_pose=driving_pose, method="global")
    height, width = reference.shape[1:3]
    assert len(aligned) == FRAMES
    assert all((f["canvas_width"], f["canvas_height"]) == (width, height) for f in aligned), "not on the reference canvas"
    (pose_images,) = run("AnimateSuiteRenderPose", pose_keypoint=aligned, **parts)
    return aligned, pose_images


def test_dwpose_align_render_feed_animate_anyone(run):
    width, height = 64, 80
    reference = _images([_picture(width, height, REFERENCE_BOX)])
    driving = _images([_picture(96, 72, box) for box in DRIVING_BOXES])
    _, pose_images = _aligned_poses(run, "animateanyone", reference, driving)
    # AnimateAnyone's drawing: the reference canvas at a 512 short side.
    assert tuple(pose_images.shape) == (FRAMES, 640, 512, 3) and pose_images.dtype == torch.float32
    assert pose_images.max() > 0, "nothing was drawn"

    loader = dict(denoising_unet=f"{AA_RELEASE}/denoising_unet.pth", reference_unet=f"{AA_RELEASE}/reference_unet.pth",
                  pose_guider=f"{AA_RELEASE}/pose_guider.pth", motion_module=f"{AA_RELEASE}/motion_module.pth",
                  image_encoder=f"animate_anyone/{AA_RELEASE}/image_encoder/pytorch_model.bin",
                  vae=f"animate_anyone/{AA_RELEASE}/sd-vae-ft-mse/diffusion_pytorch_model.safetensors", precision="fp32")
    (model,) = run("AnimateSuiteAnimateAnyoneLoader", **loader)
    frames, fps = run("AnimateSuiteAnimateAnyoneSampler", model=model, reference_image=reference, pose_frames=pose_images,
                      width=width, height=height, steps=1, guidance=3.5, seed=1, context_frames=4, context_overlap=1,
                      context_stride=1, fit="stretch", pose_fps=12.0)
    assert tuple(frames.shape) == (FRAMES, height, width, 3) and fps == 12.0
    assert torch.isfinite(frames).all() and 0 <= frames.min() and frames.max() <= 1


def test_dwpose_align_render_and_faces_feed_stable_animator_with_hjb(run, caplog):
    size = 64
    reference = _images([_picture(size, size, REFERENCE_BOX[:3] + (55,))])
    driving = _images([_picture(96, 72, box) for box in DRIVING_BOXES])
    aligned, pose_images = _aligned_poses(run, "stableanimator", reference, driving)
    # StableAnimator's drawing stays on the reference canvas.
    assert tuple(pose_images.shape) == (FRAMES, size, size, 3) and pose_images.max() > 0

    (analysis,) = run("AnimateSuiteFaceAnalysisLoader", model_pack="buffalo_l", device="cpu")
    (face_embeds,) = run("AnimateSuiteFaceEmbedding", face_analysis=analysis, image=reference, channel_order="rgb")
    (reference_mask,) = run("AnimateSuiteFaceMask", face_analysis=analysis, images=reference, mode="boxes", grow=0,
                            feather=0, channel_order="rgb")
    (face_masks,) = run("AnimateSuiteFaceMask", face_analysis=analysis, images=pose_images, mode="landmark_hull",
                        grow=0, feather=0, channel_order="rgb", pose_keypoint=aligned)
    assert tuple(face_embeds.shape) == (1, 512) and face_embeds.abs().sum() > 0, "no face found in the reference"
    assert tuple(reference_mask.shape) == (1, size, size) and 0 < reference_mask.sum() < size * size
    assert tuple(face_masks.shape) == (FRAMES, size, size)
    assert all(0 < mask.sum() < size * size for mask in face_masks), "a face mask is empty or the whole frame"

    loader = dict(unet=f"{SA_RELEASE}/unet.pth", pose_net=f"{SA_RELEASE}/pose_net.pth",
                  face_encoder=f"{SA_RELEASE}/face_encoder.pth", face_embedder=f"{SA_RELEASE}/glintr100_torch.pth",
                  svd_base=SA_BASE, precision="fp32")
    (model,) = run("AnimateSuiteStableAnimatorLoader", **loader)
    sampler = dict(stable_animator=model, reference_image=reference, pose_frames=pose_images, width=size, height=size,
                   steps=1, min_guidance_scale=3.0, max_guidance_scale=3.0, fps=7, motion_bucket_id=127,
                   noise_aug_strength=0.02, tile_size=16, tile_overlap=4, decode_chunk_size=2, seed=1,
                   face_optimization=True, hjb_start_step=0, hjb_end_step=0, hjb_iterations=1, hjb_learning_rate=0.1,
                   face_embeds=face_embeds, face_masks=face_masks, reference_face_mask=reference_mask)
    with caplog.at_level(logging.WARNING, logger="animate_suite"):
        (refined,) = run("AnimateSuiteStableAnimatorSampler", **sampler)
    (plain,) = run("AnimateSuiteStableAnimatorSampler", **{**sampler, "face_optimization": False})
    assert tuple(refined.shape) == (FRAMES, size, size, 3) and torch.isfinite(refined).all()
    assert not [r for r in caplog.records if "face optimisation" in r.getMessage()], "HJB was skipped"
    assert (refined - plain).abs().max() > 1e-4, "the face masks and embedding did not reach the face optimisation"
