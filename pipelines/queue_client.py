"""``python -m comfyui_animate_suite queue``: run an API-format workflow on a ComfyUI server and fetch its outputs.

    python -m comfyui_animate_suite queue --server http://127.0.0.1:8188 example_workflows/api/svd_live_photo.json \\
        --image photo.jpg --set motion_bucket_id=180 --set 3.seed=42 --out outputs

1. uploads the photo (``POST /upload/image``) and points the workflow's LoadImage node at it;
2. applies ``--set input=value`` (every node with that literal input) or ``--set NODE.input=value``;
3. queues it (``POST /prompt`` with a ``client_id``), then follows it through ``/queue`` and
   ``/history/<prompt_id>`` until it finishes;
4. downloads every output file (``GET /view``) into ``OUT/<prompt_id>/``, so jobs never overwrite
   each other's files.

Only the standard library is used. Exit codes: 0 done, 2 bad arguments or workflow, 3 the server
refused the workflow (validation errors), 4 the workflow failed, 5 out of memory, 6 interrupted,
7 timed out (the job keeps running on the server), 8 the server cannot be reached.
"""

from __future__ import annotations

import json
import mimetypes
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from .errors import AnimateSuiteError

EXIT_OK, EXIT_USAGE, EXIT_REJECTED, EXIT_FAILED, EXIT_OUT_OF_MEMORY, EXIT_INTERRUPTED, EXIT_TIMEOUT, EXIT_UNREACHABLE = (
    0, 2, 3, 4, 5, 6, 7, 8)
IMAGE_LOADERS = ("LoadImage",)


class QueueError(AnimateSuiteError):
    """A job problem with the exit code the CLI returns for it."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


# ----------------------------------------------------------------------------- the workflow


def load_api_workflow(path: str | Path) -> dict:
    """An API-format workflow ``{node_id: {"class_type", "inputs"}}``; UI-format files get a clear error."""
    path = Path(path)
    try:
        workflow = json.loads(path.read_text())
    except FileNotFoundError:
        raise QueueError(f"workflow file '{path}' does not exist", EXIT_USAGE) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise QueueError(f"'{path}' is not a JSON workflow ({error})", EXIT_USAGE) from None
    if isinstance(workflow, dict) and "nodes" in workflow and "links" in workflow:
        raise QueueError(f"'{path}' is a UI-format workflow (what File -> Save writes). In ComfyUI use "
                         "Workflow -> Export (API) and pass that file; examples are in example_workflows/api/.", EXIT_USAGE)
    if not isinstance(workflow, dict) or not workflow or not all(
            isinstance(node, dict) and "class_type" in node for node in workflow.values()):
        raise QueueError(f"'{path}' is not an API-format workflow ({{node_id: {{class_type, inputs}}}})", EXIT_USAGE)
    return workflow


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _coerce(value, current, where: str):
    if isinstance(current, list):
        raise QueueError(f"{where} is connected to node {current[0]}; only widget values can be set", EXIT_USAGE)
    if isinstance(current, bool) or isinstance(value, bool):
        if not isinstance(value, bool) or not isinstance(current, bool):
            raise QueueError(f"{where} needs true/false, got {value!r}", EXIT_USAGE)
        return value
    if isinstance(current, int) and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(current, float) and isinstance(value, int):
        return float(value)
    if isinstance(current, (int, float)) and not isinstance(value, (int, float)):
        raise QueueError(f"{where} needs a number, got {value!r}", EXIT_USAGE)
    if isinstance(current, str) and not isinstance(value, str):
        return str(value)
    return value


def apply_overrides(workflow: dict, overrides: Iterable[str]) -> dict:
    """``name=value`` sets that literal input on every node having it; ``NODE.name=value`` on one node."""
    for override in overrides:
        target, separator, text = override.partition("=")
        if not separator or not target:
            raise QueueError(f"--set {override!r} is not NAME=VALUE or NODE.NAME=VALUE", EXIT_USAGE)
        node_id, _, name = target.rpartition(".")
        if node_id and node_id not in workflow:
            raise QueueError(f"--set {override!r}: the workflow has no node {node_id!r} (nodes: {', '.join(workflow)})", EXIT_USAGE)
        nodes = [node_id] if node_id else [n for n, node in workflow.items() if name in node.get("inputs", {})]
        nodes = [n for n in nodes if name in workflow[n].get("inputs", {})]
        if not nodes:
            raise QueueError(f"--set {override!r}: no node has an input named {name!r}", EXIT_USAGE)
        value = _parse_value(text)
        for node in nodes:
            where = f"node {node} ({workflow[node]['class_type']}) input {name!r}"
            workflow[node]["inputs"][name] = _coerce(value, workflow[node]["inputs"][name], where)
    return workflow


def set_input_image(workflow: dict, image_name: str, node_id: str | None = None) -> str:
    """Point the workflow's image loader at ``image_name``; returns the node id used."""
    loaders = [n for n, node in workflow.items() if node["class_type"] in IMAGE_LOADERS]
    if node_id is not None:
        if node_id not in workflow or "image" not in workflow[node_id].get("inputs", {}):
            raise QueueError(f"--image-node {node_id!r} is not a node with an 'image' input", EXIT_USAGE)
        loaders = [node_id]
    if not loaders:
        raise QueueError("the workflow has no LoadImage node to receive --image", EXIT_USAGE)
    if len(loaders) > 1:
        raise QueueError(f"the workflow has several LoadImage nodes ({', '.join(loaders)}); choose one with --image-node", EXIT_USAGE)
    workflow[loaders[0]]["inputs"]["image"] = image_name
    return loaders[0]


