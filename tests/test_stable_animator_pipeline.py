"""StableAnimator sampling on tiny random models: where the reference breaks, bad input, faces, HJB, progress."""

import pytest
import torch

from comfyui_animate_suite.core.context import RunContext
from comfyui_animate_suite.core.errors import InputError
from comfyui_animate_suite.pipelines.stable_animator import hjb, pipeline
from tiny_models import stable_animator as tiny

SIZE = 64
FRAMES = 3


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny.load_tiny(tmp_path_factory.mktemp("stable_animator"))


def _generator(seed=0):
    return torch.Generator().manual_seed(seed)


def _face_mask(frames, size=SIZE, top=10, left=16, extent=30):
    mask = torch.zeros(frames, size, size)
    mask[:, top:top + extent, left:left + extent] = 1
    return mask


def _inputs(frames=FRAMES, size=SIZE, masks=True, embedding=True):
    generator = _generator()
    return pipeline.AnimationInputs(
        reference=torch.rand(1, size, size, 3, generator=generator),
        poses=torch.rand(frames, size, size, 3, generator=generator),
        face_embedding=torch.randn(512, generator=generator) * 20 if embedding else None,
        face_masks=_face_mask(frames, size) if masks else None,
        reference_face_mask=_face_mask(1, size, 12, 14, 32) if masks else None,
    )


def _settings(**changes):
    values = dict(width=SIZE, height=SIZE, steps=2, tile_size=16, tile_overlap=4, decode_chunk_size=2, seed=5)
    values.update(changes)
    return pipeline.AnimationSettings(**values)


def _hjb(**changes):
    values = dict(enabled=True, start_step=0, end_step=0, iterations=1, learning_rate=0.1)
    values.update(changes)
    return hjb.FaceOptimization(**values)


class CountingUNet:
    """Counts the UNet's conditional and unconditional passes."""

    def __init__(self, monkeypatch, unet):
        self.calls = {"cond": 0, "uncond": 0}
        forward = unet.forward

        def counted(sample, timestep, states, time_ids, pose_latents=None, return_dict=True):
            self.calls["uncond" if pose_latents is None else "cond"] += 1
            return forward(sample, timestep, states, time_ids, pose_latents, return_dict=return_dict)

        monkeypatch.setattr(unet, "forward", counted)


def test_guidance_of_exactly_one_skips_the_unconditional_pass(models, monkeypatch):
    counter = CountingUNet(monkeypatch, models.unet)
    result = pipeline.animate(models, _inputs(masks=False), _settings(min_guidance_scale=1.0, max_guidance_scale=1.0))
    assert counter.calls == {"cond": 2, "uncond": 0}
    assert result.frames.shape == (FRAMES, SIZE, SIZE, 3) and torch.isfinite(result.latents).all()
    counter.calls.update(cond=0, uncond=0)
    pipeline.animate(models, _inputs(masks=False), _settings(min_guidance_scale=1.0, max_guidance_scale=2.0))
    assert counter.calls == {"cond": 2, "uncond": 2}


def test_no_cfg_equals_the_conditional_prediction_of_a_guided_run(models):
    # At guidance 1 the CFG formula reduces to the conditional prediction; the shortcut must agree.
    inputs = _inputs(masks=False)
    shortcut = pipeline.animate(models, inputs, _settings(min_guidance_scale=1.0, max_guidance_scale=1.0))
    guided = pipeline.animate(models, inputs, _settings(min_guidance_scale=1.0, max_guidance_scale=1.0 + 1e-7))
    assert torch.allclose(shortcut.latents, guided.latents, atol=1e-4)


def test_clip_shorter_than_the_tile_is_one_tile(models):
    inputs = _inputs(masks=False)
    short = pipeline.animate(models, inputs, _settings(tile_size=16))
    exact = pipeline.animate(models, inputs, _settings(tile_size=FRAMES))
    assert torch.equal(short.latents, exact.latents)


def test_overlapping_tiles_run(models):
    result = pipeline.animate(models, _inputs(frames=5, masks=False), _settings(tile_size=3, tile_overlap=1, steps=1))
    assert result.frames.shape[0] == 5 and torch.isfinite(result.frames).all()


def test_any_multiple_of_64_and_reference_scaled_to_it(models):
    inputs = _inputs(masks=False)
    inputs.reference = torch.rand(1, 96, 96, 3)  # any reference size; poses share its aspect ratio
    result = pipeline.animate(models, inputs, _settings(width=128, height=64, steps=1))
    assert result.frames.shape == (FRAMES, 64, 128, 3)
    assert any("stretched" in w for w in result.warnings)


