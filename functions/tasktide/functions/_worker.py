"""The gunicorn worker class of a function container (`tasktide serve` with `FUNCTION_TARGET`).

uvicorn's worker with WebSockets off: a function answers plain HTTP POSTs only, and uvicorn's default
(`ws="auto"`) imports a WebSocket implementation into every function process, which costs its cold start.
"""

from __future__ import annotations

from typing import Any, ClassVar

from uvicorn_worker import UvicornWorker  # type: ignore[import-untyped]


class FunctionWorker(UvicornWorker):  # type: ignore[misc]
    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {**UvicornWorker.CONFIG_KWARGS, "ws": "none"}
