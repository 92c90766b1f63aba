"""Turning raw material into training datasets.

- ``prepare_pose_videos``: every video under a folder -> a pose video rendered by ``renderer`` (the same
  relative path under ``<folder>_dwpose/``, as Moore-AnimateAnyone's ``tools/extract_dwpose_from_vid.py``)
  and a meta JSON ``[{"video_path", "kps_path"}]`` (``tools/extract_meta_info.py``) for the AnimateAnyone
  datasets. Already rendered pose videos with the right frame count are kept, so an interrupted run
  continues where it stopped.
- ``prepare_media_meta``: every video and image under a folder -> EasyAnimate's JSON
  ``[{"file_path", "text", "type"}]``, captions from a sidecar ``<name>.txt`` next to each file.

A pose renderer is any callable ``frames uint8 [N,H,W,3] -> pose images uint8 [N,H,W,3]`` (same count and
size); the CLI builds it with a builder ``build(options: dict) -> renderer`` (the DWPose renderer of
``pose/``, drawn as AnimateAnyone was trained on).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ...core import video
from .datasets import IMAGE_SUFFIXES, DatasetError

PoseRenderer = Callable[[np.ndarray], np.ndarray]


def _media_under(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)


def default_pose_dir(videos_dir: Path) -> Path:
    return videos_dir.parent / f"{videos_dir.name}_dwpose"


def _already_rendered(pose_path: Path, frame_total: int) -> bool:
    try:
        return pose_path.is_file() and video.count_frames(pose_path) == frame_total
    except Exception:
        return False


def render_pose_video(source: Path, target: Path, renderer: PoseRenderer, quality: int = 95) -> int:
    """Render one pose video; returns its frame count."""
    try:
        frames, fps = video.read_frames(source, video.DecodeOptions())
    except Exception as error:
        raise DatasetError(f"could not read '{source}': {error}") from None
    poses = np.asarray(renderer(frames))
    if poses.shape != frames.shape or poses.dtype != np.uint8:
        raise DatasetError(f"the pose renderer returned {poses.dtype} {poses.shape} for '{source}' "
                           f"({frames.shape}); it must return uint8 frames of the same count and size")
    target.parent.mkdir(parents=True, exist_ok=True)
    video.write_video(poses, target, fps, quality=quality)
    return len(frames)


def prepare_pose_videos(videos_dir: str | Path, renderer: PoseRenderer, pose_dir: str | Path | None = None,
                        meta_path: str | Path | None = None, overwrite: bool = False,
                        progress: Callable[[str], None] = print) -> Path:
    """Render a pose video for every video under ``videos_dir`` and write the AnimateAnyone meta JSON."""
    videos_dir = Path(videos_dir)
    if not videos_dir.is_dir():
        raise DatasetError(f"videos folder '{videos_dir}' does not exist")
    pose_dir = Path(pose_dir) if pose_dir else default_pose_dir(videos_dir)
    meta_path = Path(meta_path) if meta_path else videos_dir.parent / f"{videos_dir.name}_meta.json"
    sources = _media_under(videos_dir, video.VIDEO_SUFFIXES)
    if not sources:
        raise DatasetError(f"no video files ({', '.join(video.VIDEO_SUFFIXES)}) under '{videos_dir}'")
    entries = []
    for number, source in enumerate(sources, start=1):
        target = (pose_dir / source.relative_to(videos_dir)).with_suffix(".mp4")
        if not overwrite and _already_rendered(target, video.count_frames(source)):
            progress(f"[{number}/{len(sources)}] kept {target}")
        else:
            count = render_pose_video(source, target, renderer)
            progress(f"[{number}/{len(sources)}] {source} -> {target} ({count} frames)")
        entries.append({"video_path": str(source), "kps_path": str(target)})
    meta_path.parent.mkdir(parents=True, exist_ok=True)
    meta_path.write_text(json.dumps(entries, indent=1), encoding="utf-8")
    progress(f"meta file: {meta_path} ({len(entries)} videos)")
    return meta_path


def prepare_media_meta(folder: str | Path, meta_path: str | Path | None = None, caption_suffix: str = ".txt",
                       progress: Callable[[str], None] = print) -> Path:
    """List the clips and images under ``folder`` with their captions as EasyAnimate's JSON (paths relative
    to ``folder``, which becomes ``data.root``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"folder '{folder}' does not exist")
    meta_path = Path(meta_path) if meta_path else folder / "metadata.json"
    files = _media_under(folder, video.VIDEO_SUFFIXES + IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f"no videos or images under '{folder}'")
    entries, uncaptioned = [], []
    for path in files:
        caption = path.with_suffix(caption_suffix)
        text = caption.read_text(encoding="utf-8").strip() if caption.is_file() else ""
        if not text:
            uncaptioned.append(path.name)
        entries.append({"file_path": path.relative_to(folder).as_posix(), "text": text,
                        "type": "image" if path.suffix.lower() in IMAGE_SUFFIXES else "video"})
    meta_path.write_text(json.dumps(entries, indent=1, ensure_ascii=False), encoding="utf-8")
    if uncaptioned:
        progress(f"{len(uncaptioned)} file(s) without a caption ({', '.join(uncaptioned[:3])}...): trained with an empty text")
    progress(f"meta file: {meta_path} ({len(entries)} files)")
    return meta_path


def build_renderer(spec: str, options: Optional[dict] = None) -> PoseRenderer:
    from .tasks import resolve_callable

    builder = resolve_callable(spec, "renderer", "the DWPose renderer of pose/ wired for training")
    return builder(dict(options or {}))
