"""Apple Live Photo pairs: a JPEG still and an H.264 QuickTime movie that share one content identifier.

What Photos on iOS/macOS pairs (see the team notes, reference doc section 4):
- the JPEG carries an Apple MakerNote (EXIF ``MakerNote``, "Apple iOS" header) whose tag 0x0011
  ``ContentIdentifier`` is the identifier (an upper-case UUID);
- the movie carries ``com.apple.quicktime.content.identifier`` = the same UUID as QuickTime
  metadata in the ``mdta`` key space (``moov/meta`` with ``hdlr mdta``, ``keys``, ``ilst``), and a
  timed-metadata track (``mebx`` sample entry) with one ``com.apple.quicktime.still-image-time``
  sample (int8 -1) whose presentation time marks the still; the track refers to the video (``cdsc``).

PyAV writes the H.264 stream; the QuickTime boxes are written here. ffmpeg keeps user metadata in
``moov/udta/meta``; those items are moved into the one ``moov/meta`` Apple reads.
"""

from __future__ import annotations

import os
import struct
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

CONTENT_IDENTIFIER_KEY = b"com.apple.quicktime.content.identifier"
STILL_IMAGE_TIME_KEY = b"com.apple.quicktime.still-image-time"
_UTF8 = 1  # QuickTime well-known data types
_SINT8 = 65
_APPLE_MAKERNOTE_HEADER = b"Apple iOS\x00" + b"\x00\x01" + b"MM"


def new_content_identifier() -> str:
    return str(uuid.uuid4()).upper()


# ----------------------------------------------------------------------------- JPEG still


def _tiff_ifd(entries: list[tuple[int, int, int, bytes]], offset: int) -> bytes:
    """One big-endian IFD placed at ``offset`` in its TIFF block; values over 4 bytes follow it."""
    entries = sorted(entries)
    data_offset = offset + 2 + 12 * len(entries) + 4
    table, data = [struct.pack(">H", len(entries))], b""
    for tag, kind, count, value in entries:
        if len(value) <= 4:
            table.append(struct.pack(">HHI", tag, kind, count) + value.ljust(4, b"\x00"))
        else:
            table.append(struct.pack(">HHII", tag, kind, count, data_offset + len(data)))
            data += value + (b"\x00" if len(value) % 2 else b"")
    return b"".join(table) + struct.pack(">I", 0) + data


def apple_makernote(identifier: str) -> bytes:
    """An Apple MakerNote with MakerNoteVersion and ContentIdentifier (offsets from its own start)."""
    text = identifier.encode("ascii") + b"\x00"
    entries = [(0x0001, 9, 1, struct.pack(">i", 14)), (0x0011, 2, len(text), text)]
    return _APPLE_MAKERNOTE_HEADER + _tiff_ifd(entries, len(_APPLE_MAKERNOTE_HEADER))


def exif_with_content_identifier(identifier: str, software: str = "ComfyUI Animate Suite") -> bytes:
    """APP1 payload (``Exif\\0\\0`` + TIFF): IFD0 (Software, Exif pointer) -> Exif IFD (version, MakerNote)."""
    software_bytes = software.encode("ascii", "replace") + b"\x00"
    makernote = apple_makernote(identifier)
    ifd0_size = len(_tiff_ifd([(0x0131, 2, len(software_bytes), software_bytes), (0x8769, 4, 1, b"\x00" * 4)], 8))
    exif_offset = 8 + ifd0_size
    ifd0 = _tiff_ifd([(0x0131, 2, len(software_bytes), software_bytes), (0x8769, 4, 1, struct.pack(">I", exif_offset))], 8)
    exif_ifd = _tiff_ifd([(0x9000, 7, 4, b"0232"), (0x927C, 7, len(makernote), makernote)], exif_offset)
    return b"Exif\x00\x00" + b"MM\x00\x2a" + struct.pack(">I", 8) + ifd0 + exif_ifd


