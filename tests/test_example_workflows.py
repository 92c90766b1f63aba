"""Every workflow in example_workflows/ fits the node definitions it uses."""

import json
from pathlib import Path

import numpy as np
import pytest

import workflow_check

EXAMPLES = Path(__file__).resolve().parents[1] / "example_workflows"
WORKFLOWS = sorted(EXAMPLES.glob("*.json"))

# The ComfyUI core nodes our examples may use, as defined by ComfyUI (Oct 2025).
IMAGE_COMBO = ([], {"image_upload": True, "tooltip": "image", "file_listing": True})
CORE_NODES = {
    "LoadImage": ({"required": {"image": IMAGE_COMBO}}, ("IMAGE", "MASK")),
    "PreviewImage": ({"required": {"images": ("IMAGE",)}}, ()),
    "SaveImage": ({"required": {"images": ("IMAGE",), "filename_prefix": ("STRING", {"default": "ComfyUI", "tooltip": "p"})}}, ()),
    "LoadVideo": ({"required": {"file": ([], {"video_upload": True, "tooltip": "f", "file_listing": True})}}, ("VIDEO",)),
    "SaveVideo": ({"required": {"video": ("VIDEO",), "filename_prefix": ("STRING", {"default": "video/ComfyUI", "tooltip": "p"}),
                                "format": (["auto", "mp4"], {"default": "auto", "tooltip": "f"}),
                                "codec": (["auto", "h264"], {"default": "auto", "tooltip": "c"})}}, ()),
    "Note": ({"required": {"text": ("STRING", {"multiline": True, "tooltip": "t"})}}, ()),
    "MarkdownNote": ({"required": {"text": ("STRING", {"multiline": True, "tooltip": "t"})}}, ()),
}


def test_there_are_examples():
    assert WORKFLOWS, "example_workflows/ must hold UI-format workflows for the template browser"


@pytest.fixture(scope="module")
def definitions(comfy):
    mappings = comfy.package.NODE_CLASS_MAPPINGS

    def lookup(class_type):
        if class_type in mappings:
            cls = mappings[class_type]
            return cls.INPUT_TYPES(), cls.RETURN_TYPES
        return CORE_NODES.get(class_type)

    return lookup


def _is_listing(definitions):
    def check(class_type, input_name):
        input_types = definitions(class_type)[0]
        spec = {**(input_types.get("required") or {}), **(input_types.get("optional") or {})}[input_name]
        return workflow_check.input_options(spec).get("file_listing", False)

    return check


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_example_workflow_is_valid(path, definitions):
    workflow = json.loads(path.read_text())
    assert isinstance(workflow.get("nodes"), list) and "links" in workflow, "not a UI-format workflow"
    problems = workflow_check.check_workflow(workflow, definitions, _is_listing(definitions))
    assert not problems, "\n".join(problems)
    assert any(node["type"].startswith("AnimateSuite") for node in workflow["nodes"])


def test_checker_catches_broken_workflows(definitions):
    workflow = json.loads(WORKFLOWS[0].read_text())
    node = next(n for n in workflow["nodes"] if n["type"].startswith("AnimateSuite") and n["widgets_values"])
    node["widgets_values"] = node["widgets_values"][:-1]
    workflow["links"].append([99, node["id"], 0, node["id"], 5, "LATENT"])
    workflow["nodes"].append({"id": 77, "type": "NoSuchNode", "inputs": [], "widgets_values": []})
    problems = "\n".join(workflow_check.check_workflow(workflow, definitions, _is_listing(definitions)))
    assert "widget values for" in problems and "unknown node type" in problems and "link 99" in problems


# ComfyUI lists a model folder for the front end with only these endings (folder_paths.supported_pt_extensions,
# read by app/model_manager.py); a workflow's model metadata naming any other file (DWPose's .onnx) can never
# be found, so the front end would open a false "Missing Models" dialog every time the workflow is loaded.
FRONT_END_LISTED_MODEL_SUFFIXES = (".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft")


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_model_metadata_names_only_files_the_front_end_can_find(path):
    workflow = json.loads(path.read_text())
    for node in workflow["nodes"]:
        for model in node.get("properties", {}).get("models", []):
            assert model["name"].endswith(FRONT_END_LISTED_MODEL_SUFFIXES), (
                f"node {node['id']} ({node['type']}): '{model['name']}' is never listed by ComfyUI's model manager")
            assert model["name"] in node.get("widgets_values", []), f"node {node['id']}: metadata for an unselected file"


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_each_workflow_has_a_template_browser_thumbnail(path):
    from PIL import Image

    thumbnail = path.with_suffix(".jpg")  # the template browser shows <stem>.jpg as the workflow's card
    assert thumbnail.is_file(), f"run scripts/make_thumbnails.py --only {path.stem}"
    with Image.open(thumbnail) as image:
        assert image.format == "JPEG" and image.width >= 256 and 1 <= image.width / image.height <= 2
        assert len(np.unique(np.asarray(image.convert("L").resize((32, 24))))) > 8, "a blank card"


def test_the_registry_icon_exists_and_is_square():
    import tomllib

    from PIL import Image

    icon_url = tomllib.loads((EXAMPLES.parent / "pyproject.toml").read_text())["tool"]["comfy"]["Icon"]
    icon = EXAMPLES.parent / icon_url.split("/main/", 1)[1]
    with Image.open(icon) as image:
        assert image.width == image.height <= 400, "the Comfy Registry wants a square icon of at most 400x400"
