"""One model family of the pack inside the real ComfyUI's own modules (run in its own process):

    python real_comfy_check.py <ComfyUI dir> <family> <work dir>

The real ``comfy.model_management`` / ``comfy.model_patcher`` / ``folder_paths`` are imported from the
ComfyUI folder (``--cpu``, ``--base-directory <work dir>``), the pack is loaded from
``custom_nodes/ComfyUI-Animate-Suite`` as ComfyUI loads it, and the family's tiny models are written under
the names its example workflow selects. Then:

1. normal mode: the loader node (the example workflow's widget values) and the sampler node run; each
   pipeline stage goes through ``load_models_gpu``; the first forward call of every loaded module is
   recorded;
2. partial loading: every streamable module is loaded by its ``ModelPatcher`` with
   ``lowvram_model_memory`` below its size, onto the CPU (the rest streamed; its recorded forward runs
   again) and onto the meta device standing in for a GPU (part there, the rest on the CPU);
3. ``--novram``: ComfyUI's state for that flag (``VRAMState.NO_VRAM``, a non-CPU load device) makes
   ``load_models_gpu`` load each module partially (``model_lowvram``).

Prints one JSON line: the modules checked, their sizes, and what each step saw.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(HERE), str(REPO / "tests")]

import transformers  # noqa: E402,F401  (before the torchvision stand-in; see launcher.py)
import transformers.image_utils  # noqa: E402,F401

PACK = "ComfyUI-Animate-Suite"
WORKFLOWS = REPO / "example_workflows"


def _image(frames: int, size: int = 64, seed: int = 0):
    import torch

    return torch.rand(frames, size, size, 3, generator=torch.Generator().manual_seed(seed))


def _svd(load):
    (model,) = load("AnimateSuiteSVDLoader", "svd_photo_to_live_photo.json")
    return model, ("AnimateSuiteSVDImageToVideo", dict(
        svd_model=model, image=_image(1), width=64, height=64, resize_mode="crop", frames=3, steps=2, motion="custom",
        motion_bucket_id=127, fps=7, noise_aug_strength=0.02, min_guidance=1.0, max_guidance=3.0, seed=0,
        decode_chunk_size=8, sampler="euler"))


def _animate_anyone(load):
    (model,) = load("AnimateSuiteAnimateAnyoneLoader", "animate_anyone_pose_video.json")
    return model, ("AnimateSuiteAnimateAnyoneSampler", dict(
        model=model, reference_image=_image(1), pose_frames=_image(3, seed=1), width=64, height=64, steps=2,
        guidance=3.5, seed=0, context_frames=4, context_overlap=2, context_stride=1, fit="stretch"))


def _stable_animator(load):
    (model,) = load("AnimateSuiteStableAnimatorLoader", "stable_animator_pose_to_video.json")
    return model, ("AnimateSuiteStableAnimatorSampler", dict(
        stable_animator=model, reference_image=_image(1), pose_frames=_image(3, seed=1), width=64, height=64, steps=2,
        min_guidance_scale=3.0, max_guidance_scale=3.0, fps=7, motion_bucket_id=127, noise_aug_strength=0.02,
        tile_size=4, tile_overlap=2, decode_chunk_size=4, seed=0, face_optimization=False, hjb_start_step=0,
        hjb_end_step=2, hjb_iterations=1, hjb_learning_rate=0.1))


def _easyanimate(loader: str, workflow: str, sampler: str, lora: bool):
    def family(load):
        (model,) = load(loader, workflow)
        if lora:
            (model,) = load("AnimateSuiteEasyAnimateLoRA", workflow, model=model)
        return model, ("AnimateSuiteEasyAnimateSampler", dict(
            model=model, prompt="a panda playing a guitar", negative_prompt="", width=64, height=64, frames=5, steps=2,
            guidance=6.0, seed=0, sampler=sampler))
    return family


def _t2v_prior(load):
    (prior,) = load("AnimateSuiteLoadT2VPrior", "aniclipart_text_guided.json")
    clipart = load("AnimateSuiteLoadClipart", "aniclipart_text_guided.json", canvas=128)[0]
    return prior, ("AnimateSuiteClipartTextAnimate", dict(
        clipart=clipart, prior=prior, prompt="a gingerbread man dancing", preset="fast", seed=0, iterations=2,
        guidance_scale=50.0))


FAMILIES = {
    "svd": ("svd", _svd),
    "animate_anyone": ("animate_anyone", _animate_anyone),
    "stable_animator": ("stable_animator", _stable_animator),
    "easyanimate_v1": ("easyanimate_v1", _easyanimate("AnimateSuiteEasyAnimateV1Loader",
                                                      "easyanimate_v1_text_to_video_lora.json", "DPM++", True)),
    "easyanimate_v51": ("easyanimate_v51", _easyanimate("AnimateSuiteEasyAnimateV51Loader",
                                                        "easyanimate_v51_text_to_video.json", "Flow", False)),
    "t2v_prior": ("t2v_prior", _t2v_prior),
}


def import_real_comfy(comfy_dir: Path, work: Path):
    stub = work / "stub" / "torchvision"
    stub.mkdir(parents=True, exist_ok=True)
    for name in ("__init__.py", "transforms.py"):
        (stub / name).write_text("")
    sys.path[:0] = [str(work / "stub"), str(comfy_dir)]
    sys.argv = ["main.py", "--cpu", "--base-directory", str(work)]
    import comfy.options

    comfy.options.enable_args_parsing()
    import comfy.model_management
    import comfy.model_patcher  # noqa: F401
    import folder_paths

    assert Path(folder_paths.models_dir) == work / "models", folder_paths.models_dir
    return comfy.model_management


def load_pack(work: Path):
    link = work / "custom_nodes" / PACK
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(REPO, target_is_directory=True)
    spec = importlib.util.spec_from_file_location(PACK, link / "__init__.py", submodule_search_locations=[str(link)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK] = module
    spec.loader.exec_module(module)
    return module


def node_runner(pack):
    import torch

    def run(class_type: str, workflow: str | None = None, **inputs):
        cls = pack.NODE_CLASS_MAPPINGS[class_type]
        if workflow is not None:  # widget values as the example workflow sets them, for inputs not given
            node = next(n for n in json.loads((WORKFLOWS / workflow).read_text())["nodes"] if n["type"] == class_type)
            widgets = [k for k, v in cls.INPUT_TYPES()["required"].items()
                       if not isinstance(v[0], str) or v[0] in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")]
            inputs = {**dict(zip(widgets, node["widgets_values"])), **inputs}
        with torch.inference_mode():
            return getattr(cls(), cls.FUNCTION)(**inputs)
    return run


def patchers_of(model) -> list:
    patchers = model.patchers
    return list(patchers.values()) if isinstance(patchers, dict) else list(patchers)


def record_forwards(patchers) -> dict:
    """Module name -> (args, kwargs) of its first forward call."""
    calls = {}

    def hook(name):
        def capture(module, args, kwargs):
            calls.setdefault(name, (args, kwargs))
        return capture

    for patcher in patchers:
        patcher.model.register_forward_pre_hook(hook(type(patcher.model).__name__), with_kwargs=True)
    return calls


def to_device(value, device):
    import torch

    if isinstance(value, torch.Tensor):
        return value.clone().to(device)
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(v, device) for v in value)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    return value


def partial_forward(bridge, patcher, call) -> dict:
    """Partial loads by the module's ModelPatcher with ``lowvram_model_memory`` below its size:
    1. onto the CPU: the layers over budget stream (ComfyUI casts their weights on the fly) and the
       recorded forward runs on real values (some modules read values, e.g. ``.item()``, which meta cannot);
    2. onto the meta device (a stand-in GPU): part of the module lands there, the rest stays on the CPU."""
    import torch

    import comfy.model_management as mm

    size = patcher.model_size()
    # The budget is 40% of what ComfyUI can stream (layers that cast weights on the fly): a tiny model's
    # buffers (position tables) can outweigh its layers, so 40% of the whole size may hold every layer.
    streamable = sum(mm.module_size(m) for m in patcher.model.modules() if hasattr(m, "comfy_cast_weights"))
    budget = int(streamable * 0.4)
    cpu, meta = torch.device("cpu"), torch.device("meta")
    patcher.load(cpu, lowvram_model_memory=budget, full_load=False)
    streamed = bool(getattr(patcher.model, "model_lowvram", False))
    ran = False
    if call is not None:
        args, kwargs = call
        with torch.inference_mode():
            patcher.model(*to_device(args, cpu), **to_device(kwargs, cpu))
        ran = True
    patcher.unpatch_model(cpu)
    patcher.load(meta, lowvram_model_memory=budget, full_load=False)
    devices = sorted({p.device.type for p in patcher.model.parameters()})
    lowvram = bool(getattr(patcher.model, "model_lowvram", False))
    return {"size": size, "devices": devices, "lowvram": lowvram and streamed, "forward": ran}


def novram_loads(mm, patchers) -> dict:
    """ComfyUI's --novram state on a non-CPU load device: load_models_gpu loads partially."""
    import torch

    meta = torch.device("meta")
    mm.vram_state = mm.VRAMState.NO_VRAM
    mm.get_free_memory = lambda dev=None, torch_free_too=False: (1 << 30, 1 << 30) if torch_free_too else 1 << 30
    mm.unload_all_models()
    seen = {}
    for patcher in patchers:
        patcher.load_device = meta
        mm.load_models_gpu([patcher])
        seen[type(patcher.model).__name__] = bool(getattr(patcher.model, "model_lowvram", False))
        mm.unload_all_models()
    return seen


