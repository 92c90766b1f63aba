"""AnimateAnyone training on the real model code (tiny random weights in the released layouts): both stages
learn, train only their parameters, write files that the inference loader reads with every key matched,
resume bit-exactly, and attend to the reference exactly as inference does."""

import json
from types import SimpleNamespace

import pytest
import torch
import yaml

from comfyui_animate_suite import cli
from comfyui_animate_suite.pipelines.animate_anyone import loading, reference_attention
from comfyui_animate_suite.pipelines.animate_anyone import training as aa_training
from comfyui_animate_suite.pipelines.animate_anyone.training_task import AnimateAnyoneTask
from comfyui_animate_suite.pipelines.animate_anyone.loading import AnimateAnyoneConfig, AnimateAnyoneFiles
from comfyui_animate_suite.pipelines.motion_module import sinusoid_table
from comfyui_animate_suite.pipelines.animate_anyone.models_unet import fold_frames, unfold_frames
from comfyui_animate_suite.core.checkpoints import load_state_dict
from comfyui_animate_suite.core.errors import CheckpointError, InputError
from comfyui_animate_suite.pipelines.training import checkpointing, selection
from comfyui_animate_suite.pipelines.training.config import load_config, parse_config
from comfyui_animate_suite.pipelines.training.tasks import DEFAULT_FACTORIES, TASKS, build_task, resolve_callable
from comfyui_animate_suite.pipelines.training.trainer import Trainer
from tiny_models import animate_anyone as tiny_aa
from tiny_models import training as tiny
from training_testlib import changed_keys, evaluation_loss, frozen_state, quiet

SIZE = 64  # pixels: 8x8 latents through the tiny UNet's three downsamplings
# Seeded runs that halve the held-out loss on the CPU: stage 1 from the SD UNet folder (+ ControlNet PoseGuider),
# stage 2 from the tiny release plus the AnimateDiff-layout motion module.
RUNS = {1: dict(learning_rate=2e-3, max_train_steps=8), 2: dict(learning_rate=1e-2, max_train_steps=14)}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("animate_anyone_training")
    sources = tiny_aa.write_training_sources(root / "models")
    tiny.write_pose_dataset(root / "data", count=2, frames=12, size=SIZE)
    return SimpleNamespace(sources=sources, data=root / "data")


def recipe(files, output_dir, stage, **solver) -> dict:
    return tiny.animate_anyone_real_config(files.sources, files.data, output_dir, stage, size=SIZE, **solver)


def model_config(settings: dict, **changes) -> dict:
    return {**settings["model"], **changes}


@pytest.fixture(scope="module")
def runs(files, tmp_path_factory):
    """Each stage's seeded run, trained once when a test first asks for it."""
    done = {}

    def run(stage: int) -> SimpleNamespace:
        if stage not in done:
            config = parse_config(recipe(files, tmp_path_factory.mktemp(f"stage{stage}"), stage, **RUNS[stage]))
            task = build_task(config)
            before_state, before_loss = frozen_state(task), evaluation_loss(task, config.seed)
            result = Trainer(task, config, write=quiet).train()
            done[stage] = SimpleNamespace(stage=stage, config=config, task=task, result=result, before_state=before_state,
                                          before_loss=before_loss, after_loss=evaluation_loss(task, config.seed))
        return done[stage]

    return run


@pytest.fixture(scope="module", params=sorted(RUNS))
def trained(request, runs):
    return runs(request.param)


def state_equal(module_state: dict, expected: dict) -> bool:
    return module_state.keys() == expected.keys() and all(torch.equal(module_state[k], expected[k]) for k in expected)


