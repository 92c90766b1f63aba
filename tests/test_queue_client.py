"""The ``queue`` CLI against a loopback server that speaks ComfyUI's API subset; the API example workflows."""

import json
from pathlib import Path

import pytest

import workflow_check
from comfyui_animate_suite import cli
from comfyui_animate_suite.pipelines import queue_client
from fake_comfy_server import FakeComfy
from test_example_workflows import CORE_NODES

API_WORKFLOWS = sorted((Path(__file__).resolve().parents[1] / "example_workflows" / "api").glob("*.json"))
LIVE_PHOTO = next(p for p in API_WORKFLOWS if p.name == "svd_live_photo.json")


@pytest.fixture
def photo_file(tmp_path):
    path = tmp_path / "holiday.jpg"
    path.write_bytes(b"\xff\xd8 not really a jpeg, the fake server only stores it \xff\xd9")
    return path


def _queue(server, *extra, workflow=LIVE_PHOTO, out=None):
    args = ["queue", "--server", server.url, str(workflow), "--poll", "0.01", "--timeout", "20"]
    if out is not None:
        args += ["--out", str(out)]
    return cli.main(args + list(extra))


# ----------------------------------------------------------------------------- the example API workflows


@pytest.mark.parametrize("path", API_WORKFLOWS, ids=[p.name for p in API_WORKFLOWS])
def test_api_example_workflows_fit_the_node_definitions(comfy, path):
    mappings = comfy.package.NODE_CLASS_MAPPINGS

    def definitions(class_type):
        if class_type in mappings:
            return mappings[class_type].INPUT_TYPES(), mappings[class_type].RETURN_TYPES
        return CORE_NODES.get(class_type)

    def is_listing(class_type, name):
        input_types = definitions(class_type)[0]
        spec = {**(input_types.get("required") or {}), **(input_types.get("optional") or {})}[name]
        return workflow_check.input_options(spec).get("file_listing", False)

    prompt = queue_client.load_api_workflow(path)
    assert not workflow_check.check_api_workflow(prompt, definitions, is_listing)
    broken = json.loads(path.read_text())
    broken["3"]["inputs"]["steps"] = "many"
    broken["4"]["inputs"]["images"] = ["99", 0]
    problems = "\n".join(workflow_check.check_api_workflow(broken, definitions, is_listing))
    assert "'steps'" in problems and "missing node" in problems


def test_live_photo_example_takes_an_image_and_saves_a_live_photo_and_a_gif():
    prompt = queue_client.load_api_workflow(LIVE_PHOTO)
    types = {node["class_type"] for node in prompt.values()}
    assert {"LoadImage", "AnimateSuiteSaveLivePhoto", "AnimateSuiteSaveAnimation"} <= types
    assert [n["inputs"]["format"] for n in prompt.values() if n["class_type"] == "AnimateSuiteSaveAnimation"] == ["gif"]


# ----------------------------------------------------------------------------- a job end to end


def test_job_uploads_queues_follows_and_downloads_into_its_own_folder(photo_file, tmp_path, capsys):
    with FakeComfy() as server:
        code = _queue(server, "--image", str(photo_file), "--set", "motion_bucket_id=180", "--set", "3.seed=42",
                      "--set", "5.format=webp", out=tmp_path / "out")
        assert code == 0, capsys.readouterr().err
        (prompt_id, body), = server.prompts.items()
        assert body["client_id"] and server.uploads == {"holiday.jpg": photo_file.read_bytes()}
        prompt = body["prompt"]
        assert prompt["1"]["inputs"]["image"] == "holiday.jpg"
        assert prompt["3"]["inputs"]["motion_bucket_id"] == 180 and prompt["3"]["inputs"]["seed"] == 42
        assert prompt["5"]["inputs"]["format"] == "webp"
        folder = tmp_path / "out" / prompt_id
        names = sorted(p.name for p in folder.iterdir())
        assert names == ["live_00001_.jpg", "live_00001_.mov", "svd_00001_.gif"]
        saved = json.loads((folder / "live_00001_.mov").read_text())
        assert saved["class_type"] == "AnimateSuiteSaveLivePhoto"
        assert str(folder / "live_00001_.jpg") in capsys.readouterr().out


