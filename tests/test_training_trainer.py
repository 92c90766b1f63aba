"""The trainer on tiny stand-in models: it learns, trains only what each stage/mode should, writes the
released layouts, and resumes bit-exactly."""

import copy

import pytest
import torch

from comfyui_animate_suite.core.checkpoints import load_into_module, load_state_dict
from comfyui_animate_suite.pipelines.easyanimate.lora import read_lora
from comfyui_animate_suite.pipelines.training import checkpointing, lora
from comfyui_animate_suite.pipelines.training.config import parse_config
from comfyui_animate_suite.pipelines.training.sampling import SampleKeyDataset
from comfyui_animate_suite.pipelines.training.tasks import StepContext, build_task
from comfyui_animate_suite.pipelines.training.trainer import Trainer, TrainerCallback
from tiny_models import training as tiny
from training_testlib import changed_keys, evaluation_loss, frozen_state, quiet

KINDS = ("animate_anyone_stage1", "animate_anyone_stage2", "easyanimate_lora", "easyanimate_motion_module")


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("training_data")
    tiny.write_pose_dataset(root / "poses")
    tiny.write_media_dataset(root / "media")
    return root


def recipe(kind, data_dirs, output_dir, **solver):
    if kind.startswith("animate_anyone"):
        return tiny.animate_anyone_config(data_dirs / "poses", output_dir, stage=int(kind[-1]), **solver)
    return tiny.easyanimate_config(data_dirs / "media", output_dir, mode=kind[len("easyanimate_"):], **solver)


def check_export(kind, task, exports):
    names = {p.name for p in exports}
    if kind == "animate_anyone_stage1":
        assert names == {"denoising_unet.pth", "reference_unet.pth", "pose_guider.pth"}
        fresh = tiny.TinyAnimateAnyoneNet(16, motion=True)  # what stage 2 / inference build
        tiny.load_stage1_export(fresh, exports[0].parent)  # strict: no missing, no unexpected keys
        for key, value in task.net.denoising_unet.state_dict().items():
            assert torch.equal(fresh.denoising_unet.state_dict()[key], value)
    elif kind == "animate_anyone_stage2":
        assert names == {"motion_module.pth"}
        saved = load_state_dict(exports[0])
        motion = {k: v for k, v in task.net.denoising_unet.state_dict().items() if "motion_module" in k}
        assert set(saved) == set(motion) and all(torch.equal(saved[k], motion[k]) for k in motion)
        fresh = tiny.TinyDenoisingUNet(16, motion=True)
        load_into_module(fresh, {**fresh.state_dict(), **saved}, exports[0], "denoising UNet")
    elif kind == "easyanimate_motion_module":
        assert names == {"easyanimate_v1_mm.safetensors"}
        saved = load_state_dict(exports[0])
        state = task.net.transformer.state_dict()
        assert set(saved) == {k for k in state if "temporal" in k}
        assert any(k.endswith("pos_encoder.pe") for k in saved)  # buffers too, as the released file
        assert all(torch.equal(saved[k], state[k]) for k in saved)
    else:
        assert names == {"easyanimate_lora.safetensors"}
        grouped = read_lora(exports[0])
        assert set(grouped) == set(task.networks[0].adapters)
        assert all(name.startswith("lora_unet__") for name in grouped)


@pytest.mark.parametrize("kind", KINDS)
def test_overfits_two_samples_trains_only_its_parameters_and_exports_the_released_layout(kind, data_dirs, tmp_path):
    settings = recipe(kind, data_dirs, tmp_path / "run", max_train_steps=30, learning_rate=1e-2)
    if kind.startswith("animate_anyone"):
        settings["noise"]["condition_drop_ratio"] = 0.0
    else:
        settings["data"]["text_drop_ratio"] = 0.0
    config = parse_config(settings)
    task = build_task(config)
    before_state = frozen_state(task)
    before = evaluation_loss(task, config.seed)
    result = Trainer(task, config, write=quiet).train()
    after = evaluation_loss(task, config.seed)
    assert after <= 0.5 * before, (before, after)

    trainable = {n for n, p in task.net.named_parameters() if p.requires_grad}
    after_state = frozen_state(task)
    changed = changed_keys(before_state, after_state)
    assert changed == {f"net.{n}" for n in trainable}, sorted(changed ^ {f"net.{n}" for n in trainable})[:5]
    if kind == "animate_anyone_stage1":
        assert any(n.startswith("reference_unet.up_blocks.2") for n in trainable)
        assert not any(n.startswith("reference_unet.up_blocks.3") for n in trainable)
        assert {n.split(".")[0] for n in trainable} == {"reference_unet", "denoising_unet", "pose_guider"}
    elif kind == "animate_anyone_stage2":
        assert trainable and all(n.startswith("denoising_unet.") and "motion_modules" in n for n in trainable)
    elif kind == "easyanimate_motion_module":
        assert trainable and all("attn_temporal" in n for n in trainable)
    else:
        assert trainable and all(f".{lora.ADAPTER_NAME}." in n for n in trainable)
    check_export(kind, task, result.exports)
    assert checkpointing.list_checkpoints(tmp_path / "run")  # a final checkpoint