def test_training_halves_the_loss_and_changes_only_the_trained_parameters(trained):
    assert trained.after_loss <= 0.5 * trained.before_loss, (trained.before_loss, trained.after_loss)
    net = trained.task.net
    names = {n for n, _ in net.named_parameters()}
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    changed = changed_keys(trained.before_state, frozen_state(trained.task))  # the frozen VAE and CLIP included
    assert changed <= {f"net.{n}" for n in trainable}, sorted(changed - {f"net.{n}" for n in trainable})[:5]
    if trained.stage == 1:
        assert not any("motion_modules" in n for n in names)  # stage 1's UNet has none
        assert trainable == {n for n in names if not n.startswith("reference_unet.up_blocks.3.")}
        assert any(n.startswith("reference_unet.up_blocks.3.") for n in names)
        # Some trained weights get no gradient at this size: keys/queries of attention over a single token
        # (the one CLIP token; the 1x1 innermost blocks). Every network learns, and most of its weights change.
        for child in ("reference_unet", "denoising_unet", "pose_guider"):
            child_trainable = [n for n in trainable if n.startswith(child + ".")]
            child_changed = [n for n in changed if n.startswith(f"net.{child}.")]
            assert len(child_changed) > 0.6 * len(child_trainable), child
    else:
        assert changed == {f"net.{n}" for n in trainable}, sorted({f"net.{n}" for n in trainable} - changed)[:5]
        assert trainable == {n for n in names if n.startswith("denoising_unet.") and ".motion_modules." in n}
        assert trainable and len(trainable) < len(names) / 2


def test_the_exported_files_load_through_the_inference_loader(trained, files):
    net, exports = trained.task.net, {p.name: p for p in trained.result.exports}
    release = files.sources.release
    config = AnimateAnyoneConfig.for_weights(files.sources.release_dir)
    if trained.stage == 1:
        assert sorted(exports) == ["denoising_unet.pth", "pose_guider.pth", "reference_unet.pth"]
        chosen = AnimateAnyoneFiles(exports["denoising_unet.pth"], exports["reference_unet.pth"],
                                    exports["pose_guider.pth"], release.motion_module, release.image_encoder, release.vae)
    else:
        assert sorted(exports) == ["motion_module.pth"]
        chosen = AnimateAnyoneFiles(release.denoising_unet, release.reference_unet, release.pose_guider,
                                    exports["motion_module.pth"], release.image_encoder, release.vae)
    models = loading.load_models(chosen, torch.float32, config)  # strict: no missing or unexpected key
    trained_unet = net.denoising_unet.state_dict()
    loaded_unet = models.denoising_unet.state_dict()
    if trained.stage == 1:
        assert state_equal(models.reference_net.state_dict(), net.reference_unet.state_dict())
        assert state_equal(models.pose_guider.state_dict(), net.pose_guider.state_dict())
        assert state_equal({k: v for k, v in loaded_unet.items() if "motion_modules." not in k}, trained_unet)
    else:
        motion = {k: v for k, v in loaded_unet.items() if "motion_modules." in k}
        assert state_equal(motion, {k: v for k, v in trained_unet.items() if "motion_modules." in k})


def test_stage_2_starts_from_the_stage_1_output(runs, files):
    trained = runs(1)
    folder = trained.result.exports[0].parent
    settings = recipe(files, folder, 2)
    models = aa_training.build_training_models(model_config(settings, stage1_dir=str(folder)), 2)
    stage1 = trained.task.net
    assert state_equal(models.net.reference_unet.state_dict(), stage1.reference_unet.state_dict())
    assert state_equal(models.net.pose_guider.state_dict(), stage1.pose_guider.state_dict())
    unet = models.net.denoising_unet.state_dict()
    assert state_equal({k: v for k, v in unet.items() if "motion_modules." not in k}, stage1.denoising_unet.state_dict())
    motion = load_state_dict(files.sources.motion_module)
    assert state_equal({k: v for k, v in unet.items() if "motion_modules." in k}, motion)