def main() -> None:
    comfy_dir, family, work = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    import farm

    farm_name, build = FAMILIES[family]
    farm.build_family(farm_name, work / "models")
    mm = import_real_comfy(comfy_dir, work)
    pack = load_pack(work)
    # The tiny svd_xt.safetensors has tiny configs (as ANIMATE_SUITE_SVD_CONFIGS in launcher.py).
    importlib.import_module(f"{PACK}.pipelines.svd.loading").CONFIGS_DIR = work / "tiny_svd_configs"
    bridge = importlib.import_module(f"{PACK}.nodes.comfy_bridge")
    run = node_runner(pack)
    model, (sampler, inputs) = build(run)
    patchers = patchers_of(model)
    calls = record_forwards(patchers)
    frames = run(sampler, **inputs)[0]
    report = {"family": family, "sampler_output": list(getattr(frames, "shape", ())), "forwarded": sorted(calls),
              "loaded_by_comfy": sorted(type(m.model.model).__name__ for m in mm.current_loaded_models)}
    streamable = [p for p in patchers if not getattr(p, "animate_suite_full_load", True)]
    report["novram"] = novram_loads(mm, streamable)
    report["partial"] = {type(p.model).__name__: partial_forward(bridge, p, calls.get(type(p.model).__name__))
                         for p in streamable}
    print("REPORT " + json.dumps(report))


if __name__ == "__main__":
    main()
