"""EasyAnimate v1 training on the real v1 model code (tiny random weights in the released layout): LoRA and
motion-module runs learn, train only their parameters, write files that the inference loaders and nodes
read with every key matched, and resume bit-exactly."""

import json
import os
import shutil
from types import SimpleNamespace

import pytest
import torch
import yaml

from comfyui_animate_suite import cli
from comfyui_animate_suite.core.checkpoints import load_state_dict
from comfyui_animate_suite.pipelines.easyanimate import loading
from comfyui_animate_suite.pipelines.easyanimate import lora as inference_lora
from comfyui_animate_suite.pipelines.easyanimate import training as easyanimate_training
from comfyui_animate_suite.pipelines.easyanimate import training_task as ea_task
from comfyui_animate_suite.pipelines.motion_module import DIT_MOTION_KEY, is_motion_module_key, sinusoid_table
from comfyui_animate_suite.core.errors import InputError
from comfyui_animate_suite.pipelines.training import checkpointing, lora
from comfyui_animate_suite.pipelines.training.config import load_config, parse_config
from comfyui_animate_suite.pipelines.training.sampling import SampleKeyDataset
from comfyui_animate_suite.pipelines.training.tasks import (DEFAULT_FACTORIES, TASKS, StepContext, build_task,
                                                                resolve_callable)
from comfyui_animate_suite.pipelines.training.trainer import Trainer
from tiny_models import easyanimate as tiny_easyanimate
from tiny_models import training as tiny
from training_testlib import changed_keys, evaluation_loss, frozen_state, quiet

SIZE = 32  # pixels: 4x4 latents, one 2x2 motion-module cell of tokens
TOKENS = 16
# Seeded runs that halve the held-out loss on the CPU: the LoRA (transformer + T5) from the released-style
# motion module, the motion module from scratch (EasyAnimate's fresh initialisation).
RUNS = {"lora": dict(learning_rate=2e-2, with_motion_module=True),
        "motion_module": dict(learning_rate=5e-3, with_motion_module=False)}
STEPS = 20


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("easyanimate_training")
    v1 = tiny_easyanimate.write_v1(root / "models")
    tiny.write_media_dataset(root / "media", frames=6, size=SIZE)
    return SimpleNamespace(v1=v1, media=root / "media")


def recipe(files, output_dir, mode, with_motion_module=True, **solver) -> dict:
    return tiny.easyanimate_v1_config(files.v1, files.media, output_dir, mode, with_motion_module, SIZE, TOKENS, **solver)


@pytest.fixture(scope="module", params=sorted(RUNS))
def trained(request, files, tmp_path_factory):
    mode = request.param
    run = RUNS[mode]
    output = tmp_path_factory.mktemp(f"run_{mode}")
    config = parse_config(recipe(files, output, mode, run["with_motion_module"], max_train_steps=STEPS,
                                 learning_rate=run["learning_rate"]))
    task = build_task(config)
    before_state, before_loss = frozen_state(task), evaluation_loss(task, config.seed)
    result = Trainer(task, config, write=quiet).train()
    return SimpleNamespace(mode=mode, config=config, task=task, result=result, before_state=before_state,
                           before_loss=before_loss, after_loss=evaluation_loss(task, config.seed))


def linear_paths(module) -> set[str]:
    return {name for name, child in module.named_modules() if isinstance(child, torch.nn.Linear)
            and lora.ADAPTER_NAME not in name.split(".")}


