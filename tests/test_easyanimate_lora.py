"""Kohya-style EasyAnimate LoRA files: reading, matching to the model's layers, merging and unmerging."""

import pytest
import torch

from comfyui_animate_suite.pipelines.easyanimate import lora
from comfyui_animate_suite.core.errors import CheckpointError, CheckpointMismatchError
from tiny_models import easyanimate as tiny
from tiny_models import save_weights


@pytest.fixture(scope="module")
def modules():
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    return tiny.v1_transformer(), T5EncoderModel(T5Config(**tiny.T5_CONFIG)).eval()


def test_kohya_names_follow_easyanimates_lora_network(modules):
    transformer, text_encoder = modules
    names = lora.lora_targets(transformer, lora.TRANSFORMER_PREFIX)
    assert names["lora_unet__transformer_blocks_0_attn1_to_q"] == "transformer_blocks.0.attn1.to_q.weight"
    assert names["lora_unet__transformer_blocks_1_attn_temporal_temporal_transformer_transformer_blocks_0_attention_blocks_1_to_out_0"] \
        == "transformer_blocks.1.attn_temporal.temporal_transformer.transformer_blocks.0.attention_blocks.1.to_out.0.weight"
    assert names["lora_unet__adaln_single_emb_timestep_embedder_linear_1"] == "adaln_single.emb.timestep_embedder.linear_1.weight"
    encoder_names = lora.lora_targets(text_encoder, lora.TEXT_ENCODER_PREFIX)
    assert encoder_names["lora_te_encoder_block_1_layer_1_DenseReluDense_wi_0"] == "encoder.block.1.layer.1.DenseReluDense.wi_0.weight"
    # 22 linear layers per block (10 PixArt + 12 motion module) and 6 outside the blocks; 7 per T5 block
    assert len(names) == 22 * 2 + 6 and len(encoder_names) == 7 * 2


def test_merge_adds_the_scaled_product_and_unmerge_restores_exactly(modules, tmp_path):
    transformer, text_encoder = modules
    path = tiny.write_lora(tmp_path / "lora.safetensors", tiny.v1_lora_layers(transformer, text_encoder), rank=4, alpha=2.0)
    match = lora.match_lora(lora.read_lora(path), transformer, text_encoder).check(str(path), "tiny")
    assert match.transformer and match.text_encoder
    key, layer = next(iter(match.transformer.items()))
    before = transformer.state_dict()[key].clone()
    untouched = {k: v.clone() for k, v in transformer.state_dict().items() if k not in match.transformer}
    with lora.merged(transformer, match.transformer, 0.55):
        expected = before + 0.55 * (2.0 / 4) * layer.up @ layer.down
        assert torch.allclose(transformer.state_dict()[key], expected, atol=1e-6)
        assert not torch.equal(transformer.state_dict()[key], before)
    assert torch.equal(transformer.state_dict()[key], before)
    assert all(torch.equal(transformer.state_dict()[k], v) for k, v in untouched.items())


def test_unmerge_happens_even_when_the_job_fails(modules, tmp_path):
    transformer, text_encoder = modules
    path = tiny.write_lora(tmp_path / "lora.safetensors", tiny.v1_lora_layers(transformer, text_encoder))
    match = lora.match_lora(lora.read_lora(path), transformer, None)
    before = {k: v.clone() for k, v in transformer.state_dict().items()}
    with pytest.raises(RuntimeError, match="interrupted"):
        with lora.merged(transformer, match.transformer, 1.0):
            raise RuntimeError("interrupted")
    assert all(torch.equal(transformer.state_dict()[k], v) for k, v in before.items())


def test_missing_alpha_means_scale_one_and_single_underscore_names_match(modules, tmp_path):
    transformer, _ = modules
    path = tiny.write_lora(tmp_path / "kohya_single.safetensors",
                           {"lora_unet_transformer_blocks_0_ff_net_2": (64, 256)}, alpha=None)
    match = lora.match_lora(lora.read_lora(path), transformer, None).check(str(path), "tiny")
    layer = match.transformer["transformer_blocks.0.ff.net.2.weight"]
    assert layer.alpha is None and layer.scale == 1.0


def test_a_lora_for_another_model_is_refused_naming_the_layers(modules, tmp_path):
    transformer, text_encoder = modules
    path = tiny.write_lora(tmp_path / "sd15_lora.safetensors", {
        "lora_unet_down_blocks_0_attentions_0_proj_in": (64, 64),
        "lora_te_text_model_encoder_layers_0_mlp_fc1": (48, 32),
        "lora_unet__transformer_blocks_0_attn1_to_q": (64, 64),
    })
    match = lora.match_lora(lora.read_lora(path), transformer, text_encoder)
    assert sorted(match.unmatched) == ["lora_te_text_model_encoder_layers_0_mlp_fc1",
                                       "lora_unet_down_blocks_0_attentions_0_proj_in"]
    with pytest.raises(CheckpointMismatchError) as info:
        match.check(str(path), "EasyAnimate v1")
    assert "lora_unet_down_blocks_0_attentions_0_proj_in" in str(info.value) and "EasyAnimate v1" in str(info.value)


def test_wrong_shapes_are_reported(modules, tmp_path):
    transformer, _ = modules
    path = tiny.write_lora(tmp_path / "big.safetensors", {"lora_unet__transformer_blocks_0_attn1_to_q": (1152, 1152)})
    with pytest.raises(CheckpointMismatchError, match="wrong shape"):
        lora.match_lora(lora.read_lora(path), transformer, None).check(str(path), "tiny")


def test_files_that_are_not_linear_loras_are_refused(tmp_path):
    path = save_weights({"transformer_blocks.0.attn1.to_q.weight": torch.zeros(4, 4)}, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match="not a kohya-style"):
        lora.read_lora(path)