# ----------------------------------------------------------------------------- HTTP


def _multipart(fields: dict[str, str], file_field: str, file_path: Path) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    content_type = mimetypes.guess_type(file_path.name)[0] or "application/octet-stream"
    parts.append((f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; '
                  f'filename="{file_path.name}"\r\nContent-Type: {content_type}\r\n\r\n').encode())
    parts.append(file_path.read_bytes() + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class ComfyClient:
    """The subset of ComfyUI's HTTP API a job needs."""

    def __init__(self, server: str, request_timeout: float = 30.0, client_id: str | None = None):
        if "://" not in server:
            server = "http://" + server
        self.server = server.rstrip("/")
        self.request_timeout = request_timeout
        self.client_id = client_id or uuid.uuid4().hex

    def _request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None,
                 timeout: float | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(self.server + path, data=body, method=method)
        if content_type:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.request_timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise QueueError(f"cannot reach ComfyUI at {self.server} ({reason}). Is it running, and started with "
                             "--listen if it is on another machine?", EXIT_UNREACHABLE) from None

    def _json(self, method: str, path: str, payload=None) -> tuple[int, object]:
        body = json.dumps(payload).encode() if payload is not None else None
        status, raw = self._request(method, path, body, "application/json" if body is not None else None)
        try:
            return status, json.loads(raw) if raw else None
        except json.JSONDecodeError:
            return status, raw.decode("utf-8", "replace")

    def upload_image(self, path: str | Path) -> str:
        path = Path(path)
        if not path.is_file():
            raise QueueError(f"--image '{path}' does not exist", EXIT_USAGE)
        body, content_type = _multipart({"type": "input", "overwrite": "false"}, "image", path)
        status, raw = self._request("POST", "/upload/image", body, content_type)
        if status != 200:
            raise QueueError(f"the server refused the image upload (HTTP {status}): {raw[:300].decode('utf-8', 'replace')}", EXIT_FAILED)
        answer = json.loads(raw)
        return f"{answer['subfolder']}/{answer['name']}" if answer.get("subfolder") else answer["name"]

    def queue_prompt(self, prompt: dict) -> tuple[str, dict]:
        status, answer = self._json("POST", "/prompt", {"prompt": prompt, "client_id": self.client_id})
        if status == 200 and isinstance(answer, dict) and "prompt_id" in answer:
            return answer["prompt_id"], answer.get("node_errors") or {}
        raise QueueError(describe_rejection(answer, prompt, status), EXIT_REJECTED)

    def history(self, prompt_id: str) -> dict | None:
        status, answer = self._json("GET", f"/history/{urllib.parse.quote(prompt_id)}")
        if status != 200 or not isinstance(answer, dict):
            return None
        return answer.get(prompt_id)

    def queue_state(self, prompt_id: str) -> str:
        status, answer = self._json("GET", "/queue")
        if status != 200 or not isinstance(answer, dict):
            return "waiting"
        if any(len(item) > 1 and item[1] == prompt_id for item in answer.get("queue_running", [])):
            return "running"
        pending = sorted(answer.get("queue_pending", []), key=lambda item: item[0] if item else 0)
        for ahead, item in enumerate(pending):
            if len(item) > 1 and item[1] == prompt_id:
                return f"queued ({ahead + len(answer.get('queue_running', []))} ahead)"
        return "waiting"

    def download(self, entry: dict, folder: Path) -> Path:
        name = Path(str(entry["filename"])).name
        if name in ("", ".", ".."):
            raise QueueError(f"the server named an output {entry['filename']!r}", EXIT_FAILED)
        query = urllib.parse.urlencode({"filename": entry["filename"], "subfolder": entry.get("subfolder", ""),
                                        "type": entry.get("type", "output")})
        status, raw = self._request("GET", f"/view?{query}", timeout=max(self.request_timeout, 300))
        if status != 200:
            raise QueueError(f"downloading {entry['filename']} failed (HTTP {status})", EXIT_FAILED)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / name
        target.write_bytes(raw)
        return target


# ----------------------------------------------------------------------------- errors


def _node_label(node_id: str, prompt: dict, class_type: str | None = None) -> str:
    class_type = class_type or prompt.get(node_id, {}).get("class_type", "?")
    return f"node {node_id} ({class_type})"


def describe_rejection(answer, prompt: dict, status: int) -> str:
    """ComfyUI's 400 answer to /prompt -> one line per problem."""
    if not isinstance(answer, dict):
        return f"the server refused the workflow (HTTP {status}): {str(answer)[:300]}"
    error = answer.get("error") or {}
    if isinstance(error, str):
        error = {"message": error}
    lines = [f"the server refused the workflow: {error.get('message', 'unknown error')}"
             + (f" ({error['details']})" if error.get("details") else "")]
    for node_id, problem in (answer.get("node_errors") or {}).items():
        label = _node_label(node_id, prompt, problem.get("class_type"))
        for item in problem.get("errors", []):
            extra = item.get("extra_info") or {}
            name = f" input '{extra['input_name']}'" if extra.get("input_name") else ""
            detail = item.get("details") or item.get("message", "")
            lines.append(f"  {label}{name}: {detail}")
    return "\n".join(lines)


def _is_out_of_memory(data: dict) -> bool:
    text = f"{data.get('exception_type', '')} {data.get('exception_message', '')}".lower()
    return "outofmemory" in text.replace(" ", "").replace("_", "") or "out of memory" in text


def check_finished(entry: dict, prompt: dict) -> None:
    """Raise the mapped QueueError when a finished history entry records a failure."""
    status = entry.get("status") or {}
    messages = status.get("messages") or []
    for event, data in messages:
        if event == "execution_interrupted":
            raise QueueError("the job was interrupted on the server", EXIT_INTERRUPTED)
        if event == "execution_error":
            label = _node_label(str(data.get("node_id")), prompt, data.get("node_type"))
            message = (data.get("exception_message") or "").strip()
            if _is_out_of_memory(data):
                raise QueueError(f"out of GPU memory in {label}: {message}\nLower the size, frames or "
                                 "decode_chunk_size (--set decode_chunk_size=4), or start ComfyUI with --lowvram.",
                                 EXIT_OUT_OF_MEMORY)
            raise QueueError(f"{label} failed: {data.get('exception_type', 'error')}: {message}", EXIT_FAILED)
    if status.get("status_str") == "error":
        raise QueueError("the job failed on the server (no details were recorded)", EXIT_FAILED)


def output_entries(entry: dict) -> list[dict]:
    """Every file the job's output nodes reported (each once)."""
    seen, files = set(), []
    for node_output in (entry.get("outputs") or {}).values():
        for items in node_output.values():
            if not isinstance(items, list):
                continue
            for item in items:
                if isinstance(item, dict) and "filename" in item:
                    key = (item.get("type", "output"), item.get("subfolder", ""), item["filename"])
                    if key not in seen:
                        seen.add(key)
                        files.append(item)
    return files


# ----------------------------------------------------------------------------- a job


@dataclass
class JobResult:
    prompt_id: str
    files: list[Path]


def wait_for(client: ComfyClient, prompt_id: str, prompt: dict, timeout: float, poll: float,
             say: Callable[[str], None]) -> dict:
    deadline = time.monotonic() + timeout
    last_state = None
    while True:
        entry = client.history(prompt_id)
        if entry is not None:  # ComfyUI writes history when a prompt has finished, well or not
            check_finished(entry, prompt)
            return entry
        if time.monotonic() > deadline:
            raise QueueError(f"gave up waiting after {timeout:.0f} s; the job {prompt_id} keeps running on the server",
                             EXIT_TIMEOUT)
        state = client.queue_state(prompt_id)
        if state != last_state:
            say(f"{prompt_id}: {state}")
            last_state = state
        time.sleep(poll)


def run_job(server: str, workflow_path: str | Path, image: str | Path | None, overrides: Iterable[str],
            out_dir: str | Path, timeout: float = 3600, poll: float = 1.0, image_node: str | None = None,
            say: Callable[[str], None] = print) -> JobResult:
    workflow = load_api_workflow(workflow_path)
    apply_overrides(workflow, overrides)
    client = ComfyClient(server)
    if image is not None:
        uploaded = client.upload_image(image)
        node = set_input_image(workflow, uploaded, image_node)
        say(f"uploaded {Path(image).name} as '{uploaded}' for node {node}")
    prompt_id, dropped = client.queue_prompt(workflow)
    for node_id in dropped:
        say(f"warning: {_node_label(node_id, workflow)} failed validation; outputs depending on it are skipped")
    say(f"queued as {prompt_id}")
    entry = wait_for(client, prompt_id, workflow, timeout, poll, say)
    folder = Path(out_dir) / prompt_id
    files = [client.download(item, folder) for item in output_entries(entry)]
    for path in files:
        say(f"saved {path}")
    if not files:
        say("the job finished but reported no output files")
    return JobResult(prompt_id, files)


# ----------------------------------------------------------------------------- CLI


def _run(args) -> int:
    try:
        run_job(args.server, args.workflow, args.image, args.set or [], args.out, args.timeout, args.poll, args.image_node)
    except QueueError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return EXIT_OK


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "queue", help="run an API-format workflow on a ComfyUI server and download its outputs",
        description="Upload the photo, queue the workflow, follow it and download its outputs into OUT/<prompt_id>/. "
        "Exit codes: 0 done, 2 bad arguments/workflow, 3 refused by the server, 4 failed, 5 out of memory, "
        "6 interrupted, 7 timed out, 8 server unreachable.")
    parser.add_argument("workflow", help="API-format workflow JSON (Workflow -> Export (API)), e.g. example_workflows/api/svd_live_photo.json")
    parser.add_argument("--server", default="http://127.0.0.1:8188", help="ComfyUI address (default %(default)s)")
    parser.add_argument("--image", help="photo to upload into the workflow's LoadImage node")
    parser.add_argument("--image-node", help="node id of the LoadImage node when there are several")
    parser.add_argument("--set", action="append", metavar="[NODE.]INPUT=VALUE",
                        help="set a widget value (JSON value or text); repeatable, e.g. --set motion_bucket_id=180")
    parser.add_argument("--out", default="outputs", help="folder for the results; each job gets OUT/<prompt_id>/ (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the job (default %(default)s)")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between status checks (default %(default)s)")
    parser.set_defaults(run=_run)