@pytest.mark.parametrize("changes, input_name", [
    ({"width": 96}, "width"),
    ({"height": 0}, "height"),
    ({"steps": 0}, "steps"),
    ({"decode_chunk_size": 0}, "decode_chunk_size"),
])
def test_bad_settings_name_the_input(models, changes, input_name):
    with pytest.raises(InputError, match=f"'{input_name}'"):
        pipeline.animate(models, _inputs(masks=False), _settings(**changes))


def test_tile_overlap_must_leave_no_gap(models):
    with pytest.raises(InputError, match="tile_overlap"):
        pipeline.animate(models, _inputs(frames=5, masks=False), _settings(tile_size=3, tile_overlap=0))


def test_poses_not_on_the_reference_canvas_are_refused(models):
    inputs = _inputs(masks=False)
    inputs.poses = torch.rand(FRAMES, SIZE, SIZE * 2, 3)
    with pytest.raises(InputError, match="'pose_frames'.*aligned to the reference"):
        pipeline.animate(models, inputs, _settings())


def test_pose_frames_at_another_size_with_the_same_aspect_are_scaled(models):
    inputs = _inputs(masks=False)
    inputs.poses = torch.nn.functional.interpolate(inputs.poses.permute(0, 3, 1, 2), size=(128, 128)).permute(0, 2, 3, 1)
    assert pipeline.animate(models, inputs, _settings(steps=1)).frames.shape == (FRAMES, SIZE, SIZE, 3)


def test_wrong_face_embedding_shape_is_refused(models):
    inputs = _inputs(masks=False)
    inputs.face_embedding = torch.randn(2, 512)
    with pytest.raises(InputError, match="'face_embeds'"):
        pipeline.animate(models, inputs, _settings())


def test_no_face_in_the_reference_uses_zeros_and_turns_hjb_off(models):
    missing = pipeline.animate(models, _inputs(embedding=False), _settings(steps=1), _hjb())
    zeros = _inputs()
    zeros.face_embedding = torch.zeros(1, 512)
    zero = pipeline.animate(models, zeros, _settings(steps=1), _hjb())
    assert missing.refined_steps == zero.refined_steps == 0
    assert any("no face embedding" in w for w in missing.warnings)
    assert any("no face was found" in w for w in zero.warnings)
    assert any("there is no face in the reference" in w for w in zero.warnings)
    assert torch.equal(missing.latents, zero.latents)  # no embedding behaves as the zero embedding


def test_hjb_refines_the_requested_steps_and_changes_the_video(models):
    inputs = _inputs()
    plain = pipeline.animate(models, inputs, _settings(steps=2))
    refined = pipeline.animate(models, inputs, _settings(steps=2), _hjb(start_step=1, end_step=5))
    assert refined.refined_steps == 1 and not refined.warnings
    assert (refined.latents - plain.latents).abs().max() > 1e-3


@pytest.mark.parametrize("missing, reason", [
    ("face_masks", "face_masks is not connected"),
    ("reference_face_mask", "reference_face_mask is not connected"),
])
def test_hjb_without_masks_is_skipped_with_a_warning(models, missing, reason):
    inputs = _inputs()
    setattr(inputs, missing, None)
    result = pipeline.animate(models, inputs, _settings(steps=1), _hjb())
    assert result.refined_steps == 0 and any(reason in w for w in result.warnings)


def test_hjb_without_a_face_embedder_is_skipped_with_a_warning(models, monkeypatch):
    monkeypatch.setattr(models, "face_embedder", None)
    result = pipeline.animate(models, _inputs(), _settings(steps=1), _hjb())
    assert result.refined_steps == 0 and any("glintr100_torch.pth" in w for w in result.warnings)


def test_masks_of_the_wrong_count_or_canvas_are_refused(models):
    inputs = _inputs()
    inputs.face_masks = _face_mask(FRAMES - 1)
    with pytest.raises(InputError, match="'face_masks'.*one face mask per pose frame"):
        pipeline.animate(models, inputs, _settings(), _hjb())
    inputs.face_masks = torch.ones(FRAMES, SIZE, SIZE * 2)
    with pytest.raises(InputError, match="'face_masks'"):
        pipeline.animate(models, inputs, _settings(), _hjb())
    inputs = _inputs()
    inputs.reference_face_mask = torch.ones(2, SIZE, SIZE)
    with pytest.raises(InputError, match="'reference_face_mask'"):
        pipeline.animate(models, inputs, _settings(), _hjb())


