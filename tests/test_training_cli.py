"""The `train` and `prepare` commands, the shipped recipes and the recipe checks."""

import json

import numpy as np
import pytest
import torch
import yaml

from comfyui_animate_suite import cli
from comfyui_animate_suite.core.checkpoints import load_state_dict
from comfyui_animate_suite.core.errors import InputError
from comfyui_animate_suite.pipelines.animate_anyone.training_data import AnimateAnyoneClips
from comfyui_animate_suite.pipelines.easyanimate.training_data import EasyAnimateMedia
from comfyui_animate_suite.pipelines.training.config import RECIPES, load_config, parse_config
from comfyui_animate_suite.pipelines.training.datasets import DatasetError
from comfyui_animate_suite.pipelines.training.prepare import prepare_pose_videos
from comfyui_animate_suite.core.video import count_frames, write_video
from tiny_models import training as tiny


def test_shipped_recipes_hold_the_reference_hyper_parameters(capsys):
    stage1, stage2 = load_config("animate_anyone_stage1"), load_config("animate_anyone_stage2")
    for config in (stage1, stage2):
        noise, solver = config.noise, config.solver
        assert (noise.beta_schedule, noise.zero_terminal_snr, noise.prediction_type) == ("scaled_linear", True, "v_prediction")
        assert (noise.noise_offset, noise.snr_gamma, noise.condition_drop_ratio) == (0.05, 5.0, 0.1)
        assert (solver.learning_rate, solver.adam_weight_decay, solver.adam_epsilon, solver.max_grad_norm) == (1e-5, 1e-2, 1e-8, 1.0)
        assert (solver.lr_scheduler, solver.lr_warmup_steps, solver.mixed_precision) == ("constant", 1, "fp16")
    assert (stage1.data.width, stage1.data.batch_size, stage1.data.sample_margin, stage1.solver.max_train_steps) == (768, 4, 30, 30000)
    assert stage1.data.crop_scale == [0.9, 1.0] and stage1.solver.optimizer_sharding == "zero1"
    assert (stage2.data.width, stage2.data.n_sample_frames, stage2.data.sample_rate, stage2.data.batch_size) == (512, 24, 4, 1)
    assert stage2.solver.gradient_checkpointing and stage2.solver.use_8bit_adam and stage2.solver.max_train_steps == 10000
    lora, motion = load_config("easyanimate_lora"), load_config("easyanimate_motion_module")
    assert (lora.lora.rank, lora.lora.alpha, lora.lora.include_motion_module) == (128, 64.0, True)
    for config in (lora, motion):
        solver = config.solver
        assert (solver.learning_rate, solver.adam_weight_decay, solver.adam_epsilon, solver.mixed_precision) == (2e-5, 3e-2, 1e-10, "bf16")
        assert (config.data.sample_n_frames, config.data.sample_stride, config.data.batch_size) == (16, 2, 2)
        assert (config.noise.beta_start, config.noise.beta_end, config.noise.num_train_timesteps) == (0.0001, 0.02, 1000)
    assert (motion.solver.ema_decay, motion.solver.lr_scheduler, motion.solver.lr_warmup_steps) == (0.9999, "constant_with_warmup", 100)
    assert (motion.data.image_repeat_in_forward, motion.data.text_drop_ratio, motion.trainable_modules) == (4, 0.1, ["attn_temporal"])
    assert cli.main(["train", "recipe", "--list"]) == 0
    assert capsys.readouterr().out.split() == list(RECIPES)
    assert cli.main(["train", "recipe", "easyanimate_lora"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["lora"]["rank"] == 128


def test_recipe_mistakes_are_named():
    base = tiny.animate_anyone_config(__import__("pathlib").Path("/data"), "/out")
    with pytest.raises(InputError, match="'solver.learning_rat'.*not a known setting"):
        parse_config({**base, "solver": {"learning_rat": 1e-4, "max_train_steps": 1}})
    with pytest.raises(InputError, match="'data.width'.*whole number"):
        parse_config({**base, "data": {**base["data"], "width": "wide"}})
    with pytest.raises(InputError, match="'stage'"):
        parse_config({**base, "stage": 3})
    with pytest.raises(InputError, match="'solver.max_train_steps'"):
        parse_config({**base, "solver": {}})
    with pytest.raises(InputError, match="'method'"):
        parse_config({**base, "method": "svd"})
    with pytest.raises(InputError, match="'data.meta_paths': is empty"):
        parse_config({**base, "data": {**base["data"], "meta_paths": []}})
    media = tiny.easyanimate_config(__import__("pathlib").Path("/data"), "/out")
    with pytest.raises(InputError, match="'mode': is 'full'.*lora or motion_module"):
        parse_config({**media, "mode": "full"})
    with pytest.raises(InputError, match="'data.meta_path': is empty"):
        parse_config({**media, "data": {**media["data"], "meta_path": ""}})
    with pytest.raises(InputError, match="'data.video_crop': is 'corner'.*center or random"):
        parse_config({**media, "data": {**media["data"], "video_crop": "corner"}})
    with pytest.raises(InputError, match="'noise.beta_schedule'.*not a known setting"):
        parse_config({**media, "noise": {"beta_schedule": "linear"}})
    with pytest.raises(InputError, match="does not exist"):
        load_config("/nowhere/recipe.yaml")


def test_commands_fail_with_a_clear_message(capsys, tmp_path):
    assert cli.main(["train", "easyanimate-lora", "animate_anyone_stage1"]) == 2
    assert "is a animate-anyone recipe" in capsys.readouterr().err
    assert cli.main(["train", "animate-anyone", "--stage", "2", "animate_anyone_stage1"]) == 2
    assert "'--stage': is 2" in capsys.readouterr().err
    recipe = tiny.animate_anyone_config(tmp_path, tmp_path / "out")
    recipe["model"]["factory"] = ".pipelines.no_such_method.training:build_training_models"
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    assert cli.main(["train", "animate-anyone", "--stage", "1", str(tmp_path / "r.yaml")]) == 2
    assert "'model.factory': '.pipelines.no_such_method.training:build_training_models' is not available" in capsys.readouterr().err
    assert cli.main(["prepare", "animate-anyone", str(tmp_path)]) == 2
    assert "error:" in capsys.readouterr().err


def test_stage1_then_stage2_from_its_export_and_resume_through_the_cli(tmp_path, capsys):
    tiny.write_pose_dataset(tmp_path / "poses")
    stage1 = tiny.animate_anyone_config(tmp_path / "poses", tmp_path / "stage1", stage=1, max_train_steps=2)
    (tmp_path / "stage1.yaml").write_text(yaml.safe_dump(stage1))
    assert cli.main(["train", "animate-anyone", "--stage", "1", str(tmp_path / "stage1.yaml")]) == 0
    exported = tmp_path / "stage1" / "models" / "final"
    assert f"wrote {exported / 'denoising_unet.pth'}" in capsys.readouterr().out

    stage2 = tiny.animate_anyone_config(tmp_path / "poses", tmp_path / "stage2", stage=2, max_train_steps=2)
    stage2["model"]["stage1_dir"] = str(exported)
    (tmp_path / "stage2.yaml").write_text(yaml.safe_dump(stage2))
    assert cli.main(["train", "animate-anyone", "--stage", "2", str(tmp_path / "stage2.yaml")]) == 0
    assert cli.main(["train", "animate-anyone", "--stage", "2", str(tmp_path / "stage2.yaml"),
                     "--resume", "latest", "--max-steps", "3"]) == 0
    out = capsys.readouterr().out
    assert "resumed from" in out and "step 3/3" in out
    steps = [json.loads(line)["step"] for line in (tmp_path / "stage2" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    motion = load_state_dict(tmp_path / "stage2" / "models" / "final" / "motion_module.pth")
    assert motion and all("motion_modules" in k for k in motion)
    stage1_unet = load_state_dict(exported / "denoising_unet.pth")
    assert not set(stage1_unet) & set(motion)  # together they are the whole stage-2 denoising UNet
    net = tiny.build_animate_anyone({"width": 16, "stage1_dir": str(exported)}, stage=2).net
    assert set(net.denoising_unet.state_dict()) == set(stage1_unet) | set(motion)


def test_prepare_renders_pose_videos_and_a_meta_file_the_dataset_reads(tmp_path, capsys):
    videos = tmp_path / "fashion"
    (videos / "sub").mkdir(parents=True)
    write_video(tiny.moving_square(6, 32, (220, 90, 30)), videos / "a.mp4", fps=8)
    write_video(tiny.moving_square(9, 32, (30, 220, 90)), videos / "sub" / "b.mov", fps=8)
    assert cli.main(["prepare", "animate-anyone", str(videos), "--renderer", "tiny_models.training:build_marker_renderer"]) == 0
    meta = json.loads((tmp_path / "fashion_meta.json").read_text())
    assert [(m["video_path"], m["kps_path"]) for m in meta] == [
        (str(videos / "a.mp4"), str(tmp_path / "fashion_dwpose" / "a.mp4")),
        (str(videos / "sub" / "b.mov"), str(tmp_path / "fashion_dwpose" / "sub" / "b.mp4"))]
    assert count_frames(tmp_path / "fashion_dwpose" / "sub" / "b.mp4") == 9
    dataset = AnimateAnyoneClips([tmp_path / "fashion_meta.json"], 16, 16, n_sample_frames=3, clip_size=16)
    assert dataset.sample(1, np.random.default_rng(0))["pose"].shape == (3, 3, 16, 16)
    capsys.readouterr()
    prepare_pose_videos(videos, tiny.pose_of)  # a second run keeps what is there
    assert "kept" in capsys.readouterr().out
    with pytest.raises(DatasetError, match="a.mp4.*same count and size"):
        prepare_pose_videos(videos, tiny.build_broken_renderer({}), overwrite=True)


def test_prepare_easyanimate_lists_clips_images_and_captions(tmp_path, capsys):
    from PIL import Image

    write_video(tiny.moving_square(6, 32, (220, 90, 30)), tmp_path / "clip.mp4", fps=8)
    (tmp_path / "clip.txt").write_text("an orange square slides\n")
    Image.fromarray(tiny.moving_square(1, 32, (0, 0, 255))[0]).save(tmp_path / "still.png")
    assert cli.main(["prepare", "easyanimate", str(tmp_path)]) == 0
    assert "1 file(s) without a caption" in capsys.readouterr().out
    meta = json.loads((tmp_path / "metadata.json").read_text())
    assert meta == [{"file_path": "clip.mp4", "text": "an orange square slides", "type": "video"},
                    {"file_path": "still.png", "text": "", "type": "image"}]
    dataset = EasyAnimateMedia(tmp_path / "metadata.json", tmp_path, video_size=16, image_size=16,
                               sample_n_frames=2, sample_stride=1)
    assert dataset.sample(0, np.random.default_rng(0))["pixels"].shape == (2, 3, 16, 16)
    assert torch.is_tensor(dataset.sample(1, np.random.default_rng(0))["pixels"])
