"""Draw the template browser's thumbnails (``example_workflows/<stem>.jpg``) and the pack icon (``web/icon.png``).

    python scripts/make_thumbnails.py [--only STEM ...]

A workflow whose output means something without the released weights shows that output, made by the
pack's own code: the procedural clipart workflows show frames of their clipart animation (same motion as
the workflow's Animate Clipart node), the DWPose preview a pose drawing. Every other workflow gets a
drawn card: its title and its chain of nodes, read from the workflow itself, so a new workflow gets a
card with no code. Run it after adding or changing an example workflow and commit the images.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "example_workflows"
CARD_SIZE = (512, 384)
ICON_SIZE = 256
INK = (236, 240, 245)
MUTED = (150, 160, 175)
BACKGROUND = (28, 32, 40)
# Accent colour per method (by the workflow's file-name prefix).
ACCENTS = {
    "svd": (84, 160, 255), "animate_anyone": (255, 140, 90), "stable_animator": (250, 200, 80),
    "easyanimate": (170, 120, 255), "aniclipart": (90, 210, 140), "dwpose": (255, 90, 140), "video": (120, 200, 220),
}
NOTE_TYPES = {"Note", "MarkdownNote"}


def font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def accent_of(stem: str) -> tuple[int, int, int]:
    return next((colour for prefix, colour in ACCENTS.items() if stem.startswith(prefix)), (200, 200, 200))


def title_of(stem: str) -> str:
    for joined in ("stable_animator", "animate_anyone", "live_photo"):
        stem = stem.replace(joined, joined.replace("_", "-"))
    words = stem.replace("_", " ").split()
    fixed = {"svd": "SVD", "dwpose": "DWPose", "mp4": "MP4", "gif": "GIF", "v1": "v1", "v51": "v5.1", "lora": "LoRA",
             "easyanimate": "EasyAnimate", "aniclipart": "AniClipart", "to": "to", "stable-animator": "StableAnimator",
             "animate-anyone": "AnimateAnyone", "live-photo": "Live Photo"}
    return " ".join(fixed.get(word, word.capitalize()) for word in words)


def node_chain(workflow: dict) -> list[str]:
    """The workflow's nodes (notes left out) in reading order: left to right, then top to bottom."""
    nodes = [n for n in workflow["nodes"] if n["type"] not in NOTE_TYPES]
    nodes.sort(key=lambda n: (round(n["pos"][0] / 200), n["pos"][1]))
    names = []
    for node in nodes:
        title = node.get("title")
        names.append((title or _display_name(node["type"])).replace(" (Animate Suite)", ""))
    return names


def _display_names() -> dict[str, str]:
    """Node class -> its DISPLAY_NAME, read from nodes/*.py (importing the nodes would need ComfyUI)."""
    pattern = re.compile(r'^class (\w+)[:(].*?\n    DISPLAY_NAME = "([^"]+)"', re.M | re.S)
    names = {}
    for source in (REPO / "nodes").glob("*.py"):
        for match in pattern.finditer(source.read_text()):
            names[match.group(1)] = match.group(2)
    return names


def _display_name(class_type: str) -> str:
    return _display_names().get(class_type, class_type)


