"""tasktide.entrypoints.apiserver: each API worker listens on its own SO_REUSEPORT socket and builds the app
with cyclic collection off."""

from __future__ import annotations

import gc
import socket

import pytest

from tasktide.entrypoints import serve
from tasktide.entrypoints.apiserver import built_api_app, listen


def test_apiserver_listen_two_workers_share_the_port_with_reuseport() -> None:
    first = listen("127.0.0.1", 0)
    port = first.getsockname()[1]
    second = listen("127.0.0.1", port)  # a second worker's own socket on the same port
    try:
        for sock in (first, second):
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
            assert sock.getsockname() == ("127.0.0.1", port)
    finally:
        first.close()
        second.close()


def test_apiserver_built_api_app_builds_with_collection_off_then_freezes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[bool] = []
    app = object()

    def api_app() -> object:
        seen.append(gc.isenabled())
        return app

    monkeypatch.setattr(serve, "api_app", api_app)
    try:
        assert built_api_app() is app
        assert seen == [False]
        assert gc.isenabled()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.enable()
