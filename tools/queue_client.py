"""``python -m comfyui_animate_suite queue``: run an API-format workflow on a ComfyUI server and fetch its outputs.

    python -m comfyui_animate_suite queue --server http://127.0.0.1:8188 example_workflows/api/svd_live_photo.json \\
        --image photo.jpg --set motion_bucket_id=180 --set 3.seed=42 --out outputs

1. uploads the photo (``POST /upload/image``) and points the workflow's LoadImage node at it;
2. applies ``--set input=value`` (every node with that literal input) or ``--set NODE.input=value``;
3. queues it (``POST /prompt`` with a ``client_id``), then follows it through ``/queue`` and
   ``/history/<prompt_id>`` until it finishes;
4. streams every output file (``GET /view``) to disk into ``OUT/<prompt_id>/``, so jobs never overwrite
   each other's files; files larger than ``--max-download-mb`` are refused.

The server is not trusted: its prompt_id must be a plain name, output names keep only their last part
(same-named files from different subfolders get ``_2``, ``_3``), odd replies become one-line errors,
and ``--timeout`` bounds the whole job, slow servers included.

Only the standard library is used. Exit codes: 0 done, 2 bad arguments or workflow, 3 the server
refused the workflow (validation errors), 4 the workflow failed, 5 out of memory, 6 interrupted,
7 timed out (the job keeps running on the server), 8 the server cannot be reached.
"""

from __future__ import annotations

import http.client
import json
import mimetypes
import os
import re
import socket
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from ..core.errors import AnimateSuiteError

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

JSON_REPLY_LIMIT = 64 * 2**20
DEFAULT_MAX_DOWNLOAD_MB = 2048
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _clip(text, limit: int = 300) -> str:
    """Server-given text for a message: printable characters only, at most ``limit`` of them."""
    text = "".join(c if c.isprintable() else " " for c in str(text))
    return text if len(text) <= limit else text[:limit] + "..."


def safe_prompt_id(value) -> str:
    """The server's prompt_id, only when it can name a folder under --out (no '/', '..', absolute paths)."""
    if isinstance(value, str) and _SAFE_ID.fullmatch(value) and ".." not in value:
        return value
    raise QueueError(f"the server answered with prompt_id {_clip(repr(value), 80)}, which is not a safe folder "
                     "name; expected letters, digits, '.', '_' or '-' (ComfyUI uses UUIDs)", EXIT_FAILED)


def safe_file_name(value) -> str:
    """The last part of a server-given output name, printable, never '', '.' or '..'."""
    name = str(value).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable()).strip()
    if len(name.encode()) > 200:
        stem, dot, suffix = name.rpartition(".")
        suffix = (dot + suffix)[:20] if dot else ""
        name = name[: 200 - len(suffix.encode())].encode()[: 200 - len(suffix.encode())].decode("utf-8", "ignore") + suffix
    return "output" if name.strip(".") == "" else name


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


class _TooLarge(Exception):
    pass