def test_empty_masks(models):
    inputs = _inputs()
    inputs.reference_face_mask = torch.zeros(1, SIZE, SIZE)
    result = pipeline.animate(models, inputs, _settings(steps=1), _hjb())
    assert result.refined_steps == 0 and any("reference_face_mask is empty" in w for w in result.warnings)
    inputs = _inputs()
    inputs.face_masks[1] = 0
    result = pipeline.animate(models, inputs, _settings(steps=1), _hjb())
    assert result.refined_steps == 1 and any("frames [1]" in w for w in result.warnings)


def test_masks_at_another_size_are_scaled_to_the_output():
    masks = torch.zeros(1, 32, 32)
    masks[0, 4:12, 8:24] = 1
    assert hjb.mask_boxes(masks, "face_masks", (16, 16), "the poses", (64, 64)) == [(8, 23, 16, 47)]
    assert hjb.face_box(torch.zeros(8, 8)) is None


def test_face_loss_gradient_matches_one_backward_over_all_frames(models):
    # Chunk-by-chunk backward (to save memory) must give the gradient of the loss over all frames at once.
    generator = _generator(1)
    z0 = torch.randn(1, 4, 4, SIZE // 8, SIZE // 8, generator=generator)
    boxes = [(10, 40, 16, 46), None, (0, 63, 0, 63), (20, 30, 5, 60)]
    reference = torch.randn(1, 512, generator=generator)
    chunked = z0.clone().requires_grad_(True)
    value = hjb.FaceIdentityLoss(models.vae, models.face_embedder, boxes, reference, 2).backward(chunked)

    whole = z0.clone().requires_grad_(True)
    frames = models.vae.decode(whole.flatten(0, 1) / models.vae.config.scaling_factor, num_frames=2).sample
    frames = torch.cat([frames, models.vae.decode(whole.flatten(0, 1)[2:] / models.vae.config.scaling_factor,
                                                  num_frames=2).sample])[[0, 2, 3]]
    frames = ((frames / 2 + 0.5).clamp(0, 1) - 0.5) / 0.5
    embeddings = models.face_embedder(hjb.crop_faces(frames, [boxes[0], boxes[2], boxes[3]]))
    loss = (1 - torch.nn.functional.cosine_similarity(embeddings, reference.expand(3, -1))).abs().mean()
    loss.backward()
    assert value == pytest.approx(loss.item(), rel=1e-5)
    assert torch.allclose(chunked.grad, whole.grad, rtol=1e-4, atol=1e-9)


def test_hjb_works_under_inference_mode_as_comfyui_runs_nodes(tmp_path):
    with torch.inference_mode():
        models = tiny.load_tiny(tmp_path)
        result = pipeline.animate(models, _inputs(), _settings(steps=1), _hjb())
    assert result.refined_steps == 1
    assert all(p.is_inference() for p in models.vae.parameters()), "the models' own weights are left as they were"
    assert not models.vae.decoder.gradient_checkpointing


def test_hjb_that_runs_out_of_gpu_memory_turns_itself_off(models, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(hjb, "refine_x0", out_of_memory)
    reports = []
    ctx = RunContext(progress=lambda step, total, preview: reports.append((step, total)))
    result = pipeline.animate(models, _inputs(), _settings(steps=2), _hjb(end_step=1), ctx)
    assert result.refined_steps == 0 and any("ran out of GPU memory at step 0" in w for w in result.warnings)
    assert reports[-1][0] == reports[-1][1], "progress still ends at its total"


def test_progress_is_reported_to_the_end_and_interruption_stops_the_run(models):
    reports = []
    ctx = RunContext(progress=lambda step, total, preview: reports.append((step, total)), wants_preview=True)
    pipeline.animate(models, _inputs(), _settings(steps=2), _hjb(end_step=0, iterations=2), ctx)
    totals = {total for _, total in reports}
    # 2 steps x 1 tile, 2 HJB iterations, 2 decode chunks
    assert totals == {2 + 2 + 2} and reports[-1][0] == 6
    assert [step for step, _ in reports] == sorted(step for step, _ in reports)

    class Cancelled(Exception):
        pass

    calls = []

    def check_interrupt():
        calls.append(1)
        if len(calls) > 2:
            raise Cancelled

    with pytest.raises(Cancelled):
        pipeline.animate(models, _inputs(), _settings(steps=4), ctx=RunContext(check_interrupt=check_interrupt))