def test_the_training_forward_attends_to_each_reference_as_inference_does(files):
    """A batch of two samples with different references = the inference path (ReferenceNet features recorded,
    then read by the denoising UNet) run on each sample alone; an unconditional batch = plain self-attention."""
    settings = recipe(files, files.data, 2)
    # float64: the group norms over 1x1 latents of this tiny UNet magnify float32 rounding that depends on the batch size
    net = aa_training.build_training_models(settings["model"], 2).net.eval().double()
    generator = torch.Generator().manual_seed(3)
    noisy = torch.randn(2, 4, 3, 8, 8, generator=generator, dtype=torch.float64)
    timesteps = torch.tensor([100, 700])
    references = torch.randn(2, 4, 8, 8, generator=generator, dtype=torch.float64)
    clip = torch.randn(2, 1, 32, generator=generator, dtype=torch.float64)
    pose = torch.rand(2, 3, 3, SIZE, SIZE, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        batched = net(noisy, timesteps, references, clip, pose)
        unconditional = net(noisy, timesteps, None, clip, pose)
        for i in range(2):
            features = reference_attention.record_reference_features(net.reference_unet, references[i:i + 1], clip[i:i + 1])
            pose_features = unfold_frames(net.pose_guider(fold_frames(pose[i:i + 1])), 3)
            with reference_attention.reading_reference(net.denoising_unet, features, guided=False):
                alone = net.denoising_unet(noisy[i:i + 1], timesteps[i:i + 1], clip[i:i + 1], pose_features)
            torch.testing.assert_close(batched[i:i + 1], alone, rtol=1e-9, atol=1e-9)
            plain = net.denoising_unet(noisy[i:i + 1], timesteps[i:i + 1], clip[i:i + 1], pose_features)
            torch.testing.assert_close(unconditional[i:i + 1], plain, rtol=1e-9, atol=1e-9)
    assert (batched - unconditional).abs().max() > 1e-3  # the reference is really attended to


def test_resume_reproduces_the_next_step_bit_exactly(files, tmp_path):
    for stage, extra in ((1, dict(lr_scheduler="linear", lr_warmup_steps=1)), (2, dict(ema_decay=0.9))):
        def run(resume=None):
            settings = recipe(files, tmp_path / f"stage{stage}", stage, **extra)
            settings["checkpoint"] = {"every_steps": 2}
            config = parse_config(settings)
            task = build_task(config)
            result = Trainer(task, config, write=quiet).train(resume=resume)
            return result, {n: p.detach().clone() for n, p in task.net.named_parameters() if p.requires_grad}

        straight, straight_state = run()
        resumed, resumed_state = run(resume=checkpointing.checkpoint_dir(tmp_path / f"stage{stage}", 2))
        assert resumed.losses == straight.losses[2:], stage  # the same float, not close
        assert all(torch.equal(straight_state[n], resumed_state[n]) for n in straight_state), stage


@pytest.mark.parametrize("stage", [1, 2])
def test_gradient_checkpointing_gives_the_same_gradients(files, tmp_path, stage):
    generator = torch.Generator().manual_seed(stage)
    inputs = (torch.randn(2, 4, 2, 8, 8, generator=generator), torch.tensor([10, 900]),
              torch.randn(2, 4, 8, 8, generator=generator), torch.randn(2, 1, 32, generator=generator),
              torch.rand(2, 3, 2, SIZE, SIZE, generator=generator))
    grads = []
    for checkpointed in (False, True):
        task = build_task(parse_config(recipe(files, tmp_path, stage)))
        net = task.net.train()
        selection.apply_rule(net, task.rule, task.name)
        if checkpointed:
            assert selection.enable_gradient_checkpointing(net) == ["AnimateAnyoneTrainingNet"]
        net(*inputs).square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    assert any(n.startswith("reference_unet.") for n in grads[0]) == (stage == 1)
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-6)