@pytest.mark.parametrize("kind,extra", [
    ("animate_anyone_stage1", dict(gradient_accumulation_steps=2, lr_scheduler="constant_with_warmup",
                                   lr_warmup_steps=2, ema_decay=0.99)),
    ("easyanimate_lora", dict(lr_scheduler="linear", lr_warmup_steps=1)),
])
def test_resume_reproduces_the_next_step_bit_exactly(kind, extra, data_dirs, tmp_path):
    def run(resume=None):
        settings = recipe(kind, data_dirs, tmp_path / "run", max_train_steps=3, **extra)
        settings["checkpoint"] = {"every_steps": 2}
        config = parse_config(settings)
        task = build_task(config)
        result = Trainer(task, config, write=quiet).train(resume=resume)
        state = {n: p.detach().clone() for n, p in task.net.named_parameters() if p.requires_grad}
        return result, state

    straight, straight_state = run()
    resumed, resumed_state = run(resume=checkpointing.checkpoint_dir(tmp_path / "run", 2))
    assert resumed.losses == straight.losses[2:]  # the same float, not close
    assert all(torch.equal(straight_state[n], resumed_state[n]) for n in straight_state)
    if "ema_decay" in extra:
        ema_a = load_state_dict(checkpointing.checkpoint_dir(tmp_path / "run", 3) / "ema.safetensors")
        assert set(ema_a) == set(straight_state)


def test_resume_refuses_another_layout_and_latest_finds_the_newest(data_dirs, tmp_path):
    settings = recipe("animate_anyone_stage1", data_dirs, tmp_path / "run", max_train_steps=2)
    settings["checkpoint"] = {"every_steps": 1, "keep_last": 1}
    config = parse_config(settings)
    Trainer(build_task(config), config, write=quiet).train()
    assert [p.name for p in checkpointing.list_checkpoints(tmp_path / "run")] == ["checkpoint-0000002"]
    assert checkpointing.resolve_resume("latest", tmp_path / "run").name == "checkpoint-0000002"

    other = copy.deepcopy(settings)
    other["data"]["batch_size"] = 1
    config = parse_config(other)
    with pytest.raises(checkpointing.ResumeError, match="batch size 2"):
        Trainer(build_task(config), config, write=quiet).train(resume="latest")
    stage2 = recipe("animate_anyone_stage2", data_dirs, tmp_path / "run", max_train_steps=3)
    config = parse_config(stage2)
    with pytest.raises(checkpointing.ResumeError, match="other parameters"):
        Trainer(build_task(config), config, write=quiet).train(resume="latest")
    with pytest.raises(checkpointing.ResumeError, match="no checkpoint"):
        checkpointing.resolve_resume("latest", tmp_path / "empty")


def test_gradient_checkpointing_gives_the_same_gradients(data_dirs, tmp_path):
    grads = []
    for checkpointed in (False, True):
        config = parse_config(recipe("easyanimate_motion_module", data_dirs, tmp_path, max_train_steps=1))
        task = build_task(config)
        task.net.train()
        if checkpointed:
            task.net.transformer.enable_gradient_checkpointing()
        dataset = SampleKeyDataset(task.dataset, config.seed)
        batch = torch.utils.data.default_collate([dataset[(0, 0)], dataset[(1, 1)]])
        loss = task.compute_loss(task.net, batch, StepContext(config.seed, torch.device("cpu"), torch.float32, 0))
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in task.net.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-5, atol=1e-7)


def test_bf16_mixed_precision_runs_with_fp32_trained_weights(data_dirs, tmp_path):
    config = parse_config(recipe("animate_anyone_stage2", data_dirs, tmp_path, max_train_steps=2,
                                 mixed_precision="bf16", gradient_checkpointing=True))
    task = build_task(config)
    result = Trainer(task, config, write=quiet).train()
    assert all(torch.isfinite(torch.tensor(result.losses)))
    assert task.vae.dtype == torch.bfloat16 and next(task.image_encoder.parameters()).dtype == torch.bfloat16
    assert next(task.net.reference_unet.parameters()).dtype == torch.bfloat16  # fully frozen child
    assert all(p.dtype == torch.float32 for p in task.net.denoising_unet.parameters())  # holds trained weights


