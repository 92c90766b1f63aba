"""LoRA adapters and the kohya files they are saved as."""

import json

import pytest
import torch
from torch import nn

from comfyui_animate_suite.core.checkpoints import load_state_dict
from comfyui_animate_suite.pipelines.easyanimate import lora as read
from comfyui_animate_suite.pipelines.easyanimate import training_task as ea_task
from comfyui_animate_suite.pipelines.training import lora
from tiny_models import training as tiny


def reference_style_merge(model: nn.Module, tensors: dict, prefix: str, multiplier: float = 1.0) -> None:
    """EasyAnimate's merge rule, written out here: split the name on '_', greedily re-join tokens until a
    child module of that name exists (``nn.Module.__getattr__``, so not ``.to``), then
    W += multiplier * alpha / rank * up @ down."""
    layers = {}
    for key, value in tensors.items():
        name, element = key.split(".", 1)
        layers.setdefault(name, {})[element] = value
    for name, elements in layers.items():
        if not name.startswith(prefix + "_"):
            continue
        tokens = name[len(prefix) + 1:].split("_")
        module, pending = model, ""
        while tokens:
            pending = f"{pending}_{tokens.pop(0)}" if pending else tokens.pop(0)
            children = dict(module.named_children())
            if pending in children:
                module, pending = children[pending], ""
        assert pending == "", f"{name} did not resolve"
        up, down = elements["lora_up.weight"].float(), elements["lora_down.weight"].float()
        scale = elements["alpha"].item() / up.shape[1]
        with torch.no_grad():
            module.weight += multiplier * scale * (up @ down)


def test_names_follow_easyanimate_for_the_transformer_and_t5():
    transformer = tiny.TinyEasyAnimateTransformer(16, layers=1)
    names = set(lora.find_targets(transformer, ea_task.transformer_lora_targets(True)))
    assert {"lora_unet__transformer_blocks_0_attn1_to_q", "lora_unet__transformer_blocks_0_ff_net_0_proj",
            "lora_unet__adaln_single_linear", "lora_unet__proj_out",
            "lora_unet__transformer_blocks_0_attn_temporal_temporal_transformer_proj_in",
            "lora_unet__transformer_blocks_0_attn_temporal_temporal_transformer_transformer_blocks_0_attention_blocks_1_to_v",
            } <= names
    assert not any("pos_embed" in n for n in names)  # a patch Conv2d is no Linear
    without = set(lora.find_targets(transformer, ea_task.transformer_lora_targets(False)))
    assert without == {n for n in names if "attn_temporal" not in n}
    t5_names = set(lora.find_targets(tiny.tiny_t5(), ea_task.text_encoder_lora_targets()))
    assert t5_names == {f"lora_te_encoder_block_{b}_layer_0_SelfAttention_{p}" for b in (0, 1) for p in "qkvo"} | {
        f"lora_te_encoder_block_{b}_layer_1_DenseReluDense_{p}" for b in (0, 1) for p in ("wi_0", "wi_1", "wo")}


def test_names_equal_those_of_the_reference_lora_in_the_parity_fixture(shared_dir):
    """The fixture's LoRA was written by EasyAnimate's own LoRANetwork on the PixArt transformer + T5."""
    from diffusers import PixArtTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    fixture = shared_dir / "parity" / "easyanimate"
    tensors = load_state_dict(fixture / "Personalized_Model" / "tiny_lora.safetensors")
    grouped = {key.split(".", 1)[0] for key in tensors}
    pixart = PixArtTransformer2DModel.from_config(json.loads((fixture / "transformer" / "config.json").read_text()))
    ours = set(lora.find_targets(pixart, ea_task.transformer_lora_targets(True)))
    theirs = {n for n in grouped if n.startswith("lora_unet_") and "attn_temporal" not in n}
    assert ours == theirs  # the 2D PixArt layers; the motion module is not in diffusers' model
    t5 = T5EncoderModel(T5Config.from_json_file(str(fixture / "text_encoder" / "config.json")))
    assert set(lora.find_targets(t5, ea_task.text_encoder_lora_targets())) == {n for n in grouped if n.startswith("lora_te_")}
    for name in grouped:  # the elements we write, as the reference writes them for every layer
        rank = tensors[f"{name}.lora_down.weight"].shape[0]
        assert tensors[f"{name}.lora_up.weight"].shape[1] == rank
        assert tensors[f"{name}.alpha"].ndim == 0 and tensors[f"{name}.alpha"].dtype == torch.float32