def fixed_input(seed: int = 5):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(1, 4, 3, SIZE // 8, SIZE // 8, generator=generator), torch.tensor([400])


def test_training_halves_the_loss_and_changes_only_the_trained_parameters(trained):
    assert trained.after_loss <= 0.5 * trained.before_loss, (trained.before_loss, trained.after_loss)
    net = trained.task.net
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    changed = changed_keys(trained.before_state, frozen_state(trained.task))
    assert changed == {f"net.{n}" for n in trainable}, sorted(changed ^ {f"net.{n}" for n in trainable})[:5]
    if trained.mode == "motion_module":
        assert trainable == {n for n, _ in net.named_parameters() if "attn_temporal" in n}
        assert all(n.startswith("transformer.") for n in trainable)
    else:  # an adapter on every Linear of the transformer (motion module included) and of T5, nothing else
        adapted = {n.split(f".{lora.ADAPTER_NAME}.")[0] for n in trainable}
        assert all(f".{lora.ADAPTER_NAME}." in n for n in trainable)
        assert adapted == {f"transformer.{p}" for p in linear_paths(net.transformer)} | \
            {f"text_encoder.{p}" for p in linear_paths(net.text_encoder)}


def test_the_exported_file_loads_into_the_inference_model_with_every_key_matched(trained, files):
    (export,) = trained.result.exports
    net = trained.task.net.eval()
    if trained.mode == "motion_module":
        assert export.name == "easyanimate_v1_mm.safetensors"
        assert set(load_state_dict(export)) == {k for k in net.transformer.state_dict() if is_motion_module_key(k, DIT_MOTION_KEY)}
        model = loading.load_v1(files.v1.base, export, torch.float32)  # strict: no missing or unexpected key
        trained_state = net.transformer.state_dict()
        assert all(torch.equal(value, trained_state[key]) for key, value in model.transformer.state_dict().items())
        return
    assert export.name == "easyanimate_lora.safetensors"
    model = loading.load_v1(files.v1.base, files.v1.motion_module, torch.float32)
    match = inference_lora.match_lora(inference_lora.read_lora(export), model.transformer, model.text_encoder)
    match.check(str(export), "EasyAnimate v1")  # no layer of the file is unknown to the inference model
    assert len(match.transformer) == len(linear_paths(model.transformer))
    assert len(match.text_encoder) == len(linear_paths(model.text_encoder))
    latents, timestep = fixed_input()
    ids, mask = easyanimate_training.tokenize(model.tokenizer, ["a red square slides right"], TOKENS)
    with torch.no_grad():
        trained_output = net(latents, timestep, mask, input_ids=ids)
        with inference_lora.merged(model.transformer, match.transformer, 1.0):
            transformer_only = model.transformer(latents, timestep, model.text_encoder(ids, attention_mask=mask)[0], mask)
            with inference_lora.merged(model.text_encoder, match.text_encoder, 1.0):
                merged_output = model.transformer(latents, timestep, model.text_encoder(ids, attention_mask=mask)[0], mask)
    torch.testing.assert_close(merged_output, trained_output, rtol=1e-4, atol=1e-4)
    assert (transformer_only - trained_output).abs().max() > 1e-3  # the T5 LoRA was trained and is applied too


def test_the_exported_file_drops_into_the_easyanimate_nodes(trained, files, comfy):
    mapping = comfy.package.NODE_CLASS_MAPPINGS
    base_name = f"PixArt-tiny-trained-{trained.mode}"
    link = comfy.models / "easyanimate" / base_name
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(files.v1.base, link, target_is_directory=True)
    (export,) = trained.result.exports
    if trained.mode == "motion_module":
        shutil.copy(export, comfy.models / "easyanimate" / "trained_mm.safetensors")
        (model,) = mapping["AnimateSuiteEasyAnimateV1Loader"].execute(f"easyanimate/{base_name}", "trained_mm.safetensors", "fp32").result
        trained_state = trained.task.net.transformer.state_dict()
        assert all(torch.equal(v, trained_state[k]) for k, v in model.components.transformer.state_dict().items())
        return
    shutil.copy(files.v1.motion_module, comfy.models / "easyanimate" / "tiny_v1_mm.safetensors")
    (comfy.models / "loras").mkdir(exist_ok=True)
    shutil.copy(export, comfy.models / "loras" / "trained_easyanimate_lora.safetensors")
    (model,) = mapping["AnimateSuiteEasyAnimateV1Loader"].execute(f"easyanimate/{base_name}", "tiny_v1_mm.safetensors", "fp32").result
    (with_lora,) = mapping["AnimateSuiteEasyAnimateLoRA"].execute(model, "trained_easyanimate_lora.safetensors", 1.0).result
    transformer, text_encoder = model.components.transformer, model.components.text_encoder
    assert set(with_lora.patchers["transformer"].patches) == {f"{p}.weight" for p in linear_paths(transformer)}
    assert set(with_lora.patchers["text_encoder"].patches) == {f"{p}.weight" for p in linear_paths(text_encoder)}


def test_resume_reproduces_the_next_step_bit_exactly(files, tmp_path):
    for mode, extra in (("lora", dict(lr_scheduler="linear", lr_warmup_steps=1)),
                        ("motion_module", dict(ema_decay=0.9, gradient_accumulation_steps=2))):
        def run(resume=None):
            settings = recipe(files, tmp_path / mode, mode, **extra)
            settings["checkpoint"] = {"every_steps": 2}
            config = parse_config(settings)
            task = build_task(config)
            result = Trainer(task, config, write=quiet).train(resume=resume)
            return result, {n: p.detach().clone() for n, p in task.net.named_parameters() if p.requires_grad}

        straight, straight_state = run()
        resumed, resumed_state = run(resume=checkpointing.checkpoint_dir(tmp_path / mode, 2))
        assert resumed.losses == straight.losses[2:], mode  # the same float, not close
        assert all(torch.equal(straight_state[n], resumed_state[n]) for n in straight_state), mode
        assert load_state_dict(straight.exports[0]).keys() == load_state_dict(resumed.exports[0]).keys()


def test_a_fresh_motion_module_starts_as_easyanimate_builds_it(files):
    rng_before = torch.get_rng_state()
    models = easyanimate_training.build_training_models({"pixart_dir": str(files.v1.base), "motion_module": None})
    assert torch.equal(torch.get_rng_state(), rng_before)
    state = models.transformer.state_dict()
    pixart = load_state_dict(files.v1.base / "transformer" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(state[k], v) for k, v in pixart.items())
    assert set(state) - set(pixart) == {k for k in state if is_motion_module_key(k, DIT_MOTION_KEY)}
    for block in models.transformer.transformer_blocks:
        temporal = block.attn_temporal.temporal_transformer
        assert not temporal.proj_out.weight.any() and not temporal.proj_out.bias.any()  # starts as the identity
        assert temporal.proj_in.weight.std() > 0
        for attention in temporal.transformer_blocks[0].attention_blocks:
            _, max_len, dim = attention.pos_encoder.pe.shape
            assert torch.equal(attention.pos_encoder.pe, sinusoid_table(max_len, dim))
    again = easyanimate_training.build_training_models({"pixart_dir": str(files.v1.base)}).transformer.state_dict()
    assert all(torch.equal(state[k], again[k]) for k in state)


def test_gradient_checkpointing_gives_the_same_gradients(files, tmp_path):
    grads = []
    for checkpointed in (False, True):
        config = parse_config(recipe(files, tmp_path, "motion_module"))
        task = build_task(config)
        task.net.train()
        if checkpointed:
            task.net.transformer.enable_gradient_checkpointing()
        dataset = SampleKeyDataset(task.dataset, config.seed)
        batch = torch.utils.data.default_collate([dataset[(0, 0)], dataset[(1, 1)]])
        task.compute_loss(task.net, batch, StepContext(config.seed, torch.device("cpu"), torch.float32, 0)).backward()
        grads.append({n: p.grad.clone() for n, p in task.net.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-5, atol=1e-7)


def test_validation_samples_come_from_the_text_to_video_pipeline(files, tmp_path):
    from comfyui_animate_suite.core.video import read_frames, DecodeOptions

    settings = recipe(files, tmp_path, "lora", max_train_steps=2)
    settings["validation"] = {"every_steps": 2, "options": {"prompts": ["a red square", "a green square"],
                                                            "width": SIZE, "height": 2 * SIZE, "frames": 3, "steps": 2}}
    config = parse_config(settings)
    Trainer(build_task(config), config, write=quiet).train()
    folder = tmp_path / "validation" / "step-0000002"
    assert sorted(p.name for p in folder.iterdir()) == ["prompt-0.gif", "prompt-1.gif"]
    frames, _ = read_frames(folder / "prompt-1.gif", DecodeOptions())
    assert frames.shape == (3, 2 * SIZE, SIZE, 3)


def test_recipe_mistakes_are_named_before_training(files, tmp_path):
    settings = recipe(files, tmp_path, "lora")
    with pytest.raises(InputError, match="'validation.options.prompt'"):
        build_task(parse_config({**settings, "validation": {"every_steps": 5, "options": {"prompt": "a cat"}}}))
    with pytest.raises(InputError, match="'data.video_size'.*multiple of 32"):
        build_task(parse_config({**settings, "data": {**settings["data"], "video_size": 48}}))
    with pytest.raises(InputError, match="'model.pixart_folder'"):
        build_task(parse_config({**settings, "model": {"pixart_folder": "x"}}))
    with pytest.raises(Exception, match="text_encoder"):  # a folder without the PixArt parts
        build_task(parse_config({**settings, "model": {"pixart_dir": str(files.v1.base / "transformer")}}))


def test_shipped_recipes_use_the_wired_factory_and_its_keys():
    factory = resolve_callable(DEFAULT_FACTORIES["easyanimate"], "model.factory", "")
    assert factory is easyanimate_training.build_training_models
    assert resolve_callable(TASKS["easyanimate"], "method", "") is ea_task.EasyAnimateTask
    for name in ("easyanimate_lora", "easyanimate_motion_module"):
        config = load_config(name)
        assert config.model["factory"] == DEFAULT_FACTORIES["easyanimate"]
        assert set(config.model) - {"factory"} == set(easyanimate_training.MODEL_KEYS)
        easyanimate_training.V1ValidationSampler(None, None, None).check_options(config.validation.options)


def test_the_train_command_writes_a_lora_the_loader_reads(files, tmp_path, capsys):
    settings = recipe(files, tmp_path / "out", "lora", max_train_steps=1)
    settings["lora"]["output_name"] = "my_character"
    (tmp_path / "lora.yaml").write_text(yaml.safe_dump(settings))
    assert cli.main(["train", "easyanimate-lora", str(tmp_path / "lora.yaml")]) == 0
    written = tmp_path / "out" / "models" / "final" / "my_character.safetensors"
    assert f"wrote {written}" in capsys.readouterr().out
    assert inference_lora.read_lora(written)
    steps = [json.loads(line)["step"] for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1]


def test_full_size_files_have_the_released_layout(shared_dir):
    """The PixArt-XL-2-512x512 + v1 motion module transformer (meta device): the motion-module export and the
    LoRA names and shapes the trainer writes are those of the released files."""
    released = json.loads((shared_dir / "parity" / "easyanimate" / "released_keys.json").read_text())
    transformer = loading.build_v1_transformer(device="meta")
    exported = {k: list(v.shape) for k, v in transformer.state_dict().items() if is_motion_module_key(k, DIT_MOTION_KEY)}
    assert exported == released["Motion_Module/easyanimate_v1_mm.safetensors"]
    found = lora.find_targets(transformer, ea_task.transformer_lora_targets(True))
    written = {name: [linear.out_features, linear.in_features] for name, (_, linear) in found.items()}
    assert written == {k: v for k, v in released["lora_targets_[out,in]"].items() if k.startswith("lora_unet_")}
