"""Reading and writing animations: GIF, animated WebP, MP4 (H.264 via PyAV), PNG sequences.

Frames are uint8 numpy arrays ``[N, H, W, 3]`` here; the nodes convert to and from IMAGE tensors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np

from .errors import InputError

SAVE_FORMATS = ("gif", "webp", "mp4", "png")
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi")
H264_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv")  # the containers write_frames fills with H.264
ANIMATED_IMAGE_SUFFIXES = (".gif", ".webp", ".png", ".apng")
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
# Refuse to decode more than this many bytes of float32 frames at once (the IMAGE batch size).
MAX_DECODED_BYTES = 16 * 1024**3
DECODED_COPIES = 6  # bytes per decoded uint8 byte at the peak: the frames, their stack, the float32 batch


def quality_to_crf(quality: int) -> int:
    """1..100 (higher is better) -> x264 CRF 45..5."""
    return int(round(45 - 0.4 * min(max(quality, 1), 100)))


def _even(frames: np.ndarray) -> np.ndarray:
    # yuv420p needs even sizes; repeat the last row/column instead of cropping content away.
    _, h, w, _ = frames.shape
    pad_h, pad_w = h % 2, w % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return frames


def write_gif(frames: np.ndarray, path: Path, fps: float, loop: int = 0) -> None:
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    duration = max(20, int(round(1000.0 / fps)))  # browsers clamp below 20 ms
    images[0].save(
        path, save_all=True, append_images=images[1:], duration=duration, loop=loop, disposal=2, optimize=False
    )


def write_webp(frames: np.ndarray, path: Path, fps: float, loop: int = 0, quality: int = 90) -> None:
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    duration = max(1, int(round(1000.0 / fps)))
    images[0].save(
        path,
        save_all=True,
        append_images=images[1:],
        duration=duration,
        loop=loop,
        quality=quality,
        lossless=quality >= 100,
        method=4,
    )


def write_video(
    frames: np.ndarray,
    path: Path,
    fps: float,
    quality: int = 70,
    codec: str = "libx264",
    metadata: Optional[dict[str, str]] = None,
) -> None:
    """H.264 (yuv420p, widely playable) into any container PyAV knows from the suffix (.mp4, .mov)."""
    import av

    frames = _even(frames)
    rate = Fraction(fps).limit_denominator(1001)
    # use_metadata_tags keeps custom keys (prompt, workflow) in MP4/MOV headers.
    with av.open(str(path), mode="w", options={"movflags": "use_metadata_tags"}) as container:
        for key, value in (metadata or {}).items():
            container.metadata[key] = value
        stream = container.add_stream(codec, rate=rate)
        stream.width = frames.shape[2]
        stream.height = frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(quality_to_crf(quality))}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_png_sequence(frames: np.ndarray, folder: Path, stem: str) -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, frame in enumerate(frames):
        path = folder / f"{stem}_{index:05d}.png"
        Image.fromarray(frame).save(path, compress_level=4)
        paths.append(path)
    return paths


def write_frames(frames: np.ndarray, path: Path, fps: float, loop: int = 0, webp_quality: int = 90,
                 video_quality: int = 70, metadata: Optional[dict[str, str]] = None,
                 png_stem: str = "frame") -> list[Path]:
    """Write frames in the format ``path``'s suffix names: .gif, .webp, H.264 video (``H264_SUFFIXES``,
    carrying ``metadata``), or for any other path a folder of ``<png_stem>_00000.png`` frames.
    Returns the files written."""
    suffix = path.suffix.lower()
    if suffix == ".gif":
        write_gif(frames, path, fps, loop)
    elif suffix == ".webp":
        write_webp(frames, path, fps, loop, webp_quality)
    elif suffix in H264_SUFFIXES:
        write_video(frames, path, fps, video_quality, metadata=metadata)
    else:
        return write_png_sequence(frames, path, png_stem)
    return [path]


@dataclass
class DecodeOptions:
    """Which frames to keep and at what size. ``frame_cap`` 0 keeps all."""

    frame_cap: int = 0
    stride: int = 1
    skip_first: int = 0
    resize: Optional[Callable[[np.ndarray], np.ndarray]] = None

    def __post_init__(self):
        if self.stride < 1:
            raise InputError("stride", f"is {self.stride}", "1 or more")
        if self.frame_cap < 0 or self.skip_first < 0:
            raise InputError("frame_cap/skip_first", "is negative", "0 or more")

    def select(self, frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        kept = 0
        for index, frame in enumerate(frames):
            if index < self.skip_first or (index - self.skip_first) % self.stride:
                continue
            if self.frame_cap and kept >= self.frame_cap:
                return
            kept += 1
            yield self.resize(frame) if self.resize else frame


def _natural_key(name: str):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _undecodable(path: Path) -> InputError:
    return InputError("video", f"'{path.name}' cannot be decoded (empty, damaged or cut short)",
                      "a complete video file, animated image or frame folder")


def _decoding(path: Path, frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """``frames`` with decoder failures (corrupt or truncated data) turned into one InputError."""
    from PIL import UnidentifiedImageError

    try:
        yield from frames
    except InputError:
        raise
    except (OSError, ValueError, EOFError, SyntaxError, UnidentifiedImageError) as error:  # av's errors are ValueError/OSError
        raise _undecodable(path) from error


def _frames_from_av(path: Path) -> tuple[Iterator[np.ndarray], float]:
    import av

    try:
        container = av.open(str(path))
    except (OSError, ValueError) as error:
        raise _undecodable(path) from error
    if not container.streams.video:
        container.close()
        raise InputError("video", f"'{path.name}' has no video stream", "a video file")
    stream = container.streams.video[0]
    fps = float(stream.average_rate or stream.guessed_rate or 0) or 24.0

    def frames():
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
        finally:
            container.close()

    return _decoding(path, frames()), fps


def _frames_from_pil(path: Path) -> tuple[Iterator[np.ndarray], float]:
    from PIL import Image, ImageSequence

    from .images import pil_to_uint8

    try:
        image = Image.open(path)
    except (OSError, ValueError, SyntaxError) as error:
        raise _undecodable(path) from error

    def frames():
        with image:
            for frame in ImageSequence.Iterator(image):
                yield pil_to_uint8(frame)

    first_duration = image.info.get("duration") or 0
    fps = 1000.0 / first_duration if first_duration else 10.0
    return _decoding(path, frames()), fps


def _frame_files(folder: Path) -> list[Path]:
    inside = folder.resolve()  # frames linked from outside the folder are not read
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES and p.resolve().parent == inside),
                   key=lambda p: _natural_key(p.name))
    if not files:
        raise InputError("video", f"folder '{folder.name}' has no image files", "PNG/JPEG/WebP frames")
    return files


def _frames_from_folder(folder: Path, fps: float) -> tuple[Iterator[np.ndarray], float]:
    from PIL import Image

    from .images import pil_to_uint8

    files = _frame_files(folder)

    def frames():
        for file in files:
            with Image.open(file) as image:
                yield pil_to_uint8(image)

    return _decoding(folder, frames()), fps


def _open_frames(path: Path, folder_fps: float = 8.0) -> tuple[Iterator[np.ndarray], float]:
    if path.is_dir():
        return _frames_from_folder(path, folder_fps)
    if path.suffix.lower() in ANIMATED_IMAGE_SUFFIXES:
        return _frames_from_pil(path)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return _frames_from_av(path)
    raise InputError("video", f"'{path.name}' is not a supported video", "MP4/MOV/MKV/WebM, GIF/WebP or a frame folder")


def count_frames(path: Path) -> int:
    """Number of frames of a video file, animated image or frame folder.

    Uses the container's frame count when it has one; otherwise decodes the video to count.
    """
    path = Path(path)
    if path.is_dir():
        return len(_frame_files(path))
    if path.suffix.lower() in VIDEO_SUFFIXES:
        import av

        try:
            with av.open(str(path)) as container:
                if not container.streams.video:
                    raise InputError("video", f"'{path.name}' has no video stream", "a video file")
                if container.streams.video[0].frames > 0:
                    return int(container.streams.video[0].frames)
        except InputError:
            raise
        except (OSError, ValueError) as error:
            raise _undecodable(path) from error
    frames, _ = _open_frames(path)
    return sum(1 for _ in frames)


def read_frames_at(path: Path, indices) -> np.ndarray:
    """The frames at ``indices`` (any order, repeats allowed) as uint8 ``[len(indices), H, W, 3]``.

    Decodes only up to the largest index and keeps only the frames asked for.
    """
    path = Path(path)
    wanted = set(int(i) for i in indices)
    if not wanted or min(wanted) < 0:
        raise InputError("frame indices", f"{sorted(wanted)[:5]} for '{path.name}'", "non-negative frame numbers")
    last = max(wanted)
    frames, _ = _open_frames(path)
    kept: dict[int, np.ndarray] = {}
    for index, frame in enumerate(frames):
        if index in wanted:
            kept[index] = frame
        if index >= last:
            break
    frames.close()
    if last not in kept:
        raise InputError("video", f"'{path.name}' has fewer than {last + 1} frames", "a longer video")
    return np.stack([kept[int(i)] for i in indices])


def read_frames(path: Path, options: DecodeOptions, folder_fps: float = 8.0) -> tuple[np.ndarray, float]:
    """Decode ``path`` (video file, animated image or folder of frames) -> (uint8 ``[N,H,W,3]``, fps).

    The returned fps accounts for the stride.
    """
    from .errors import available_memory_bytes, memory_refusal

    path = Path(path)
    budget = min(MAX_DECODED_BYTES, available_memory_bytes())
    frames, fps = _open_frames(path, folder_fps)
    kept: list[np.ndarray] = []
    for frame in options.select(frames):
        if kept and frame.shape != kept[0].shape:
            raise InputError("video", f"frame {len(kept)} is {frame.shape[1]}x{frame.shape[0]}, unlike the first",
                             "frames of one size (set width/height to resize)")
        # kept uint8 frames, their stacked copy and the float32 IMAGE batch made from them
        needed = (len(kept) + 1) * frame.nbytes * DECODED_COPIES
        if needed > budget:
            frames.close()
            raise memory_refusal("video", f"loading '{path.name}' at {frame.shape[1]}x{frame.shape[0]} (more than "
                                 f"{len(kept)} frames)", needed, budget, "a frame_cap, a stride or a smaller width/height")
        kept.append(frame)
    if not kept:
        raise InputError("video", f"no frames left in '{path.name}' after skip/stride/cap", "at least one frame")
    return np.stack(kept), fps / options.stride
