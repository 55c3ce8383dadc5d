"""Run `tasktide dev` as a subprocess for end-to-end tests (k6 smoke runs, the Prometheus scrape test).

Consumes: the `tasktide` console script of the running interpreter's environment and a scratch directory.
Emits: a :class:`DevServer` on a free loopback port with a temporary SQLite database, every PingSource
ticking each second and its own JWT secret; its log file explains failures.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tasktide.api.auth import encode_token

# Variables of the caller's environment that would turn the embedded default into something else.
_FOREIGN_ENV = (
    "TASKTIDE_KAFKA_BOOTSTRAP",
    "TASKTIDE_DATABASE_URL",
    "TASKTIDE_PUBLIC_URL",
    "DAPR_HTTP_PORT",
    "DAPR_GRPC_PORT",
    "PROMETHEUS_MULTIPROC_DIR",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tasktide_executable() -> str:
    beside = Path(sys.executable).with_name("tasktide")
    found = str(beside) if beside.exists() else shutil.which("tasktide")
    if found is None:
        raise RuntimeError("the tasktide console script is not installed (pip install -e .)")
    return found


@dataclass(frozen=True)
class DevServer:
    base_url: str
    jwt_secret: str
    log_path: Path

    def token(self, user_id: str) -> str:
        return encode_token(user_id, self.jwt_secret)

    def headers(self, user_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user_id)}"}

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _wait_ready(process: subprocess.Popen[bytes], url: str, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"tasktide dev exited with {process.returncode}:\n{log_path.read_text()[-4000:]}"
            )
        try:
            if httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"tasktide dev not ready after {timeout}s:\n{log_path.read_text()[-4000:]}")


@contextmanager
def run_dev_server(
    workdir: Path, *, ready_timeout: float = 60.0, env: Mapping[str, str] | None = None
) -> Iterator[DevServer]:
    """Start `tasktide dev --ping-every 1s` on a temp SQLite database (``env`` added to its environment);
    stop it (and wait) on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    secret = f"test-dev-server-{os.getpid()}-{port}-0123456789abcdef"
    child_env = {k: v for k, v in os.environ.items() if k not in _FOREIGN_ENV}
    child_env["TASKTIDE_JWT_SECRET"] = secret
    child_env["TASKTIDE_WEBHOOK_ALLOW_LOCAL"] = "true"  # test receivers listen on http://127.0.0.1
    child_env.update(env or {})
    log_path = workdir / "dev.log"
    argv = [
        tasktide_executable(),
        "dev",
        "--port",
        str(port),
        "--database-url",
        f"sqlite:///{workdir / 'tasktide.db'}",
        "--ping-every",
        "1s",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=child_env, cwd=workdir)
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(process, base_url, log_path, ready_timeout)
        yield DevServer(base_url, secret, log_path)
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
