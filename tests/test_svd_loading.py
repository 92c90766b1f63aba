"""SVD loading: the single-file converter and diffusers folders give the very same modules; bad files fail clearly."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from comfyui_animate_suite.core import checkpoints
from comfyui_animate_suite.core.errors import CheckpointError, CheckpointMismatchError, InputError, ModelNotFoundError
from comfyui_animate_suite.pipelines.svd import convert, loading
from svd_support import tiny_svd_files
from tiny_models import svd as tiny

COMPONENTS = ("unet", "vae", "image_encoder")


def _state(module):
    return {k: v for k, v in module.state_dict().items() if k != "vision_model.embeddings.position_ids"}


def _assert_same_weights(loaded, original):
    a, b = _state(loaded), _state(original)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key].float(), b[key].float()), key


@pytest.fixture(scope="module")
def files():
    return tiny_svd_files()


@pytest.fixture(scope="module")
def from_folder(files):
    return loading.load_svd_components(files.folder)


@pytest.fixture(scope="module")
def from_single_file(files):
    return loading.load_svd_components(files.single, config_dir=files.config_dir)


@pytest.mark.parametrize("component", COMPONENTS)
def test_single_file_and_folder_give_the_original_weights(files, from_folder, from_single_file, component):
    _assert_same_weights(getattr(from_folder, component), files.models[component])
    _assert_same_weights(getattr(from_single_file, component), files.models[component])


def test_single_file_encodes_with_the_conditioners_vae_encoder(files, from_single_file):
    # The file also holds the first stage's own encoder (different weights in the tiny model); the
    # reference conditions on the conditioner's copy, so that one must be loaded.
    loaded = from_single_file.vae.encoder.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in files.models["vae"].encoder.state_dict().items())
    assert not torch.equal(loaded["conv_in.weight"], files.models["first_stage_encoder"].state_dict()["conv_in.weight"])


def test_loaded_parts_carry_configs_and_frame_count(from_folder, from_single_file):
    for parts in (from_folder, from_single_file):
        assert parts.scheduler_config["prediction_type"] == "v_prediction"
        assert parts.scheduler_config["use_karras_sigmas"] is True
        assert parts.feature_extractor_config["image_mean"][0] == pytest.approx(0.48145466)
        assert parts.num_frames == tiny.NUM_FRAMES
    assert (from_folder.layout, from_single_file.layout) == (loading.DIFFUSERS, loading.SINGLE_FILE)
    assert from_single_file.variant == "svd_xt"


def test_which_builds_only_the_requested_modules(files):
    parts = loading.load_svd_components(files.single, which=("image_encoder", "vae"), config_dir=files.config_dir)
    assert parts.unet is None and parts.image_encoder is not None and parts.vae is not None
    parts = loading.load_svd_components(files.folder, which=("unet",))
    assert parts.vae is None and parts.image_encoder is None and parts.unet is not None


def test_fp16_file_loads_into_the_requested_dtypes(files):
    parts = loading.load_svd_components(files.single_fp16, dtype=torch.float16, config_dir=files.config_dir)
    assert next(parts.unet.parameters()).dtype == torch.float16
    assert next(parts.image_encoder.parameters()).dtype == torch.float16
    assert next(parts.vae.parameters()).dtype == torch.float32  # force_upcast: the SD VAE overflows in fp16
    expected = files.models["unet"].state_dict()["conv_in.weight"].half()
    assert torch.equal(parts.unet.state_dict()["conv_in.weight"], expected)
    bf16 = loading.load_svd_components(files.single, dtype=torch.bfloat16, which=("vae",), config_dir=files.config_dir)
    assert next(bf16.vae.parameters()).dtype == torch.bfloat16


def test_folder_prefers_the_fp16_variant_for_half_precision(files, tmp_path):
    folder = shutil.copytree(files.folder, tmp_path / "svd")
    tiny.save_diffusers_folder(files.models, folder, dtype=torch.float16)  # adds *.fp16.safetensors beside fp32
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    state["conv_in.bias"] = state["conv_in.bias"] + 1.0
    save_file(state, weights)  # only the fp32 file is changed
    half = loading.load_svd_components(folder, dtype=torch.float16, which=("unet",)).unet
    full = loading.load_svd_components(folder, dtype=torch.float32, which=("unet",)).unet
    original = files.models["unet"].state_dict()["conv_in.bias"]
    assert torch.equal(half.state_dict()["conv_in.bias"], original.half())
    assert torch.equal(full.state_dict()["conv_in.bias"], original + 1.0)


def _single_file_copy(files, tmp_path, name="svd_xt.safetensors", edit=None):
    state = load_file(files.single)
    if edit:
        edit(state)
    path = tmp_path / name
    save_file(state, path)
    return path


@pytest.mark.parametrize("keys, looks_like", [
    ({"cond_stage_model.transformer.text_model.embeddings.position_ids": (1, 77),
      "model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3)}, "Stable Diffusion 1.x"),
    ({"conditioner.embedders.1.model.ln_final.weight": (1280,),
      "model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3)}, "Stable Diffusion XL"),
    ({"encoder.conv_in.weight": (128, 3, 3, 3), "decoder.conv_in.weight": (512, 4, 3, 3)}, "a standalone VAE"),
    ({"model.diffusion_model.input_blocks.1.0.time_stack.in_layers.0.weight": (320,),
      "model.diffusion_model.label_emb.0.0.weight": (1280, 256)}, "SV3D"),
])
def test_a_checkpoint_of_another_family_is_refused_clearly(tmp_path, keys, looks_like):
    path = tmp_path / "model.safetensors"
    save_file({k: torch.zeros(shape) for k, shape in keys.items()}, path)
    with pytest.raises(CheckpointError) as error:
        loading.load_svd_components(path)
    message = str(error.value)
    assert "not a Stable Video Diffusion img2vid checkpoint" in message and looks_like in message
    assert "svd_xt.safetensors" in message


def test_unknown_keys_are_reported_never_dropped(files, tmp_path):
    path = _single_file_copy(files, tmp_path, edit=lambda s: s.update({"model.diffusion_model.extra.weight": torch.zeros(2)}))
    with pytest.raises(CheckpointMismatchError, match="model.diffusion_model.extra.weight"):
        loading.load_svd_components(path, which=("unet",), config_dir=files.config_dir)
    path = _single_file_copy(files, tmp_path, "b.safetensors", edit=lambda s: s.update({"conditioner.embedders.7.weird": torch.zeros(2)}))
    with pytest.raises(CheckpointMismatchError, match="conditioner.embedders.7.weird"):
        loading.load_svd_components(path, which=("vae",), config_dir=files.config_dir)


def test_a_missing_weight_fails_naming_it(files, tmp_path):
    key = "model.diffusion_model.output_blocks.2.1.conv.weight"
    path = _single_file_copy(files, tmp_path, edit=lambda s: s.pop(key))
    with pytest.raises(CheckpointMismatchError, match=r"up_blocks\.0\.upsamplers\.0\.conv\.weight"):
        loading.load_svd_components(path, which=("unet",), config_dir=files.config_dir)


def test_documented_leftovers_are_accepted(files, tmp_path):
    def add_text_tower(state):
        state["conditioner.embedders.0.open_clip.model.logit_scale"] = torch.ones(())
        state["conditioner.embedders.0.open_clip.model.token_embedding.weight"] = torch.zeros(4, 2)

    path = _single_file_copy(files, tmp_path, edit=add_text_tower)
    layout = convert.describe(checkpoints.read_key_shapes(path), str(path))
    assert "conditioner.embedders.0.open_clip.model.logit_scale" in layout.leftovers
    assert all(k in layout.leftovers for k in load_file(path) if k.startswith("first_stage_model.encoder."))
    parts = loading.load_svd_components(path, which=("image_encoder",), config_dir=files.config_dir)
    _assert_same_weights(parts.image_encoder, files.models["image_encoder"])


def test_without_the_conditioner_copy_the_first_stage_encoder_is_used(files, tmp_path):
    def drop_conditioner_encoder(state):
        for key in [k for k in state if k.startswith("conditioner.embedders.3.")]:
            del state[key]

    path = _single_file_copy(files, tmp_path, edit=drop_conditioner_encoder)
    vae = loading.load_svd_components(path, which=("vae",), config_dir=files.config_dir).vae
    first_stage = files.models["first_stage_encoder"].state_dict()
    assert all(torch.equal(vae.encoder.state_dict()[k], v) for k, v in first_stage.items())
    quant = vae.quant_conv.weight[:, :, 0, 0]
    assert torch.equal(quant, torch.eye(quant.shape[0])) and not vae.quant_conv.bias.any()


def test_a_diffusers_folder_of_another_pipeline_is_refused(files, tmp_path):
    folder = shutil.copytree(files.folder, tmp_path / "sd15")
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(CheckpointError, match="StableDiffusionPipeline, not Stable Video Diffusion"):
        loading.load_svd_components(folder)


def test_missing_files_and_bad_requests_are_clear(files, tmp_path):
    with pytest.raises(ModelNotFoundError, match="svd_xt.safetensors"):
        loading.load_svd_components(tmp_path / "svd_xt.safetensors")
    folder = shutil.copytree(files.folder, tmp_path / "svd")
    (folder / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ModelNotFoundError, match="diffusion_pytorch_model.safetensors"):
        loading.load_svd_components(folder, which=("vae",))
    with pytest.raises(InputError, match="which"):
        loading.load_svd_components(files.folder, which=("text_encoder",))


def test_a_folder_with_only_the_parts_asked_for_loads_them(files, tmp_path):
    # StableAnimator's SVD base folder: vae/, image_encoder/, scheduler/ and no UNet.
    folder = tmp_path / "svd_base"
    for part in ("vae", "image_encoder", "scheduler"):
        shutil.copytree(files.folder / part, folder / part)
    parts = loading.load_svd_components(folder, which=("image_encoder", "vae"))
    _assert_same_weights(parts.vae, files.models["vae"])
    _assert_same_weights(parts.image_encoder, files.models["image_encoder"])
    assert parts.unet is None and parts.scheduler_config == tiny.configs()["scheduler"]
    with pytest.raises(ModelNotFoundError, match="unet/config.json"):
        loading.load_svd_components(folder, which=("unet",))


@pytest.mark.parametrize("name, variant", [("svd.safetensors", "svd"), ("svd_xt.safetensors", "svd_xt"),
                                           ("svd_xt_1_1.safetensors", "svd_xt"), ("svd.fp16.safetensors", "svd"),
                                           ("stable-video-diffusion-img2vid-xt.safetensors", "svd_xt"),
                                           ("svd_image_decoder.safetensors", "svd")])
def test_variant_from_file_name(name, variant):
    assert loading.variant_from_name(name) == variant
    assert loading.shipped_configs(variant)["unet"]["num_frames"] == loading.VARIANT_FRAMES[variant]


@pytest.mark.parametrize("variant", ["svd", "svd_xt"])
def test_full_size_official_layout_converts_to_the_shipped_modules(variant):
    """Every key of the full-size sgm layout maps onto the module the shipped configs build (shapes too)."""
    configs = loading.shipped_configs(variant)
    modules = {c: loading.build_module(c, configs[c]) for c in COMPONENTS}  # meta: no memory, no init
    modules["first_stage_encoder"] = modules["vae"].encoder
    sgm = tiny.single_file_state_dict(modules, configs["unet"], configs["vae"], configs["image_encoder"])
    assert sum(k.startswith("model.diffusion_model.") for k in sgm) == 1428
    assert sum(k.startswith("first_stage_model.encoder.") for k in sgm) == 106
    assert sum(k.startswith("conditioner.embedders.0.open_clip.model.visual.") for k in sgm) == 392
    layout = convert.describe({k: tuple(v.shape) for k, v in sgm.items()}, "full-size")
    for component, module in modules.items():
        if component == "first_stage_encoder":
            continue
        raw = {k: v for k, v in sgm.items() if k.startswith(layout.prefixes(component))}
        if component == "unet":
            converted = convert.convert_unet(checkpoints.strip_prefix(raw, convert.UNET_PREFIX), configs["unet"], "x")
        elif component == "image_encoder":
            converted = convert.convert_open_clip_visual(checkpoints.strip_prefix(raw, convert.IMAGE_ENCODER_PREFIX), "x")
        else:
            converted = convert.convert_vae(raw, layout, configs["vae"], "x")
        checkpoints.check_keys(module, {k: tuple(v.shape) for k, v in converted.items()}, "full-size", component)


def test_image_decoder_variant_loads_a_frame_by_frame_vae(files, tmp_path):
    from comfyui_animate_suite.pipelines.svd import pipeline

    plain = tiny.image_decoder_vae(files.models["vae"])
    models = dict(files.models, vae=plain)
    path = tiny.save_single_file(models, tmp_path / "svd_image_decoder.safetensors")
    parts = loading.load_svd_components(path, config_dir=files.config_dir)
    assert type(parts.vae).__name__ == "AutoencoderKL" and parts.variant == "svd"
    _assert_same_weights(parts.vae, plain)
    latents = torch.randn(1, 2, 4, 6, 8, generator=torch.Generator().manual_seed(0))
    frames = pipeline.decode_latents(parts.vae, latents, 0, pipeline.RunContext())
    expected = plain.decode(latents[0] / plain.config.scaling_factor).sample
    assert torch.allclose(frames, (expected * 0.5 + 0.5).clamp(0, 1).permute(0, 2, 3, 1), atol=1e-6)
