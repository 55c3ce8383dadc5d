"""The HTTP app of one CloudEvents function: functions-framework's app for `FUNCTION_TARGET`, plus
`GET /healthz` (liveness and readiness probes) and `GET /metrics` (Prometheus scrape) beside it.

Dapr's input bindings are served too: daprd calls `POST /<binding name>` with a JSON body (bindings.cron:
an empty one) and no CloudEvent, and `OPTIONS /<binding name>` once to learn whether the app takes it.
`BindingMiddleware` turns that call into a binary-mode CloudEvent of type `BINDING_EVENT_TYPE` on `/`,
so the same function runs, through functions-framework, as on a Knative PingSource tick. The names are
`BINDING_ROUTES` (one per PingSource: dapr/eventing/cron.yaml uses the PingSources' names). daprd's
`GET /dapr/subscribe` is answered `[]`: subscriptions are declarative (dapr/eventing/subscriptions.yaml).

Used by the container (`tasktide serve` runs it under gunicorn with uvicorn workers) and by `tasktide dev`
(routed at exactly `/services/<name>`: there only the CloudEvent endpoint is reachable, the dev process's
own `/healthz` and `/metrics` cover it), so both serve exactly the same app: :func:`guarded`, the Flask app
behind `a2wsgi` behind `tasktide.bodyguard.BufferedBody`, which reads each request body on the event loop
with a deadline (408), a size limit (413) and a JSON depth limit (400) before a thread is taken, so slow
clients cannot starve the function's threads.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import flask
import functions_framework
from a2wsgi import WSGIMiddleware

from tasktide import fnkit, metrics
from tasktide.bodyguard import BufferedBody
from tasktide.settings import Settings

FUNCTIONS_DIR = Path(__file__).with_name("functions")
BINDING_EVENT_TYPE = "io.dapr.binding"
# function target -> the Dapr input bindings it serves (named after eventing/ping-sources.yaml)
BINDING_ROUTES: Mapping[str, tuple[str, ...]] = {
    "reminders": ("reminders-tick",),
    "relay": ("outbox-sweep",),
}
MAX_BINDING_BODY = 64 * 1024

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class BindingMiddleware:
    """WSGI: `POST /<binding>` without `ce-*` headers -> a binary CloudEvent on `/`; `OPTIONS` -> 200."""

    def __init__(self, app: WsgiApp, bindings: Iterable[str]) -> None:
        self.app = app
        self.paths = {f"/{name}": name for name in bindings}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        name = self.paths.get(path)
        method = environ.get("REQUEST_METHOD", "")
        if path == "/dapr/subscribe" and method == "GET":
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
            return [b"[]"]
        if name is None or "HTTP_CE_SPECVERSION" in environ:
            return self.app(environ, start_response)
        if method == "OPTIONS":
            start_response("200 OK", [("Content-Length", "0"), ("Allow", "OPTIONS, POST")])
            return [b""]
        if method != "POST":
            return self.app(environ, start_response)
        try:
            length = min(int(environ.get("CONTENT_LENGTH") or 0), MAX_BINDING_BODY)
        except ValueError:
            length = 0
        body = environ["wsgi.input"].read(length) if length else b""
        event = dict(environ)
        event.update(
            {
                "PATH_INFO": "/",
                "CONTENT_TYPE": "application/json",
                "CONTENT_LENGTH": str(len(body.strip() or b"{}")),
                "wsgi.input": io.BytesIO(body.strip() or b"{}"),
                "HTTP_CE_SPECVERSION": "1.0",
                "HTTP_CE_ID": str(uuid.uuid4()),
                "HTTP_CE_TYPE": BINDING_EVENT_TYPE,
                "HTTP_CE_SOURCE": f"/dapr/bindings/{name}",
                "HTTP_CE_SUBJECT": name,
            }
        )
        return self.app(event, start_response)


def create_function_app(target: str, source: str | None = None) -> flask.Flask:
    path = source or str(FUNCTIONS_DIR / f"{target}.py")
    app: flask.Flask = functions_framework.create_app(target, path)  # type: ignore[no-untyped-call]

    def healthz() -> flask.Response:
        return flask.jsonify(status="ok", function=target)

    def prometheus() -> flask.Response:
        payload, content_type = metrics.render()
        return flask.Response(payload, content_type=content_type)

    def redeliver(_exc: Exception) -> flask.Response:
        return flask.Response(status=503)  # already logged, once, by fnkit.consuming

    app.register_error_handler(fnkit.Redeliver, redeliver)
    app.add_url_rule("/healthz", "tasktide_healthz", healthz, methods=["GET"])
    app.add_url_rule("/metrics", "tasktide_metrics", prometheus, methods=["GET"])
    app.wsgi_app = BindingMiddleware(app.wsgi_app, BINDING_ROUTES.get(target, ()))  # type: ignore[method-assign]
    return app


def app_from_env() -> flask.Flask:
    """gunicorn factory: `gunicorn 'tasktide.fnserver:app_from_env()'` with `FUNCTION_TARGET` set."""
    from tasktide.logs import configure_logging
    from tasktide.settings import get_settings

    target = os.environ.get("FUNCTION_TARGET")
    if not target:
        raise RuntimeError("FUNCTION_TARGET is not set")
    configure_logging(target, get_settings().log_level)
    return create_function_app(target, os.environ.get("FUNCTION_SOURCE"))


def guarded(app: flask.Flask, settings: Settings, threads: int = 8) -> BufferedBody:
    """The ASGI app serving ``app``: bodies read fully (deadline, size, depth) before a thread runs it."""
    wsgi = WSGIMiddleware(app, workers=threads)  # type: ignore[arg-type]
    return BufferedBody(
        wsgi,  # type: ignore[arg-type]
        timeout=settings.body_read_timeout,
        max_bytes=settings.max_body_bytes,
        max_depth=settings.max_json_depth,
    )


def asgi_app_from_env() -> BufferedBody:
    """gunicorn factory with uvicorn workers: `gunicorn 'tasktide.fnserver:asgi_app_from_env()'
    -k uvicorn_worker.UvicornWorker`, `FUNCTION_TARGET` set; `TASKTIDE_THREADS` sizes the WSGI pool."""
    from tasktide.settings import get_settings

    return guarded(app_from_env(), get_settings(), int(os.environ.get("TASKTIDE_THREADS", "8")))
