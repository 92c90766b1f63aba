"""SVD sampling: parity with diffusers' StableVideoDiffusionPipeline, conditioning, windows, stages, progress."""

import dataclasses

import numpy as np
import pytest
import torch

from comfyui_animate_suite.core.context import RunContext
from comfyui_animate_suite.core.errors import InputError
from comfyui_animate_suite.core.frame_windows import OVERLAPPING
from comfyui_animate_suite.pipelines.svd import loading, pipeline, samplers, stages
from comfyui_animate_suite.pipelines.svd.pipeline import SVDSettings
from svd_support import HEIGHT, WIDTH, as_image, photo, tiny_svd_files

PARITY_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def parts():
    return loading.load_svd_components(tiny_svd_files().folder)


def _diffusers_frames(parts, image: np.ndarray, settings: SVDSettings) -> torch.Tensor:
    from diffusers import EulerDiscreteScheduler, StableVideoDiffusionPipeline
    from PIL import Image
    from transformers import CLIPImageProcessor

    processor_fields = {k: v for k, v in parts.feature_extractor_config.items() if not k.endswith("_type")}
    reference = StableVideoDiffusionPipeline(
        vae=parts.vae, image_encoder=parts.image_encoder, unet=parts.unet,
        scheduler=EulerDiscreteScheduler.from_config(parts.scheduler_config),
        feature_extractor=CLIPImageProcessor(**processor_fields),
    )
    reference.set_progress_bar_config(disable=True)
    out = reference(
        Image.fromarray(image), height=image.shape[0], width=image.shape[1], num_frames=settings.num_frames or None,
        num_inference_steps=settings.steps, min_guidance_scale=settings.min_guidance,
        max_guidance_scale=settings.max_guidance, fps=settings.fps, motion_bucket_id=settings.motion_bucket_id,
        noise_aug_strength=settings.noise_aug_strength, decode_chunk_size=settings.decode_chunk_size or None,
        generator=torch.Generator().manual_seed(settings.seed), output_type="pt",
    ).frames[0]
    return out.permute(0, 2, 3, 1)


PARITY_CASES = {
    "reference-defaults": SVDSettings(width=WIDTH, height=HEIGHT, steps=3, seed=42, decode_chunk_size=0),
    "more-frames-no-guidance": SVDSettings(width=WIDTH, height=HEIGHT, num_frames=6, context_frames=6, steps=2,
                                           fps=12, motion_bucket_id=40, noise_aug_strength=0.1, min_guidance=1.0,
                                           max_guidance=1.0, seed=7, decode_chunk_size=4),
}


@pytest.mark.parametrize("case", PARITY_CASES, ids=list(PARITY_CASES))
def test_frames_equal_diffusers_stable_video_diffusion_pipeline(parts, case):
    settings = PARITY_CASES[case]
    image = photo()
    ours = pipeline.generate(parts, as_image(image), settings)
    reference = _diffusers_frames(parts, image, settings)
    assert ours.shape == reference.shape == (settings.num_frames or parts.num_frames, HEIGHT, WIDTH, 3)
    assert reference.std() > 0.01, "degenerate reference output"
    assert (ours - reference).abs().max().item() <= PARITY_TOLERANCE


def test_single_file_gives_the_same_frames_as_the_diffusers_folder(parts):
    files = tiny_svd_files()
    single = loading.load_svd_components(files.single, config_dir=files.config_dir)
    settings = dataclasses.replace(PARITY_CASES["reference-defaults"], steps=2)
    from_folder = pipeline.generate(parts, as_image(photo()), settings)
    from_single = pipeline.generate(single, as_image(photo()), settings)
    assert from_folder.std() > 0.01
    assert (from_folder - from_single).abs().max().item() <= PARITY_TOLERANCE


