"""The function worker: uvicorn on the standard asyncio loop, over gunicorn's own TCP listener."""

from __future__ import annotations

import asyncio
import logging
import socket

from gunicorn import sock as gunicorn_sock  # type: ignore[import-untyped]
from gunicorn.config import Config  # type: ignore[import-untyped]

from tasktide.functions._worker import FunctionWorker


def test_function_worker_config_asyncio_loop_without_websockets() -> None:
    assert FunctionWorker.CONFIG_KWARGS["loop"] == "asyncio"
    assert FunctionWorker.CONFIG_KWARGS["ws"] == "none"


def test_function_worker_connection_on_gunicorn_listener_has_tcp_nodelay() -> None:
    """asyncio sets TCP_NODELAY only on sockets whose `proto` is IPPROTO_TCP, and gunicorn's are 0: without
    the option inherited from gunicorn's listener every small answer would wait for a delayed ACK."""
    cfg = Config()
    cfg.set("bind", ["127.0.0.1:0"])
    listeners = gunicorn_sock.create_sockets(cfg, logging.getLogger("test"))
    listener: socket.socket = listeners[0].sock

    async def accepted_nodelay() -> int:
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def on_connect(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(on_connect, sock=listener)
        async with server:
            _reader, writer = await asyncio.open_connection(*listener.getsockname()[:2])
            try:
                return await asyncio.wait_for(seen, 10)
            finally:
                writer.close()

    try:
        assert listener.proto == 0  # so asyncio's own _set_nodelay skips it
        assert asyncio.run(accepted_nodelay()) != 0
    finally:
        listener.close()  # the asyncio server closed it already, as a worker's does at exit
