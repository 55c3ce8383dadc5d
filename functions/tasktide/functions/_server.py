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
behind `tasktide.functions._wsgi.BufferedWSGI` behind `edges.bodyguard.BufferedBody`, which reads each
request body on the event loop with a deadline (408), a size limit (413) and a JSON depth limit (400)
before a thread is taken, so slow clients cannot starve the function's threads.

Consumes a CloudEvent (binary or structured mode, parsed by :mod:`tasktide.messaging.codec`) per POST. Emits
what the
Knative Kafka Broker's dispatcher needs to treat the answer right (functions-framework's own
`200 text/html "OK"` would be a failure there, dead-lettered with no retry):

- handled: `204` with an empty body, or `200` with a binary-mode CloudEvent when the function returns one
  (the broker publishes that reply back into itself);
- an event this function can never handle (not a CloudEvent, a batch, `null` or missing attributes, a JSON
  array or too deeply nested data, data failing its model, a body over the size limit): a 4xx RFC 9457
  `application/problem+json`, which the broker never retries and dead-letters at once, so the evidence is
  kept;
- an expected transient failure (:class:`tasktide.functions._kit.Redeliver`): `503`, any other: `500`, both
  problem+json, both retried by the broker.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import flask
import functions_framework
from werkzeug.exceptions import HTTPException

from tasktide.edges.bodyguard import BufferedBody
from tasktide.functions import _kit
from tasktide.functions._wsgi import BufferedWSGI
from tasktide.messaging import codec
from tasktide.observability import metrics
from tasktide.settings import Settings

if TYPE_CHECKING:  # the container is built (and imported) at the first event that needs it
    from tasktide.edges.senderauth import SenderAuth
    from tasktide.services import Services

FUNCTIONS_DIR = Path(__file__).parent
PROBLEM_JSON = "application/problem+json"
MAX_EVENT_BYTES = 1024 * 1024  # Kafka's default message.max.bytes: a bigger event never reached Kafka
FF_ENV = ("FUNCTION_TARGET", "FUNCTION_SIGNATURE_TYPE", "FUNCTION_TRIGGER_TYPE")
CLOUDEVENT_ENDPOINT = "cloudevent"  # the endpoint functions-framework registers for `/` and `/<path>`
log = logging.getLogger("tasktide.functions._server")

BINDING_EVENT_TYPE = "io.dapr.binding"
# function target -> the Dapr input bindings it serves (named after eventing/ping-sources.yaml)
BINDING_ROUTES: Mapping[str, tuple[str, ...]] = {
    "reminders": ("reminders-tick",),
    "relay": ("outbox-sweep",),
}
MAX_BINDING_BODY = 64 * 1024

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]


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


def problem(status: int, title: str, detail: str) -> flask.Response:
    """An RFC 9457 problem document."""
    response = flask.jsonify(type="about:blank", title=title, status=status, detail=detail)
    response.status_code = status
    response.content_type = PROBLEM_JSON
    return response


def _http_problem(exc: HTTPException) -> flask.Response:
    status = exc.code or 500
    return problem(status, exc.name, exc.description or exc.name)


def _crash(exc: Exception) -> flask.Response:
    log.error("unhandled error in the function server", exc_info=exc)
    return problem(500, "Internal Server Error", "the function failed; the event will be redelivered")


def answer(
    function: Callable[[codec.CloudEvent], object], request: flask.Request, services: Services | None = None
) -> flask.Response:
    """Parse the request as a CloudEvent, run ``function`` on it (with ``services``, else the process's
    own container) and answer as the broker needs."""
    body = request.get_data(cache=False)
    try:
        event = codec.from_http(dict(request.headers), body)
    except codec.UnsupportedEvent as exc:
        return problem(415, "Unsupported CloudEvent encoding", str(exc))
    except codec.InvalidEvent as exc:
        return problem(400, "Invalid CloudEvent", str(exc))
    try:
        with _kit.serving(services):
            result = function(event)
    except _kit.BadEvent as exc:
        return problem(exc.status, exc.title, exc.detail)
    except _kit.Redeliver:  # already logged, once, by _kit.consuming
        return problem(503, "Try again", "transient failure; the event will be redelivered")
    except Exception as exc:  # transient: _kit already counted and logged it; the broker redelivers
        log.debug("function failed for event %s: %r", event["id"], exc)
        return problem(500, "Function failed", "transient failure; the event will be redelivered")
    if isinstance(result, codec.CloudEvent):
        headers, payload = codec.to_binary_http(result)
        return flask.Response(payload, status=200, headers=headers)
    return flask.Response(status=204)