def test_karras_schedule_equals_the_diffusers_euler_scheduler(parts):
    from diffusers import EulerDiscreteScheduler

    reference = EulerDiscreteScheduler.from_config(parts.scheduler_config)
    for steps in (1, 7, 25):
        reference.set_timesteps(steps)
        sigmas, scale = samplers.schedule(parts.scheduler_config, steps)
        assert torch.equal(sigmas, reference.sigmas)
        assert torch.equal(torch.as_tensor(scale), torch.as_tensor(reference.init_noise_sigma))


# ----------------------------------------------------------------------------- samplers on a known ODE


def _gaussian_denoiser(data_std: float):
    # For data ~ N(0, s^2) the ideal denoiser is x * s^2 / (s^2 + sigma^2); the ODE solution is exact.
    return lambda x, sigma: x * data_std**2 / (data_std**2 + sigma**2)


def _ode_error(name: str, steps: int) -> float:
    data_std, config = 0.5, {"sigma_min": 0.002, "sigma_max": 80.0}
    sigmas, _ = samplers.schedule(config, steps)
    start = torch.linspace(-3, 3, 101) * 80.0
    end = samplers.sample(name, _gaussian_denoiser(data_std), start.clone(), sigmas)
    exact = start * data_std / (data_std**2 + 80.0**2) ** 0.5
    return (end - exact).abs().max().item()


def test_deterministic_samplers_solve_the_probability_flow_ode():
    euler = {steps: _ode_error("euler", steps) for steps in (20, 40, 80)}
    assert euler[80] < euler[40] < euler[20]
    assert _ode_error("dpmpp_2m", 20) < euler[20] / 2  # second order: better in the same steps
    assert _ode_error("dpmpp_2m", 80) < 0.01 < euler[80]


def _ancestral_std(steps: int, seed: int = 0) -> float:
    data_std, sigma_max = 0.5, 80.0
    sigmas = samplers.karras_sigmas(steps, 0.002, sigma_max)
    generator = torch.Generator().manual_seed(seed)
    start = torch.randn(10000, generator=generator) * (data_std**2 + sigma_max**2) ** 0.5
    return samplers.sample("euler_ancestral", _gaussian_denoiser(data_std), start, sigmas, generator).std().item()


def test_ancestral_sampler_converges_to_the_data_distribution():
    # Coarse ancestral steps lose some variance; with more steps the samples reach std 0.5.
    stds = [_ancestral_std(steps) for steps in (30, 100, 1000)]
    assert stds[0] < stds[1] < stds[2]
    assert stds[2] == pytest.approx(0.5, rel=0.02)
    assert _ancestral_std(30, seed=1) != stds[0]


# ----------------------------------------------------------------------------- conditioning and windows


class _UNetSpy:
    """Records each UNet call (sample shape, added time ids, embeddings) and runs the real UNet."""

    def __init__(self, unet, monkeypatch):
        self.calls = []
        real = unet.forward

        def forward(sample, timestep, encoder_hidden_states, added_time_ids, return_dict=True):
            self.calls.append({"shape": tuple(sample.shape), "time_ids": added_time_ids.clone(),
                               "embeds": encoder_hidden_states.clone(), "image_latents": sample[:, :, 4:].clone()})
            return real(sample, timestep, encoder_hidden_states=encoder_hidden_states,
                        added_time_ids=added_time_ids, return_dict=return_dict)

        monkeypatch.setattr(unet, "forward", forward)


def _quick(**changes) -> SVDSettings:
    return dataclasses.replace(SVDSettings(width=WIDTH, height=HEIGHT, steps=1, decode_chunk_size=0), **changes)