class ComfyClient:
    """The subset of ComfyUI's HTTP API a job needs.

    ``deadline`` (a ``time.monotonic()`` value) bounds every request: a server that answers slowly,
    byte by byte, is cut off when it passes. ``request_timeout`` bounds each wait for a byte.
    """

    def __init__(self, server: str, request_timeout: float = 30.0, client_id: str | None = None,
                 deadline: float | None = None, max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_MB * 2**20):
        if "://" not in server:
            server = "http://" + server
        self.server = server.rstrip("/")
        url = urllib.parse.urlsplit(self.server)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise QueueError(f"--server {server!r} is not an address like http://127.0.0.1:8188", EXIT_USAGE)
        self._url = url
        self.request_timeout = request_timeout
        self.client_id = client_id or uuid.uuid4().hex
        self.deadline = deadline
        self.max_download_bytes = max_download_bytes

    # ------------------------------------------------------------------ one request

    def _time_left(self, what: str) -> float:
        if self.deadline is None:
            return self.request_timeout
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise self._timed_out(what)
        return left

    def _timed_out(self, what: str) -> QueueError:
        return QueueError(f"timed out: ComfyUI at {self.server} did not finish {what} before the deadline "
                          "(--timeout); a queued job keeps running on the server", EXIT_TIMEOUT)

    def _connect(self, what: str) -> http.client.HTTPConnection:
        left = self._time_left(what)
        kind = http.client.HTTPSConnection if self._url.scheme == "https" else http.client.HTTPConnection
        try:
            connection = kind(self._url.hostname, self._url.port, timeout=min(self.request_timeout, left))
            connection.connect()
        except (OSError, ValueError) as error:
            raise QueueError(f"cannot reach ComfyUI at {self.server} ({_clip(error, 200)}). Is it running, and "
                             "started with --listen if it is on another machine?", EXIT_UNREACHABLE) from None
        return connection

    def _exchange(self, method: str, path: str, body: bytes | None, content_type: str | None,
                  receive: Callable) -> tuple[int, object]:
        """Send one request and hand the response to ``receive(response)``, all before the deadline."""
        what = f"{method} {path.split('?')[0]}"
        connection = self._connect(what)
        expired = threading.Event()

        def cut():
            expired.set()
            try:
                connection.sock and connection.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        watchdog = threading.Timer(self._time_left(what), cut)
        watchdog.daemon = True
        watchdog.start()
        try:
            headers = {"Content-Type": content_type} if content_type else {}
            connection.request(method, self._url.path + path, body=body, headers=headers)
            response = connection.getresponse()
            received = receive(response)
            if expired.is_set():  # cut off mid-reply: what came is not the whole answer
                raise TimeoutError()
            return response.status, received
        except (OSError, http.client.HTTPException) as error:
            if expired.is_set():
                raise self._timed_out(what) from None
            if isinstance(error, TimeoutError):
                raise QueueError(f"timed out: ComfyUI at {self.server} sent nothing for {self.request_timeout:g} s "
                                 f"during {what}", EXIT_TIMEOUT) from None
            raise QueueError(f"the connection to ComfyUI at {self.server} broke during {what} "
                             f"({_clip(error, 200) or type(error).__name__})", EXIT_UNREACHABLE) from None
        finally:
            watchdog.cancel()
            connection.close()

    @staticmethod
    def _read_limited(response, limit: int) -> bytes:
        chunks, size = [], 0
        while chunk := response.read(65536):
            size += len(chunk)
            if size > limit:
                raise _TooLarge()
            chunks.append(chunk)
        return b"".join(chunks)

    def _request(self, method: str, path: str, body: bytes | None = None,
                 content_type: str | None = None) -> tuple[int, bytes]:
        try:
            return self._exchange(method, path, body, content_type,
                                  lambda response: self._read_limited(response, JSON_REPLY_LIMIT))
        except _TooLarge:
            raise QueueError(f"ComfyUI at {self.server} answered {method} {path.split('?')[0]} with more than "
                             f"{JSON_REPLY_LIMIT // 2**20} MB; expected a short JSON reply", EXIT_FAILED) from None

    def _json(self, method: str, path: str, payload=None) -> tuple[int, object]:
        body = json.dumps(payload).encode() if payload is not None else None
        status, raw = self._request(method, path, body, "application/json" if body is not None else None)
        try:
            return status, json.loads(raw) if raw else None
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            return status, raw.decode("utf-8", "replace")

    # ------------------------------------------------------------------ the API

    def upload_image(self, path: str | Path) -> str:
        path = Path(path)
        if not path.is_file():
            raise QueueError(f"--image '{path}' does not exist", EXIT_USAGE)
        body, content_type = _multipart({"type": "input", "overwrite": "false"}, "image", path)
        status, raw = self._request("POST", "/upload/image", body, content_type)
        if status != 200:
            raise QueueError(f"the server refused the image upload (HTTP {status}): {_clip(raw.decode('utf-8', 'replace'))}",
                             EXIT_FAILED)
        try:
            answer = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            answer = None
        if not isinstance(answer, dict) or not isinstance(answer.get("name"), str) or not answer["name"]:
            raise QueueError(f"the server's answer to the image upload is {_clip(raw.decode('utf-8', 'replace'), 120)!r}; "
                             'expected JSON like {"name": "photo.jpg", "subfolder": "", "type": "input"}', EXIT_FAILED)
        subfolder = answer.get("subfolder")
        return f"{subfolder}/{answer['name']}" if isinstance(subfolder, str) and subfolder else answer["name"]

    def queue_prompt(self, prompt: dict) -> tuple[str, dict]:
        status, answer = self._json("POST", "/prompt", {"prompt": prompt, "client_id": self.client_id})
        if status == 200 and isinstance(answer, dict) and "prompt_id" in answer:
            dropped = answer.get("node_errors")
            return safe_prompt_id(answer["prompt_id"]), dropped if isinstance(dropped, dict) else {}
        if status >= 500 or status == 200:
            raise QueueError(f"the server failed to queue the workflow (HTTP {status}): {_clip(answer)}", EXIT_FAILED)
        raise QueueError(describe_rejection(answer, prompt, status), EXIT_REJECTED)

    def history(self, prompt_id: str) -> dict | None:
        status, answer = self._json("GET", f"/history/{urllib.parse.quote(prompt_id)}")
        if status != 200 or not isinstance(answer, dict):
            return None
        entry = answer.get(prompt_id)
        if entry is not None and not isinstance(entry, dict):
            raise QueueError(f"the server's history for {prompt_id} is {_clip(repr(entry), 80)}; expected an object "
                             "with status and outputs", EXIT_FAILED)
        return entry

    def queue_state(self, prompt_id: str) -> str:
        status, answer = self._json("GET", "/queue")
        if status != 200 or not isinstance(answer, dict):
            return "waiting"
        running = [i for i in answer.get("queue_running") or [] if isinstance(i, list)]
        pending = [i for i in answer.get("queue_pending") or [] if isinstance(i, list) and i]
        if any(len(item) > 1 and item[1] == prompt_id for item in running):
            return "running"
        pending.sort(key=lambda item: item[0] if isinstance(item[0], (int, float)) else 0)
        for ahead, item in enumerate(pending):
            if len(item) > 1 and item[1] == prompt_id:
                return f"queued ({ahead + len(running)} ahead)"
        return "waiting"

    def download(self, entry: dict, target: Path) -> Path:
        """Stream one /view file into ``target`` (never more than ``max_download_bytes``)."""
        query = urllib.parse.urlencode({"filename": entry["filename"], "subfolder": entry.get("subfolder", ""),
                                        "type": entry.get("type", "output")})
        partial = target.with_name(f".{uuid.uuid4().hex}.part")
        try:
            status, _ = self._exchange("GET", f"/view?{query}", None, None,
                                       lambda response: self._save(response, partial))
        except BaseException as error:  # a cut-off or refused download leaves nothing behind
            partial.unlink(missing_ok=True)
            if isinstance(error, _TooLarge):
                raise QueueError(f"the output {_clip(entry['filename'], 100)!r} is larger than --max-download-mb "
                                 f"{self.max_download_bytes / 2**20:g}; raise it to download this file", EXIT_FAILED) from None
            raise
        if status != 200:
            raise QueueError(f"downloading {_clip(entry['filename'], 100)!r} failed (HTTP {status})", EXIT_FAILED)
        os.replace(partial, target)
        return target

    def _save(self, response, partial: Path) -> int:
        if response.status != 200:
            return 0
        length = response.getheader("Content-Length", "")
        if length.isdigit() and int(length) > self.max_download_bytes:
            raise _TooLarge()
        written = 0
        with open(partial, "xb") as file:
            while chunk := response.read(2**18):
                written += len(chunk)
                if written > self.max_download_bytes:
                    raise _TooLarge()
                file.write(chunk)
        return written


