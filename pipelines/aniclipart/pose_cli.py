"""The pose-driven half of the ``clipart`` command: ``clipart IN.svg --pose driving.mp4|poses.json --out OUT.gif``.

``pipelines/aniclipart/cli.py`` adds these arguments with ``add_pose_arguments(parser)`` and, when ``--pose`` is given,
gets the animation from ``run_pose(args, clipart)``. A video (or GIF/WebP/frame folder) goes through
DWPose (``yolox_l.onnx`` and ``dw-ll_ucoco_384.onnx`` under ``<models-dir>/dwpose``); a ``.json`` file is
OpenPose JSON (a list of frames or one frame, as Save Pose JSON and other packs write it).
"""

from __future__ import annotations

import sys
from pathlib import Path

JSON_FPS = 12.0


def add_pose_arguments(parser) -> None:
    from ...svg.retarget import FOLLOW, NO_PERSON

    group = parser.add_argument_group("pose-driven motion (a human pose sequence drives the clipart's keypoints)")
    group.add_argument("--pose", type=Path, default=None,
                       help="driving video (DWPose finds the poses; needs the dwpose models under --models-dir) or "
                            "OpenPose JSON; one animation frame per pose frame (--frames keeps the first N)")
    group.add_argument("--map", type=Path, default=None,
                       help="text file of 'keypoint joint' lines (e.g. '3 right_elbow'); default: automatic for "
                            "human-like skeletons")
    group.add_argument("--smoothing", type=int, default=2, help="frames each side averaged against jitter (0: none; default %(default)s)")
    group.add_argument("--follow", choices=FOLLOW, default=FOLLOW[0],
                       help="motion: add the driver's changes to the drawn pose; pose: take the driver's bone directions")
    group.add_argument("--no-person", choices=NO_PERSON, default=NO_PERSON[0],
                       help="frames without a person: interpolate between neighbours or hold the last")
    group.add_argument("--move", type=float, default=1.0, help="how far the figure follows the driver across the frame (default %(default)s)")
    group.add_argument("--loop", action="store_true", help="with --pose: bend the end towards the start so it loops")


def _pose_frames(args):
    """(FramePose list, the driving fps or None)."""
    from ...core.errors import InputError
    from ...pose import openpose_json

    path = args.pose
    if not path.exists():
        raise InputError("--pose", f"'{path}' does not exist", "a driving video or an OpenPose JSON file")
    if path.suffix.lower() == ".json":
        return openpose_json.from_pose_keypoint(openpose_json.load(path, "--pose"), "--pose"), None
    return _video_poses(args)


def _video_poses(args):
    from ...core.cli_args import locator_from_args
    from ...core import model_registry, video
    from ...pose import dwpose

    cap = args.frames or 0
    frames, fps = video.read_frames(args.pose, video.DecodeOptions(frame_cap=cap))
    locator = locator_from_args(args)
    model = dwpose.DWPose.from_files(model_registry.require(model_registry.DWPOSE, "detector", locator),
                                     model_registry.require(model_registry.DWPOSE, "pose", locator), "cpu")
    print(f"DWPose: {len(frames)} frames of {args.pose.name}", file=sys.stderr, flush=True)
    return model(frames, dwpose.PRESETS["stableanimator"]).frames, fps


def run_pose(args, clipart):
    from ...core.errors import InputError
    from ...svg.retarget import RetargetSettings, animate_from_pose, parse_map

    poses, video_fps = _pose_frames(args)
    if args.frames is not None:
        if args.frames < 1:
            raise InputError("--frames", f"is {args.frames}", "1 or more")
        poses = poses[:args.frames]
    fps = args.fps or video_fps or JSON_FPS
    mapping = None
    if args.map is not None:
        try:
            text = Path(args.map).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise InputError("--map", f"'{args.map}' cannot be read ({error})", "a text file of 'keypoint joint' lines") from None
        mapping = parse_map(text, clipart.rig.num_keypoints, "--map")
    settings = RetargetSettings(float(fps), args.smoothing, no_person=args.no_person, loop=args.loop,
                                follow=args.follow, move=args.move)
    animation = animate_from_pose(clipart.rig, poses, mapping, settings, clipart.name, clipart.svg_sha256)
    empty = animation.motion["frames_without_person"]
    if empty:
        print(f"note: {len(empty)} of {len(poses)} frames show no person ({args.no_person})")
    return animation