def test_conditioning_uses_fps_minus_one_bucket_and_noise(parts, monkeypatch):
    spy = _UNetSpy(parts.unet, monkeypatch)
    pipeline.generate(parts, as_image(photo()), _quick(fps=10, motion_bucket_id=99, noise_aug_strength=0.05))
    assert spy.calls[0]["time_ids"][0].tolist() == pytest.approx([9.0, 99.0, 0.05])
    spy.calls.clear()
    pipeline.generate(parts, as_image(photo()), _quick(motion="strong", motion_bucket_id=1, noise_aug_strength=0.0))
    preset = pipeline.MOTION_PRESETS["strong"]
    assert spy.calls[0]["time_ids"][0].tolist() == pytest.approx([6.0, preset.motion_bucket_id, preset.noise_aug_strength])


def test_motion_presets_are_ordered_from_still_to_extreme():
    presets = [pipeline.MOTION_PRESETS[name] for name in ("still", "gentle", "normal", "strong", "extreme")]
    buckets = [p.motion_bucket_id for p in presets]
    noise = [p.noise_aug_strength for p in presets]
    assert buckets == sorted(buckets) and len(set(buckets)) == 5 and noise == sorted(noise)
    assert pipeline.MOTION_PRESETS["normal"] == pipeline.MotionPreset(127, 0.02, 3.0)  # the reference defaults
    resolved = SVDSettings(motion="still", motion_bucket_id=200, max_guidance=9.0).resolved()
    assert (resolved.motion_bucket_id, resolved.noise_aug_strength, resolved.max_guidance) == (20, 0.0, 2.5)
    assert SVDSettings(motion="custom", motion_bucket_id=200).resolved().motion_bucket_id == 200


def test_guidance_runs_an_unconditional_pass_only_when_needed(parts, monkeypatch):
    spy = _UNetSpy(parts.unet, monkeypatch)
    pipeline.generate(parts, as_image(photo()), _quick(min_guidance=1.0, max_guidance=2.0))
    (call,) = spy.calls
    assert call["shape"][0] == 2  # unconditional + conditional in one small batch
    assert not call["embeds"][0].any() and call["embeds"][1].any()
    assert not call["image_latents"][0].any() and call["image_latents"][1].any()
    spy.calls.clear()
    pipeline.generate(parts, as_image(photo()), _quick(min_guidance=1.0, max_guidance=1.0))
    assert [c["shape"][0] for c in spy.calls] == [1]


def test_long_clips_are_sampled_in_native_length_windows(parts, monkeypatch):
    spy = _UNetSpy(parts.unet, monkeypatch)
    frames = pipeline.generate(parts, as_image(photo()), _quick(num_frames=7, context_overlap=2, max_guidance=1.0))
    assert frames.shape[0] == 7 and torch.isfinite(frames).all()
    windows = OVERLAPPING.windows(7, parts.num_frames, 2)
    assert len(windows) == 3 and len(spy.calls) == len(windows)
    assert all(call["shape"][1] == parts.num_frames for call in spy.calls)


# ----------------------------------------------------------------------------- sizes


def test_target_size_follows_the_photo_orientation():
    settings = SVDSettings(width=1024, height=576)
    assert pipeline.target_size(4020, 2261, settings, 64) == (1024, 576)
    assert pipeline.target_size(2261, 4020, settings, 64) == (576, 1024)
    assert pipeline.target_size(2261, 4020, dataclasses.replace(settings, orientation="as set"), 64) == (1024, 576)
    assert pipeline.target_size(500, 500, settings, 64) == (1024, 576)
    assert pipeline.target_size(800, 600, SVDSettings(width=1000, height=560), 64) == (1024, 576)


@pytest.mark.parametrize("mode", ["crop", "pad", "stretch"])
def test_portrait_photos_give_portrait_clips_in_every_resize_mode(parts, mode):
    portrait = as_image(photo(width=20, height=36))
    frames = pipeline.generate(parts, portrait, _quick(resize_mode=mode, max_guidance=1.0))
    assert frames.shape == (parts.num_frames, WIDTH, HEIGHT, 3)


# ----------------------------------------------------------------------------- stages, progress, interruption, memory


class _RecordingStager:
    def __init__(self):
        self.staged = []

    def stage(self, modules, memory_required=0):
        self.staged.append((tuple(type(m).__name__ for m in modules), memory_required))


