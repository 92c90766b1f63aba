"""``python -m comfyui_animate_suite clipart INPUT.svg --motion wave --out OUT.gif``

With ``--prompt "..."`` the motion is AniClipart's text-guided optimisation instead of a preset; its
options and run live in ``pipelines/aniclipart/prompt_cli.py``, and its animation is written out like a
procedural one.
"""

from __future__ import annotations

import time
from pathlib import Path

OUTPUT_SUFFIXES = (".gif", ".webp", ".mp4", ".svg", ".json", ".lottie", "")  # "" = a folder of PNG frames and SVG frames
LOTTIE_NAMES = (".lottie", ".lottie.json")  # dotLottie, plain Lottie JSON (.json alone is the motion file)
PROCEDURAL_FRAMES = 24
PROCEDURAL_FPS = 12.0


DESCRIPTION = (
    "Animates SVG clipart procedurally (no model, CPU) and writes a GIF, animated WebP, MP4, an animated SVG, "
    "a folder of PNG and SVG frames or the motion JSON, chosen by the suffix of --out. Keypoints and bones come "
    "from AniClipart's side files next to the SVG (<name>_keypoint.svg, <name>_skeleton.txt, <name>_layer.json) "
    "or are detected from the silhouette. --replay MOTION.json re-renders a saved motion at any --size. "
    "--prompt animates it from a caption instead, with AniClipart's text-to-video prior (a model, best on a GPU). "
    "--pose drives it with a human pose sequence (a video through DWPose, or OpenPose JSON). "
    "--out x.lottie writes dotLottie, x.lottie.json plain Lottie JSON.")