def test_adapters_start_neutral_and_the_saved_file_merges_to_the_same_model(tmp_path):
    torch.manual_seed(0)
    transformer = tiny.TinyEasyAnimateTransformer(16, layers=1).eval()
    text_encoder = tiny.tiny_t5().eval()
    latents, t = torch.randn(1, 4, 2, 4, 4), torch.tensor([300])
    ids, mask = tiny.tiny_tokenize(["a red square"], tiny.TOKENS)

    def run(model, encoder):
        with torch.no_grad():
            context = encoder(input_ids=ids, attention_mask=mask)[0]
            return model(latents, timestep=t, encoder_hidden_states=context, encoder_attention_mask=mask)[0]

    base_output = run(transformer, text_encoder)
    merged_transformer = tiny.TinyEasyAnimateTransformer(16, layers=1).eval()
    merged_transformer.load_state_dict(transformer.state_dict())
    merged_encoder = tiny.tiny_t5().eval()
    merged_encoder.load_state_dict(text_encoder.state_dict())

    networks = [lora.inject_lora(transformer, ea_task.transformer_lora_targets(True), rank=4, alpha=2.0),
                lora.inject_lora(text_encoder, ea_task.text_encoder_lora_targets(), rank=4, alpha=2.0)]
    torch.testing.assert_close(run(transformer, text_encoder), base_output)  # up starts at zero
    with torch.no_grad():
        for network in networks:
            for adapter in network.adapters.values():
                adapter.up.weight.normal_(0, 0.2)
    trained_output = run(transformer, text_encoder)
    assert (trained_output - base_output).abs().max() > 1e-3

    path = lora.save_kohya(networks, tmp_path / "lora.safetensors", "fp32", {"ss_network_dim": 4})
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        keys = set(handle.keys())
        alpha = handle.get_tensor("lora_unet__transformer_blocks_0_attn1_to_q.alpha")
        down = handle.get_tensor("lora_unet__transformer_blocks_0_attn1_to_q.lora_down.weight")
        assert handle.metadata()["ss_network_dim"] == "4"
    assert alpha.dtype == torch.float32 and alpha.ndim == 0 and alpha.item() == 2.0 and down.shape == (4, 16)
    assert all(k.endswith((".lora_down.weight", ".lora_up.weight", ".alpha")) for k in keys)
    assert len(keys) == 3 * sum(len(n.adapters) for n in networks)

    tensors = load_state_dict(path)
    reference_style_merge(merged_transformer, tensors, "lora_unet")
    reference_style_merge(merged_encoder, tensors, "lora_te")
    torch.testing.assert_close(run(merged_transformer, merged_encoder), trained_output, rtol=1e-4, atol=1e-5)


def test_base_parameters_keep_their_names_and_the_inference_reader_matches_every_layer(tmp_path):
    transformer = tiny.TinyEasyAnimateTransformer(16, layers=1)
    base_keys = set(transformer.state_dict())
    network = lora.inject_lora(transformer, ea_task.transformer_lora_targets(False), rank=2, alpha=1.0)
    assert base_keys <= set(transformer.state_dict())
    assert all(f".{lora.ADAPTER_NAME}." in k for k in set(transformer.state_dict()) - base_keys)
    path = lora.save_kohya([network], tmp_path / "a.safetensors", "bf16")

    fresh = tiny.TinyEasyAnimateTransformer(16, layers=1)  # what inference loads the file onto
    match = read.match_lora(read.read_lora(path), fresh, None).check(str(path), "the stand-in")
    assert set(match.transformer) == {f"{p}.weight" for p in network.paths.values()}
    assert not any("attn_temporal" in key for key in match.transformer)
    for name, adapter in network.adapters.items():
        layer = match.transformer[f"{network.paths[name]}.weight"]
        assert torch.equal(layer.down, adapter.down.weight.detach().bfloat16()) and layer.alpha == 1.0
    with pytest.raises(Exception, match="lora.save_dtype"):
        lora.save_kohya([network], tmp_path / "b.safetensors", "int8")


def test_the_recipe_seed_alone_decides_the_starting_adapters():
    def adapters(seed, targets, global_seed):
        torch.manual_seed(global_seed)  # another process, or other code drawing first, must not matter
        model = tiny.TinyEasyAnimateTransformer(16, layers=1)
        return lora.inject_lora(model, targets, rank=2, alpha=1.0, seed=seed).state_dict()

    first = adapters(7, ea_task.transformer_lora_targets(False), global_seed=1)
    again = adapters(7, ea_task.transformer_lora_targets(False), global_seed=2)
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
    other_seed = adapters(8, ea_task.transformer_lora_targets(False), global_seed=1)
    downs = [k for k in first if k.endswith("lora_down.weight")]
    assert all(not torch.equal(first[k], other_seed[k]) for k in downs)
