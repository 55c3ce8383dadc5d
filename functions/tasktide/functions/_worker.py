"""The gunicorn worker class of a function container (`tasktide serve` with `FUNCTION_TARGET`).

uvicorn's worker with WebSockets off and the standard library's asyncio loop:
- a function answers plain HTTP POSTs only, and uvicorn's default (`ws="auto"`) imports a WebSocket
  implementation into every function process, which costs its cold start;
- a function serves one event at a time, where uvloop is no faster (measured: same per-event latency
  back to back and idle), but its extension maps about 1.4 MiB more code into every worker. Accepted
  connections keep `TCP_NODELAY`: gunicorn sets it on its TCP listener, and Linux copies it to each
  accepted socket (asyncio's own `_set_nodelay` skips gunicorn's sockets, whose `proto` is 0).
"""

from __future__ import annotations

from typing import Any, ClassVar

from uvicorn_worker import UvicornWorker  # type: ignore[import-untyped]


class FunctionWorker(UvicornWorker):  # type: ignore[misc]
    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {**UvicornWorker.CONFIG_KWARGS, "ws": "none", "loop": "asyncio"}
