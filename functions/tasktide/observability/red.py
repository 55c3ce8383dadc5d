"""RED metrics (rate, errors, duration) for an ASGI app, as pure ASGI middleware (no task group around the
body): `tasktide_requests_total`, `tasktide_request_errors_total` and `tasktide_request_duration_seconds`
labelled with the app's function name, for the requests ``counted`` accepts (judged after routing)."""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tasktide.observability import metrics


class RedMetrics:
    def __init__(self, app: ASGIApp, *, function: str, counted: Callable[[Scope], bool]) -> None:
        self.app, self.function, self.counted = app, function, counted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording)
        finally:
            if self.counted(scope):
                metrics.REQUEST_DURATION.labels(self.function).observe(time.perf_counter() - start)
                metrics.REQUESTS.labels(self.function, str(status)).inc()
                if status >= 500:
                    metrics.REQUEST_ERRORS.labels(self.function).inc()
