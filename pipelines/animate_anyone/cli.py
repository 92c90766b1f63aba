"""``python -m comfyui_animate_suite animate-anyone REFERENCE POSES``: AnimateAnyone outside ComfyUI.

The models are found like ComfyUI finds them (``models/animate_anyone/``, ``clip_vision/``, ``vae/``);
``--image-encoder`` and ``--vae`` take a folder or a single file instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    from ...core.cli_args import PRECISIONS, add_models_dir_argument
    from .settings import FITS, AnimateAnyoneSettings

    defaults = AnimateAnyoneSettings()
    parser = subparsers.add_parser(
        "animate-anyone", help="animate a character image along a pose video (Moore-AnimateAnyone)",
        description="Animate REFERENCE (an image) along POSES (a video, animated image or folder of rendered pose "
                    "frames); one output frame per pose frame.")
    parser.add_argument("reference", type=Path, help="the character image")
    parser.add_argument("poses", type=Path, help="rendered DWPose frames: a video, GIF/WebP or a folder of images")
    parser.add_argument("-o", "--output", type=Path, default=Path("animate_anyone.mp4"),
                        help="output file (.mp4/.mov, .gif, .webp) or a folder for PNG frames")
    add_models_dir_argument(parser)
    parser.add_argument("--image-encoder", type=Path, help="image encoder folder or file (default: found in the models folder)")
    parser.add_argument("--vae", type=Path, help="VAE folder or file (default: found in the models folder)")
    parser.add_argument("--frames", type=int, default=0, help="use at most this many pose frames (0: all)")
    parser.add_argument("--width", type=int, default=defaults.width)
    parser.add_argument("--height", type=int, default=defaults.height)
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--guidance", type=float, default=defaults.guidance)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--context-frames", type=int, default=defaults.context_frames)
    parser.add_argument("--context-overlap", type=int, default=defaults.context_overlap)
    parser.add_argument("--context-stride", type=int, default=defaults.context_stride)
    parser.add_argument("--fit", choices=FITS, default=defaults.fit)
    parser.add_argument("--fps", type=float, default=0.0, help="output fps (0: the pose video's)")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="auto: fp16 on CUDA, fp32 on CPU")
    parser.set_defaults(run=run)


def _files(args: argparse.Namespace):
    from ...core.cli_args import locator_from_args
    from ...core import model_registry
    from .loading import AnimateAnyoneFiles

    locator = locator_from_args(args)
    family = model_registry.ANIMATE_ANYONE
    found = {role: model_registry.require(family, role, locator)
             for role in ("denoising_unet", "reference_unet", "pose_guider", "motion_module")}
    image_encoder = args.image_encoder or model_registry.require(family, "image_encoder", locator)
    vae = args.vae or model_registry.require(family, "vae", locator)
    return AnimateAnyoneFiles(**found, image_encoder=Path(image_encoder), vae=Path(vae))


def _write(frames, path: Path, fps: float) -> None:
    from ...core import video
    from ...core.images import to_uint8

    path.parent.mkdir(parents=True, exist_ok=True)
    video.write_frames(to_uint8(frames), path, fps, video_quality=85)


def run(args: argparse.Namespace) -> int:
    import torch

    from ...core.cli_args import choose_device, choose_precision, progress_printer
    from ...core.context import MoveToDeviceStager, RunContext
    from ...core.errors import InputError
    from ...core.images import from_uint8, open_image
    from ...core.video import DecodeOptions, read_frames
    from .loading import load_models
    from .pipeline import animate, check_memory, checked_settings
    from .settings import AnimateAnyoneSettings

    device = choose_device(args.device)
    precision, dtype = choose_precision(args.precision, device)
    if not args.reference.is_file():
        raise InputError("reference", f"'{args.reference}' is not a file.", "an image file")
    reference = open_image(args.reference, "reference")
    poses, pose_fps = read_frames(args.poses, DecodeOptions(frame_cap=args.frames))
    settings = AnimateAnyoneSettings(args.width, args.height, args.steps, args.guidance, args.seed, args.context_frames,
                                     args.context_overlap, args.context_stride, args.fit)
    check_memory(checked_settings(settings, 10**6), len(poses), device, dtype)  # before loading models
    print(f"loading models ({precision} on {device})", file=sys.stderr)
    models = load_models(_files(args), dtype)
    offload = torch.device("cpu") if device.type != "cpu" else None
    context = RunContext(device=device, dtype=dtype, stager=MoveToDeviceStager(device, offload), progress=progress_printer("  "))
    print(f"animating {len(poses)} frames at {args.width}x{args.height}", file=sys.stderr)
    result = animate(models, reference, from_uint8(poses), settings, context)
    _write(result.frames, args.output, args.fps or pose_fps)
    print(args.output)
    return 0
