"""Frames in and out: save GIF/WebP/MP4/PNG (previewed in the node) and Apple Live Photos, load videos, VIDEO interop."""

from __future__ import annotations

import os
from pathlib import Path

from ..core import images as image_ops
from ..core import video as video_io
from ..core.errors import InputError
from . import comfy_bridge

CATEGORY = "Animate Suite/video"
io = comfy_bridge.io


def fps_input(name: str = "fps", tooltip: str = "Frames per second."):
    return io.Float.Input(name, default=8.0, min=0.1, max=240.0, step=0.1, tooltip=tooltip)


def save_frames(images, fps: float, filename_prefix: str, fmt: str, loop: int, quality: int,
                prompt=None, extra_pnginfo=None) -> list[dict]:
    """Write an IMAGE batch to the output folder; returns ComfyUI UI entries for the written files."""
    if fmt not in video_io.SAVE_FORMATS:
        raise InputError("format", f"'{fmt}' is unknown", "one of " + ", ".join(video_io.SAVE_FORMATS))
    if not 0 < fps < float("inf"):
        raise InputError("fps", f"is {fps}", "a positive number")
    images = image_ops.check_image_batch(images)
    frames = image_ops.to_uint8(images)
    height, width = frames.shape[1:3]
    folder, stem, counter, subfolder = comfy_bridge.output_location(filename_prefix, width, height)
    name = comfy_bridge.unused_name(folder, stem, counter, "" if fmt == "png" else f".{fmt}")
    paths = video_io.write_frames(frames, Path(folder) / name, fps, loop, webp_quality=quality, video_quality=quality,
                                  metadata=comfy_bridge.file_metadata(prompt, extra_pnginfo), png_stem=stem)
    if fmt == "png":  # a folder of frames
        return [comfy_bridge.output_entry(path.name, os.path.join(subfolder, name)) for path in paths]
    return [comfy_bridge.output_entry(name, subfolder)]


class AnimateSuiteSaveAnimation(io.ComfyNode):
    DISPLAY_NAME = "Save Animation (Animate Suite)"

    @classmethod
    def define_schema(cls):
        return comfy_bridge.schema(
            cls, "Saves frames as GIF, animated WebP, MP4 (H.264) or a PNG sequence in ComfyUI's output folder and previews them.",
            CATEGORY, is_output_node=True, inputs=[
                io.Image.Input("images", tooltip="The frames to save, in order."),
                fps_input(),
                io.String.Input("filename_prefix", default="AnimateSuite/anim", tooltip="Sub-folder and file name start inside the output folder. %date% style tokens work as in Save Image."),
                comfy_bridge.combo("format", video_io.SAVE_FORMATS, "gif and webp loop in any browser; mp4 is H.264 (yuv420p); png writes one file per frame.", default="gif"),
                io.Int.Input("loop", default=0, min=0, max=100, tooltip="GIF/WebP: how often to play; 0 loops forever."),
                io.Int.Input("quality", default=85, min=1, max=100, tooltip="WebP quality (100 = lossless) and MP4 quality (mapped to x264 CRF 45..5)."),
            ])

    @classmethod
    def execute(cls, images, fps, filename_prefix, format, loop, quality):
        results = save_frames(images, fps, filename_prefix, format, loop, quality, *saved_metadata(cls))
        return io.NodeOutput(ui=preview_ui(results, format))


def saved_metadata(node_cls) -> tuple:
    """The (prompt, extra_pnginfo) ComfyUI hands an output node, for the saved file's metadata."""
    return comfy_bridge.hidden_value(node_cls, "prompt"), comfy_bridge.hidden_value(node_cls, "extra_pnginfo")


# The front end shows an animated output as a <video> unless its file name says webp or png, so a GIF
# reported under "images" never previews; the pack's web extension (web/js/previews.js) shows this key
# in an <img>, which plays the GIF.
GIF_PREVIEW_KEY = "animate_suite_gif"


