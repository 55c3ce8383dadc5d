"""ASGI -> WSGI for the function server: the Flask app of a function runs on a thread with its whole request
body in memory, and its whole response is collected on that thread, then sent from the event loop.

Consumes ASGI ``http`` scopes whose body is read to its end on the event loop before a thread is taken
(behind :class:`tasktide.edges.bodyguard.BufferedBody` that costs nothing more: the body is already in
memory), and ``lifespan`` scopes (acknowledged). Emits the WSGI app's response as one
``http.response.start`` and one ``http.response.body``. a2wsgi's middleware, used before, blocks the WSGI
thread on the event loop for every body read and every response message (three or four thread hand-offs
a request, each a wait for the GIL on a busy machine); here there are two: onto the thread and back. A
function's response is small (a 204, a problem document, a reply event under Kafka's 1 MB), so it is not
streamed. The environ is a2wsgi's (``build_environ``), so the app sees exactly what it saw before.
"""

from __future__ import annotations

import asyncio
import contextvars
import io
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from a2wsgi.wsgi import build_environ
from starlette.types import Receive, Scope, Send

from tasktide.edges.bodyguard import collect_body

Environ = dict[str, Any]
WsgiApp = Callable[[Environ, Callable[..., Any]], Iterable[bytes]]
Response = tuple[int, list[tuple[bytes, bytes]], bytes]


def run_wsgi(app: WsgiApp, environ: Environ) -> Response:
    """Call ``app`` and collect its whole response (status, headers, body); raises what the app raises."""
    started: list[Any] = []
    chunks: list[bytes] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started[:] = [status, headers]  # nothing is sent before the app returns: a later call replaces it
        return chunks.append  # PEP 3333's write()

    iterable = app(environ, start_response)
    try:
        chunks.extend(iterable)
    finally:
        close = getattr(iterable, "close", None)
        if close is not None:
            close()
    if not started:
        raise RuntimeError("the WSGI app returned without calling start_response")
    status, headers = started
    encoded = [(k.strip().lower().encode("latin1"), v.strip().encode("latin1")) for k, v in headers]
    return int(status.split(" ", 1)[0]), encoded, b"".join(chunks)


class BufferedWSGI:
    """The ASGI app serving ``app`` on a pool of ``workers`` threads (see the module docstring)."""

    def __init__(self, app: WsgiApp, workers: int = 8) -> None:
        self.app = app
        self.executor = ThreadPoolExecutor(thread_name_prefix="WSGI", max_workers=workers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1000})
            return
        body = await collect_body(receive)
        environ = cast(Environ, build_environ(scope, io.BytesIO(body)))  # type: ignore[arg-type]
        context = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        status, headers, payload = await loop.run_in_executor(
            self.executor, lambda: context.run(run_wsgi, self.app, environ)
        )
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