def register(subparsers) -> None:
    from .prompt_cli import add_prompt_arguments
    from ...svg.motion import PRESETS
    from .pose_cli import add_pose_arguments

    parser = subparsers.add_parser(
        "clipart", help="animate SVG clipart (procedural presets without a model, text-guided with --prompt, pose-driven with --pose)",
        description=DESCRIPTION)
    parser.add_argument("input", type=Path, help="the SVG to animate")
    parser.add_argument("--out", type=Path, required=True,
                        help="output: .gif, .webp, .mp4, .svg (animated), .json (motion), .lottie (dotLottie), .lottie.json "
                             "(Lottie JSON) or a folder (PNG + SVG frames)")
    parser.add_argument("--motion", choices=PRESETS, default="wave", help="procedural motion preset (default %(default)s)")
    parser.add_argument("--frames", type=int, default=None,
                        help=f"number of frames; if not given {PROCEDURAL_FRAMES}, with --prompt the preset's")
    parser.add_argument("--fps", type=float, default=None,
                        help=f"frames per second; if not given {PROCEDURAL_FPS:g}, with --prompt 8 (AniClipart's)")
    parser.add_argument("--speed", type=float, default=0.5, help="motion cycles per second (default %(default)s)")
    parser.add_argument("--amplitude", type=float, default=1.0, help="motion size, 1 = the preset's own (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="variation of the motion, 0 or more (default %(default)s)")
    parser.add_argument("--no-loop", action="store_true", help="do not round the cycles to a seamless loop")
    parser.add_argument("--free-start", action="store_true", help="start mid-motion instead of at the input pose")
    parser.add_argument("--size", type=int, default=None, help="output size in pixels (default: the canvas)")
    parser.add_argument("--canvas", type=int, default=256, help="working canvas the SVG is fitted into (default %(default)s, as AniClipart)")
    parser.add_argument("--background", default="white", help="'white', 'transparent' (GIF/WebP/PNG) or #rrggbb (default %(default)s)")
    parser.add_argument("--keypoints", type=Path, help="keypoint SVG (circles in order); default: <name>_keypoint.svg next to the input")
    parser.add_argument("--skeleton", type=Path, help="bones file (two 0-based indices per line)")
    parser.add_argument("--layers", type=Path, help="AniClipart layer JSON (1-based shape and keypoint indices)")
    parser.add_argument("--detect", action="store_true", help="ignore side files and detect keypoints and bones")
    parser.add_argument("--complexity", type=float, default=0.5, help="detected skeleton detail, 0 (few joints) to 1 (many) (default %(default)s)")
    parser.add_argument("--max-tri-area", type=float, default=30.0, help="mesh: largest triangle in canvas px^2 (default %(default)s)")
    parser.add_argument("--min-tri-angle", type=float, default=20.0, help="mesh: smallest triangle angle in degrees (default %(default)s)")
    parser.add_argument("--replay", type=Path, help="re-render a motion JSON written by --out x.json")
    parser.add_argument("--device", default=None,
                        help="torch device, e.g. cuda; if not given cpu, with --prompt cuda when available")
    add_prompt_arguments(parser)
    add_pose_arguments(parser)
    parser.set_defaults(run=run)


def _background(text: str):
    from ...core.errors import InputError
    from ...svg.document import parse_color

    if text == "transparent":
        return None
    colour = parse_color(text)
    if colour is None:
        raise InputError("--background", f"'{text}' is not a colour", "white, transparent or #rrggbb")
    return colour[:3]


def _read_text(path: Path, flag: str) -> str:
    from ...core.errors import InputError

    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or "not UTF-8 text"
        raise InputError(flag, f"'{path}' cannot be read ({reason})", "an existing motion JSON file") from None


def _check_arguments(args) -> None:
    """Slips found before any work: ranges, missing files, an unwritable --out, an absent device."""
    from ...core.errors import InputError
    from ...svg.rigfiles import find_side_files

    if args.seed < 0:
        raise InputError("--seed", f"is {args.seed}", "0 or more")
    if not 0 <= args.complexity <= 1:
        raise InputError("--complexity", f"is {args.complexity}", "0 to 1")
    for flag, path in (("--keypoints", args.keypoints), ("--skeleton", args.skeleton), ("--layers", args.layers),
                       ("--replay", args.replay)):
        if path is not None and not path.is_file():
            raise InputError(flag, f"'{path}' does not exist", "an existing file")
    if args.replay is None and (args.skeleton or args.layers) and args.keypoints is None and (
            args.detect or find_side_files(args.input).keypoints is None):
        flag = "--skeleton" if args.skeleton else "--layers"
        raise InputError(flag, f"is given but '{args.input.name}' has no keypoint file (bones and layers number keypoints)",
                         f"--keypoints too, or {Path(args.input.stem + '_keypoint.svg')} next to the SVG")
    folder = args.out.parent
    if not folder.is_dir():
        raise InputError("--out", f"is in '{folder}', which does not exist", "an existing folder (create it first)")
    if args.device is not None:
        _check_device(args.device)


def _check_device(name: str) -> None:
    import torch

    from ...core.errors import InputError

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise InputError("--device", f"'{name}' is not a torch device", "cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device", f"is '{name}' but this machine has no usable CUDA", "cpu, or a machine with CUDA")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise InputError("--device", f"is '{name}' but there are {torch.cuda.device_count()} CUDA devices", "an existing one")


def run(args) -> int:
    from ...core.context import RunContext
    from ...core.errors import InputError
    from ...svg.animate import animate_procedural, animation_from_record, load_clipart
    from ...svg.export import parse_motion_json
    from ...svg.motion import MotionSettings
    from ...svg.rig import RigSettings

    started = time.perf_counter()
    out = args.out
    suffix = out.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise InputError("--out", f"has the suffix '{out.suffix}'", "one of .gif .webp .mp4 .svg .json .lottie .lottie.json, or a folder")
    if args.size is not None and not 16 <= args.size <= 4096:
        raise InputError("--size", f"is {args.size}", "16 to 4096 pixels")
    background = _background(args.background)
    _check_arguments(args)
    settings = RigSettings(max_tri_area=args.max_tri_area, min_tri_angle=args.min_tri_angle)
    if args.replay is not None:
        from ...svg.animate import read_svg_bytes
        from ...svg.document import parse_svg
        from ...svg.export import svg_digest

        record = parse_motion_json(_read_text(args.replay, "--replay"), "--replay")
        data = read_svg_bytes(args.input)
        animation = animation_from_record(parse_svg(data, record.canvas[0]), record, args.input.stem, svg_digest(data))
    else:
        clipart = load_clipart(args.input, args.canvas, args.keypoints, args.skeleton, args.layers,
                               use_side_files=not args.detect, settings=settings, complexity=args.complexity)
        if args.prompt is not None:
            from .prompt_cli import run_prompt

            animation = run_prompt(args, clipart)
        elif args.pose is not None:
            from .pose_cli import run_pose

            animation = run_pose(args, clipart)
        else:
            frames = PROCEDURAL_FRAMES if args.frames is None else args.frames
            fps = PROCEDURAL_FPS if args.fps is None else args.fps
            motion = MotionSettings(args.motion, frames, fps, args.amplitude, args.speed, not args.no_loop, args.seed,
                                    not args.free_start)
            animation = animate_procedural(clipart.rig, motion, clipart.name, clipart.svg_sha256)
            if animation.motion["amplitude_used"] < motion.amplitude:
                print(f"note: amplitude lowered to {animation.motion['amplitude_used']:.2f} so the drawing does not fold")
        for warning in clipart.rig.warnings:
            print(f"warning: {warning}")
        print(f"{args.input.name}: {clipart.rig.num_keypoints} keypoints ({clipart.keypoint_source}), "
              f"{len(clipart.rig.bones)} bones, {sum(len(l.mesh.triangles) for l in clipart.rig.layers)} triangles")
    written = write_outputs(animation, out, args.size, background, RunContext(device=args.device or "cpu"))
    elapsed = time.perf_counter() - started
    clip = animation.num_frames / animation.fps
    print(f"wrote {', '.join(str(p) for p in written)} ({animation.num_frames} frames, {clip:.1f} s clip, "
          f"took {elapsed:.1f} s)")
    return 0


def write_outputs(animation, out: Path, size, background, ctx) -> list[Path]:
    """Write the animation in the format the path asks for; returns the files written."""
    from ...core import video
    from ...core.images import to_uint8
    from ...svg.animate import animation_svg, frame_svgs, motion_record, render_animation
    from ...svg.export import motion_json

    suffix = out.suffix.lower()
    if out.name.lower().endswith(LOTTIE_NAMES):
        from ...svg.lottie import write_lottie

        return [write_lottie(animation, out, size)]
    if suffix == ".svg":
        out.write_text(animation_svg(animation, size), encoding="utf-8")
        return [out]
    if suffix == ".json":
        out.write_text(motion_json(motion_record(animation)), encoding="utf-8")
        return [out]
    rgba = background is None and suffix in ("", ".gif", ".webp")
    frames = render_animation(animation, size, None if rgba else background, ctx)
    if suffix == "" and rgba:
        out.mkdir(parents=True, exist_ok=True)
        written = _write_rgba_pngs(frames, out)
    else:
        written = video.write_frames(to_uint8(_flatten(frames)), out, animation.fps)
    if suffix == "":
        for index, text in enumerate(frame_svgs(animation, size)):
            path = out / f"frame_{index:05d}.svg"
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


def _flatten(frames):
    # Transparent GIF/WebP are not supported by the shared writers: composite RGBA on white.
    from ...svg.animate import on_background

    return on_background(frames, (1.0, 1.0, 1.0)) if frames.shape[-1] == 4 else frames


def _write_rgba_pngs(frames, folder: Path) -> list[Path]:
    from PIL import Image

    written = []
    for index, frame in enumerate(frames):
        path = folder / f"frame_{index:05d}.png"
        Image.fromarray(frame.clamp(0, 1).mul(255).round().byte().numpy(), "RGBA").save(path)
        written.append(path)
    return written
