"""Request-body guards shared by the API and every function server: a deadline for reading the whole
body (slow clients, "slowloris", get 408 instead of holding a worker) and a JSON nesting limit (400).

Consumes: ASGI ``http.request`` messages. Emits: the same messages to the wrapped app, or an RFC 9457
problem (408, 413, 400) when the body is too slow, too large or nested too deeply.
:class:`BufferedBody` reads the whole body on the event loop before the wrapped app runs, so a WSGI app
behind ``tasktide.functions._wsgi.BufferedWSGI`` (a function) only takes a thread for a request that has
fully arrived.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_TOKENS: Final = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def too_deep(body: bytes, limit: int) -> bool:
    """Whether the JSON text ``body`` nests arrays/objects deeper than ``limit`` (strings are skipped)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False  # cannot be deeper: the common case costs two scans in C
    depth = 0
    for match in _TOKENS.finditer(body):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif token in (b"]", b"}"):
            depth -= 1
    return False


async def send_problem(send: Send, status: int, title: str, detail: str) -> None:
    body = json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail}).encode()
    headers = [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode())]
    if status == 408:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyTimeout(Exception):
    """The client did not send the whole body in time."""


async def collect_body(receive: Receive) -> bytes:
    """The request body as one value: every ``http.request`` message up to the last (or a disconnect).
    No deadline or limit of its own: behind :class:`BufferedBody` the body is already read and checked."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def read_body(receive: Receive, deadline: float, limit: int) -> tuple[bytes, bool]:
    """The whole body (and whether it exceeded ``limit`` bytes), or :class:`BodyTimeout` at ``deadline``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BodyTimeout
        try:
            message = await asyncio.wait_for(receive(), remaining)
        except TimeoutError:
            raise BodyTimeout from None
        if message["type"] == "http.disconnect":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", True
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), False


class BufferedBody:
    """Read the whole body (deadline, size and depth limits) before calling ``app`` (see module docstring)."""

    def __init__(self, app: ASGIApp, *, timeout: float, max_bytes: int, max_depth: int) -> None:
        self.app, self.timeout, self.max_bytes, self.max_depth = app, timeout, max_bytes, max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            body, too_large = await read_body(receive, time.monotonic() + self.timeout, self.max_bytes)
        except BodyTimeout:
            detail = f"The request body did not arrive within {self.timeout:g} s."
            await send_problem(send, 408, "Request Timeout", detail)
            return
        if too_large:
            detail = f"The request body exceeds {self.max_bytes} bytes."
            await send_problem(send, 413, "Content Too Large", detail)
            return
        if too_deep(body, self.max_depth):
            detail = f"The JSON body nests deeper than {self.max_depth} levels."
            await send_problem(send, 400, "Bad Request", detail)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
