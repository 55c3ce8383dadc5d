"""The API Service's process model: N uvicorn workers on uvloop + httptools, each with its OWN listening
socket bound with `SO_REUSEPORT`, so the kernel spreads connections evenly over the workers (one socket
shared by forked workers lets the busiest one take most keep-alive connections).

Consumes: `--host/--port/--workers` (from `tasktide serve`: `TASKTIDE_HOST`, `PORT`, `TASKTIDE_WORKERS`).
Emits: nothing itself; the parent runs the migrations once, forks the workers, forwards SIGTERM/SIGINT
to them and exits (non-zero) as soon as any worker dies, so the container restarts as a whole.
uvloop sets `TCP_NODELAY` on every accepted connection (no Nagle + delayed-ACK stalls on keep-alive).

    python -m tasktide.entrypoints.apiserver --host 127.0.0.1 --port 8080 --workers 2
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import signal
import socket
import sys
import tempfile
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

SKIP_MIGRATIONS_ENV = "TASKTIDE_API_MIGRATED"


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def built_api_app() -> FastAPI:
    """uvicorn factory: `tasktide.entrypoints.serve:api_app`, built with cyclic garbage collection off (full
    collections over the growing heap are about a quarter of the API's start otherwise), then every object
    built so far frozen out of the collector's reach (`gc.freeze`) and collection turned back on."""
    from tasktide.entrypoints.serve import api_app

    gc.disable()
    try:
        return api_app()
    finally:
        gc.freeze()
        gc.enable()


def run_worker(host: str, port: int) -> None:
    """One worker: its own SO_REUSEPORT socket, the `tasktide.entrypoints.serve:api_app` factory (through
    :func:`built_api_app`), uvloop."""
    import uvicorn

    sock = listen(host, port)
    config = uvicorn.Config(
        "tasktide.entrypoints.apiserver:built_api_app",
        factory=True,
        loop="uvloop",
        http="httptools",
        # `api_app` routes uvicorn's loggers (access lines redacted) through tasktide.observability.logs
        log_config=None,
        lifespan="on",
        backlog=2048,
    )
    uvicorn.Server(config).run(sockets=[sock])


def migrate() -> None:
    """Migrate once, before any worker starts (workers then skip it)."""
    from tasktide.db.migrate import upgrade
    from tasktide.services import Services
    from tasktide.settings import get_settings

    services = Services.build(get_settings())
    try:
        upgrade(services.engine.url.render_as_string(hide_password=False))
    finally:
        services.engine.dispose()


def supervise(host: str, port: int, workers: int) -> int:
    gc.disable()  # the migration's imports too (the workers inherit them): see `built_api_app`
    migrate()
    gc.collect()  # what the migration left (it may have run data steps) is not frozen with the rest
    os.environ[SKIP_MIGRATIONS_ENV] = "1"
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # every worker's metrics in shared mmap files, so any worker's /metrics shows the whole Service
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="tasktide-metrics-")
    if workers <= 1:
        run_worker(host, port)
        return 0
    gc.freeze()  # what the parent built, the workers inherit: their collections skip it
    children: list[int] = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            try:
                run_worker(host, port)
            finally:
                os._exit(0)
        children.append(pid)
    gc.enable()

    def forward(signum: int, _frame: FrameType | None) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    alive = set(children)
    while alive:
        pid, code = os.wait()
        if pid not in alive:
            continue
        alive.discard(pid)
        status = status or os.waitstatus_to_exitcode(code)
        forward(signal.SIGTERM, None)  # one worker gone: stop the others, the container restarts
    return 0 if status in (0, -signal.SIGTERM, -signal.SIGINT) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tasktide.entrypoints.apiserver", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    return supervise(args.host, args.port, max(1, args.workers))


if __name__ == "__main__":
    sys.exit(main())
