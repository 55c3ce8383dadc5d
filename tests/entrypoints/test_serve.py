"""The container entrypoint `tasktide serve`, run exactly as the image runs it (outside Docker)."""

from __future__ import annotations

import gc
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from tasktide.db.migrate import upgrade
from tasktide.domain.tasks import new_task
from tasktide.entrypoints import serve as serve_module
from tasktide.entrypoints.serve import command
from tasktide.messaging.events import TASK_CREATED, task_envelope

TASKTIDE = str(Path(sys.executable).with_name("tasktide"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(url: str, proc: subprocess.Popen[bytes], method: str = "GET") -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else "exited"
        try:
            httpx.request(method, url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"{url} never answered")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    upgrade(url)
    return url


def serve(env: dict[str, str]) -> subprocess.Popen[bytes]:
    path = os.environ["PATH"]
    inherited = {k: v for k, v in os.environ.items() if k != "TASKTIDE_HOST"}  # loopback, the default
    full = {**inherited, "PATH": f"{Path(sys.executable).parent}:{path}", **env}
    return subprocess.Popen([TASKTIDE, "serve"], env=full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.fixture
def running() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        proc.terminate()
        proc.wait(10)


def test_serve_command_function_target_runs_gunicorn_function_app() -> None:
    argv = command({"FUNCTION_TARGET": "audit", "PORT": "9000"})
    assert argv[:2] == ["gunicorn", "tasktide.functions._server:asgi_app_from_env()"]
    assert argv[argv.index("--bind") + 1] == "127.0.0.1:9000"
    assert argv[argv.index("--worker-class") + 1] == "tasktide.functions._worker.FunctionWorker"
    api = command({"PORT": "9000"})
    assert api[:3] == [sys.executable, "-m", "tasktide.entrypoints.apiserver"]
    assert api[api.index("--workers") + 1] == "2"


@pytest.mark.parametrize(("preset", "expected"), [(None, "__all__"), ("logfire", "logfire")])
def test_serve_pydantic_plugins_disabled_unless_set(
    monkeypatch: pytest.MonkeyPatch, preset: str | None, expected: str
) -> None:
    """pydantic's plugin scan costs a cold start about 20 ms: `tasktide serve` turns it off, unless the
    operator chose plugins."""
    monkeypatch.setenv("PYDANTIC_DISABLE_PLUGINS", preset or "")  # restored (or removed) after the test
    if preset is None:
        monkeypatch.delenv("PYDANTIC_DISABLE_PLUGINS")
    monkeypatch.delenv("FUNCTION_TARGET", raising=False)
    seen: dict[str, str | None] = {}
    monkeypatch.setattr(
        serve_module.os, "execvp", lambda *_: seen.update(value=os.environ.get("PYDANTIC_DISABLE_PLUGINS"))
    )
    serve_module.serve()
    assert seen == {"value": expected}


def test_serve_function_target_builds_the_app_with_collection_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """gunicorn builds the app with cyclic collection off (its `when_ready` hook turns it back on)."""
    import gunicorn.app.wsgiapp  # type: ignore[import-untyped]

    monkeypatch.setenv("FUNCTION_TARGET", "audit")
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    seen: list[bool] = []
    monkeypatch.setattr(gunicorn.app.wsgiapp, "run", lambda: seen.append(gc.isenabled()))
    try:
        serve_module.serve()
    finally:
        gc.enable()
    assert seen == [False]
    assert sys.argv[:2] == ["gunicorn", "tasktide.functions._server:asgi_app_from_env()"]


def test_serve_command_without_host_env_binds_loopback() -> None:
    for env in ({"PORT": "9000"}, {"PORT": "9000", "FUNCTION_TARGET": "audit"}):
        argv = command(env)
        bind = argv[argv.index("--host") + 1] if "--host" in argv else argv[argv.index("--bind") + 1]
        assert bind.split(":")[0] == "127.0.0.1"


def test_serve_command_host_env_sets_bind_address() -> None:
    argv = command({"PORT": "9000", "FUNCTION_TARGET": "audit", "TASKTIDE_HOST": "0.0.0.0"})
    assert argv[argv.index("--bind") + 1] == "0.0.0.0:9000"
    argv = command({"PORT": "9000", "TASKTIDE_HOST": "0.0.0.0"})
    assert argv[argv.index("--host") + 1] == "0.0.0.0"


def test_serve_image_sets_host_env_to_all_interfaces() -> None:
    dockerfile = (Path(__file__).resolve().parents[2] / "Dockerfile").read_text()
    assert "TASKTIDE_HOST=0.0.0.0" in dockerfile


def test_serve_function_target_audit_answers_cloudevent_2xx(
    sqlite_url: str, running: list[subprocess.Popen[bytes]]
) -> None:
    port = free_port()
    proc = serve({"FUNCTION_TARGET": "audit", "PORT": str(port), "TASKTIDE_DATABASE_URL": sqlite_url})
    running.append(proc)
    wait_until_up(f"http://127.0.0.1:{port}/healthz", proc)
    assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()["function"] == "audit"
    task = new_task("alice", {"title": "served"}, now=datetime.now(UTC), task_id=uuid.uuid4())
    event = task_envelope(TASK_CREATED, task).to_json()
    response = httpx.post(
        f"http://127.0.0.1:{port}/",
        content=json.dumps(event),
        headers={"content-type": "application/cloudevents+json"},
        timeout=10,
    )
    assert 200 <= response.status_code < 300, response.text
    engine = create_engine(sqlite_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT type, task_id FROM audit_log")).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [(TASK_CREATED, str(task.id))]
    scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert 'tasktide_events_consumed_total{function="audit"' in scraped
    proc.terminate()
    output, _ = proc.communicate(timeout=10)
    lines = [json.loads(line) for line in output.decode().splitlines() if line.startswith("{")]
    mine = [line for line in lines if line.get("ce_id") == event["id"]]
    assert mine and all(line["function"] == "audit" and line["task_id"] == str(task.id) for line in mine)


def test_serve_without_target_serves_the_api(sqlite_url: str, running: list[subprocess.Popen[bytes]]) -> None:
    port = free_port()
    env = {"PORT": str(port), "TASKTIDE_DATABASE_URL": sqlite_url, "TASKTIDE_JWT_SECRET": "s" * 32}
    proc = serve(env)
    running.append(proc)
    wait_until_up(f"http://127.0.0.1:{port}/healthz", proc)
    # Every worker of the API answers on the port (SO_REUSEPORT); one may still be starting.
    deadline = time.monotonic() + 30
    ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
    while ready.status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready"}
    assert httpx.get(f"http://127.0.0.1:{port}/api/alice/tasks", timeout=5).status_code == 401


def test_serve_function_slow_bodies_answered_408_without_starving_threads(
    sqlite_url: str, running: list[subprocess.Popen[bytes]]
) -> None:
    """Issue 12 finding 5 (slowloris): more slow-body connections than threads; a normal event still gets
    through while they hang, each slow one is answered 408 at the body deadline. Every log line is JSON."""
    port = free_port()
    env = {
        "FUNCTION_TARGET": "audit",
        "PORT": str(port),
        "TASKTIDE_DATABASE_URL": sqlite_url,
        "TASKTIDE_THREADS": "2",
        "TASKTIDE_BODY_READ_TIMEOUT": "3",
    }
    proc = serve(env)
    running.append(proc)
    wait_until_up(f"http://127.0.0.1:{port}/healthz", proc)
    slow = []
    for _ in range(6):
        sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: fn\r\ncontent-type: application/cloudevents+json\r\n"
            b"content-length: 500\r\n\r\n{"
        )
        slow.append(sock)
    try:
        task = new_task("alice", {"title": "not starved"}, now=datetime.now(UTC), task_id=uuid.uuid4())
        event = task_envelope(TASK_CREATED, task).to_json()
        response = httpx.post(
            f"http://127.0.0.1:{port}/",
            content=json.dumps(event),
            headers={"content-type": "application/cloudevents+json"},
            timeout=10,
        )
        assert 200 <= response.status_code < 300, response.text
        for sock in slow:
            assert sock.recv(4096).startswith(b"HTTP/1.1 408 ")
    finally:
        for sock in slow:
            sock.close()
    proc.terminate()
    output, _ = proc.communicate(timeout=10)
    lines = [line for line in output.decode().splitlines() if line.strip()]
    assert lines and all(json.loads(line)["function"] == "audit" for line in lines), lines[:5]


@pytest.fixture
def api_env(monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> Iterator[pytest.MonkeyPatch]:
    from tasktide.settings import get_settings

    monkeypatch.setenv("TASKTIDE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("TASKTIDE_JWT_SECRET", "s" * 32)
    monkeypatch.setenv("TASKTIDE_KAFKA_BOOTSTRAP", "127.0.0.1:9")  # never reached: nothing connects here
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_api_app_kafka_set_runs_no_relay_and_no_follower(api_env: pytest.MonkeyPatch) -> None:
    from tasktide.entrypoints.serve import api_app

    app = api_app()
    services = app.state.services
    try:
        assert services.relay is None and services.relay_worker is None and services.after_commit == []
        assert app.state.hub._on_first_subscriber is not None  # the follower waits for an SSE client
        assert not [t for t in threading.enumerate() if t.name.startswith("follow-")]
    finally:
        services.close()


def test_api_app_relay_in_process_setting_runs_the_relay(api_env: pytest.MonkeyPatch) -> None:
    from tasktide.db.outbox import HANDOFF_INFO
    from tasktide.entrypoints.serve import api_app

    api_env.setenv("TASKTIDE_RELAY_IN_PROCESS", "true")
    services = api_app().state.services
    try:
        assert services.relay is not None and services.relay_worker is not None
        assert services.sessions.kw["info"][HANDOFF_INFO] is services.relay_worker  # commits handed off
    finally:
        services.close()