def drawn_card(stem: str, workflow: dict) -> Image.Image:
    card = Image.new("RGB", CARD_SIZE, BACKGROUND)
    draw = ImageDraw.Draw(card)
    accent = accent_of(stem)
    draw.rectangle((0, 0, CARD_SIZE[0], 8), fill=accent)
    draw.text((24, 26), title_of(stem), font=font(30), fill=INK)
    chain = node_chain(workflow)
    rows = min(len(chain), 7)
    top, row_height = 84, min(40, (CARD_SIZE[1] - 100) // max(rows, 1))
    for index, name in enumerate(chain[:rows]):
        y = top + index * row_height
        draw.rounded_rectangle((24, y, CARD_SIZE[0] - 24, y + row_height - 10), radius=8, outline=accent, width=2)
        label = name if index < rows - 1 or len(chain) == rows else f"... {len(chain) - rows + 1} more"
        draw.text((40, y + (row_height - 10) // 2), label, font=font(18), fill=INK, anchor="lm")
    return card


def clipart_card(stem: str, workflow: dict) -> Image.Image:
    """Four frames of the workflow's procedural clipart animation, drawn by the pack."""
    from comfyui_animate_suite.svg.animate import animate_procedural, load_clipart, render_animation
    from comfyui_animate_suite.svg.motion import MotionSettings

    animate = next(n for n in workflow["nodes"] if n["type"] == "AnimateSuiteAnimateClipart")
    motion = animate["widgets_values"][0]
    clipart = load_clipart(REPO / "examples" / "gingerbread.svg", 256)
    animation = animate_procedural(clipart.rig, MotionSettings(preset=motion, num_frames=24))
    frames = (render_animation(animation, 124).numpy() * 255).astype("uint8")
    card = Image.new("RGB", CARD_SIZE, (255, 255, 255))
    for slot, index in enumerate((0, 6, 12, 18)):
        card.paste(Image.fromarray(frames[index]), (8 + slot * 124, 150))
    draw = ImageDraw.Draw(card)
    draw.rectangle((0, 0, CARD_SIZE[0], 8), fill=accent_of(stem))
    draw.text((24, 26), title_of(stem), font=font(30), fill=(30, 30, 30))
    draw.text((24, 68), f"motion: {motion}", font=font(20), fill=(90, 90, 90))
    return card


def pose_card(stem: str, workflow: dict) -> Image.Image | None:
    """A DWPose drawing from the shared data (the AnimateAnyone pose video), when ../shared is here."""
    video = REPO.parent / "shared" / "data" / "animate_anyone" / "anyone-video-2_kps.mp4"
    if not video.is_file():
        return None
    from comfyui_animate_suite.core import video as video_io

    frames, _ = video_io.read_frames(video, video_io.DecodeOptions(frame_cap=1))
    pose = Image.fromarray(frames[0])
    pose.thumbnail((CARD_SIZE[0], CARD_SIZE[1] - 70))
    card = Image.new("RGB", CARD_SIZE, (0, 0, 0))
    card.paste(pose, ((CARD_SIZE[0] - pose.width) // 2, 70))
    draw = ImageDraw.Draw(card)
    draw.rectangle((0, 0, CARD_SIZE[0], 8), fill=accent_of(stem))
    draw.text((24, 26), title_of(stem), font=font(30), fill=INK)
    return card


REAL_OUTPUT_CARDS = {"aniclipart_procedural": clipart_card, "dwpose_pose_preview": pose_card}


def thumbnail(path: Path) -> Image.Image:
    workflow = json.loads(path.read_text())
    maker = REAL_OUTPUT_CARDS.get(path.stem)
    return (maker(path.stem, workflow) if maker else None) or drawn_card(path.stem, workflow)


def icon() -> Image.Image:
    """A square icon: a film strip whose frames hold a figure in three poses."""
    image = Image.new("RGB", (ICON_SIZE, ICON_SIZE), BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((16, 56, 240, 200), radius=16, fill=(48, 54, 66))
    for x in range(28, 240, 24):
        draw.rectangle((x, 64, x + 10, 72), fill=BACKGROUND)
        draw.rectangle((x, 184, x + 10, 192), fill=BACKGROUND)
    for slot, lean in enumerate((-14, 0, 14)):
        cx, accent = 56 + slot * 72, list(ACCENTS.values())[slot]
        draw.ellipse((cx - 9 + lean // 2, 86, cx + 9 + lean // 2, 104), fill=accent)
        draw.line((cx + lean // 2, 104, cx, 140), fill=accent, width=6)
        draw.line((cx, 140, cx - 14, 172), fill=accent, width=6)
        draw.line((cx, 140, cx + 14, 172), fill=accent, width=6)
        draw.line((cx + lean // 3, 114, cx - 18, 128 - lean), fill=accent, width=5)
        draw.line((cx + lean // 3, 114, cx + 18, 128 + lean), fill=accent, width=5)
    return image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", default=None, help="workflow stems to redraw (default: all)")
    args = parser.parse_args(argv)
    for path in sorted(EXAMPLES.glob("*.json")):
        if args.only is None or path.stem in args.only:
            thumbnail(path).save(path.with_suffix(".jpg"), quality=88)
            print("wrote", path.with_suffix(".jpg").relative_to(REPO))
    if args.only is None:
        icon().save(REPO / "web" / "icon.png")
        print("wrote web/icon.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