# ----------------------------------------------------------------------------- errors


def _as_dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _as_list(value) -> list:
    return value if isinstance(value, list) else []


def _node_label(node_id: str, prompt: dict, class_type=None) -> str:
    class_type = class_type if isinstance(class_type, str) else _as_dict(prompt.get(node_id)).get("class_type", "?")
    return f"node {_clip(node_id, 40)} ({_clip(class_type, 80)})"


def describe_rejection(answer, prompt: dict, status: int) -> str:
    """ComfyUI's 400 answer to /prompt -> one line per problem."""
    if not isinstance(answer, dict):
        return f"the server refused the workflow (HTTP {status}): {_clip(answer)}"
    error = answer.get("error") or {}
    if not isinstance(error, dict):
        error = {"message": error}
    details = error.get("details")
    lines = [f"the server refused the workflow (HTTP {status}): {_clip(error.get('message', 'unknown error'))}"
             + (f" ({_clip(details)})" if details else "")]
    for node_id, problem in _as_dict(answer.get("node_errors")).items():
        problem = _as_dict(problem)
        label = _node_label(node_id, prompt, problem.get("class_type"))
        for item in filter(lambda item: isinstance(item, dict), _as_list(problem.get("errors"))):
            extra = _as_dict(item.get("extra_info"))
            name = f" input '{_clip(extra['input_name'], 80)}'" if extra.get("input_name") else ""
            lines.append(f"  {label}{name}: {_clip(item.get('details') or item.get('message', ''))}")
    return "\n".join(lines)