def test_progress_metrics_and_validation_samples_every_n_steps(data_dirs, tmp_path):
    settings = recipe("easyanimate_lora", data_dirs, tmp_path, max_train_steps=4)
    settings["validation"] = {"every_steps": 2, "options": {"prompts": ["a red square"]}}
    config = parse_config(settings)
    lines, seen = [], []

    class Recorder(TrainerCallback):
        def on_validation(self, step, paths):
            seen.append((step, [p.name for p in paths]))

    Trainer(build_task(config), config, callbacks=(Recorder(),), log_every=2, write=lines.append).train()
    assert seen == [(2, ["prediction.gif"]), (4, ["prediction.gif"])]
    assert (tmp_path / "validation" / "step-0000004" / "prediction.gif").is_file()
    assert any(line.startswith("step 2/4  loss") and " lr " in line for line in lines)
    import json

    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4] and all(m["lr"] > 0 for m in metrics)


def test_unconditional_batches_drop_reference_and_clip_input_at_the_configured_rate(data_dirs, tmp_path):
    config = parse_config(recipe("animate_anyone_stage1", data_dirs, tmp_path))
    task = build_task(config)
    draws = [task.drops_condition(StepContext(config.seed, torch.device("cpu"), torch.float32, n)) for n in range(4000)]
    assert abs(sum(draws) / 4000 - 0.1) < 4 * (0.1 * 0.9 / 4000) ** 0.5

    calls = []

    class Recording(torch.nn.Module):
        def forward(self, noisy, timesteps, reference, clip_embeds, pose):
            calls.append((noisy, timesteps, reference, clip_embeds))
            return noisy

    dataset = SampleKeyDataset(task.dataset, config.seed)
    batch = torch.utils.data.default_collate([dataset[(0, 0)], dataset[(1, 1)]])
    dropped = next(n for n, d in enumerate(draws) if d)
    kept = next(n for n, d in enumerate(draws) if not d)
    for number in (dropped, kept):
        task.compute_loss(Recording(), batch, StepContext(config.seed, torch.device("cpu"), torch.float32, number))
    (noisy_d, t_d, reference_d, clip_d), (noisy_k, t_k, reference_k, clip_k) = calls
    assert reference_d is None and reference_k is not None and reference_k.shape == (2, 4, 4, 4)
    with torch.no_grad():
        zero_input = task.image_encoder(pixel_values=torch.zeros(2, 3, 224, 224)).image_embeds.unsqueeze(1)
    torch.testing.assert_close(clip_d, zero_input)  # the CLIP *input* is zeroed, as the reference
    assert torch.equal(noisy_d, noisy_k) and torch.equal(t_d, t_k)  # noise does not depend on the drop


def test_noise_offset_adds_one_value_per_sample_and_channel(data_dirs, tmp_path):
    noisy = {}
    for offset in (0.0, 0.05):
        settings = recipe("animate_anyone_stage2", data_dirs, tmp_path)
        settings["noise"] = {"noise_offset": offset, "condition_drop_ratio": 0.0}
        config = parse_config(settings)
        task = build_task(config)
        dataset = SampleKeyDataset(task.dataset, config.seed)
        batch = torch.utils.data.default_collate([dataset[(0, 0)], dataset[(1, 1)]])
        captured = []

        class Recording(torch.nn.Module):
            def forward(self, noisy_latents, timesteps, *rest):
                captured.append((noisy_latents, timesteps))
                return noisy_latents

        task.compute_loss(Recording(), batch, StepContext(config.seed, torch.device("cpu"), torch.float32, 0))
        noisy[offset] = captured[0]
    (plain, timesteps), (shifted, _) = noisy[0.0], noisy[0.05]
    alpha_bar = task.schedule.alphas_cumprod[timesteps].reshape(-1, 1, 1, 1, 1)
    offset = (shifted - plain) / ((1 - alpha_bar).sqrt() * 0.05)  # noisy = sqrt(ab) x0 + sqrt(1-ab) (noise + 0.05 o)
    per_channel = offset.flatten(2)
    torch.testing.assert_close(per_channel, per_channel[:, :, :1].expand_as(per_channel), rtol=1e-3, atol=1e-3)
    assert per_channel[:, :, 0].abs().max() > 0.05  # a standard-normal draw per sample and channel
