"""A loopback stand-in for ComfyUI's HTTP API (the subset the queue client uses), for tests.

Routes as ComfyUI's ``server.py`` answers them: ``POST /upload/image`` (multipart; renames
duplicates ``name (1).ext``), ``POST /prompt`` (200 ``{prompt_id, number, node_errors}`` or 400
``{error, node_errors}``), ``GET /queue``, ``GET /history/<id>`` (``{}`` until the job is done),
``GET /view``. ``behaviour`` picks what a queued job does: "ok", "reject", "oom", "error",
"interrupt". A finished "ok" job "writes" one file per output node (the node's class and the
values it received), so tests can see what the server got.

Hostile servers for the client's defences: "silent_error" (status error, no messages),
"bare_error" (a message ``["execution_error"]``), "history_string", "prompt_500", "reject_int_error"
(400 ``{"error": 5}``), "upload_not_json", "upload_no_name", "hang_prompt", "drip_prompt",
"drip_view" (one byte every ``drip_seconds``), "same_names" (one name in two subfolders),
"big_output" (``output_bytes`` per file); ``prompt_id`` forces the id the server answers with.
"""

from __future__ import annotations

import json
import threading
import uuid
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

OUTPUT_NODES = {"AnimateSuiteSaveLivePhoto": (".jpg", ".mov"), "AnimateSuiteSaveAnimation": (".gif",), "SaveImage": (".png",)}


