"""The typed pose nodes in the real ComfyUI: its server-side checks (combo values, Load Pose JSON's
``validate_inputs``) still refuse bad values before anything runs, and a pose JSON goes through Load, Smooth
and Save with Save Pose JSON's UI message reaching the history."""

from __future__ import annotations

import json
import time
import urllib.error
import uuid

import pytest

from realcomfy import http_json

POSE = [{"people": [{"pose_keypoints_2d": sum([[100.0 + 10 * i, 200.0 + 5 * i, 1.0] for i in range(18)], [])}],
         "canvas_width": 512, "canvas_height": 512}]


def submit(url: str, prompt: dict) -> tuple[int, dict]:
    """(HTTP status, answer) of POST /prompt."""
    try:
        return 200, http_json(url + "/prompt", {"prompt": prompt, "client_id": uuid.uuid4().hex})
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def pose_chain(file: str, resize_mode: str = "crop") -> dict:
    return {
        "1": {"class_type": "AnimateSuiteLoadPoseJSON", "inputs": {"file": file}},
        "2": {"class_type": "AnimateSuiteFitPose", "inputs": {"pose_keypoint": ["1", 0], "width": 512, "height": 512,
                                                              "resize_mode": resize_mode}},
        "3": {"class_type": "AnimateSuiteSmoothPose", "inputs": {"pose_keypoint": ["2", 0], "radius": 0, "sigma": 1.0}},
        "4": {"class_type": "AnimateSuiteSavePoseJSON", "inputs": {"pose_keypoint": ["3", 0], "filename_prefix": "real_pose/walk"}},
    }


def node_error_text(answer: dict, node_id: str) -> str:
    return json.dumps(answer.get("node_errors", {}).get(node_id, {}))


@pytest.fixture(scope="module")
def walk_file(comfy_server):
    (comfy_server.base.input / "real_walk.json").write_text(json.dumps(POSE))
    return "real_walk.json"


def test_bad_values_are_refused_before_the_pose_nodes_run(comfy_server, walk_file):
    status, answer = submit(comfy_server.url, pose_chain("../output/secret.json"))
    assert status == 400 and "outside ComfyUI's input folder" in node_error_text(answer, "1"), answer
    status, answer = submit(comfy_server.url, pose_chain(walk_file, resize_mode="sideways"))
    assert status == 400 and "sideways" in node_error_text(answer, "2") and "resize_mode" in node_error_text(answer, "2"), answer


def test_pose_json_runs_through_load_fit_smooth_and_save(comfy_server, walk_file):
    status, answer = submit(comfy_server.url, pose_chain(walk_file))
    assert status == 200, answer
    prompt_id = answer["prompt_id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        history = http_json(f"{comfy_server.url}/history/{prompt_id}").get(prompt_id)
        if history and history.get("status", {}).get("completed") is not None:
            break
        time.sleep(0.5)
    assert history and history["status"]["status_str"] == "success", history
    (name,) = history["outputs"]["4"]["text"]
    saved = json.loads((comfy_server.base.output / "real_pose" / name).read_text())
    assert saved[0]["canvas_width"] == 512 and saved[0]["people"][0]["pose_keypoints_2d"][:3] == [100.0, 200.0, 1.0]