def preview_ui(results: list[dict], fmt: str) -> dict:
    """The UI message that makes the front end preview saved frames: GIF through the pack's extension,
    WebP as an animated image, MP4 as a video, PNG frames as images."""
    if fmt == "gif":
        return {GIF_PREVIEW_KEY: results}
    return {"images": results, "animated": (fmt != "png",)}


class AnimateSuiteSaveLivePhoto(io.ComfyNode):
    DISPLAY_NAME = "Save Live Photo (Animate Suite)"

    @classmethod
    def define_schema(cls):
        return comfy_bridge.schema(
            cls, "Saves frames as an Apple Live Photo: a JPEG still and an H.264 .mov sharing one content identifier "
            "(MakerNote ContentIdentifier in the JPEG; com.apple.quicktime.content.identifier and a "
            "still-image-time track in the movie). Copy both files to Photos (AirDrop or import together) to get "
            "a Live Photo.",
            CATEGORY, is_output_node=True, inputs=[
                io.Image.Input("images", tooltip="The frames of the motion part, in order."),
                fps_input(),
                io.String.Input("filename_prefix", default="AnimateSuite/live", tooltip="Sub-folder and file name start inside the output folder; the pair is <name>.jpg + <name>.mov."),
                io.Int.Input("still_frame", default=0, min=-1, max=100000, tooltip="Which frame is the still (0: the first, which SVD keeps closest to the photo; -1: the middle)."),
                io.Int.Input("quality", default=90, min=1, max=100, tooltip="JPEG quality and movie quality (x264 CRF 45..5)."),
                io.Image.Input("still_image", optional=True, tooltip="Optional still to use instead of a frame, e.g. the original photo; resized (crop) to the frame size."),
            ],
            outputs=[comfy_bridge.output(io.String, "content_identifier", "The UUID both files carry.")])

    @classmethod
    def execute(cls, images, fps, filename_prefix, still_frame, quality, still_image=None):
        from ..core.livephoto import write_live_photo

        images = image_ops.check_image_batch(images)
        if not 0 < fps < float("inf"):
            raise InputError("fps", f"is {fps}", "a positive number")
        count = images.shape[0]
        index = count // 2 if still_frame == -1 else still_frame
        if not 0 <= index < count:
            raise InputError("still_frame", f"is {still_frame} for {count} frames", f"-1 or 0..{count - 1}")
        frames = image_ops.to_uint8(images)
        height, width = frames.shape[1:3]
        still = frames[index]
        if still_image is not None:
            photo = image_ops.check_image_batch(still_image, "still_image")[:1]
            still = image_ops.to_uint8(image_ops.resize_batch(photo, width, height, "crop"))[0]
        folder, stem, counter, subfolder = comfy_bridge.output_location(filename_prefix, width, height)
        base = comfy_bridge.unused_base(folder, stem, counter, (".jpg", ".mov"))  # the pair shares one name
        identifier = write_live_photo(frames, fps, still, Path(folder) / f"{base}.jpg", Path(folder) / f"{base}.mov",
                                      still_frame=index, quality=quality, metadata=comfy_bridge.file_metadata(*saved_metadata(cls)))
        files = [comfy_bridge.output_entry(f"{base}{suffix}", subfolder) for suffix in (".jpg", ".mov")]
        return io.NodeOutput(identifier, ui={"images": files[:1], "live_photo": files, "content_identifier": [identifier]})

def _input_choices() -> list[str]:
    return comfy_bridge.input_top_level_choices(video_io.VIDEO_SUFFIXES + video_io.ANIMATED_IMAGE_SUFFIXES)


def input_video_path(name: str) -> Path:
    """The chosen file or frame folder inside ComfyUI's input folder; nothing outside it."""
    return Path(comfy_bridge.input_file_path(name, "video", "an uploaded video or a frame folder", allow_folder=True))


