"""EasyAnimate nodes under the ComfyUI stand-in: loaders, LoRA patches, sampler, errors, progress, cancel."""

import pytest
import torch

from tiny_models import easyanimate as tiny

V1_BASE = "easyanimate/PixArt-XL-2-512x512"
SMALL = dict(prompt="a fox in the snow", negative_prompt="ugly", width=64, height=64, frames=3, steps=2,
             guidance=6.0, seed=7, sampler="Euler A")


@pytest.fixture(scope="module")
def v1_files(comfy):
    return tiny.write_v1(comfy.models / "easyanimate")


@pytest.fixture(scope="module")
def v1_model(v1_files, node_class_module):
    (model,) = node_class_module("AnimateSuiteEasyAnimateV1Loader").execute(V1_BASE, tiny.V1_MOTION_MODULE, "fp32")
    return model


@pytest.fixture(scope="module")
def node_class_module(comfy):
    return lambda name: comfy.package.NODE_CLASS_MAPPINGS[name]


@pytest.fixture
def errors(comfy):
    return comfy.module("core.errors")


@pytest.fixture
def progress(comfy):
    import comfy.utils

    seen = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: seen.append((value, total, preview)))
    yield seen
    comfy.utils.set_progress_bar_global_hook(None)


def _sample(node_class, model, **overrides):
    return node_class("AnimateSuiteEasyAnimateSampler").execute(model, **{**SMALL, **overrides})


def test_v1_text_to_video_through_the_nodes(comfy, run_node, v1_files, progress):
    (model,) = run_node("AnimateSuiteEasyAnimateV1Loader", base_model=V1_BASE, motion_module=tiny.V1_MOTION_MODULE,
                        precision="auto")
    assert model.version == "v1" and set(model.patchers) == {"transformer", "text_encoder", "vae"}
    images, fps = run_node("AnimateSuiteEasyAnimateSampler", model=model, **SMALL)
    assert images.shape == (3, 64, 64, 3) and images.dtype == torch.float32
    assert 0 <= images.min() and images.max() <= 1 and fps == 12.0
    sampling = [(value, total) for value, total, _ in progress if total == SMALL["steps"]]
    assert sampling == [(1, 2), (2, 2)]
    assert any(preview is not None for value, total, preview in progress if total == SMALL["steps"])
    again, _ = run_node("AnimateSuiteEasyAnimateSampler", model=model, **SMALL)
    other, _ = run_node("AnimateSuiteEasyAnimateSampler", model=model, **{**SMALL, "seed": 8})
    assert torch.equal(images, again) and not torch.equal(images, other)


def test_lora_node_patches_clones_and_leaves_the_loaded_model_alone(comfy, v1_model, node_class_module):
    transformer, text_encoder = v1_model.components.transformer, v1_model.components.text_encoder
    layers = tiny.v1_lora_layers(transformer, text_encoder)
    tiny.write_lora(comfy.models / "loras" / "tiny_easyanimate_lora.safetensors", layers, rank=2, alpha=1.0)
    weights_before = {k: v.clone() for k, v in transformer.state_dict().items()}
    (with_lora,) = node_class_module("AnimateSuiteEasyAnimateLoRA").execute(v1_model, "tiny_easyanimate_lora.safetensors", 0.8)

    patched = with_lora.patchers["transformer"]
    assert patched is not v1_model.patchers["transformer"] and patched.model is transformer
    assert not v1_model.patchers["transformer"].patches
    lora_keys = {key for name, key in _targets(transformer, "lora_unet").items() if name in layers}
    assert set(patched.patches) == lora_keys
    strength, value, strength_model = patched.patches[sorted(lora_keys)[0]][0][:3]
    assert strength == 0.8 and strength_model == 1.0
    assert with_lora.patchers["text_encoder"].patches and with_lora.patchers["vae"] is v1_model.patchers["vae"]

    plain, _ = _sample(node_class_module, v1_model)
    patched_frames, _ = _sample(node_class_module, with_lora)
    assert (plain - patched_frames).abs().max() > 1e-3
    assert all(torch.equal(transformer.state_dict()[k], v) for k, v in weights_before.items())
    (off,) = node_class_module("AnimateSuiteEasyAnimateLoRA").execute(v1_model, "tiny_easyanimate_lora.safetensors", 0.0)
    assert torch.equal(_sample(node_class_module, off)[0], plain)