def _is_out_of_memory(data: dict) -> bool:
    text = f"{data.get('exception_type', '')} {data.get('exception_message', '')}".lower()
    return "outofmemory" in text.replace(" ", "").replace("_", "") or "out of memory" in text


def _events(status: dict):
    """(event, data) for each well-formed message of a history entry's status."""
    for message in _as_list(status.get("messages")):
        if isinstance(message, (list, tuple)) and message and isinstance(message[0], str):
            yield message[0], _as_dict(message[1]) if len(message) > 1 else {}


def check_finished(entry: dict, prompt: dict) -> None:
    """Raise the mapped QueueError when a finished history entry records a failure."""
    status = _as_dict(entry.get("status"))
    for event, data in _events(status):
        if event == "execution_interrupted":
            raise QueueError("the job was interrupted on the server", EXIT_INTERRUPTED)
        if event == "execution_error":
            label = (_node_label(str(data["node_id"]), prompt, data.get("node_type")) if data.get("node_id") is not None
                     else "the job")
            message = _clip(data.get("exception_message") or "").strip()
            if _is_out_of_memory(data):
                raise QueueError(f"out of GPU memory in {label}: {message}. Lower the size, frames or "
                                 "decode_chunk_size (--set decode_chunk_size=4), or start ComfyUI with --lowvram.",
                                 EXIT_OUT_OF_MEMORY)
            kind = _clip(data.get("exception_type") or "error", 80)
            raise QueueError(f"{label} failed: {kind}" + (f": {message}" if message else ""), EXIT_FAILED)
    if status.get("status_str") == "error":
        raise QueueError("the job failed on the server (no details were recorded)", EXIT_FAILED)


def output_entries(entry: dict) -> list[dict]:
    """Every file the job's output nodes reported (each once), with text filename, subfolder and type."""
    seen, files = set(), []
    for node_output in _as_dict(entry.get("outputs")).values():
        for items in _as_dict(node_output).values():
            for item in _as_list(items):
                if not isinstance(item, dict) or not isinstance(item.get("filename"), str):
                    continue
                item = {"filename": item["filename"], "subfolder": str(item.get("subfolder") or ""),
                        "type": str(item.get("type") or "output")}
                key = (item["type"], item["subfolder"], item["filename"])
                if key not in seen:
                    seen.add(key)
                    files.append(item)
    return files


def local_names(entries: list[dict]) -> list[str]:
    """A distinct safe file name per output: same-named files from different subfolders get ``_2``, ``_3``."""
    used, names = set(), []
    for item in entries:
        name = safe_file_name(item["filename"])
        stem, dot, suffix = name.rpartition(".")
        stem, suffix = (stem, dot + suffix) if dot and stem else (name, "")
        counter = 1
        while name.lower() in used:
            counter += 1
            name = f"{stem}_{counter}{suffix}"
        used.add(name.lower())
        names.append(name)
    return names


