"""tasktide.entrypoints.apiserver: each API worker listens on its own SO_REUSEPORT socket."""

from __future__ import annotations

import socket

from tasktide.entrypoints.apiserver import listen


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
