"""The seam to ComfyUI: folders, patchers and staging, dtypes, progress, interruption, OOM advice."""

import os

import pytest
import torch


@pytest.fixture
def bridge(comfy):
    return comfy.module("nodes.comfy_bridge")


@pytest.fixture
def errors(comfy):
    return comfy.module("core.errors")


def test_pack_folders_are_registered_with_model_suffixes(comfy, bridge):
    registry = comfy.module("core.model_registry")
    for key, suffixes in registry.PACK_FOLDERS.items():
        paths, extensions = comfy.folder_paths.folder_names_and_paths[key]
        assert os.path.join(comfy.models, key) in paths
        assert set(suffixes) <= set(extensions)
    folder = comfy.models / "animate_anyone"
    folder.mkdir(exist_ok=True)
    (folder / "pose_guider.pth").write_bytes(b"x")
    (folder / "readme.txt").write_text("x")
    assert bridge.file_choices("animate_anyone") == ["pose_guider.pth"]


def test_extra_model_paths_style_empty_suffix_sets_are_extended(comfy, bridge, tmp_path):
    comfy.folder_paths.folder_names_and_paths["dwpose"] = ([str(tmp_path)], set())
    bridge.register_model_folders()
    paths, extensions = comfy.folder_paths.folder_names_and_paths["dwpose"]
    assert str(tmp_path) in paths and ".onnx" in extensions


def test_model_paths_never_escape_the_model_folders(comfy, bridge, errors):
    with pytest.raises(errors.ModelNotFoundError):
        bridge.model_file_path("animate_anyone", "../../etc/passwd", "AnimateAnyone")
    for choice in ("diffusers/..", "diffusers/../x", "diffusers", "diffusers/a/b"):
        with pytest.raises((errors.InputError, errors.ModelNotFoundError)):
            bridge.model_folder_path(choice, "model")


def test_model_folder_choices_and_lookup(comfy, bridge):
    target = comfy.models / "diffusers" / "tiny-svd"
    target.mkdir(parents=True)
    assert "diffusers/tiny-svd" in bridge.folder_choices(["diffusers"])
    assert bridge.model_folder_path("diffusers/tiny-svd", "model") == str(target)


def test_pick_dtype(bridge, errors):
    assert bridge.pick_dtype("auto", torch.device("cpu")) == torch.float32
    assert bridge.pick_dtype("bf16") == torch.bfloat16 and bridge.pick_dtype("fp16") == torch.float16
    with pytest.raises(errors.InputError, match="precision"):
        bridge.pick_dtype("fp8")


def _net():
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.GroupNorm(2, 8), torch.nn.Linear(8, 2))


def test_patcher_staging_loads_through_comfy(comfy, bridge):
    import comfy.model_management as model_management

    net = _net()
    patcher = bridge.make_patcher(net)
    assert patcher.model is net and not net.training
    context = bridge.run_context([patcher], torch.float32)
    context.stage(net)
    assert any(m is patcher or getattr(m, "model", None) is patcher for m in model_management.loaded_models())
    with pytest.raises(RuntimeError, match="not wrapped"):
        context.stage(_net())


def test_full_load_is_forced_without_streamable_comfy_ops(comfy, bridge, monkeypatch):
    import comfy.model_management as model_management

    calls = []
    monkeypatch.setattr(model_management, "load_models_gpu", lambda models, **kw: calls.append(kw))
    streamable = bridge._lowvram_ops() is not None
    net = _net()
    patcher = bridge.make_patcher(net)
    bridge.ComfyStager([patcher]).stage([net])
    assert calls[-1]["force_full_load"] is (not streamable)
    pinned = _net()
    bridge.ComfyStager([bridge.make_patcher(pinned, streamable=False)]).stage([pinned])
    assert calls[-1]["force_full_load"] is True


def test_swap_to_comfy_ops_keeps_results(bridge):
    class CastOp:
        comfy_cast_weights = False

    class FakeOps:
        class Linear(torch.nn.Linear, CastOp):
            pass

        class GroupNorm(torch.nn.GroupNorm, CastOp):
            pass

        class Embedding(torch.nn.Embedding, CastOp):
            pass

    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.GroupNorm(2, 8), torch.nn.GroupNorm(2, 8, affine=False))
    embedding = torch.nn.Embedding(5, 4)
    x = torch.randn(3, 4)
    expected = net(x)
    bridge._swap_to_comfy_ops(net, FakeOps)
    bridge._swap_to_comfy_ops(embedding, FakeOps)
    assert type(net[0]) is FakeOps.Linear and type(net[1]) is FakeOps.GroupNorm
    assert type(net[2]) is torch.nn.GroupNorm  # no weight to cast: left alone
    assert type(embedding) is FakeOps.Embedding and embedding.bias is None
    assert torch.equal(net(x), expected)


def test_progress_reaches_the_progress_bar_with_preview(comfy, bridge):
    import comfy.utils
    from PIL import Image

    seen = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: seen.append((value, total, preview)))
    try:
        progress = bridge.ComfyProgress()
        image = Image.new("RGB", (8, 8))
        progress(1, 4, image)
        progress(4, 4, None)
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
    assert seen[0][:2] == (1, 4) and seen[0][2][0] == "JPEG" and seen[0][2][1] is image
    assert seen[-1] == (4, 4, None)


def test_interrupt_check_raises_comfys_exception(comfy, bridge):
    import comfy.model_management as model_management

    bridge.check_interrupt()
    model_management.interrupt_current_processing(True)
    with pytest.raises(model_management.InterruptProcessingException):
        bridge.check_interrupt()
    bridge.check_interrupt()  # the flag is cleared once raised


def test_out_of_memory_becomes_advice(bridge):
    with pytest.raises(torch.cuda.OutOfMemoryError) as info:
        with bridge.out_of_memory_advice("sampling", "Lower frames (now 25) or resolution (now 1024x576)."):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    assert isinstance(info.value, bridge.AnimateSuiteOutOfMemory)
    assert str(info.value).startswith("Out of GPU memory while sampling. Lower frames (now 25)")
    assert "Tried to allocate" not in str(info.value)
    with pytest.raises(ValueError):
        with bridge.out_of_memory_advice("sampling", "x"):
            raise ValueError("other errors pass through")
    with bridge.out_of_memory_advice("sampling", "x"):
        pass


def test_tensors_comfy_cannot_stream_follow_a_partial_load(bridge):
    class CastOp:
        comfy_cast_weights = True

    class StreamedLinear(torch.nn.Linear, CastOp):
        pass

    class WithTable(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(4, 4)
            self.table = torch.nn.Parameter(torch.zeros(3, 4))
            self.register_buffer("positions", torch.arange(3))

    model = WithTable()
    model.proj.__class__ = StreamedLinear
    meta = torch.device("meta")
    bridge.place_unstreamed_tensors(model, meta)
    assert model.table.device == meta and model.positions.device == meta
    assert isinstance(model.table, torch.nn.Parameter)
    assert model.proj.weight.device.type == "cpu"  # streamed layers are left to ComfyUI


def test_validation_result_is_true_or_the_input_errors_message(bridge, errors):
    def refuse(name):
        raise errors.InputError("video", f"'{name}' does not exist", "an existing file")

    assert bridge.validation_result(lambda name: name, "x.mp4") is True
    assert bridge.validation_result(refuse, "x.mp4") == str(errors.InputError("video", "'x.mp4' does not exist", "an existing file"))
    assert bridge.output_entry("a.gif", "sub") == {"filename": "a.gif", "subfolder": "sub", "type": "output"}
