"""EasyAnimate v5.1 from a diffusers folder, against diffusers' own EasyAnimatePipeline."""

import pytest
import torch

from comfyui_animate_suite.core.context import RunContext
from comfyui_animate_suite.pipelines.easyanimate import loading, pipeline
from comfyui_animate_suite.core.errors import CheckpointError, InputError
from tiny_models import easyanimate as tiny


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tiny.write_v51(tmp_path_factory.mktemp("v51") / "EasyAnimateV5.1-7b-zh-diffusers")


def _request(**overrides):
    settings = dict(prompt="A panda playing guitar in a bamboo forest", negative_prompt="static, ugly", width=32,
                    height=48, frames=9, steps=3, guidance=6.0, seed=5, sampler="Flow")
    settings.update(overrides)
    return pipeline.VideoRequest(**settings)


def _diffusers_frames(folder, request) -> torch.Tensor:
    from diffusers import EasyAnimatePipeline

    reference = EasyAnimatePipeline.from_pretrained(str(folder), local_files_only=True)
    reference.set_progress_bar_config(disable=True)
    video = reference(prompt=request.prompt, negative_prompt=request.negative_prompt, num_frames=request.frames,
                      height=request.height, width=request.width, num_inference_steps=request.steps,
                      guidance_scale=request.guidance, generator=torch.Generator("cpu").manual_seed(request.seed),
                      output_type="pt").frames
    return video[0].permute(0, 2, 3, 1)  # f h w c


@pytest.mark.parametrize("overrides", [{}, {"guidance": 1.0, "frames": 5}], ids=["guided", "unguided"])
def test_matches_diffusers_easyanimate_pipeline(folder, overrides):
    request = _request(**overrides)
    model = loading.load_v51(folder, torch.float32)
    steps = []
    context = RunContext(progress=lambda step, total, preview=None: steps.append((step, total)))
    result = pipeline.generate_v51(model, request, context)
    expected = _diffusers_frames(folder, request)
    assert result.frames.shape == expected.shape == (request.frames, request.height, request.width, 3)
    assert (result.frames - expected).abs().max() < 1e-5
    assert result.fps == pipeline.V51_FPS
    assert steps[-1] == (request.steps, request.steps)


def test_frames_follow_the_vaes_4x_time_compression(folder):
    model = loading.load_v51(folder, torch.float32)
    result = pipeline.generate_v51(model, _request(frames=8, steps=1), RunContext())
    assert result.latents.shape[2] == 2 and result.frames.shape[0] == 5


def test_v51_takes_only_its_flow_sampler_and_multiples_of_16(folder):
    model = loading.load_v51(folder, torch.float32)
    with pytest.raises(InputError, match="Input 'sampler'.*flow matching"):
        pipeline.generate_v51(model, _request(sampler="DPM++"), RunContext())
    with pytest.raises(InputError, match="Input 'width'.*multiple of 16"):
        pipeline.generate_v51(model, _request(width=40), RunContext())


def test_folders_of_the_other_version_are_refused_clearly(folder, tmp_path):
    with pytest.raises(CheckpointError, match="not a PixArt-alpha transformer"):
        loading.load_v1(folder, folder / "transformer" / "diffusion_pytorch_model.safetensors", torch.float32)
    v1 = tiny.write_v1(tmp_path)
    with pytest.raises(CheckpointError, match="not a text-to-video EasyAnimatePipeline"):
        loading.load_v51(v1.base, torch.float32)


def test_v51_defaults_to_its_own_negative_prompt_and_takes_any_other(folder, monkeypatch):
    encoded = []

    def stop_after_encoding(tokenizer, text_encoder, prompts, ctx):
        encoded.append(prompts)
        raise InterruptedError

    monkeypatch.setattr(pipeline, "encode_qwen", stop_after_encoding)
    model = loading.load_v51(folder, torch.float32)
    for negative in (None, "", "blurry"):
        with pytest.raises(InterruptedError):
            pipeline.generate_v51(model, _request(negative_prompt=negative), RunContext())
    assert [prompts[0] for prompts in encoded] == [pipeline.V51_NEGATIVE_PROMPT, "", "blurry"]
