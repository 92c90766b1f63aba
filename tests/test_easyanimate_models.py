"""EasyAnimate v1's 3D transformer: released key layout, the motion module's grid attention, size checks."""

import json

import pytest
import torch

from comfyui_animate_suite.pipelines import motion_module
from comfyui_animate_suite.pipelines.easyanimate import loading, models
from comfyui_animate_suite.pipelines.easyanimate.lora import TEXT_ENCODER_PREFIX, TRANSFORMER_PREFIX, lora_targets
from comfyui_animate_suite.pipelines.easyanimate.pipeline import VideoRequest, check_request
from comfyui_animate_suite.core.errors import CheckpointError, InputError
from tiny_models import easyanimate as tiny

# T5 v1.1 XXL, PixArt-alpha's text encoder (google/t5-v1_1-xxl config).
T5_XXL = {"vocab_size": 32128, "d_model": 4096, "d_kv": 64, "d_ff": 10240, "num_layers": 24, "num_heads": 64,
          "feed_forward_proj": "gated-gelu", "is_encoder_decoder": False}


@pytest.fixture(scope="module")
def released(shared_dir):
    return json.loads((shared_dir / "parity" / "easyanimate" / "released_keys.json").read_text())


def _shapes(module) -> dict[str, list[int]]:
    return {key: list(value.shape) for key, value in module.state_dict().items()}


def test_released_layout_at_pixart_xl_size(released):
    transformer = loading.build_v1_transformer(device="meta")
    ours = _shapes(transformer)
    base = released["transformer/diffusion_pytorch_model.safetensors"]
    motion = released["Motion_Module/easyanimate_v1_mm.safetensors"]
    in_motion_module = {k: motion_module.is_motion_module_key(k, motion_module.DIT_MOTION_KEY) for k in ours}
    assert {k: v for k, v in ours.items() if not in_motion_module[k]} == base
    assert {k: v for k, v in ours.items() if in_motion_module[k]} == motion
    assert sum(v.numel() for k, v in transformer.state_dict().items() if in_motion_module[k]) \
        == released["counts"]["motion_module_params"]


def test_lora_targets_are_the_released_kohya_names(released):
    from transformers import T5Config, T5EncoderModel

    with torch.device("meta"):
        t5 = T5EncoderModel(T5Config(**T5_XXL))
    transformer = loading.build_v1_transformer(device="meta")
    expected = released["lora_targets_[out,in]"]
    ours = {}
    for module, prefix in ((transformer, TRANSFORMER_PREFIX), (t5, TEXT_ENCODER_PREFIX)):
        shapes = _shapes(module)
        ours.update({name: shapes[key] for name, key in lora_targets(module, prefix).items()})
    assert ours == expected
    assert sum(name.startswith("lora_unet__") for name in ours) == released["counts"]["lora_unet"]


def test_shipped_configs_are_the_released_ones(released, shared_dir):
    manifest = json.loads((shared_dir / "parity" / "easyanimate" / "manifest.json").read_text())
    assert loading.shipped_config("v1_motion_module.json") == manifest["transformer_additional_kwargs"]
    assert loading.shipped_config("v1_noise_scheduler.json") == manifest["noise_scheduler_kwargs"]
    shipped = loading.shipped_config("pixart_xl_2_512x512_transformer.json")
    assert {k: shipped[k] for k in released["transformer_config"]} == released["transformer_config"]


def test_unsupported_configs_are_refused_with_the_reason():
    config = dict(tiny.V1_TRANSFORMER_CONFIG, norm_type="ada_norm_zero")
    with pytest.raises(CheckpointError, match="norm_type='ada_norm_zero'"):
        models.TransformerConfig.from_pixart(config)
    kwargs = dict(loading.shipped_config("v1_motion_module.json"), basic_block_type="selfattentiontemporal")
    with pytest.raises(CheckpointError, match="basic_block_type"):
        models.motion_settings(kwargs)
    shipped = loading.shipped_config("v1_motion_module.json")
    options = shipped["motion_module_kwargs"]
    with pytest.raises(CheckpointError, match="unknown option 'zero_initialize'"):
        models.motion_settings({**shipped, "motion_module_kwargs": {**options, "zero_initialize": True}})
    # What AnimateAnyone refuses, v1's config may ask for: any number of blocks, no frame positions.
    settings = models.motion_settings({**shipped, "motion_module_kwargs": {
        **options, "attention_block_types": ["Temporal_Self"], "temporal_position_encoding": False}})
    assert (settings.attention_block_types, settings.temporal_position_encoding) == (("Temporal_Self",), False)
    assert (settings.grid, settings.block_size, settings.temporal_position_encoding_max_len) == (True, 2, 4096)


def _attention() -> motion_module.TemporalAttention:
    return motion_module.TemporalAttention(64, 8, 8, loading.v1_motion_module_config())


