"""AnimateAnyone networks: released layout at SD1.5 size, the 3D UNet against diffusers' 2D UNet,
motion modules, reference attention against the reference's formulation, context windows."""

import copy
import json

import pytest
import torch

from comfyui_animate_suite.pipelines.animate_anyone import reference_attention
from comfyui_animate_suite.pipelines.animate_anyone.loading import AnimateAnyoneConfig, released_role
from comfyui_animate_suite.pipelines.animate_anyone.models_unet import MotionLayout
from comfyui_animate_suite.pipelines.motion_module import MotionModule, MotionSettings
from tiny_models import animate_anyone as tiny
from tiny_models import seeded


def _shapes(module, motion: bool | None = None) -> dict:
    return {key: list(value.shape) for key, value in module.state_dict().items()
            if motion is None or (("motion_modules." in key) == motion)}


def test_modules_at_sd15_size_expose_exactly_the_released_keys_and_shapes(shared_dir):
    released = json.loads((shared_dir / "parity" / "animate_anyone" / "released_keys.json").read_text())
    config = AnimateAnyoneConfig.for_weights()  # the configs shipped with the pack
    with torch.device("meta"):
        reference_net = config.build_reference_net()
        unet = config.build_denoising_unet()
        pose_guider = config.build_pose_guider()
    ours = {
        "reference_unet.pth": _shapes(reference_net),
        "denoising_unet.pth": _shapes(unet, motion=False),
        "motion_module.pth": _shapes(unet, motion=True),
        "pose_guider.pth": _shapes(pose_guider),
    }
    for name, keys in ours.items():
        assert keys == released[name], name
    assert len(ours["motion_module.pth"]) == 588 and unet.max_frames == 32


def test_each_released_file_is_recognised_by_its_keys(shared_dir):
    released = json.loads((shared_dir / "parity" / "animate_anyone" / "released_keys.json").read_text())
    for name in ("reference_unet.pth", "denoising_unet.pth", "motion_module.pth", "pose_guider.pth"):
        assert released_role(released[name]) == name.removesuffix(".pth")
    assert released_role({"encoder.conv_in.weight": 1}) is None


def _tiny_config():
    return AnimateAnyoneConfig(tiny.UNET_CONFIG, tiny.MOTION_CONFIG, {}, tiny.POSE_GUIDER_CONFIG)


def test_video_unet_without_motion_is_diffusers_2d_unet_per_frame():
    """Our 3D assembly of diffusers blocks equals diffusers' own UNet2DConditionModel frame by frame,
    once the motion modules are switched off (zero output projection), also for latent sizes that are
    not multiples of 8 (784 / 8 = 98 in the default size)."""
    from diffusers import UNet2DConditionModel

    seeded(0)
    config = _tiny_config()
    unet = tiny._randomise(config.build_denoising_unet(), seeded(1)).eval()
    for name, module in unet.named_modules():
        if name.endswith("temporal_transformer.proj_out"):
            torch.nn.init.zeros_(module.weight)
            torch.nn.init.zeros_(module.bias)
    plain = UNet2DConditionModel(**tiny.UNET_CONFIG).eval()
    plain.load_state_dict({k: v for k, v in unet.state_dict().items() if "motion_modules." not in k})
    frames = 3
    latents = torch.randn(2, 4, frames, 10, 6)  # 10x6 latent: not a multiple of 8
    context = torch.randn(2, 1, 32)
    with torch.no_grad():
        ours = unet(latents, torch.tensor(500), context)
        for b in range(2):
            for f in range(frames):
                expected = plain(latents[b:b + 1, :, f], 500, context[b:b + 1]).sample
                torch.testing.assert_close(ours[b:b + 1, :, f], expected, rtol=1e-4, atol=1e-5)


def test_pose_features_enter_after_conv_in():
    config = _tiny_config()
    unet = tiny._randomise(config.build_denoising_unet(), seeded(2)).eval()
    latents, context = torch.randn(1, 4, 2, 8, 8), torch.randn(1, 1, 32)
    pose = torch.randn(1, 32, 2, 8, 8)
    with torch.no_grad():
        without = unet(latents, torch.tensor(10), context)
        with_pose = unet(latents, torch.tensor(10), context, pose)
        shifted_bias = copy.deepcopy(unet)
        shifted_bias.conv_in.bias += pose[0, :, 0, 0, 0]  # a constant pose feature = a conv_in bias shift
        constant = pose[:, :, :1, :1, :1].expand_as(pose)
        assert not torch.allclose(without, with_pose)
        torch.testing.assert_close(unet(latents, torch.tensor(10), context, constant),
                                   shifted_bias(latents, torch.tensor(10), context), rtol=1e-4, atol=1e-5)


def _motion_module(max_len=8):
    settings = MotionSettings(num_attention_heads=4, temporal_position_encoding_max_len=max_len)
    return tiny._randomise(MotionModule(32, settings), seeded(3)).eval()


