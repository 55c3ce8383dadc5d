"""The HTTP app of one CloudEvents function: functions-framework's app for `FUNCTION_TARGET`, plus
`GET /healthz` (liveness and readiness probes) and `GET /metrics` (Prometheus scrape) beside it.

Used by the container (`tasktide serve` runs it under gunicorn) and by `tasktide dev` (routed at exactly
`/services/<name>`: there only the CloudEvent endpoint is reachable, the dev process's own `/healthz` and
`/metrics` cover it), so both serve exactly the same app.
"""

from __future__ import annotations

import os
from pathlib import Path

import flask
import functions_framework

from tasktide import metrics

FUNCTIONS_DIR = Path(__file__).with_name("functions")


def create_function_app(target: str, source: str | None = None) -> flask.Flask:
    path = source or str(FUNCTIONS_DIR / f"{target}.py")
    app: flask.Flask = functions_framework.create_app(target, path)  # type: ignore[no-untyped-call]

    def healthz() -> flask.Response:
        return flask.jsonify(status="ok", function=target)

    def prometheus() -> flask.Response:
        payload, content_type = metrics.render()
        return flask.Response(payload, content_type=content_type)

    app.add_url_rule("/healthz", "tasktide_healthz", healthz, methods=["GET"])
    app.add_url_rule("/metrics", "tasktide_metrics", prometheus, methods=["GET"])
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