def test_each_stage_stages_only_its_module(parts):
    stager = _RecordingStager()
    pipeline.generate(parts, as_image(photo()), _quick(), RunContext(stager=stager))
    names = [modules for modules, _ in stager.staged]
    assert names == [("CLIPVisionModelWithProjection",), ("AutoencoderKLTemporalDecoder",),
                     ("UNetSpatioTemporalConditionModel",), ("AutoencoderKLTemporalDecoder",)]
    assert all(memory > 0 for modules, memory in stager.staged[1:])


def test_progress_reports_every_step_with_a_preview_then_decoding(parts):
    reports = []
    ctx = RunContext(progress=lambda step, total, preview: reports.append((step, total, preview)), wants_preview=True)
    pipeline.generate(parts, as_image(photo()), _quick(steps=3, decode_chunk_size=2), ctx)
    steps = [r for r in reports if r[1] == 3]
    assert [s for s, _, _ in steps] == [1, 2, 3]
    assert all(p is not None and p.size == (WIDTH // 2, HEIGHT // 2) for _, _, p in steps)
    decode = [(s, t) for s, t, _ in reports[3:]]
    assert decode == [(1, 2), (2, 2)]  # 4 frames in chunks of 2


class _Cancelled(Exception):
    pass


def test_interruption_stops_sampling(parts, monkeypatch):
    spy = _UNetSpy(parts.unet, monkeypatch)
    checks = []

    def check():
        checks.append(1)
        if len(spy.calls) >= 2:
            raise _Cancelled

    with pytest.raises(_Cancelled):
        pipeline.generate(parts, as_image(photo()), _quick(steps=10), RunContext(check_interrupt=check))
    assert len(spy.calls) == 2


def test_decoding_halves_the_chunk_after_out_of_memory(parts, monkeypatch):
    latents = torch.randn(1, 4, 4, HEIGHT // 2, WIDTH // 2, generator=torch.Generator().manual_seed(0))
    expected = pipeline.decode_latents(parts.vae, latents, 1, RunContext())
    sizes = []
    real = parts.vae.decode

    def decode(z, num_frames=None, return_dict=True):
        sizes.append(z.shape[0])
        if z.shape[0] > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(z, num_frames=num_frames)

    monkeypatch.setattr(parts.vae, "decode", decode)
    frames = pipeline.decode_latents(parts.vae, latents, 4, RunContext())
    assert sizes[:2] == [4, 2] and set(sizes[2:]) == {1}
    assert torch.equal(frames, expected)


@pytest.mark.parametrize("changes, input_name", [
    ({"sampler": "heun"}, "sampler"),
    ({"motion": "wild"}, "motion"),
    ({"num_frames": 9, "context_overlap": 4}, "context_overlap"),  # window 4 (the model's) needs overlap < 4
    ({"steps": 0}, "steps"),
    ({"resize_mode": "zoom"}, "resize_mode"),
])
def test_bad_settings_name_the_input(parts, changes, input_name):
    with pytest.raises(InputError) as error:
        pipeline.generate(parts, as_image(photo()), _quick(**changes))
    assert error.value.input_name == input_name


@pytest.mark.parametrize("size", [(80, 80), (64, 48), (512, 384), (576, 1024), (300, 200)])
def test_clip_resize_equals_the_one_diffusers_pipelines_use(size):
    """StableAnimator's reference resizes with diffusers' helper; the shared stage gives the same bits."""
    helpers = pytest.importorskip("diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion")
    if not hasattr(helpers, "_resize_with_antialiasing"):
        pytest.skip("this diffusers has no _resize_with_antialiasing")
    pixels = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(sum(size))) * 2 - 1
    assert torch.equal(stages.resize_antialiased(pixels, (224, 224)), helpers._resize_with_antialiasing(pixels, (224, 224)))
