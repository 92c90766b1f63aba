"""The AnimateAnyone sampler on a tiny release: reference work done once, inputs, progress, interruption."""

import pytest
import torch

from comfyui_animate_suite.pipelines.animate_anyone import pipeline as aa_pipeline
from comfyui_animate_suite.pipelines.animate_anyone import reference_attention
from comfyui_animate_suite.pipelines.animate_anyone.loading import load_models
from comfyui_animate_suite.pipelines.animate_anyone.pipeline import AnimateAnyoneSettings, animate
from comfyui_animate_suite.core.context import RunContext
from comfyui_animate_suite.core.errors import InputError
from tiny_models import animate_anyone as tiny

WIDTH, HEIGHT = 64, 80


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return load_models(tiny.make_release(tmp_path_factory.mktemp("animate_anyone_pipeline")))


@pytest.fixture(scope="module")
def images():
    generator = torch.Generator().manual_seed(7)
    reference = torch.rand(1, 100, 72, 3, generator=generator)
    poses = torch.rand(7, HEIGHT, WIDTH, 3, generator=generator)
    return reference, poses


def _settings(**overrides) -> AnimateAnyoneSettings:
    values = dict(width=WIDTH, height=HEIGHT, steps=2, guidance=3.5, seed=3, context_frames=4, context_overlap=1)
    values.update(overrides)
    return AnimateAnyoneSettings(**values)


class CallCounter:
    def __init__(self, module):
        self.calls = 0
        module.register_forward_hook(lambda *args: setattr(self, "calls", self.calls + 1))


