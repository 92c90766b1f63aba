"""``train`` and ``prepare`` commands.

    python -m comfyui_animate_suite train animate-anyone --stage 1 CONFIG
    python -m comfyui_animate_suite train animate-anyone --stage 2 CONFIG
    python -m comfyui_animate_suite train easyanimate-lora CONFIG
    python -m comfyui_animate_suite train easyanimate-motion-module CONFIG
    python -m comfyui_animate_suite train recipe NAME > my.yaml       # a shipped recipe to start from
    python -m comfyui_animate_suite prepare animate-anyone VIDEOS_DIR  # pose videos + meta JSON
    python -m comfyui_animate_suite prepare easyanimate CLIPS_DIR      # metadata.json from clips + .txt captions

CONFIG is a YAML recipe or a shipped recipe name. On several GPUs or machines, start the same command
with ``accelerate launch [--num_processes N ...] -m comfyui_animate_suite train ...`` (or ``torchrun``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

TRAIN_COMMANDS = {
    "animate-anyone": ("animate-anyone", None),
    "easyanimate-lora": ("easyanimate", "lora"),
    "easyanimate-motion-module": ("easyanimate", "motion_module"),
}
DEFAULT_RENDERER = ".pose.training:build_pose_renderer"


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML recipe, or a shipped recipe name (see `train recipe --list`)")
    parser.add_argument("--resume", default=None,
                        help="a checkpoint folder, or 'latest' (the newest under the output folder)")
    parser.add_argument("--output-dir", default=None, help="overrides output_dir of the recipe")
    parser.add_argument("--max-steps", type=int, default=None, help="overrides solver.max_train_steps")
    parser.add_argument("--log-every", type=int, default=10, help="print progress every N steps (default 10)")


def register(subparsers) -> None:
    train = subparsers.add_parser("train", help="fine-tune AnimateAnyone or EasyAnimate (LoRA, motion module)")
    methods = train.add_subparsers(dest="train_command", required=True)
    animate_anyone = methods.add_parser("animate-anyone", help="AnimateAnyone stage 1 (images) or 2 (motion modules)")
    animate_anyone.add_argument("--stage", type=int, choices=(1, 2), required=True)
    _add_run_options(animate_anyone)
    for name in ("easyanimate-lora", "easyanimate-motion-module"):
        _add_run_options(methods.add_parser(name, help=f"EasyAnimate v1 {name.split('-', 1)[1].replace('-', ' ')}"))
    for name in TRAIN_COMMANDS:
        methods.choices[name].set_defaults(run=_run_train)
    recipe = methods.add_parser("recipe", help="print a shipped recipe (YAML) to copy and edit")
    recipe.add_argument("name", nargs="?", help="recipe name")
    recipe.add_argument("--list", action="store_true", help="list the shipped recipes")
    recipe.set_defaults(run=_run_recipe)

    prepare = subparsers.add_parser("prepare", help="build training datasets from raw videos")
    kinds = prepare.add_subparsers(dest="prepare_command", required=True)
    poses = kinds.add_parser("animate-anyone", help="render a pose video per video and write the meta JSON")
    poses.add_argument("videos", type=Path, help="folder of videos (searched recursively)")
    poses.add_argument("--pose-dir", type=Path, default=None, help="where pose videos go (default <videos>_dwpose)")
    poses.add_argument("--meta", type=Path, default=None, help="meta JSON to write (default <videos>_meta.json)")
    poses.add_argument("--renderer", default=DEFAULT_RENDERER,
                       help="pose renderer builder 'package.module:function' (default: the pack's DWPose renderer)")
    poses.add_argument("--models-dir", type=Path, default=None,
                       help="ComfyUI models folder with dwpose/yolox_l.onnx and dwpose/dw-ll_ucoco_384.onnx "
                            "(default: $COMFYUI_MODELS_DIR, the enclosing ComfyUI's, or ./models)")
    poses.add_argument("--device", choices=("auto", "cpu"), default="auto",
                       help="onnxruntime device for DWPose: auto (CUDA when installed) or cpu")
    poses.add_argument("--overwrite", action="store_true", help="render again even if a pose video exists")
    poses.set_defaults(run=_run_prepare_poses)
    media = kinds.add_parser("easyanimate", help="write metadata.json for a folder of clips/images with .txt captions")
    media.add_argument("folder", type=Path)
    media.add_argument("--meta", type=Path, default=None, help="JSON to write (default <folder>/metadata.json)")
    media.add_argument("--caption-suffix", default=".txt")
    media.set_defaults(run=_run_prepare_media)


def _check_command(config, command: str, stage) -> None:
    from ...core.errors import InputError

    method, mode = TRAIN_COMMANDS[command]
    if config.method != method:
        raise InputError("config", f"'{config.source}' is a {config.method} recipe", f"a {method} recipe for `train {command}`")
    if mode is not None and config.mode != mode:
        raise InputError("config", f"'{config.source}' has mode '{config.mode}'", f"mode {mode} for `train {command}`")
    if stage is not None and config.stage != stage:
        raise InputError("--stage", f"is {stage} but '{config.source}' is a stage-{config.stage} recipe",
                         "the stage the recipe was written for")


def _run_train(args) -> int:
    from .config import load_config
    from .tasks import build_task
    from .trainer import Trainer

    config = load_config(args.config)
    _check_command(config, args.train_command, getattr(args, "stage", None))
    if args.output_dir:
        config.output_dir = args.output_dir
    if args.max_steps is not None:
        config.solver.max_train_steps = args.max_steps
    result = Trainer(build_task(config), config, log_every=args.log_every).train(resume=args.resume)
    for path in result.exports:
        print(f"wrote {path}")
    return 0


def _run_recipe(args) -> int:
    from ...core.errors import InputError
    from .config import CONFIG_DIR, RECIPES

    if args.list or not args.name:
        print("\n".join(RECIPES))
        return 0
    if args.name not in RECIPES:
        raise InputError("name", f"'{args.name}' is not a shipped recipe", "one of " + ", ".join(RECIPES))
    print((CONFIG_DIR / RECIPES[args.name]).read_text(encoding="utf-8"), end="")
    return 0


def _run_prepare_poses(args) -> int:
    from ...core.cli_args import default_models_dir
    from ...core.errors import InputError
    from .prepare import build_renderer, prepare_pose_videos

    if not Path(args.videos).is_dir():  # before the pose models are looked for
        raise InputError("VIDEOS_DIR", f"'{args.videos}' does not exist or is not a folder", "a folder of videos")
    options = {"models_dir": str(args.models_dir or default_models_dir()), "device": args.device}
    prepare_pose_videos(args.videos, build_renderer(args.renderer, options), args.pose_dir, args.meta, args.overwrite)
    return 0


def _run_prepare_media(args) -> int:
    from .prepare import prepare_media_meta

    prepare_media_meta(args.folder, args.meta, args.caption_suffix)
    return 0