def test_motion_module_mixes_frames_and_is_identity_with_zero_output_projection():
    module = _motion_module()
    x = torch.randn(2 * 5, 32, 4, 4)  # 2 videos x 5 frames
    with torch.no_grad():
        out = module(x, frames=5)
        changed = x.clone()
        changed[3] += 1.0  # video 0, frame 3
        out_changed = module(changed, frames=5)
        assert not torch.allclose(out[0], out_changed[0])  # frame 0 of the same video sees frame 3
        torch.testing.assert_close(out[5:], out_changed[5:])  # the other video does not
        swapped = x[[1, 0, 2, 3, 4, 5, 6, 7, 8, 9]]
        assert not torch.allclose(module(swapped, frames=5)[2], out[2])  # frame order matters (positions)
        torch.nn.init.zeros_(module.temporal_transformer.proj_out.weight)
        torch.nn.init.zeros_(module.temporal_transformer.proj_out.bias)
        torch.testing.assert_close(module(x, frames=5), x)


def test_motion_module_refuses_windows_longer_than_its_position_table():
    module = _motion_module(max_len=4)
    with pytest.raises(ValueError, match="at most 4"):
        module(torch.randn(5, 32, 2, 2), frames=5)


def test_motion_module_configs_animate_anyone_reads_and_refuses():
    shipped = AnimateAnyoneConfig.for_weights().motion
    assert MotionLayout.from_kwargs(shipped).settings == MotionSettings()  # inference_v2.yaml: AnimateDiff v2
    ignored = {"zero_initialize": True, "norm_num_groups": 16}  # AnimateAnyone reads AnimateDiff's options only
    with_extras = {**shipped, "motion_module_kwargs": {**shipped["motion_module_kwargs"], **ignored}}
    assert MotionLayout.from_kwargs(with_extras).settings == MotionSettings()
    for options in ({"attention_block_types": ["Temporal_Self"]}, {"temporal_position_encoding": False}):
        with pytest.raises(ValueError, match="are not supported"):
            MotionLayout.from_kwargs({**shipped, "motion_module_kwargs": options})


def test_reference_reader_matches_the_reference_formulation():
    """Conditional half: attn1 with keys/values [own tokens, reference tokens] (the reference concatenates
    the features and projects them per frame); unconditional half: plain self-attention."""
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0

    seeded(4)
    attn = Attention(32, heads=8, dim_head=4).eval()
    frames, tokens = 3, 12
    x = torch.randn(2 * frames, tokens, 32)
    features = torch.randn(1, 10, 32).to(reference_attention.FEATURE_DTYPE)
    reader = reference_attention.ReferenceReader(features, guided=True)
    plain = AttnProcessor2_0()
    with torch.no_grad():
        ours = reader(attn, x)
        bank = features.float().expand(frames, -1, -1)
        expected_cond = plain(attn, x[frames:], encoder_hidden_states=torch.cat([x[frames:], bank], dim=1))
        expected_uncond = plain(attn, x[:frames])
        torch.testing.assert_close(ours[frames:], expected_cond, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ours[:frames], expected_uncond, rtol=1e-5, atol=1e-6)
        unguided = reference_attention.ReferenceReader(features, guided=False)(attn, x[frames:])
        torch.testing.assert_close(unguided, expected_cond, rtol=1e-5, atol=1e-6)


def test_reference_features_are_recorded_per_block_and_processors_restored():
    config = _tiny_config()
    reference_net = tiny._randomise(config.build_reference_net(), seeded(5)).eval()
    unet = config.build_denoising_unet()
    before = {name: layer.processor for name, layer in reference_attention.self_attention_layers(reference_net).items()}
    latents = torch.randn(1, 4, 8, 6)
    with torch.no_grad():
        features = reference_attention.record_reference_features(reference_net, latents, torch.randn(1, 1, 32))
    assert set(features) == set(reference_attention.self_attention_layers(unet))
    assert features["down_blocks.0.attentions.0.transformer_blocks.0"].shape == (1, 8 * 6, 32)
    assert features["mid_block.attentions.0.transformer_blocks.0"].shape == (1, 1, 64)
    assert all(f.dtype == reference_attention.FEATURE_DTYPE for f in features.values())
    after = reference_attention.self_attention_layers(reference_net)
    assert all(after[name].processor is processor for name, processor in before.items())
    with pytest.raises(ValueError, match="differ"):
        with reference_attention.reading_reference(unet, dict(list(features.items())[1:]), guided=True):
            pass


def test_reader_processors_are_removed_after_an_error():
    config = _tiny_config()
    unet = config.build_denoising_unet()
    layers = reference_attention.self_attention_layers(unet)
    features = {name: torch.zeros(1, 4, layer.to_q.in_features, dtype=torch.float16) for name, layer in layers.items()}
    with pytest.raises(RuntimeError):
        with reference_attention.reading_reference(unet, features, guided=True):
            assert all(isinstance(l.processor, reference_attention.ReferenceReader) for l in layers.values())
            raise RuntimeError("interrupted")
    assert not any(isinstance(l.processor, reference_attention.ReferenceReader) for l in layers.values())