class FakeComfy:
    def __init__(self, behaviour: str = "ok", polls_until_done: int = 2, prompt_id: object = None,
                 drip_seconds: float = 0.2, output_bytes: int = 0):
        self.behaviour = behaviour
        self.forced_prompt_id = prompt_id
        self.drip_seconds = drip_seconds
        self.big_content = b"x" * output_bytes  # made once, so a test can trace the client's memory alone
        self.closing = threading.Event()
        self.polls_until_done = polls_until_done
        self.uploads: dict[str, bytes] = {}
        self.prompts: dict[str, dict] = {}
        self.polls: dict[str, int] = {}
        self.files: dict[tuple[str, str], bytes] = {}
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.timeout = 5
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    # ------------------------------------------------------------------ behaviour

    def upload(self, filename: str, data: bytes) -> str:
        with self.lock:
            name, counter = filename, 1
            while name in self.uploads and self.uploads[name] != data:
                stem, dot, ext = filename.rpartition(".")
                name = f"{stem} ({counter}).{ext}" if dot else f"{filename} ({counter})"
                counter += 1
            self.uploads[name] = data
            return name

    def queue(self, body: dict) -> tuple[int, dict]:
        prompt = body.get("prompt")
        if not body.get("client_id"):
            return 400, {"error": {"type": "no_client", "message": "test server requires client_id"}, "node_errors": {}}
        if not isinstance(prompt, dict) or not prompt:
            return 400, {"error": {"type": "no_prompt", "message": "No prompt provided", "details": ""}, "node_errors": {}}
        if self.behaviour == "reject":
            return 400, {
                "error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
                          "details": "", "extra_info": {}},
                "node_errors": {"3": {"errors": [{"type": "value_smaller_than_min", "message": "Value smaller than min",
                                                  "details": "steps: 0 < min 1",
                                                  "extra_info": {"input_name": "steps", "received_value": 0}}],
                                      "dependent_outputs": ["5"], "class_type": "AnimateSuiteSVDImageToVideo"}},
            }
        if self.behaviour == "prompt_500":
            return 500, {"error": "Internal Server Error"}
        if self.behaviour == "reject_int_error":
            return 400, {"error": 5}
        prompt_id = str(uuid.uuid4()) if self.forced_prompt_id is None else self.forced_prompt_id
        with self.lock:
            self.prompts[prompt_id] = body
            self.polls[prompt_id] = 0
        return 200, {"prompt_id": prompt_id, "number": len(self.prompts), "node_errors": {}}

    def history(self, prompt_id: str) -> dict:
        with self.lock:
            prompt_id = next((pid for pid in self.prompts if str(pid) == prompt_id), prompt_id)
            if prompt_id not in self.prompts:
                return {}
            self.polls[prompt_id] += 1
            if self.polls[prompt_id] < self.polls_until_done:
                return {}
        prompt = self.prompts[prompt_id]["prompt"]
        messages = [["execution_start", {"prompt_id": prompt_id}]]
        if self.behaviour == "history_string":
            return {prompt_id: "done"}
        if self.behaviour in ("silent_error", "bare_error"):
            messages = [] if self.behaviour == "silent_error" else [["execution_error"]]
            return {prompt_id: {"outputs": {}, "status": {"status_str": "error", "completed": False, "messages": messages}}}
        if self.behaviour in ("oom", "error", "interrupt"):
            node_id = next(n for n, node in prompt.items() if node["class_type"] not in ("LoadImage",))
            if self.behaviour == "interrupt":
                messages.append(["execution_interrupted", {"prompt_id": prompt_id, "node_id": node_id}])
            else:
                kind, text = (("OutOfMemoryError", "Allocation on device") if self.behaviour == "oom"
                              else ("ValueError", "something broke"))
                messages.append(["execution_error", {
                    "prompt_id": prompt_id, "node_id": node_id, "node_type": prompt[node_id]["class_type"],
                    "executed": [], "exception_message": text, "exception_type": kind, "traceback": ["..."],
                    "current_inputs": {}, "current_outputs": {}}])
            return {prompt_id: {"prompt": [1, prompt_id, prompt, {}, []], "outputs": {},
                                "status": {"status_str": "error", "completed": False, "messages": messages}}}
        outputs = {}
        for node_id, node in prompt.items():
            suffixes = OUTPUT_NODES.get(node["class_type"])
            if not suffixes:
                continue
            entries = []
            for suffix in suffixes:
                name = f"{node['inputs'].get('filename_prefix', 'out').split('/')[-1]}_00001_{suffix}"
                subfolder = f"AnimateSuite/{node_id}" if self.behaviour == "same_names" else "AnimateSuite"
                name = "same.png" if self.behaviour == "same_names" else name
                content = json.dumps({"class_type": node["class_type"], "inputs": node["inputs"], "file": name,
                                      "subfolder": subfolder}).encode()
                if self.behaviour == "big_output":
                    content = self.big_content
                with self.lock:
                    self.files[(subfolder, name)] = content
                entries.append({"filename": name, "subfolder": subfolder, "type": "output"})
            outputs[node_id] = {"images": entries[:1], "live_photo": entries} if len(entries) > 1 else {"images": entries}
        messages.append(["execution_success", {"prompt_id": prompt_id}])
        return {prompt_id: {"prompt": [1, prompt_id, prompt, {}, list(outputs)], "outputs": outputs,
                            "status": {"status_str": "success", "completed": True, "messages": messages}}}

    def queue_state(self) -> dict:
        with self.lock:
            running = [[1, pid, {}, {}, []] for pid, polls in self.polls.items() if polls < self.polls_until_done]
        return {"queue_running": running[:1], "queue_pending": running[1:]}

    # ------------------------------------------------------------------ HTTP

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, payload, content_type="application/json", length=True):
                body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                if length:  # without it the body ends when the connection closes (HTTP/1.0)
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _drip(self, status: int, payload):
                body = json.dumps(payload).encode() if not isinstance(payload, bytes) else payload
                reply = (f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(body)}\r\n\r\n").encode() + body
                for byte in reply:
                    if fake.closing.wait(fake.drip_seconds):
                        return
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length", 0)))

            def do_POST(self):
                path = urlparse(self.path).path
                if path == "/upload/image":
                    message = BytesParser().parsebytes(
                        f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + self._body())
                    parts = {p.get_param("name", header="content-disposition"): p for p in message.get_payload()}
                    if "image" not in parts:
                        return self._send(400, {"error": "no image"})
                    image = parts["image"]
                    name = fake.upload(image.get_filename(), image.get_payload(decode=True))
                    if fake.behaviour == "upload_not_json":
                        return self._send(200, b"<html>uploaded</html>", "text/html")
                    if fake.behaviour == "upload_no_name":
                        return self._send(200, {"subfolder": "", "type": "input"})
                    return self._send(200, {"name": name, "subfolder": "", "type": "input"})
                if path == "/prompt":
                    status, answer = fake.queue(json.loads(self._body() or b"{}"))
                    if fake.behaviour == "hang_prompt":
                        fake.closing.wait(60)
                        return None
                    if fake.behaviour == "drip_prompt":
                        return self._drip(status, answer)
                    return self._send(status, answer)
                self._send(404, {"error": "not found"})

            def do_GET(self):
                url = urlparse(self.path)
                if url.path.startswith("/history/"):
                    return self._send(200, fake.history(url.path[len("/history/"):]))
                if url.path == "/queue":
                    return self._send(200, fake.queue_state())
                if url.path == "/view":
                    query = {k: v[0] for k, v in parse_qs(url.query).items()}
                    content = fake.files.get((query.get("subfolder", ""), query.get("filename", "")))
                    if content is None or query.get("type") != "output":
                        return self._send(404, {"error": "no such file"})
                    if fake.behaviour == "drip_view":
                        return self._drip(200, content)
                    return self._send(200, content, "application/octet-stream", length=fake.behaviour != "big_output")
                self._send(404, {"error": "not found"})

        return Handler
