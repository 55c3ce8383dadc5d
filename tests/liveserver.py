"""A real HTTP server for tests: uvicorn on 127.0.0.1, an ephemeral port, in a background thread.

Consumes: any ASGI app (its lifespan runs, as under `tasktide serve`). Emits: :class:`LiveServer` with the
base URL; leaving the context stops the server and joins the thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn


@dataclass(frozen=True)
class LiveServer:
    base_url: str
    server: uvicorn.Server


@contextmanager
def live_server(app: Any, *, timeout: float = 20.0) -> Iterator[LiveServer]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on", ws="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="live-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:  # bounded: uvicorn flips `started` once it listens
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the live server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", server)
    finally:
        server.should_exit = True
        thread.join(timeout)