def test_two_jobs_never_overwrite_each_other(photo_file, tmp_path):
    with FakeComfy() as server:
        assert _queue(server, "--image", str(photo_file), out=tmp_path) == 0
        assert _queue(server, "--image", str(photo_file), "--set", "seed=1", out=tmp_path) == 0
        folders = sorted(p for p in tmp_path.iterdir() if p.is_dir())
        assert len(folders) == 2 and {f.name for f in folders} == set(server.prompts)
        assert all(len(list(f.iterdir())) == 3 for f in folders)


def test_a_second_photo_with_the_same_name_is_renamed_by_the_server_and_used(tmp_path):
    first, second = tmp_path / "a" / "p.jpg", tmp_path / "b" / "p.jpg"
    for path, data in ((first, b"one"), (second, b"two")):
        path.parent.mkdir()
        path.write_bytes(data)
    with FakeComfy() as server:
        assert _queue(server, "--image", str(first), out=tmp_path / "o") == 0
        assert _queue(server, "--image", str(second), out=tmp_path / "o") == 0
        images = [body["prompt"]["1"]["inputs"]["image"] for body in server.prompts.values()]
        assert images == ["p.jpg", "p (1).jpg"]


# ----------------------------------------------------------------------------- failures map to messages and exit codes


@pytest.mark.parametrize("behaviour, code, words", [
    ("reject", queue_client.EXIT_REJECTED, ["refused the workflow", "node 3 (AnimateSuiteSVDImageToVideo) input 'steps'", "steps: 0 < min 1"]),
    ("oom", queue_client.EXIT_OUT_OF_MEMORY, ["out of GPU memory", "decode_chunk_size", "--lowvram"]),
    ("error", queue_client.EXIT_FAILED, ["failed: ValueError: something broke"]),
    ("interrupt", queue_client.EXIT_INTERRUPTED, ["interrupted"]),
])
def test_server_side_failures_become_clear_messages_and_exit_codes(photo_file, tmp_path, capsys, behaviour, code, words):
    with FakeComfy(behaviour) as server:
        assert _queue(server, "--image", str(photo_file), out=tmp_path) == code
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    for word in words:
        assert word in err
    assert not any(tmp_path.iterdir()) or all(p.name == photo_file.name for p in tmp_path.iterdir())


def test_unreachable_server_and_timeouts(photo_file, tmp_path, capsys):
    with FakeComfy() as server:
        url = server.url
    assert cli.main(["queue", "--server", url, str(LIVE_PHOTO), "--image", str(photo_file)]) == queue_client.EXIT_UNREACHABLE
    assert "cannot reach ComfyUI" in capsys.readouterr().err
    with FakeComfy(polls_until_done=10**6) as server:
        code = _queue(server, "--image", str(photo_file), "--timeout", "0.3", out=tmp_path)
    assert code == queue_client.EXIT_TIMEOUT and "keeps running on the server" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--set", "nonsense"], "NAME=VALUE"),
    (["--set", "no_such_input=3"], "no node has an input named 'no_such_input'"),
    (["--set", "9.seed=3"], "no node '9'"),
    (["--set", "steps=lots"], "needs a number"),
    (["--set", "3.image=x.png"], "connected to node 1"),
])
def test_bad_overrides_are_refused_before_anything_is_sent(photo_file, tmp_path, capsys, extra, message):
    with FakeComfy() as server:
        assert _queue(server, "--image", str(photo_file), *extra, out=tmp_path) == queue_client.EXIT_USAGE
        assert not server.prompts and not server.uploads
    assert message in capsys.readouterr().err


def test_ui_format_workflows_and_missing_files_are_explained(tmp_path, capsys):
    ui_workflow = Path(__file__).resolve().parents[1] / "example_workflows" / "svd_photo_to_live_photo.json"
    with FakeComfy() as server:
        assert _queue(server, workflow=ui_workflow) == queue_client.EXIT_USAGE
        assert "Export (API)" in capsys.readouterr().err
        assert _queue(server, "--image", str(tmp_path / "missing.jpg")) == queue_client.EXIT_USAGE
        assert "does not exist" in capsys.readouterr().err


def test_overrides_keep_the_widget_types():
    prompt = queue_client.load_api_workflow(LIVE_PHOTO)
    queue_client.apply_overrides(prompt, ["max_guidance=4", "steps=30.0", "sampler=dpmpp_2m", "3.fps=12"])
    inputs = prompt["3"]["inputs"]
    assert inputs["max_guidance"] == 4.0 and isinstance(inputs["max_guidance"], float)
    assert inputs["steps"] == 30 and isinstance(inputs["steps"], int)
    assert inputs["sampler"] == "dpmpp_2m" and inputs["fps"] == 12
