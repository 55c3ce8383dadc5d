"""`tasktide.functions._wsgi.BufferedWSGI`: the whole request body reaches the WSGI app, its whole response
comes back as one start and one body message, and an app that never starts a response fails loudly."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import httpx
import pytest

from tasktide.functions._wsgi import BufferedWSGI, run_wsgi


def echo(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = environ["wsgi.input"].read()
    start_response("201 Created", [("Content-Type", "text/plain"), ("X-Path", environ["PATH_INFO"])])
    return [b"got:", body]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_buffered_wsgi_chunked_body_reaches_app_and_response_comes_back_whole() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"ab"
        yield b"cd"

    transport = httpx.ASGITransport(app=BufferedWSGI(echo, workers=2))
    async with httpx.AsyncClient(transport=transport, base_url="http://fn") as client:
        response = await client.post("/hook", content=chunks())
    assert response.status_code == 201
    assert response.text == "got:abcd"
    assert response.headers["x-path"] == "/hook"


def test_run_wsgi_app_without_start_response_raises() -> None:
    with pytest.raises(RuntimeError, match="start_response"):
        run_wsgi(lambda environ, start_response: [b"x"], {})
