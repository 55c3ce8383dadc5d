"""Run a real ``daprd`` self-hosted, on loopback only: the launcher behind the real-sidecar tests,
``tasktide dapr-run`` and the Dapr benchmarks.

Consumes: the daprd binary (env ``TASKTIDE_DAPRD``, else what ``.ci/daprd.sh path`` prints), a resources
directory and a Configuration file (see ``tasktide.dapr.selfhosted``).
Emits: ``Daprd`` (start / wait for ``/v1.0/healthz`` / stop by PID) and ``free_port``.

Every listener daprd opens is pinned to 127.0.0.1: the public API (``--dapr-listen-addresses``), the
internal gRPC API (``--dapr-internal-grpc-listen-address``) and metrics (``--metrics-listen-address``, or
``--enable-metrics=false``; its default is 0.0.0.0:9090). Name resolution must be set in the
Configuration (``selfhosted.configuration``): daprd's self-hosted default, mDNS, multicasts on 5353.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tasktide.settings import REPO_ROOT

LOOPBACK = "127.0.0.1"
DAPRD_SCRIPT = REPO_ROOT / ".ci" / "daprd.sh"


class DaprdError(RuntimeError):
    """daprd is missing, exited early or never became healthy (the message carries its log tail)."""


def daprd_binary(*, build: bool = False) -> Path:
    """``TASKTIDE_DAPRD`` if set, else ``.ci/daprd.sh path`` (``install`` builds it first when ``build``)."""
    configured = os.environ.get("TASKTIDE_DAPRD")
    if configured:
        return Path(configured)
    verb = "install" if build else "path"
    result = subprocess.run(["bash", str(DAPRD_SCRIPT), verb], check=True, capture_output=True, text=True)
    return Path(result.stdout.strip().splitlines()[-1])


def free_port(host: str = LOOPBACK) -> int:
    """A port nothing listens on right now (the OS's pick); daprd takes explicit ports."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class Daprd:
    """One daprd process. ``start()`` returns once ``/v1.0/healthz`` answers 204; ``stop()`` kills its PID."""

    app_id: str
    resources: Path
    config: Path
    binary: Path
    app_port: int | None = None
    http_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    internal_grpc_port: int = field(default_factory=free_port)
    metrics_port: int | None = None  # None: metrics off
    log_level: str = "info"
    log_file: Path | None = None
    extra_args: Sequence[str] = ()
    env: Mapping[str, str] | None = None
    process: subprocess.Popen[bytes] | None = None
    started_in: float | None = None  # seconds from exec to healthy
    _log: IO[bytes] | None = None
    _began: float = 0.0

    def argv(self) -> list[str]:
        args = [
            str(self.binary),
            *("--app-id", self.app_id, "--mode", "standalone"),
            *("--resources-path", str(self.resources), "--config", str(self.config)),
            *("--dapr-listen-addresses", LOOPBACK, "--dapr-internal-grpc-listen-address", LOOPBACK),
            *("--dapr-http-port", str(self.http_port), "--dapr-grpc-port", str(self.grpc_port)),
            *("--dapr-internal-grpc-port", str(self.internal_grpc_port)),
            *("--log-level", self.log_level, "--dapr-graceful-shutdown-seconds", "1"),
        ]
        if self.metrics_port is None:
            args.append("--enable-metrics=false")
        else:
            args += ["--metrics-port", str(self.metrics_port), "--metrics-listen-address", LOOPBACK]
        if self.app_port is not None:
            args += ["--app-port", str(self.app_port), "--app-channel-address", LOOPBACK]
            args += ["--app-protocol", "http"]
        return [*args, *self.extra_args]

    @property
    def http_url(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}"

    def client_env(self) -> dict[str, str]:
        """The env an app beside this sidecar gets (as the injector sets it on a cluster)."""
        return {
            "DAPR_RUNTIME_HOST": LOOPBACK,
            "DAPR_HTTP_PORT": str(self.http_port),
            "DAPR_GRPC_PORT": str(self.grpc_port),
        }

    def log_tail(self, lines: int = 40) -> str:
        if self.log_file is None or not self.log_file.exists():
            return "(no log file)"
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def start(self, timeout: float = 30.0) -> None:
        """Start daprd and wait until it is healthy (with an app: once the app's port answers too)."""
        self.start_process()
        self.wait_healthy(timeout)

    def start_process(self) -> None:
        if not self.binary.is_file():
            raise DaprdError(f"daprd not found at {self.binary}: run `bash .ci/daprd.sh install`")
        assert self.process is None, "already started"
        environment = dict(os.environ if self.env is None else self.env)
        for name in ("DAPR_HTTP_PORT", "DAPR_GRPC_PORT", "APP_ID", "NAMESPACE"):
            environment.pop(name, None)
        if self.log_file is not None:
            self._log = self.log_file.open("ab")
        self._began = time.monotonic()
        self.process = subprocess.Popen(
            self.argv(),
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,
        )

    def healthy(self) -> bool:
        return answers_2xx(f"{self.http_url}/v1.0/healthz")

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                code = self.process.returncode
                self._close_log()
                self.process = None
                raise DaprdError(f"daprd {self.app_id} exited with {code}:\n{self.log_tail()}")
            if self.healthy():
                self.started_in = time.monotonic() - self._began
                return
            time.sleep(0.02)
        self.stop()
        raise DaprdError(f"daprd {self.app_id} not healthy after {timeout} s:\n{self.log_tail()}")

    def rss_bytes(self) -> int:
        """Resident set size of the daprd process (Linux /proc)."""
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise DaprdError("no VmRSS in /proc status")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM this daprd by PID (its own session), SIGKILL if it has not exited within ``timeout``."""
        process, self.process = self.process, None
        stop_process(process, timeout)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Daprd:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def answers_2xx(url: str) -> bool:
    """A GET of ``url`` (a loopback health endpoint) answers 2xx within a second."""
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError):
        return False


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGTERM a process we started (by its PID), SIGKILL it if it has not exited within ``timeout``."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)
