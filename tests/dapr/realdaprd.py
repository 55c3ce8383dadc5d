"""Helpers for tests that run a real daprd (built by `.ci/daprd.sh`, which `make services` runs).

`require_daprd()` skips locally when the binary is missing and fails under CI; `start()` renders the
resources from dapr/ YAML (tasktide.dapr.selfhosted) and starts daprd on loopback; `sockets()` lists
what a process has bound, to prove nothing listens beyond 127.0.0.1 and nothing uses UDP (mDNS)."""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from tasktide.dapr import selfhosted
from tasktide.dapr.daprd import Daprd, daprd_binary, free_port

APP_ID = "tasktide-notifier"  # a scope of dapr/resiliency.yaml, so its policies apply as on a cluster
SECRETS = {"db-password": "s3cret", "smtp:user": "mailer"}
OUT_OF_SCOPE = {"outside-scope": "never-served"}


def require_daprd() -> Path:
    path = daprd_binary()
    if not path.is_file():
        message = f"daprd not built at {path}: `bash .ci/daprd.sh install` (make services runs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def state_docs(postgres_url: str, secrets_file: Path) -> list[selfhosted.Doc]:
    """statestore (Postgres) + secretstore (local file) + the repo's Resiliency, as the functions get."""
    return [
        selfhosted.statestore(postgres_url),
        selfhosted.secretstore(secrets_file),
        *selfhosted.load("resiliency.yaml"),
    ]


def start(
    workdir: Path,
    app_id: str,
    docs: Iterable[selfhosted.Doc],
    *,
    internal_ports: Mapping[str, int] | None = None,
    app_port: int | None = None,
    http_port: int | None = None,
    log_level: str = "info",
) -> Daprd:
    binary = require_daprd()
    ports = dict(internal_ports or {})
    ports.setdefault(app_id, free_port())
    resources = selfhosted.write(workdir, selfhosted.configuration(ports), docs)
    daprd = Daprd(
        app_id,
        resources.path,
        resources.config,
        binary,
        app_port=app_port,
        internal_grpc_port=ports[app_id],
        log_level=log_level,
        log_file=workdir / f"daprd-{app_id}.log",
    )
    if http_port is not None:
        daprd.http_port = http_port
    daprd.start()
    return daprd


def _inodes(pid: int) -> set[int]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(int(target[8:-1]))
    return found


def _address(hex_address: str) -> tuple[str, int]:
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        ip = socket.inet_ntop(socket.AF_INET, struct.pack("<I", int(host, 16)))
    else:
        words = struct.unpack("<4I", raw)
        ip = socket.inet_ntop(socket.AF_INET6, struct.pack(">4I", *words))
    return ip, int(port, 16)


def sockets(pid: int) -> list[tuple[str, str, int, str]]:
    """(protocol, local ip, local port, state hex) of every TCP/UDP socket process ``pid`` holds."""
    inodes = _inodes(pid)
    found = []
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        table = Path(f"/proc/{pid}/net/{proto}")
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[9]) in inodes:
                ip, port = _address(fields[1])
                found.append((proto, ip, port, fields[3]))
    return found


TCP_LISTEN = "0A"