def test_stage_1_starts_from_the_sd_unet_and_the_controlnet_as_the_reference_does(files):
    settings = recipe(files, files.data, 1)
    net = aa_training.build_training_models(settings["model"], 1).net
    sd = load_state_dict(files.sources.base_unet / "diffusion_pytorch_model.safetensors")
    assert state_equal(net.denoising_unet.state_dict(), sd)
    assert state_equal(net.reference_unet.state_dict(), {k: v for k, v in sd.items() if not k.startswith(("conv_norm_out.", "conv_out."))})
    with torch.no_grad():
        net.reference_unet.conv_in.weight.add_(1.0)
    assert not torch.equal(net.reference_unet.conv_in.weight, net.denoising_unet.conv_in.weight)  # two copies
    controlnet = load_state_dict(files.sources.controlnet)
    guider = net.pose_guider.state_dict()
    assert not guider["conv_out.weight"].any() and not guider["conv_out.bias"].any()
    for key, value in guider.items():
        if not key.startswith("conv_out."):
            assert torch.equal(value, controlnet[f"controlnet_cond_embedding.{key}"]), key
    without_controlnet = aa_training.build_training_models(model_config(settings, controlnet_openpose=None), 1).net
    fresh = without_controlnet.pose_guider
    assert fresh.conv_in.weight.std() > 0 and not fresh.conv_out.weight.any()
    torch.manual_seed(123)  # new weights do not depend on the global random state
    again = aa_training.build_training_models(model_config(settings, controlnet_openpose=None), 1).net.pose_guider
    assert state_equal(again.state_dict(), fresh.state_dict())


def test_new_motion_modules_start_as_animatediff_builds_them(files):
    settings = recipe(files, files.data, 2)
    unet = aa_training.build_training_models(model_config(settings, motion_module_init=None), 2).net.denoising_unet
    state = unet.state_dict()
    released = load_state_dict(files.sources.release.denoising_unet)
    assert state_equal({k: v for k, v in state.items() if "motion_modules." not in k}, released)
    proj_out = [v for k, v in state.items() if "motion_modules." in k and ".temporal_transformer.proj_out." in k]
    assert proj_out and not any(v.any() for v in proj_out)  # each module starts as the identity
    tables = {k: v for k, v in state.items() if k.endswith("pos_encoder.pe")}
    assert tables and all(torch.equal(v, sinusoid_table(v.shape[1], v.shape[2])) for v in tables.values())
    proj_in = [v for k, v in state.items() if k.endswith("temporal_transformer.proj_in.weight")]
    assert all(v.std() > 0 for v in proj_in)
    torch.manual_seed(123)  # new weights do not depend on the global random state
    again = aa_training.build_training_models(model_config(settings, motion_module_init=None), 2).net.denoising_unet
    assert state_equal(again.state_dict(), state)


def test_recipe_mistakes_are_named_before_training(files, tmp_path):
    stage1, stage2 = recipe(files, tmp_path, 1), recipe(files, tmp_path, 2)
    mistakes = [
        (stage1, dict(base_folder="x"), "'model.base_folder'"),
        (stage1, dict(stage1_dir=str(files.sources.release_dir)), "'model.base_unet'.*both set"),
        (stage1, dict(base_unet=None), "'model.base_unet'.*not set"),
        (stage1, dict(motion_module_init=str(files.sources.motion_module)), "'model.motion_module_init'.*stage 2"),
        (stage2, dict(stage1_dir=None), "'model.stage1_dir'.*not set"),
        (stage2, dict(base_unet=str(files.sources.base_unet)), "'model.base_unet'.*stage 1"),
        (stage2, dict(vae=None), "'model.vae'"),
    ]
    for settings, changes, message in mistakes:
        with pytest.raises(InputError, match=message):
            build_task(parse_config({**settings, "model": model_config(settings, **changes)}))
    with pytest.raises(CheckpointError, match="reference_unet.pth"):  # a released ReferenceNet is no SD UNet
        aa_training.unets_from_sd(files.sources.release.reference_unet, AnimateAnyoneConfig.for_weights(files.sources.release_dir))
    with pytest.raises(CheckpointError, match="motion_module.pth"):  # files mixed up in the stage-1 folder
        aa_training.build_training_models(model_config(stage2, motion_module_init=str(files.sources.release.pose_guider)), 2)
    bad_case = {"every_steps": 2, "options": {"cases": [{"reference": str(tmp_path / "missing.png"), "pose": "x"}]}}
    with pytest.raises(InputError, match=r"'validation.options.cases\[0\].reference'"):
        build_task(parse_config({**stage2, "validation": bad_case}))
    with pytest.raises(InputError, match="'validation.options.prompts'"):
        build_task(parse_config({**stage2, "validation": {"every_steps": 2, "options": {"prompts": ["a"]}}}))