def test_grid_fold_makes_one_sequence_per_2x2_cell_across_frames():
    attention = _attention()
    attention.pos_encoder = None
    frames, height, width = 3, 4, 6
    # token value = its (frame, row, column) so the fold's order can be read back
    f, r, c = torch.meshgrid(torch.arange(frames), torch.arange(height), torch.arange(width), indexing="ij")
    ids = torch.stack([f, r, c], dim=-1).reshape(frames, height * width, 3).float()
    x = torch.nn.functional.pad(ids, (0, 61))
    sequences = attention.fold(x, frames, height, width)
    assert sequences.shape == (height // 2 * width // 2, frames * 4, 64)
    first = sequences[0, :, :3].long().tolist()
    assert first == [[t, dr, dc] for t in range(frames) for dr in range(2) for dc in range(2)]
    cell = sequences[height // 2 * width // 2 - 1, :, :3]
    assert set(cell[:, 1].tolist()) == {height - 2, height - 1} and set(cell[:, 2].tolist()) == {width - 2, width - 1}
    assert torch.equal(attention.unfold(sequences, frames, height, width), x)


def test_temporal_blocks_mix_only_within_a_cell_and_add_frame_position_before_the_fold():
    torch.manual_seed(0)
    module = motion_module.MotionModule(64, loading.v1_motion_module_config()).eval()
    block = module.temporal_transformer.transformer_blocks[0]  # after the GroupNorm, which sees whole frames
    frames, height, width = 4, 4, 4
    x = torch.randn(frames, height * width, 64)
    changed = x.clone()
    changed[1, 0] += torch.randn(64)  # frame 1, row 0, column 0
    with torch.no_grad():
        delta = (block(changed, frames, height, width) - block(x, frames, height, width)).abs().amax(-1)
    moved = delta.reshape(frames, height, width) > 1e-6
    assert moved[:, :2, :2].all(), "every frame of the touched 2x2 cell changes"
    moved[:, :2, :2] = False
    assert not moved.any(), "tokens outside the cell are untouched"
    attention = module.temporal_transformer.transformer_blocks[0].attention_blocks[0]
    folded = attention.fold(torch.zeros(frames, height * width, 64), frames, height, width)
    # the 4 tokens of one cell share frame f's encoding
    for frame in range(frames):
        cell = folded[0, frame * 4:(frame + 1) * 4]
        assert torch.equal(cell, attention.pos_encoder.pe[0, frame].expand(4, 64))


def test_patch_embed_matches_diffusers_at_the_sample_size_and_others():
    from diffusers.models.embeddings import PatchEmbed

    torch.manual_seed(0)
    ours = models.PatchEmbed(4, 64, patch_size=2, sample_size=8)
    theirs = PatchEmbed(height=8, width=8, patch_size=2, in_channels=4, embed_dim=64, interpolation_scale=1)
    theirs.load_state_dict(ours.state_dict())
    for height, width in ((8, 8), (8, 12), (48, 80)):
        latents = torch.randn(2, 4, height, width)
        with torch.no_grad():
            assert torch.equal(ours(latents), theirs(latents))


@pytest.mark.parametrize("field, value, message", [
    ("width", 500, "a multiple of 32, e.g. 512"),
    ("height", 48, "a multiple of 32"),
    ("frames", 0, "1 to 4096"),
    ("steps", 0, "at least 1"),
])
def test_sizes_that_break_the_grid_are_refused_naming_the_input(field, value, message):
    request = VideoRequest(prompt="x", **{field: value})
    with pytest.raises(InputError, match=f"Input '{field}'") as info:
        check_request(request, size_multiple=32, max_frames=4096)
    assert message in str(info.value)
    check_request(VideoRequest(prompt="x", width=480, height=288), size_multiple=32, max_frames=4096)


def test_forward_works_when_comfyui_leaves_non_leaf_tensors_on_the_offload_device():
    # ComfyUI's partial load moves or streams leaf layers only; scale_shift_table (held by blocks) and
    # the motion module's pe buffers stay behind. The meta device stands in for the GPU.
    model = tiny.v1_transformer()
    meta = torch.device("meta")
    for module in model.modules():
        own = list(module.parameters(recurse=False))
        if own and len(own) == len(list(module.parameters())):
            module.to(meta)
    assert model.scale_shift_table.device.type == "cpu"
    assert model.transformer_blocks[0].attn_temporal.temporal_transformer.transformer_blocks[0] \
        .attention_blocks[0].pos_encoder.pe.device.type == "cpu"
    latents = torch.zeros(2, 4, 2, 8, 8, device=meta)
    out = model(latents, torch.tensor([999, 999], device=meta), torch.zeros(2, 6, 32, device=meta),
                torch.ones(2, 6, dtype=torch.long, device=meta))
    assert out.shape == (2, 8, 2, 8, 8) and out.device == meta


def test_v1_defaults_to_its_own_negative_prompt(tmp_path, monkeypatch):
    from comfyui_animate_suite.core.context import RunContext
    from comfyui_animate_suite.pipelines.easyanimate import pipeline

    encoded = []

    def stop_after_encoding(tokenizer, text_encoder, prompts, ctx):
        encoded.append(prompts)
        raise InterruptedError

    monkeypatch.setattr(pipeline, "encode_t5", stop_after_encoding)
    files = tiny.write_v1(tmp_path)
    model = loading.load_v1(files.base, files.motion_module, torch.float32)
    with pytest.raises(InterruptedError):
        pipeline.generate_v1(model, VideoRequest(prompt="x", width=64, height=64, frames=2, steps=1), RunContext())
    assert encoded == [[pipeline.V1_NEGATIVE_PROMPT, "x"]]
