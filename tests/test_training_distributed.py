"""Two processes (torchrun, gloo on CPU) with a sharded optimiser follow the one-process loss curve."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from comfyui_animate_suite.core.checkpoints import load_state_dict
from comfyui_animate_suite.pipelines.training import checkpointing
from comfyui_animate_suite.pipelines.training.config import parse_config
from comfyui_animate_suite.pipelines.training.tasks import build_task
from comfyui_animate_suite.pipelines.training.trainer import Trainer
from tiny_models import training as tiny

TESTS = Path(__file__).resolve().parent


def losses_of(output_dir: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (output_dir / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    tiny.write_pose_dataset(tmp_path / "poses")
    settings = tiny.animate_anyone_config(tmp_path / "poses", tmp_path / "two", stage=1, max_train_steps=4,
                                          optimizer_sharding="zero1", lr_scheduler="constant_with_warmup",
                                          lr_warmup_steps=2)
    settings["noise"]["condition_drop_ratio"] = 0.0  # the reference draws it per process batch, which differs
    settings["data"]["batch_size"] = 1
    settings["checkpoint"] = {"every_steps": 2}
    recipe = tmp_path / "two.yaml"
    recipe.write_text(yaml.safe_dump(settings))
    environment = dict(os.environ, PYTHONPATH=str(TESTS) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                       OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "comfyui_animate_suite", "train", "animate-anyone", "--stage", "1", str(recipe)]
    finished = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert "step 4/4" in finished.stdout

    single = dict(settings, output_dir=str(tmp_path / "one"))
    single["data"] = dict(settings["data"], batch_size=2)
    config = parse_config(single)
    Trainer(build_task(config), config, write=lambda *_: None).train()

    two, one = losses_of(tmp_path / "two"), losses_of(tmp_path / "one")
    assert len(two) == len(one) == 4
    assert two == pytest.approx(one, rel=1e-4, abs=1e-6)
    for name in ("denoising_unet.pth", "reference_unet.pth", "pose_guider.pth"):
        a = load_state_dict(tmp_path / "two" / "models" / "final" / name)
        b = load_state_dict(tmp_path / "one" / "models" / "final" / name)
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)

    folder = checkpointing.checkpoint_dir(tmp_path / "two", 4)
    assert (folder / "rng-0.pt").is_file() and (folder / "rng-1.pt").is_file()
    optimizer_state = torch.load(folder / "optimizer.pt", weights_only=True)
    trainable = len(load_state_dict(folder / "trainable.safetensors"))
    assert len(optimizer_state["state"]) == trainable  # the shards were gathered into one full state
    assert checkpointing.read_state(folder).world_size == 2
