"""SVD nodes under the ComfyUI stand-in: loader choices and loading, image to video, model staging."""

import shutil

import pytest
import torch

from svd_support import HEIGHT, WIDTH, as_image, photo, tiny_svd_files

FOLDER_CHOICE = "diffusers/stable-video-diffusion-tiny"
FILE_CHOICE = "svd_xt_tiny.safetensors"


@pytest.fixture(scope="module")
def installed(comfy):
    """The tiny SVD in ComfyUI's models folders: a single file in checkpoints/, a folder in diffusers/."""
    files = tiny_svd_files()
    (comfy.models / "checkpoints").mkdir(exist_ok=True)
    shutil.copy(files.single, comfy.models / "checkpoints" / FILE_CHOICE)
    shutil.copytree(files.folder, comfy.models / "diffusers" / "stable-video-diffusion-tiny", dirs_exist_ok=True)
    return files


@pytest.fixture
def tiny_configs(comfy, installed, monkeypatch):
    # Single files carry no config: the loader uses the shipped full-size ones, here the tiny model's.
    monkeypatch.setattr(comfy.module("pipelines.svd.loading"), "CONFIGS_DIR", installed.config_root)


def _sampler_inputs(svd_model, **changes):
    inputs = dict(svd_model=svd_model, image=as_image(photo()), width=WIDTH, height=HEIGHT, resize_mode="crop",
                  frames=0, steps=2, motion="custom", motion_bucket_id=127, fps=7, noise_aug_strength=0.02,
                  min_guidance=1.0, max_guidance=2.5, seed=3, decode_chunk_size=0, sampler="euler")
    inputs.update(changes)
    return inputs


def test_loader_lists_checkpoint_files_and_diffusers_folders(installed, node_class):
    choices = node_class("AnimateSuiteSVDLoader").INPUT_TYPES()["required"]["model"][0]
    assert FILE_CHOICE in choices and FOLDER_CHOICE in choices


def test_each_module_gets_its_own_model_patcher(installed, run_node):
    (model,) = run_node("AnimateSuiteSVDLoader", model=FOLDER_CHOICE, precision="fp32")
    modules = [patcher.model for patcher in model.patchers]
    assert [type(m).__name__ for m in modules] == [
        "CLIPVisionModelWithProjection", "AutoencoderKLTemporalDecoder", "UNetSpatioTemporalConditionModel"]
    assert modules[2] is model.parts.unet and model.dtype == torch.float32


def test_image_to_video_gives_frames_and_fps_and_matches_the_pipeline(installed, run_node, comfy):
    (model,) = run_node("AnimateSuiteSVDLoader", model=FOLDER_CHOICE, precision="auto")
    frames, fps = run_node("AnimateSuiteSVDImageToVideo", **_sampler_inputs(model, fps=9))
    assert frames.shape == (model.parts.num_frames, HEIGHT, WIDTH, 3) and frames.dtype == torch.float32
    assert fps == 9.0 and 0 <= frames.min() and frames.max() <= 1
    pipeline = comfy.module("pipelines.svd.pipeline")
    direct = pipeline.generate(model.parts, as_image(photo()), pipeline.SVDSettings(
        width=WIDTH, height=HEIGHT, steps=2, fps=9, max_guidance=2.5, seed=3, decode_chunk_size=0))
    assert torch.allclose(frames, direct, atol=1e-5)


def test_single_file_checkpoint_through_the_nodes(installed, tiny_configs, run_node):
    (from_file,) = run_node("AnimateSuiteSVDLoader", model=FILE_CHOICE, precision="fp32")
    (from_folder,) = run_node("AnimateSuiteSVDLoader", model=FOLDER_CHOICE, precision="fp32")
    inputs = dict(steps=1, frames=6, context_frames=3, context_overlap=1)
    a, _ = run_node("AnimateSuiteSVDImageToVideo", **_sampler_inputs(from_file, **inputs))
    b, _ = run_node("AnimateSuiteSVDImageToVideo", **_sampler_inputs(from_folder, **inputs))
    assert a.shape[0] == 6 and torch.allclose(a, b, atol=1e-5)


def test_wrong_family_checkpoint_fails_with_a_clear_message(comfy, installed, run_node):
    from safetensors.torch import save_file

    save_file({"cond_stage_model.transformer.text_model.final_layer_norm.weight": torch.zeros(4),
               "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(4, 4, 3, 3)},
              comfy.models / "checkpoints" / "sd15_pruned.safetensors")
    with pytest.raises(Exception) as error:
        run_node("AnimateSuiteSVDLoader", model="sd15_pruned.safetensors", precision="auto")
    cause = error.value.__cause__ or error.value
    assert isinstance(cause, comfy.module("core.errors").CheckpointError)
    assert "not a Stable Video Diffusion img2vid checkpoint" in str(cause) and "Stable Diffusion 1.x" in str(cause)


def test_bad_sampler_input_names_the_input(installed, run_node, node_class, comfy):
    (model,) = run_node("AnimateSuiteSVDLoader", model=FOLDER_CHOICE, precision="fp32")
    node = node_class("AnimateSuiteSVDImageToVideo")
    with pytest.raises(comfy.module("core.errors").InputError, match="context_overlap"):
        node.execute(**_sampler_inputs(model, frames=9, context_frames=4, context_overlap=4))
    with pytest.raises(comfy.module("core.errors").InputError, match="svd_model"):
        node.execute(**_sampler_inputs("not a model"))


def test_out_of_memory_becomes_advice(installed, run_node, node_class, comfy, monkeypatch):
    (model,) = run_node("AnimateSuiteSVDLoader", model=FOLDER_CHOICE, precision="fp32")

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(model.parts.unet, "forward", out_of_memory)
    with pytest.raises(torch.cuda.OutOfMemoryError) as error:
        node_class("AnimateSuiteSVDImageToVideo").execute(**_sampler_inputs(model))
    assert "decode_chunk_size" in str(error.value) and "--lowvram" in str(error.value)
