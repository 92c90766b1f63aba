"""The ``queue`` CLI against a loopback server that speaks ComfyUI's API subset; the API example workflows."""

import json
import time
import tracemalloc
from pathlib import Path

import pytest

import workflow_check
from comfyui_animate_suite import cli
from comfyui_animate_suite.tools import queue_client
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


# ----------------------------------------------------------------------------- hostile or broken servers


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("prompt_id", ["../escaped", "/tmp/absolute", "a/../../b", "..", "", 42, "a b"])
def test_a_server_given_prompt_id_never_names_a_folder_outside_out(photo_file, tmp_path, capsys, prompt_id):
    victim = tmp_path / "escaped"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    out = tmp_path / "out"
    with FakeComfy(prompt_id=prompt_id) as server:
        assert _queue(server, "--image", str(photo_file), out=out) == queue_client.EXIT_FAILED
    assert "not a safe folder name" in _error_line(capsys)
    assert sorted(p.name for p in victim.iterdir()) == ["keep.txt"] and not out.exists()


def test_output_names_keep_only_their_last_part(tmp_path):
    entries = [{"filename": name, "subfolder": "", "type": "output"}
               for name in ["../../etc/x.png", "/abs/y.png", "..", "a\x00b.png", "c\\..\\d.png", "x.png"]]
    names = queue_client.local_names(entries)
    assert names == ["x.png", "y.png", "output", "ab.png", "d.png", "x_2.png"]
    assert all("/" not in n and n not in (".", "..") for n in names)


def test_same_named_outputs_from_different_subfolders_are_both_kept(photo_file, tmp_path, capsys):
    with FakeComfy("same_names") as server:
        assert _queue(server, "--image", str(photo_file), out=tmp_path) == 0
        (prompt_id,) = server.prompts
    folder = tmp_path / prompt_id
    saved = [json.loads(p.read_text()) for p in sorted(folder.iterdir())]
    assert sorted(p.name for p in folder.iterdir()) == ["same.png", "same_2.png"]
    assert sorted(s["subfolder"] for s in saved) == ["AnimateSuite/4", "AnimateSuite/5"]
    assert "the server's AnimateSuite/" in capsys.readouterr().out


@pytest.mark.parametrize("behaviour", ["drip_prompt", "drip_view", "hang_prompt"])
def test_timeout_is_a_deadline_for_the_whole_job_even_against_slow_servers(photo_file, tmp_path, capsys, behaviour):
    with FakeComfy(behaviour, drip_seconds=0.05) as server:
        started = time.monotonic()
        assert _queue(server, "--image", str(photo_file), "--timeout", "1.5", out=tmp_path) == queue_client.EXIT_TIMEOUT
        assert time.monotonic() - started < 4
    assert "timed out" in _error_line(capsys)
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p != photo_file]  # no partial download


def test_a_hung_prompt_reply_ends_as_timed_out_not_unreachable(tmp_path):
    with FakeComfy("hang_prompt") as server:
        client = queue_client.ComfyClient(server.url, request_timeout=0.3)
        with pytest.raises(queue_client.QueueError) as caught:
            client.queue_prompt({"1": {"class_type": "X", "inputs": {}}})
    assert caught.value.exit_code == queue_client.EXIT_TIMEOUT and "POST /prompt" in str(caught.value)


@pytest.mark.parametrize("behaviour, code, words", [
    ("upload_not_json", queue_client.EXIT_FAILED, ["image upload", "expected JSON"]),
    ("upload_no_name", queue_client.EXIT_FAILED, ["image upload", '"name"']),
    ("reject_int_error", queue_client.EXIT_REJECTED, ["refused the workflow (HTTP 400): 5"]),
    ("history_string", queue_client.EXIT_FAILED, ["history for", "'done'", "expected an object"]),
    ("bare_error", queue_client.EXIT_FAILED, ["failed: error"]),
    ("silent_error", queue_client.EXIT_FAILED, ["failed on the server (no details were recorded)"]),
    ("prompt_500", queue_client.EXIT_FAILED, ["failed to queue the workflow (HTTP 500)"]),
])
def test_odd_replies_become_one_line_errors_with_their_exit_code(photo_file, tmp_path, capsys, behaviour, code, words):
    with FakeComfy(behaviour) as server:
        assert _queue(server, "--image", str(photo_file), out=tmp_path) == code
    err = _error_line(capsys)
    assert len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err


def test_downloads_are_streamed_to_disk_under_the_size_cap(photo_file, tmp_path, capsys):
    with FakeComfy("big_output", output_bytes=3 * 2**20) as server:
        assert _queue(server, "--image", str(photo_file), "--max-download-mb", "2", out=tmp_path / "a") == queue_client.EXIT_FAILED
        assert "larger than --max-download-mb 2" in _error_line(capsys)
        assert not [p for p in (tmp_path / "a").rglob("*") if p.is_file()]  # the partial file is removed
        tracemalloc.start()
        try:
            assert _queue(server, "--image", str(photo_file), "--max-download-mb", "8", out=tmp_path / "b") == 0
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    files = [p for p in (tmp_path / "b").rglob("*") if p.is_file()]
    assert len(files) == 3 and all(p.stat().st_size == 3 * 2**20 for p in files)
    assert peak < 2 * 2**20  # never held whole in memory


def test_bad_timeout_and_cap_values_are_usage_errors(photo_file, tmp_path, capsys):
    with FakeComfy() as server:
        for extra in (["--timeout", "0"], ["--timeout", "nan"], ["--max-download-mb", "-1"]):
            assert _queue(server, "--image", str(photo_file), *extra, out=tmp_path) == queue_client.EXIT_USAGE
            assert "must be positive" in _error_line(capsys)


def test_links_planted_in_the_job_folder_are_never_followed(photo_file, tmp_path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "svd_00001_.gif").write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "job1").mkdir()
    (out / "job1" / "svd_00001_.gif").symlink_to(outside / "svd_00001_.gif")
    (out / "job2").symlink_to(outside)
    with FakeComfy(prompt_id="job1") as server:
        assert _queue(server, "--image", str(photo_file), out=out) == 0
    assert not (out / "job1" / "svd_00001_.gif").is_symlink() and (outside / "svd_00001_.gif").read_text() == "precious"
    with FakeComfy(prompt_id="job2") as server:
        assert _queue(server, "--image", str(photo_file), out=out) == queue_client.EXIT_USAGE
    assert "link out of --out" in _error_line(capsys) and sorted(p.name for p in outside.iterdir()) == ["svd_00001_.gif"]
