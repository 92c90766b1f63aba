"""StableAnimator's networks and loaders: released key layout, strict loading, attention processors, tiles."""

import json

import pytest
import torch

from comfyui_animate_suite.core import checkpoints
from comfyui_animate_suite.core.errors import CheckpointMismatchError
from comfyui_animate_suite.pipelines.stable_animator import loading, models_face, models_pose, models_unet
from tiny_models import stable_animator as tiny


def _shapes(module):
    return {key: list(value.shape) for key, value in module.state_dict().items()}


def _assert_same_layout(module, released: dict, name: str):
    ours = _shapes(module)
    missing, unexpected = sorted(set(released) - set(ours)), sorted(set(ours) - set(released))
    wrong = [k for k in set(ours) & set(released) if ours[k] != released[k]]
    assert not (missing or unexpected or wrong), f"{name}: missing {missing[:5]} unexpected {unexpected[:5]} wrong {wrong[:5]}"


def test_modules_match_the_released_files_at_svd_xt_size_on_meta(shared_dir):
    released = json.loads((shared_dir / "parity/stable_animator/released_keys.json").read_text())
    config = json.loads((loading.CONFIG_DIR / loading.UNET_CONFIG_NAME).read_text())
    assert {k: v for k, v in config.items() if not k.startswith("_")} == released["unet_config"]
    with torch.device("meta"):
        unet = models_unet.build_unet(config)
        _assert_same_layout(unet, released["unet.pth"], "unet.pth")
        _assert_same_layout(models_pose.PoseNet(config["block_out_channels"][0]), released["pose_net.pth"], "pose_net.pth")
        face_encoder = models_face.FusionFaceId(config["cross_attention_dim"], loading.ID_EMBEDDING_DIM, 1024,
                                                models_unet.FACE_TOKENS)
        _assert_same_layout(face_encoder, released["face_encoder.pth"], "face_encoder.pth")
        blocks = models_face.iresnet_blocks(released["glintr100_torch.pth"])
        assert blocks == models_face.IRESNET100_BLOCKS
        _assert_same_layout(models_face.IResNet(blocks), released["glintr100_torch.pth"], "glintr100_torch.pth")
    id_keys = [k for k in released["unet.pth"] if ".processor." in k]
    assert len(id_keys) == 32 and all(".transformer_blocks.0.attn2.processor.id_to_" in k for k in id_keys)


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stable_animator")
    paths = tiny.write_weights(folder / "weights")
    paths["svd_base"] = tiny.write_svd_base(folder / "svd")
    return paths


def test_every_key_of_every_file_lands_in_the_modules(tiny_files):
    models = loading.load_stable_animator(loading.StableAnimatorFiles(**tiny_files))
    for module, path in ((models.unet, tiny_files["unet"]), (models.pose_net, tiny_files["pose_net"]),
                         (models.face_encoder, tiny_files["face_encoder"]), (models.face_embedder, tiny_files["face_embedder"])):
        stored = checkpoints.load_state_dict(path)
        loaded = module.state_dict()
        assert set(loaded) == set(stored)
        for key, value in stored.items():
            # The fp16-stored face embedder is used in float32: same values, widened.
            expected = value.float() if value.is_floating_point() else value
            assert torch.equal(loaded[key].to(expected.dtype), expected), key
    assert models.face_embedder.fc.weight.dtype == torch.float32
    assert all(not p.requires_grad for p in models.unet.parameters())


def test_loader_refuses_files_that_do_not_fit(tiny_files, tmp_path):
    state = checkpoints.load_state_dict(tiny_files["unet"])
    dropped = next(k for k in state if k.endswith("attn2.processor.id_to_k.weight"))
    del state[dropped]
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "unet_config.json").write_text(json.dumps(tiny.UNET_CONFIG))
    torch.save(state, folder / "unet.pth")
    with pytest.raises(CheckpointMismatchError, match="missing") as error:
        loading.load_unet(folder / "unet.pth")
    assert dropped in error.value.missing
    with pytest.raises(CheckpointMismatchError):  # a face encoder is not a PoseNet
        loading.load_pose_net(tiny_files["face_encoder"], tiny.UNET_CONFIG["block_out_channels"][0])


def test_shipped_unet_config_is_used_without_one_beside_the_weights(tmp_path):
    assert loading.unet_config(tmp_path / "unet.pth")["block_out_channels"] == [320, 640, 1280, 1280]
    (tmp_path / "unet_config.json").write_text(json.dumps(tiny.UNET_CONFIG))
    assert loading.unet_config(tmp_path / "unet.pth") == tiny.UNET_CONFIG


def _attention(query_dim=32, cross_dim=16, heads=2):
    from diffusers.models.attention_processor import Attention

    torch.manual_seed(0)
    return Attention(query_dim, cross_attention_dim=cross_dim, heads=heads, dim_head=query_dim // heads)


def test_temporal_cross_attention_ignores_the_face_tokens():
    attn = _attention()
    processor = models_unet.CLIPTokenAttnProcessor()
    hidden, clip = torch.randn(3, 5, 32), torch.randn(3, 1, 16)
    faces_a, faces_b = torch.randn(3, 4, 16), torch.randn(3, 4, 16)
    out_a = processor(attn, hidden, torch.cat([clip, faces_a], 1))
    out_b = processor(attn, hidden, torch.cat([clip, faces_b], 1))
    assert torch.equal(out_a, out_b)
    assert torch.allclose(out_a, attn(hidden, clip), atol=1e-6)


def test_id_attention_adds_face_attention_aligned_to_the_clip_attention():
    attn = _attention()
    processor = models_unet.IDCrossAttnProcessor(32, 16)
    hidden, clip, faces = torch.randn(2, 6, 32), torch.randn(2, 1, 16), torch.randn(2, 4, 16)
    out = processor(attn, hidden, torch.cat([clip, faces], 1))
    assert not torch.allclose(out, attn(hidden, clip), atol=1e-3), "face tokens must change the output"
    source, target = torch.randn(2, 6, 32) * 5 + 3, torch.randn(2, 6, 32)
    aligned = models_unet._align_distribution(source, target)
    assert torch.allclose(aligned.mean(dim=(1, 2)), target.mean(dim=(1, 2)), atol=1e-5)
    assert torch.allclose(aligned.std(dim=(1, 2)), target.std(dim=(1, 2)), rtol=1e-4)


def test_processors_are_installed_where_the_reference_installs_them():
    with torch.device("meta"):
        unet = models_unet.build_unet(tiny.UNET_CONFIG)
    kinds = {name: type(p).__name__ for name, p in unet.attn_processors.items()}
    for name, kind in kinds.items():
        if "temporal_transformer_blocks" in name:
            assert kind == ("CLIPTokenAttnProcessor" if "attn2" in name else "AttnProcessor2_0"), name
        else:
            assert kind == ("IDCrossAttnProcessor" if "attn2" in name else "AttnProcessor2_0"), name


def test_iresnet_block_counts_are_read_from_the_keys():
    keys = ["layer1.0.conv1.weight", "layer1.1.conv1.weight", "layer2.0.bn1.weight", "layer3.4.prelu.weight",
            "layer4.0.downsample.0.weight", "fc.weight"]
    assert models_face.iresnet_blocks(keys) == (2, 1, 5, 1)