class AnimateSuiteLoadVideo(io.ComfyNode):
    DISPLAY_NAME = "Load Video (Animate Suite)"

    @classmethod
    def define_schema(cls):
        return comfy_bridge.schema(
            cls, "Loads an MP4/MOV/WebM, an animated GIF/WebP or a folder of frames from the input folder as IMAGE frames and their fps.",
            CATEGORY, inputs=[
                comfy_bridge.file_combo("video", _input_choices(), "A video, animated image or frame folder in ComfyUI's input folder.", upload=io.UploadType.video),
                io.Int.Input("frame_cap", default=0, min=0, max=100000, tooltip="Keep at most this many frames; 0 keeps all."),
                io.Int.Input("stride", default=1, min=1, max=100, tooltip="Keep every n-th frame (the fps is divided by it)."),
                io.Int.Input("skip_first", default=0, min=0, max=100000, tooltip="Frames to drop at the start."),
                io.Int.Input("width", default=0, min=0, max=8192, step=8, tooltip="Resize to this width; 0 keeps the source size."),
                io.Int.Input("height", default=0, min=0, max=8192, step=8, tooltip="Resize to this height; 0 keeps the source size (or the aspect, if width is set)."),
                comfy_bridge.combo("resize_mode", image_ops.RESIZE_MODES, "crop fills the size, pad letterboxes, stretch ignores the aspect.", default="crop"),
                fps_input("folder_fps", "The fps of a frame folder (files carry none)."),
            ],
            outputs=[comfy_bridge.output(io.Image, "images", "The decoded frames."),
                     comfy_bridge.output(io.Float, "fps", "Frames per second after the stride."),
                     comfy_bridge.output(io.Int, "frame_count", "How many frames were kept.")])

    @classmethod
    def fingerprint_inputs(cls, video, **kwargs):
        return os.path.getmtime(input_video_path(video))

    @classmethod
    def validate_inputs(cls, video):
        return comfy_bridge.validation_result(input_video_path, video)

    @classmethod
    def execute(cls, video, frame_cap, stride, skip_first, width, height, resize_mode, folder_fps):
        path = input_video_path(video)
        resize = image_ops.frame_resizer(width, height, resize_mode)
        options = video_io.DecodeOptions(frame_cap, stride, skip_first, resize)
        frames, fps = video_io.read_frames(path, options, folder_fps)
        return io.NodeOutput(image_ops.from_uint8(frames), fps, int(frames.shape[0]))


class AnimateSuiteFramesToVideo(io.ComfyNode):
    DISPLAY_NAME = "Frames to VIDEO (Animate Suite)"

    @classmethod
    def define_schema(cls):
        return comfy_bridge.schema(
            cls, "Wraps IMAGE frames and fps as ComfyUI's core VIDEO type (for Save Video and other video nodes).",
            CATEGORY, inputs=[io.Image.Input("images", tooltip="The frames."), fps_input()], outputs=[comfy_bridge.output(io.Video)])

    @classmethod
    def execute(cls, images, fps):
        from fractions import Fraction

        video_types = comfy_bridge.core_video_types()
        images = image_ops.check_image_batch(images)
        components = video_types.VideoComponents(images=images, frame_rate=Fraction(fps).limit_denominator(1001))
        return io.NodeOutput(video_types.VideoFromComponents(components))


class AnimateSuiteVideoToFrames(io.ComfyNode):
    DISPLAY_NAME = "VIDEO to Frames (Animate Suite)"

    @classmethod
    def define_schema(cls):
        return comfy_bridge.schema(
            cls, "Unpacks ComfyUI's core VIDEO type into IMAGE frames and fps.",
            CATEGORY, inputs=[io.Video.Input("video", tooltip="A core VIDEO, e.g. from Load Video.")],
            outputs=[comfy_bridge.output(io.Image, "images"), comfy_bridge.output(io.Float, "fps")])

    @classmethod
    def execute(cls, video):
        components = video.get_components()
        return io.NodeOutput(image_ops.check_image_batch(components.images), float(components.frame_rate))


NODE_CLASSES = [AnimateSuiteSaveAnimation, AnimateSuiteSaveLivePhoto, AnimateSuiteLoadVideo, AnimateSuiteFramesToVideo,
                AnimateSuiteVideoToFrames]