def test_stand_in_merge_equals_the_pipeline_merge(comfy, v1_model, node_class_module):
    from comfyui_animate_suite.core.context import RunContext
    from comfyui_animate_suite.pipelines.easyanimate import lora, pipeline

    path = comfy.models / "loras" / "tiny_easyanimate_lora.safetensors"
    bridge = comfy.module("nodes.comfy_bridge")
    assert not bridge.runtime_patches_weights()  # the stand-in: the sampler merges the patches itself
    (with_lora,) = node_class_module("AnimateSuiteEasyAnimateLoRA").execute(v1_model, path.name, 0.6)
    frames, _ = _sample(node_class_module, with_lora)
    components = v1_model.components
    match = lora.match_lora(lora.read_lora(path), components.transformer, components.text_encoder)
    request = pipeline.VideoRequest(**SMALL)
    with lora.merged(components.transformer, match.transformer, 0.6), lora.merged(components.text_encoder, match.text_encoder, 0.6):
        expected = pipeline.generate_v1(components, request, RunContext()).frames
    assert torch.equal(frames, expected)


def test_lora_patch_values_are_what_comfyuis_calculate_weight_reads(comfy):
    bridge = comfy.module("nodes.comfy_bridge")
    up, down = torch.randn(8, 2), torch.randn(2, 6)
    value = bridge.lora_patch_value(up, down, 1.0)
    try:
        from comfy.weight_adapter.lora import LoRAAdapter
    except ImportError:
        kind, weights = value
        assert kind == "lora"
    else:
        assert isinstance(value, LoRAAdapter)
        weights = value.weights
    assert weights[0] is up and weights[1] is down and weights[2] == 1.0 and len(weights) == 6


def _targets(module, prefix):
    from comfyui_animate_suite.pipelines.easyanimate.lora import lora_targets

    return lora_targets(module, prefix)


def test_a_lora_for_another_model_is_refused_with_the_unmatched_layers(comfy, v1_model, node_class_module, errors):
    tiny.write_lora(comfy.models / "loras" / "sd15_style.safetensors",
                    {"lora_unet_down_blocks_0_attentions_0_proj_in": (320, 320),
                     "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_q": (1280, 1280)})
    with pytest.raises(errors.CheckpointMismatchError) as info:
        node_class_module("AnimateSuiteEasyAnimateLoRA").execute(v1_model, "sd15_style.safetensors", 1.0)
    message = str(info.value)
    assert "2 unexpected keys" in message and "lora_unet_down_blocks_0_attentions_0_proj_in" in message


@pytest.mark.parametrize("overrides, name, expected", [
    ({"width": 48}, "width", "multiple of 32, e.g. 64"),
    ({"height": 100}, "height", "multiple of 32"),
    ({"sampler": "Flow"}, "sampler", "v5.1's sampler"),
])
def test_bad_inputs_are_refused_naming_the_input(v1_model, node_class_module, errors, overrides, name, expected):
    with pytest.raises(errors.InputError) as info:
        _sample(node_class_module, v1_model, **overrides)
    assert f"Input '{name}'" in str(info.value) and expected in str(info.value)


def test_cancel_stops_sampling(comfy, v1_model, node_class_module):
    import comfy.model_management as model_management

    model_management.interrupt_current_processing(True)
    try:
        with pytest.raises(model_management.InterruptProcessingException):
            _sample(node_class_module, v1_model)
    finally:
        model_management.interrupt_current_processing(False)


def test_loader_errors_name_what_is_missing(comfy, v1_files, node_class_module, errors):
    import shutil

    broken = comfy.models / "easyanimate" / "PixArt-no-vae"
    shutil.copytree(v1_files.base, broken)
    shutil.rmtree(broken / "vae")
    loader = node_class_module("AnimateSuiteEasyAnimateV1Loader")
    with pytest.raises(errors.ModelNotFoundError, match="'vae/'"):
        loader.execute("easyanimate/PixArt-no-vae", tiny.V1_MOTION_MODULE, "fp32")
    other = tiny.write_lora(comfy.models / "easyanimate" / "not_a_motion_module.safetensors",
                            {"lora_unet__proj_out": (32, 64)})
    with pytest.raises(errors.CheckpointMismatchError, match="missing keys: transformer_blocks.0.attn_temporal"):
        loader.execute(V1_BASE, other.name, "fp32")
    with pytest.raises(errors.InputError):
        loader.execute("easyanimate/../..", tiny.V1_MOTION_MODULE, "fp32")


def test_v51_through_the_same_sampler_node(comfy, run_node, node_class_module, errors):
    tiny.write_v51(comfy.models / "diffusers" / "EasyAnimateV5.1-tiny-diffusers")
    (model,) = run_node("AnimateSuiteEasyAnimateV51Loader", model="diffusers/EasyAnimateV5.1-tiny-diffusers", precision="fp32")
    assert model.version == "v5.1"
    images, fps = run_node("AnimateSuiteEasyAnimateSampler", model=model,
                           **{**SMALL, "width": 32, "height": 32, "frames": 5, "sampler": "Flow"})
    assert images.shape == (5, 32, 32, 3) and fps == 8.0
    with pytest.raises(errors.InputError, match="Input 'sampler'"):
        _sample(node_class_module, model, width=32, height=32, sampler="DPM++")