def test_frames_follow_the_poses_and_reference_work_is_done_once(models, images):
    reference, poses = images
    reference_calls, encoder_calls = CallCounter(models.reference_net), CallCounter(models.image_encoder)
    unet_calls = CallCounter(models.denoising_unet)
    result = animate(models, reference, poses, _settings(steps=3))
    assert result.frames.shape == (7, HEIGHT, WIDTH, 3) and result.frames.dtype == torch.float32
    assert 0.0 <= result.frames.min() and result.frames.max() <= 1.0
    assert result.latents.shape == (1, 4, 7, HEIGHT // 8, WIDTH // 8)
    assert reference_calls.calls == 1 and encoder_calls.calls == 1  # once per job, not per step or window
    assert unet_calls.calls == 3 * 3  # 3 steps x 3 windows ([0-3], [3-6], [6, 0, 1, 2])
    layers = reference_attention.self_attention_layers(models.denoising_unet)
    assert not any(isinstance(l.processor, reference_attention.ReferenceReader) for l in layers.values())


def test_same_seed_same_video_and_the_inputs_matter(models, images):
    reference, poses = images
    first = animate(models, reference, poses, _settings()).latents
    assert torch.equal(first, animate(models, reference, poses, _settings()).latents)
    assert not torch.allclose(first, animate(models, reference, poses, _settings(seed=4)).latents)
    assert not torch.allclose(first, animate(models, reference.flip(1), poses, _settings()).latents)
    assert not torch.allclose(first, animate(models, reference, poses.flip(0), _settings()).latents)
    assert not torch.allclose(first, animate(models, reference, poses, _settings(guidance=1.0)).latents)


def test_pose_frames_of_another_size_are_resized_to_width_and_height(models, images):
    """Documented: like the reference, frames are stretched to width x height (Lanczos); with fit='crop'
    they are first centre-cropped to the target aspect."""
    from PIL import Image

    reference, poses = images
    big = torch.nn.functional.interpolate(poses.permute(0, 3, 1, 2), scale_factor=2.5).permute(0, 2, 3, 1)
    pil = [Image.fromarray((p.numpy() * 255).round().astype("uint8")) for p in big]
    resized = [p.resize((WIDTH, HEIGHT), Image.LANCZOS) for p in pil]
    torch.testing.assert_close(animate(models, reference, big, _settings()).latents,
                               animate(models, reference, resized, _settings()).latents)
    wide = [Image.new("RGB", (3 * WIDTH, HEIGHT), (255, 0, 0)) for _ in pil]
    for image, pose in zip(wide, pil):
        image.paste(pose.resize((WIDTH, HEIGHT)), (WIDTH, 0))
    cropped = [image.crop((WIDTH, 0, 2 * WIDTH, HEIGHT)) for image in wide]
    torch.testing.assert_close(animate(models, reference, wide, _settings(fit="crop")).latents,
                               animate(models, reference, cropped, _settings(fit="crop")).latents)


def test_sizes_are_rounded_down_to_multiples_of_8_like_the_reference(models, images):
    reference, poses = images
    result = animate(models, reference, poses, _settings(width=WIDTH + 7, height=HEIGHT + 3, steps=1))
    assert result.frames.shape == (7, HEIGHT, WIDTH, 3)
    torch.testing.assert_close(result.latents, animate(models, reference, poses, _settings(steps=1)).latents)


def test_alpha_is_dropped_from_the_reference(models, images):
    reference, poses = images
    with_alpha = torch.cat([reference, torch.zeros_like(reference[..., :1])], dim=-1)
    torch.testing.assert_close(animate(models, with_alpha, poses, _settings()).latents,
                               animate(models, reference, poses, _settings()).latents)


@pytest.mark.parametrize("overrides, images_change, name", [
    ({}, {"poses": torch.zeros(0, HEIGHT, WIDTH, 3)}, "pose_frames"),
    ({}, {"reference": torch.rand(2, HEIGHT, WIDTH, 3)}, "reference_image"),
    ({"width": 60}, {}, "width"),  # rounded down to 56: too small
    ({"height": 32}, {}, "height"),
    ({"context_overlap": 4}, {}, "context_overlap"),
    ({"context_frames": tiny.MAX_WINDOW + 1}, {}, "context_frames"),
    ({"steps": 0}, {}, "steps"),
    ({"fit": "zoom"}, {}, "fit"),
])
def test_bad_inputs_name_the_input(models, images, overrides, images_change, name):
    reference, poses = images
    reference = images_change.get("reference", reference)
    poses = images_change.get("poses", poses)
    with pytest.raises(InputError) as info:
        animate(models, reference, poses, _settings(**overrides))
    assert info.value.input_name == name and f"Input '{name}'" in str(info.value)


def test_progress_with_previews_and_interruption(models, images):
    reference, poses = images
    reports = []
    context = RunContext(progress=lambda step, total, preview: reports.append((step, total, preview)), wants_preview=True)
    animate(models, reference, poses, _settings(steps=2), context)
    sampling = [r for r in reports if r[1] == 6]  # 2 steps x 3 windows, then 7 decoded frames
    assert [r[0] for r in sampling] == [1, 2, 3, 4, 5, 6]
    assert [r[2] is not None for r in sampling] == [False, False, True, False, False, True]
    assert sampling[2][2].size == (WIDTH // 8, HEIGHT // 8)
    assert [r[0] for r in reports if r[1] == 7] == list(range(1, 8))

    class Cancelled(Exception):
        pass

    calls = []

    def interrupt():
        calls.append(1)
        if len(calls) == 3:
            raise Cancelled()

    unet_calls = CallCounter(models.denoising_unet)
    with pytest.raises(Cancelled):
        animate(models, reference, poses, _settings(steps=5), RunContext(check_interrupt=interrupt))
    assert unet_calls.calls <= 2
    layers = reference_attention.self_attention_layers(models.denoising_unet)
    assert not any(isinstance(l.processor, reference_attention.ReferenceReader) for l in layers.values())


def test_stages_ask_for_their_modules_before_use(models, images):
    reference, poses = images
    staged = []

    class Recorder:
        def stage(self, modules, memory_required=0):
            staged.append(([type(m).__name__ for m in modules], memory_required))

    animate(models, reference, poses, _settings(steps=2), RunContext(stager=Recorder()))
    order = [names[0] for names, _ in staged]
    assert order[:4] == ["CLIPVisionModelWithProjection", "AutoencoderKL", "UNet2DConditionModel", "PoseGuider"]
    assert order[4:6] == ["DenoisingUNet3D"] * 2 and order[-1] == "AutoencoderKL"
    assert all(memory > 0 for names, memory in staged if names[0] == "DenoisingUNet3D")


def test_without_guidance_overlaps_are_summed_like_the_reference(models, images, monkeypatch):
    """Documented upstream quirk kept for parity: guidance <= 1 skips the division by the overlap count."""
    reference, poses = images
    from diffusers import DDIMScheduler

    seen = []

    original = DDIMScheduler.step

    def spy(self, model_output, timestep, sample, *args, **kwargs):
        seen.append(model_output.clone())
        return original(self, model_output, timestep, sample, *args, **kwargs)

    monkeypatch.setattr(DDIMScheduler, "step", spy)
    unet_outputs = []
    handle = models.denoising_unet.register_forward_hook(lambda m, i, o: unet_outputs.append(o.clone()))
    try:
        animate(models, reference, poses, _settings(steps=1, guidance=1.0))
    finally:
        handle.remove()
    # frame 0 is in windows 1 and 3 ([0-3], [3-6], [6, 0, 1, 2]): its prediction is their sum
    torch.testing.assert_close(seen[0][:, :, 0], unet_outputs[0][:, :, 0] + unet_outputs[2][:, :, 1])


def test_fit_crops_or_pads_to_the_target_aspect():
    from PIL import Image

    wide = Image.new("RGB", (300, 100), (255, 255, 255))
    cropped = aa_pipeline._fit(wide, 64, 80, "crop")
    padded = aa_pipeline._fit(wide, 64, 80, "pad")
    assert cropped.size == (80, 100) and padded.size == (300, 375)
    assert padded.getpixel((150, 0)) == (0, 0, 0) and padded.getpixel((150, 187)) == (255, 255, 255)
    assert aa_pipeline._fit(wide, 64, 80, "stretch") is wide