# ----------------------------------------------------------------------------- a job


@dataclass
class JobResult:
    prompt_id: str
    files: list[Path]


def wait_for(client: ComfyClient, prompt_id: str, prompt: dict, timeout: float, poll: float,
             say: Callable[[str], None]) -> dict:
    deadline = client.deadline if client.deadline is not None else time.monotonic() + timeout
    last_state = None
    while True:
        entry = client.history(prompt_id)
        if entry is not None:  # ComfyUI writes history when a prompt has finished, well or not
            check_finished(entry, prompt)
            return entry
        if time.monotonic() + min(poll, 0.01) > deadline:
            raise QueueError(f"gave up waiting after {timeout:g} s; the job {prompt_id} keeps running on the server",
                             EXIT_TIMEOUT)
        state = client.queue_state(prompt_id)
        if state != last_state:
            say(f"{prompt_id}: {state}")
            last_state = state
        time.sleep(max(0.0, min(poll, deadline - time.monotonic())))


def _job_folder(out_dir: str | Path, prompt_id: str) -> Path:
    out = Path(out_dir)
    folder = out / prompt_id
    folder.mkdir(parents=True, exist_ok=True)
    if folder.is_symlink() or folder.resolve().parent != out.resolve():
        raise QueueError(f"'{folder}' is a link out of --out '{out}'; expected a plain folder", EXIT_USAGE)
    return folder


def run_job(server: str, workflow_path: str | Path, image: str | Path | None, overrides: Iterable[str],
            out_dir: str | Path, timeout: float = 3600, poll: float = 1.0, image_node: str | None = None,
            say: Callable[[str], None] = print, max_download_mb: float = DEFAULT_MAX_DOWNLOAD_MB) -> JobResult:
    if not timeout > 0 or not max_download_mb > 0:
        raise QueueError("--timeout and --max-download-mb must be positive numbers", EXIT_USAGE)
    workflow = load_api_workflow(workflow_path)
    apply_overrides(workflow, overrides)
    client = ComfyClient(server, deadline=time.monotonic() + timeout, max_download_bytes=int(max_download_mb * 2**20))
    if image is not None:
        uploaded = client.upload_image(image)
        node = set_input_image(workflow, uploaded, image_node)
        say(f"uploaded {Path(image).name} as '{_clip(uploaded, 100)}' for node {node}")
    prompt_id, dropped = client.queue_prompt(workflow)
    for node_id in dropped:
        say(f"warning: {_node_label(node_id, workflow)} failed validation; outputs depending on it are skipped")
    say(f"queued as {prompt_id}")
    entry = wait_for(client, prompt_id, workflow, timeout, poll, say)
    entries = output_entries(entry)
    folder = _job_folder(out_dir, prompt_id) if entries else Path(out_dir) / prompt_id
    files = []
    for item, name in zip(entries, local_names(entries)):
        files.append(client.download(item, folder / name))
        origin = "/".join(filter(None, (item["subfolder"], item["filename"])))
        say(f"saved {files[-1]}" + ("" if origin == name else f" (the server's {_clip(origin, 120)})"))
    if not files:
        say("the job finished but reported no output files")
    return JobResult(prompt_id, files)


# ----------------------------------------------------------------------------- CLI


def _run(args) -> int:
    try:
        run_job(args.server, args.workflow, args.image, args.set or [], args.out, args.timeout, args.poll, args.image_node,
                max_download_mb=args.max_download_mb)
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
    parser.add_argument("--timeout", type=float, default=3600,
                        help="seconds the whole job may take: upload, queue, wait and downloads (default %(default)s)")
    parser.add_argument("--max-download-mb", type=float, default=DEFAULT_MAX_DOWNLOAD_MB,
                        help="refuse an output file larger than this many MB (default %(default)s)")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between status checks (default %(default)s)")
    parser.set_defaults(run=_run)