def _user_function(path: str, target: str) -> Callable[[codec.CloudEvent], object]:
    """The function functions-framework loaded (it registers the source file's module by its stem)."""
    module = sys.modules[Path(path).stem]
    function: Callable[[codec.CloudEvent], object] = getattr(module, target)
    return function


def create_function_app(
    target: str, source: str | None = None, services: Services | None = None
) -> flask.Flask:
    """The app of function ``target``; it runs with ``services`` (`tasktide dev` shares the API's), else
    with the process's own container, built at the first event."""
    path = source or str(FUNCTIONS_DIR / f"{target}.py")
    saved = {name: os.environ.get(name) for name in FF_ENV}
    try:
        app: flask.Flask = functions_framework.create_app(target, path)  # type: ignore[no-untyped-call]
    finally:  # functions-framework records the target in os.environ: never leak it into this process
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    if CLOUDEVENT_ENDPOINT not in app.view_functions:
        raise RuntimeError(f"{target} is not a @functions_framework.cloud_event function")
    function = _user_function(path, target)

    def cloudevent(path: str = "") -> flask.Response:
        return answer(function, flask.request, services)

    def healthz() -> flask.Response:
        return flask.jsonify(status="ok", function=target)

    def prometheus() -> flask.Response:
        payload, content_type = metrics.render()
        return flask.Response(payload, content_type=content_type)

    app.view_functions[CLOUDEVENT_ENDPOINT] = cloudevent
    app.config["MAX_CONTENT_LENGTH"] = MAX_EVENT_BYTES
    app.register_error_handler(HTTPException, _http_problem)
    app.register_error_handler(500, _crash)  # replaces functions-framework's text/plain crash handler
    app.register_error_handler(Exception, _crash)
    app.add_url_rule("/healthz", "tasktide_healthz", healthz, methods=["GET"])
    app.add_url_rule("/metrics", "tasktide_metrics", prometheus, methods=["GET"])
    app.wsgi_app = BindingMiddleware(app.wsgi_app, BINDING_ROUTES.get(target, ()))  # type: ignore[method-assign]
    return app


def terminated_input(app: WsgiApp) -> WsgiApp:
    """Mark ``wsgi.input`` as ending at the end of the body, so a chunked request (no Content-Length) is
    read in full instead of as an empty body (werkzeug's safe fallback). Only for servers whose input stream
    really ends there: `BufferedWSGI` behind :class:`BufferedBody`, which has read and bounded the whole
    body."""

    def wrapped(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        environ["wsgi.input_terminated"] = True
        return app(environ, start_response)

    return wrapped


def app_from_env() -> flask.Flask:
    """gunicorn factory: `gunicorn 'tasktide.functions._server:app_from_env()'` with `FUNCTION_TARGET` set."""
    from tasktide.observability.logs import configure_logging
    from tasktide.settings import get_settings

    target = os.environ.get("FUNCTION_TARGET")
    if not target:
        raise RuntimeError("FUNCTION_TARGET is not set")
    configure_logging(target, get_settings().log_level)
    return create_function_app(target, os.environ.get("FUNCTION_SOURCE"))


def guarded(
    app: flask.Flask, settings: Settings, threads: int = 8, audience: str | None = None
) -> BufferedBody | SenderAuth:
    """The ASGI app serving ``app``: bodies read fully (deadline, size, depth) before a thread runs it; with
    an event audience (``audience`` or ``TASKTIDE_EVENT_AUDIENCE``) a POST first needs a valid sender token
    (401 otherwise, see :mod:`tasktide.edges.senderauth`)."""
    wsgi = BufferedWSGI(terminated_input(app), workers=threads)
    body = BufferedBody(
        wsgi,
        timeout=settings.body_read_timeout,
        max_bytes=settings.max_body_bytes,
        max_depth=settings.max_json_depth,
    )
    if not (audience or settings.event_audience):
        return body
    from tasktide.edges.senderauth import SenderAuth, verifier_from_settings  # PyJWT only when verifying

    verifier = verifier_from_settings(settings, audience)
    return body if verifier is None else SenderAuth(body, verifier)


def asgi_app_from_env() -> BufferedBody | SenderAuth:
    """gunicorn factory with uvicorn workers: `gunicorn 'tasktide.functions._server:asgi_app_from_env()'
    -k uvicorn_worker.UvicornWorker`, `FUNCTION_TARGET` set; `TASKTIDE_THREADS` sizes the WSGI pool."""
    from tasktide.settings import get_settings

    return guarded(app_from_env(), get_settings(), int(os.environ.get("TASKTIDE_THREADS", "8")))