def write_still(frame: np.ndarray, path: Path, identifier: str, quality: int = 92) -> None:
    from PIL import Image

    Image.fromarray(frame).save(path, "JPEG", quality=int(quality), exif=exif_with_content_identifier(identifier))


# ----------------------------------------------------------------------------- QuickTime boxes


@dataclass
class _Box:
    kind: bytes
    start: int
    end: int
    header: int

    @property
    def payload_start(self) -> int:
        return self.start + self.header


def _boxes(data: bytes, start: int, end: int) -> Iterator[_Box]:
    position = start
    while position + 8 <= end:
        size, kind = struct.unpack(">I4s", data[position:position + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[position + 8:position + 16])[0], 16
        elif size == 0:
            size = end - position
        if size < header or position + size > end:
            raise ValueError(f"broken QuickTime box '{kind!r}' at byte {position}")
        yield _Box(kind, position, position + size, header)
        position += size


def _child(data: bytes, parent: _Box, kind: bytes) -> Optional[_Box]:
    return next((b for b in _boxes(data, parent.payload_start, parent.end) if b.kind == kind), None)


def _path(data: bytes, parent: _Box, *kinds: bytes) -> Optional[_Box]:
    box = parent
    for kind in kinds:
        box = _child(data, box, kind) if box is not None else None
    return box


def _box(kind: bytes, *parts: bytes) -> bytes:
    payload = b"".join(parts)
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def _full_box(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *parts)


_IDENTITY_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


# ----------------------------------------------------------------------------- mdta metadata


def _meta_children_start(data: bytes, meta: _Box) -> int:
    # QuickTime writes meta as a plain box, ISO (and ffmpeg) as a full box with 4 bytes of version/flags.
    start = meta.payload_start
    return start if data[start + 4:start + 8] == b"hdlr" else start + 4


def _mdta_items(data: bytes, meta: _Box) -> list[tuple[bytes, bytes]]:
    """(key, raw ``ilst`` item payload) of an ``mdta`` meta box; empty for other handlers."""
    children = list(_boxes(data, _meta_children_start(data, meta), meta.end))
    by_kind = {b.kind: b for b in children}
    handler = by_kind.get(b"hdlr")
    if handler is None or data[handler.payload_start + 8:handler.payload_start + 12] != b"mdta":
        return []
    keys = []
    if b"keys" in by_kind:
        box = by_kind[b"keys"]
        count = struct.unpack(">I", data[box.payload_start + 4:box.payload_start + 8])[0]
        position = box.payload_start + 8
        for _ in range(count):
            size = struct.unpack(">I", data[position:position + 4])[0]
            keys.append(data[position + 8:position + size])
            position += size
    items = []
    if b"ilst" in by_kind:
        for item in _boxes(data, by_kind[b"ilst"].payload_start, by_kind[b"ilst"].end):
            index = struct.unpack(">I", item.kind)[0]
            if 1 <= index <= len(keys):
                items.append((keys[index - 1], data[item.payload_start:item.end]))
    return items


def _utf8_item(value: str) -> bytes:
    return _box(b"data", struct.pack(">II", _UTF8, 0), value.encode("utf-8"))


def _meta_box(items: list[tuple[bytes, bytes]]) -> bytes:
    handler = _full_box(b"hdlr", 0, 0, struct.pack(">I", 0), b"mdta", b"\x00" * 12, b"\x00")
    keys = _full_box(b"keys", 0, 0, struct.pack(">I", len(items)),
                     *[struct.pack(">I", 8 + len(key)) + b"mdta" + key for key, _ in items])
    ilst = _box(b"ilst", *[_box(struct.pack(">I", index), payload) for index, (_, payload) in enumerate(items, 1)])
    return _box(b"meta", handler, keys, ilst)


# ----------------------------------------------------------------------------- still-image-time track


@dataclass
class _VideoTrack:
    track_id: int
    media_timescale: int
    frame_duration: int


def _video_track(data: bytes, moov: _Box) -> _VideoTrack:
    for trak in (b for b in _boxes(data, moov.payload_start, moov.end) if b.kind == b"trak"):
        handler = _path(data, trak, b"mdia", b"hdlr")
        if handler is None or data[handler.payload_start + 8:handler.payload_start + 12] != b"vide":
            continue
        tkhd = _child(data, trak, b"tkhd")
        version = data[tkhd.payload_start]
        track_id = struct.unpack(">I", data[tkhd.payload_start + (20 if version else 12):][:4])[0]
        mdhd = _path(data, trak, b"mdia", b"mdhd")
        version = data[mdhd.payload_start]
        timescale = struct.unpack(">I", data[mdhd.payload_start + (20 if version else 12):][:4])[0]
        stts = _path(data, trak, b"mdia", b"minf", b"stbl", b"stts")
        delta = struct.unpack(">I", data[stts.payload_start + 12:stts.payload_start + 16])[0]
        return _VideoTrack(track_id, timescale, delta)
    raise ValueError("the movie has no video track")


def _mebx_sample_entry() -> bytes:
    key = _box(struct.pack(">I", 1), _box(b"keyd", b"mdta", STILL_IMAGE_TIME_KEY), _box(b"dtyp", struct.pack(">II", 0, _SINT8)))
    return _box(b"mebx", b"\x00" * 6, struct.pack(">H", 1), _box(b"keys", key))


def still_image_time_sample() -> bytes:
    """One boxed-metadata item: local key 1 = int8 -1 (the value iPhone captures carry)."""
    return struct.pack(">II", 9, 1) + struct.pack(">b", -1)


def _metadata_track(track_id: int, video: _VideoTrack, movie_timescale: int, still_seconds: float,
                    sample_offset: int) -> bytes:
    sample_movie = max(1, round(video.frame_duration / video.media_timescale * movie_timescale))
    still_movie = round(still_seconds * movie_timescale)
    tkhd = _full_box(b"tkhd", 0, 0x3, struct.pack(">IIII", 0, 0, track_id, 0), struct.pack(">I", still_movie + sample_movie),
                     b"\x00" * 8, struct.pack(">hhh", 0, 0, 0), b"\x00" * 2, _IDENTITY_MATRIX, struct.pack(">II", 0, 0))
    tref = _box(b"tref", _box(b"cdsc", struct.pack(">I", video.track_id)))
    edits = []
    if still_movie > 0:
        edits.append(struct.pack(">IiI", still_movie, -1, 0x10000))  # empty edit: nothing until the still
    edits.append(struct.pack(">IiI", sample_movie, 0, 0x10000))
    edts = _box(b"edts", _full_box(b"elst", 0, 0, struct.pack(">I", len(edits)), *edits))
    mdhd = _full_box(b"mdhd", 0, 0, struct.pack(">IIII", 0, 0, video.media_timescale, video.frame_duration),
                     struct.pack(">HH", 0x55C4, 0))  # language "und"
    hdlr = _full_box(b"hdlr", 0, 0, b"mhlr", b"meta", b"\x00" * 12, b"\x00")
    dinf = _box(b"dinf", _full_box(b"dref", 0, 0, struct.pack(">I", 1), _full_box(b"url ", 0, 1)))
    stbl = _box(
        b"stbl",
        _full_box(b"stsd", 0, 0, struct.pack(">I", 1), _mebx_sample_entry()),
        _full_box(b"stts", 0, 0, struct.pack(">III", 1, 1, video.frame_duration)),
        _full_box(b"stsc", 0, 0, struct.pack(">IIII", 1, 1, 1, 1)),
        _full_box(b"stsz", 0, 0, struct.pack(">III", 0, 1, len(still_image_time_sample()))),
        _full_box(b"stco", 0, 0, struct.pack(">II", 1, sample_offset)),
    )
    minf = _box(b"minf", _full_box(b"nmhd", 0, 0), dinf, stbl)
    return _box(b"trak", tkhd, tref, edts, _box(b"mdia", mdhd, hdlr, minf))


def _with_next_track_id(data: bytes, mvhd: _Box, next_id: int) -> bytes:
    box = data[mvhd.start:mvhd.end]
    return box[:-4] + struct.pack(">I", next_id)


def _next_track_id(data: bytes, mvhd: _Box) -> int:
    return struct.unpack(">I", data[mvhd.end - 4:mvhd.end])[0]


def _movie_timescale(data: bytes, mvhd: _Box) -> int:
    version = data[mvhd.payload_start]
    return struct.unpack(">I", data[mvhd.payload_start + (20 if version else 12):][:4])[0]


def add_live_photo_metadata(movie: bytes, identifier: str, still_seconds: float) -> bytes:
    """Return ``movie`` (a QuickTime file whose media data precede ``moov``) made a Live Photo movie."""
    top = list(_boxes(movie, 0, len(movie)))
    moov = next((b for b in top if b.kind == b"moov"), None)
    if moov is None:
        raise ValueError("not a QuickTime movie (no moov box)")
    if any(b.kind == b"mdat" and b.start > moov.start for b in top):
        raise ValueError("media data after the movie header is not supported")
    children = list(_boxes(movie, moov.payload_start, moov.end))
    mvhd = next(b for b in children if b.kind == b"mvhd")
    video = _video_track(movie, moov)

    items: list[tuple[bytes, bytes]] = []
    kept: list[bytes] = []
    for child in children:
        if child.kind == b"mvhd":
            continue
        if child.kind == b"meta":
            items += _mdta_items(movie, child)
            continue
        if child.kind == b"udta":
            parts = []
            for inner in _boxes(movie, child.payload_start, child.end):
                found = _mdta_items(movie, inner) if inner.kind == b"meta" else []
                items += found
                if not found:
                    parts.append(movie[inner.start:inner.end])
            if parts:
                kept.append(_box(b"udta", *parts))
            continue
        kept.append(movie[child.start:child.end])
    items = [(k, v) for k, v in items if k != CONTENT_IDENTIFIER_KEY] + [(CONTENT_IDENTIFIER_KEY, _utf8_item(identifier))]

    before_moov = b"".join(movie[b.start:b.end] for b in top if b.kind != b"moov")
    sample_box = _box(b"mdat", still_image_time_sample())
    sample_offset = len(before_moov) + 8
    track_id = _next_track_id(movie, mvhd)
    track = _metadata_track(track_id, video, _movie_timescale(movie, mvhd), still_seconds, sample_offset)
    new_moov = _box(b"moov", _with_next_track_id(movie, mvhd, track_id + 1), *kept, track, _meta_box(items))
    return before_moov + sample_box + new_moov


# ----------------------------------------------------------------------------- the pair


def write_live_photo(frames: np.ndarray, fps: float, still: np.ndarray, jpeg_path: Path, mov_path: Path,
                     still_frame: int = 0, quality: int = 90, identifier: str | None = None,
                     metadata: Optional[dict[str, str]] = None) -> str:
    """Write the JPEG + MOV pair; returns the shared content identifier.

    ``frames`` uint8 ``[N,H,W,3]``; ``still`` uint8 ``[H,W,3]`` (usually ``frames[still_frame]``);
    the still-image-time sample sits at ``still_frame / fps`` seconds.
    """
    from .video import write_video

    identifier = identifier or new_content_identifier()
    jpeg_path, mov_path = Path(jpeg_path), Path(mov_path)
    write_still(still, jpeg_path, identifier, quality)
    scratch = mov_path.with_name(mov_path.name + ".partial.mov")
    try:
        write_video(frames, scratch, fps, quality, metadata=metadata)
        movie = add_live_photo_metadata(scratch.read_bytes(), identifier, still_frame / fps)
        mov_path.write_bytes(movie)
    finally:
        if scratch.exists():
            os.remove(scratch)
    return identifier