def test_validation_samples_come_from_the_animate_anyone_pipeline(files, tmp_path):
    from PIL import Image

    from comfyui_animate_suite.core.video import DecodeOptions, read_frames

    Image.new("RGB", (48, 48), (200, 60, 40)).save(tmp_path / "reference.png")
    settings = recipe(files, tmp_path, 2, max_train_steps=2)
    settings["validation"] = {"every_steps": 2, "options": {
        "cases": [{"reference": str(tmp_path / "reference.png"), "pose": str(files.data / "dance0_kps.mp4")}],
        "width": SIZE, "height": SIZE, "frames": 3, "steps": 2}}
    config = parse_config(settings)
    Trainer(build_task(config), config, write=quiet).train()
    folder = tmp_path / "validation" / "step-0000002"
    assert sorted(p.name for p in folder.iterdir()) == ["case-0.gif"]
    frames, _ = read_frames(folder / "case-0.gif", DecodeOptions())
    assert frames.shape == (3, SIZE, SIZE, 3)


def test_shipped_recipes_use_the_wired_factory_and_its_keys():
    factory = resolve_callable(DEFAULT_FACTORIES["animate-anyone"], "model.factory", "")
    assert factory is aa_training.build_training_models
    assert resolve_callable(TASKS["animate-anyone"], "method", "") is AnimateAnyoneTask
    for stage in (1, 2):
        config = load_config(f"animate_anyone_stage{stage}")
        assert config.model["factory"] == DEFAULT_FACTORIES["animate-anyone"]
        aa_training.check_model_keys({k: v for k, v in config.model.items() if k != "factory"}, stage)
        assert set(config.validation.options) <= set(aa_training.VALIDATION_OPTIONS)


def test_the_train_command_writes_the_stage_1_files(files, tmp_path, capsys):
    settings = recipe(files, tmp_path / "out", 1, max_train_steps=1)
    (tmp_path / "stage1.yaml").write_text(yaml.safe_dump(settings))
    assert cli.main(["train", "animate-anyone", "--stage", "1", str(tmp_path / "stage1.yaml")]) == 0
    out = capsys.readouterr().out
    for name in ("denoising_unet.pth", "reference_unet.pth", "pose_guider.pth"):
        assert f"wrote {tmp_path / 'out' / 'models' / 'final' / name}" in out
    steps = [json.loads(line)["step"] for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1]


def test_full_size_stage_1_networks_have_the_released_layout(shared_dir):
    """At SD1.5 size (meta device): the stage-1 denoising UNet and a new PoseGuider have exactly the keys and
    shapes of the released denoising_unet.pth / pose_guider.pth, and the SD UNet minus its output head is the
    released ReferenceNet."""
    released = json.loads((shared_dir / "parity" / "animate_anyone" / "released_keys.json").read_text())
    config = AnimateAnyoneConfig.for_weights()
    with torch.device("meta"):
        unet = aa_training.image_unet(config)
    shapes = {k: list(v.shape) for k, v in unet.state_dict().items()}
    assert shapes == released["denoising_unet.pth"]
    guider = aa_training.new_pose_guider(config, None)
    assert {k: list(v.shape) for k, v in guider.state_dict().items()} == released["pose_guider.pth"]
    assert {k: v for k, v in shapes.items() if not k.startswith(aa_training.UNET_HEAD)} == released["reference_unet.pth"]
