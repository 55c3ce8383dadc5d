"""End-to-end helpers: processes, bounded polling, a public-API client and recording webhook/SMTP servers.

Consumes nothing at import. Emits: `Proc` (a started `tasktide` subprocess), `UserApi` (one user's view of
the HTTP API), `WebhookRecorder` (a tiny HTTP server recording requests), `MailRecorder` (a real aiosmtpd
SMTP server recording messages), `SseReader` (a `GET /api/{user}/stream` consumer in a thread) and
CloudEvent builders for the `task.completed` event.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
from aiosmtpd.controller import Controller

from tasktide.api.auth import encode_token
from tasktide.edges import senderauth
from tests.testenv import JWT_SECRET as JWT_SECRET
from tests.testenv import fresh_database as fresh_database
from tests.testenv import require_env as require_env

T = TypeVar("T")


VENV_BIN = Path(sys.executable).parent
TASKTIDE = str(VENV_BIN / "tasktide")
COMPLETED = "com.tasktide.task.completed"
# `tasktide dev` signs its deliveries with this key (TASKTIDE_EVENT_SIGNING_KEY) and every function verifies
# them; a test posting to /services/<name> itself signs as the router does (sender_headers).
EVENT_SIGNING_KEY = "e2e-event-signing-key-0123456789abcdef"


def sender_headers(service: str) -> dict[str, str]:
    """The router's ``Authorization`` for a delivery to the function Service ``service``."""
    audience = senderauth.service_audience(service, "tasktide")
    return {"Authorization": f"Bearer {senderauth.sign(EVENT_SIGNING_KEY, audience)}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(probe: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.25) -> T:
    """Poll `probe` until it returns something truthy (returned), or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last value: {last!r}")
        time.sleep(interval)


def holds_for(check: Callable[[], None], *, seconds: float, interval: float = 0.5) -> None:
    """Run the assertion `check` repeatedly for `seconds` (a settle window): it must hold every time."""
    deadline = time.monotonic() + seconds
    while True:
        check()
        if time.monotonic() >= deadline:
            return
        time.sleep(interval)


# -- processes ---------------------------------------------------------------------------------------


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The parent's environment minus every TASKTIDE_* / Knative variable, plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TASKTIDE_", "DAPR_")) and k not in ("PORT", "FUNCTION_TARGET")
    }
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


@dataclass
class Proc:
    """A started subprocess whose output goes to `log_path`."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "<no log>"

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the process, then anything left of its process group (a gunicorn worker the master was
        still respawning when it was told to stop would otherwise outlive it)."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)  # its own group: start_process starts a new session


def start_process(name: str, argv: Sequence[str], env: Mapping[str, str], workdir: Path) -> Proc:
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{name}.log"
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Proc(name, popen, log_path)


def wait_until_serving(proc: Proc, url: str, *, timeout: float, ok: Callable[[int], bool]) -> None:
    """Poll `url` until its status satisfies `ok`; fail early (with the log) if the process exits."""

    def probe() -> bool:
        if proc.popen.poll() is not None:
            raise AssertionError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
        try:
            return ok(httpx.get(url, timeout=2.0).status_code)
        except httpx.TransportError:
            return False

    try:
        wait_for(probe, timeout=timeout, what=f"{proc.name} to serve {url}")
    except AssertionError:
        proc.stop()
        raise AssertionError(f"{proc.name} did not come up at {url}:\n{proc.log_tail()}") from None


# -- the public API ----------------------------------------------------------------------------------


@dataclass
class UserApi:
    """One user's client of the task API (bearer token minted with the server's JWT secret)."""

    base_url: str
    user: str
    jwt_secret: str
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        token = encode_token(self.user, self.jwt_secret)
        self.client = httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=15.0
        )

    @property
    def token(self) -> str:
        return self.client.headers["Authorization"].removeprefix("Bearer ")

    def _json(self, response: httpx.Response, expected: int) -> Any:
        assert response.status_code == expected, (
            f"{response.request.url}: {response.status_code} {response.text}"
        )
        return response.json()

    def create_task(self, **body: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._json(self.client.post(f"/api/{self.user}/tasks", json=body), 201)
        return result

    def patch_task(self, task_id: str, **patch: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._json(
            self.client.patch(f"/api/{self.user}/tasks/{task_id}", json=patch), 200
        )
        return result

    def complete(self, task_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json(
            self.client.patch(f"/api/{self.user}/tasks/{task_id}/complete", json={"completed": True}), 200
        )
        return result

    def tasks(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._json(
            self.client.get(f"/api/{self.user}/tasks", params={"limit": 200}), 200
        )
        return result

    def occurrences(self, series_id: str, occurrence: int) -> list[dict[str, Any]]:
        return [t for t in self.tasks() if t["series_id"] == series_id and t["occurrence"] == occurrence]

    def history(self, task_id: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._json(
            self.client.get(f"/api/{self.user}/tasks/{task_id}/history"), 200
        )
        return result

    def notifications(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._json(self.client.get(f"/api/{self.user}/notifications"), 200)
        return result

    def put_notification_settings(self, **body: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._json(
            self.client.put(f"/api/{self.user}/notification-settings", json=body), 200
        )
        return result

    def close(self) -> None:
        self.client.close()


@dataclass(frozen=True)
class DevServer:
    """A running `tasktide dev`; `timeout` bounds every wait on its event pipeline."""

    mode: str
    base_url: str
    database_url: str
    timeout: float
    proc: Proc
    webhook: WebhookRecorder
    mail: MailRecorder
    webhook_secret: str
    jwt_secret: str

    def api(self, user: str) -> UserApi:
        return UserApi(self.base_url, user, self.jwt_secret)


def unique_user(prefix: str) -> str:
    return f"e2e-{prefix}-{uuid.uuid4().hex[:12]}"


# -- CloudEvents -------------------------------------------------------------------------------------


def completed_data(task: Mapping[str, Any], actor: str) -> dict[str, Any]:
    """`data` of a `task.completed` event (TaskEventData) built from the task's public JSON."""
    snapshot = {k: v for k, v in task.items() if k != "completed"}
    return {"task": snapshot, "changed": ["status", "completed_at"], "actor": actor}


def completed_structured(event_id: str, task: Mapping[str, Any], actor: str) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "type": COMPLETED,
        "source": "/tasktide/api",
        "subject": task["id"],
        "time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "partitionkey": task["id"],
        "data": completed_data(task, actor),
    }


def completed_binary(event_id: str, task: Mapping[str, Any], actor: str) -> tuple[dict[str, str], bytes]:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-type": COMPLETED,
        "ce-source": "/tasktide/api",
        "ce-subject": str(task["id"]),
        "ce-partitionkey": str(task["id"]),
        "content-type": "application/json",
    }
    return headers, json.dumps(completed_data(task, actor)).encode()


def ping_binary() -> tuple[dict[str, str], bytes]:
    """A PingSource tick, as the `reminders-tick` PingSource sends it."""
    headers = {
        "ce-specversion": "1.0",
        "ce-id": str(uuid.uuid4()),
        "ce-type": "dev.knative.sources.ping",
        "ce-source": "/apis/v1/namespaces/default/pingsources/e2e-second-scanner",
        "content-type": "application/json",
    }
    return headers, b'{"job": "reminders-tick"}'


# -- recording servers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: bytes


class WebhookRecorder:
    """A tiny HTTP server on 127.0.0.1 that answers 204 and records every POST."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[RecordedRequest] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                with recorder.lock:
                    recorder.requests.append(
                        RecordedRequest(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port: int = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="webhook-recorder", daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def received(self, path: str) -> list[RecordedRequest]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass(frozen=True)
class Mail:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    subject: str
    body: str


class _MailHandler:
    def __init__(self, sink: MailRecorder) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content)
        payload = message.get_payload(decode=True)
        body = payload.decode(errors="replace") if isinstance(payload, bytes) else str(message.get_payload())
        mail = Mail(envelope.mail_from, tuple(envelope.rcpt_tos), str(message["Subject"]), body)
        with self.sink.lock:
            self.sink.messages.append(mail)
        return "250 Message accepted for delivery"


class MailRecorder:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 recording every message it accepts."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[Mail] = []
        self.port = free_port()
        self.controller = Controller(_MailHandler(self), hostname="127.0.0.1", port=self.port)

    def to(self, address: str) -> list[Mail]:
        with self.lock:
            return [m for m in self.messages if address in m.rcpt_tos]

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


# -- Server-Sent Events ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SseEvent:
    id: str
    type: str
    data: dict[str, Any]

    @property
    def task_id(self) -> str | None:
        task = self.data.get("task")
        return str(task["id"]) if isinstance(task, dict) and "id" in task else None

    @property
    def user_id(self) -> str | None:
        task = self.data.get("task")
        user = task.get("user_id") if isinstance(task, dict) else self.data.get("user_id")
        return str(user) if user is not None else None


class SseReader:
    """Reads `GET /api/{user}/stream` (bearer token) in a daemon thread, collecting parsed events."""

    def __init__(self, base_url: str, user: str, token: str) -> None:
        self.url = f"{base_url}/api/{user}/stream"
        self.token = token
        self.lock = threading.Lock()
        self.events: list[SseEvent] = []
        self.status: int | None = None
        self.error: BaseException | None = None
        self._client = httpx.Client(timeout=httpx.Timeout(10.0, read=None))
        self._response: httpx.Response | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sse-{user}", daemon=True)

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "text/event-stream"}
        try:
            with self._client.stream("GET", self.url, headers=headers) as response:
                self._response, self.status = response, response.status_code
                fields: dict[str, str] = {}
                for line in response.iter_lines():
                    if self._stop.is_set():
                        return
                    if line == "":
                        self._emit(fields)
                        fields = {}
                    elif not line.startswith(":"):
                        name, _, value = line.partition(":")
                        fields[name] = fields.get(name, "") + value.removeprefix(" ")
        except BaseException as exc:  # closed from stop(), or a genuine failure reported by seen()
            if not self._stop.is_set():
                self.error = exc

    def _emit(self, fields: dict[str, str]) -> None:
        if "data" not in fields:
            return
        data = json.loads(fields["data"])
        with self.lock:
            self.events.append(SseEvent(fields.get("id", ""), fields.get("event", "message"), data))

    def start(self) -> SseReader:
        self._thread.start()
        return self

    def seen(self) -> list[SseEvent]:
        if self.error is not None:
            raise AssertionError(f"SSE stream {self.url} failed: {self.error!r}")
        with self.lock:
            return list(self.events)

    def stop(self) -> None:
        self._stop.set()
        if self._response is not None:  # shut the socket down: that unblocks the reader's pending read
            stream = self._response.extensions.get("network_stream")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._client.close()
        self._thread.join(5)


def iter_types(events: Sequence[SseEvent], task_id: str) -> Iterator[str]:
    return (e.type for e in events if e.task_id == task_id)
