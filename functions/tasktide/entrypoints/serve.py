"""`tasktide serve`: the container entrypoint, listening on `$TASKTIDE_HOST:$PORT`.

`TASKTIDE_ROLE=agent` serves the chat agent alone (`agent_app`, uvicorn; the `tasktide-agent` Service).
`FUNCTION_TARGET` picks a CloudEvents function (functions-framework's app plus `/healthz` and `/metrics`,
under gunicorn with uvicorn workers, bodies read on the event loop with a deadline: see
`tasktide.functions._server`);
without it the task API is served by `tasktide.entrypoints.apiserver` (uvicorn workers on uvloop, one
SO_REUSEPORT
socket each). `TASKTIDE_WORKERS` sizes either (default 2 for the API, 1 for a function). The bind address
is `TASKTIDE_HOST`, 127.0.0.1 unless set: the image sets it to 0.0.0.0 (a pod must answer on its IP),
while tests and benchmarks started outside a container stay on loopback. Both log one JSON object per
line (uvicorn's and gunicorn's own loggers included, access lines with secrets redacted: see
`tasktide.observability.logs`)."""

from __future__ import annotations

import gc
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # `tasktide serve` runs gunicorn at once: importing FastAPI here would delay every start
    from fastapi import FastAPI

DEFAULT_HOST = "127.0.0.1"
# pydantic looks for plugins (every installed distribution's entry points) when it builds its first model:
# tasktide uses none, and the scan is about 20 ms of a function's cold start. Set it to override.
NO_PYDANTIC_PLUGINS = ("PYDANTIC_DISABLE_PLUGINS", "__all__")


def api_app() -> FastAPI:
    """uvicorn factory for the API Service: migrations first (Postgres: under an advisory lock).

    The outbox relay runs here only with `TASKTIDE_RELAY_IN_PROCESS=true` (else `tasktide-relay` publishes);
    the `task-updates` follower starts with the first SSE subscriber, not with the process."""
    from tasktide.api.app import create_app
    from tasktide.db.migrate import upgrade
    from tasktide.observability.logs import configure_logging
    from tasktide.services import Services
    from tasktide.settings import get_settings

    settings = get_settings()
    configure_logging("api", settings.log_level)
    services = Services.build(settings, with_relay=settings.relay_in_process)
    if not os.environ.get("TASKTIDE_API_MIGRATED"):  # set by entrypoints.apiserver, which migrated already
        upgrade(services.engine.url.render_as_string(hide_password=False))
    app = create_app(services, services.stream_hub())
    from tasktide.agent import forward

    forward.install(app, settings)  # chat: to the tasktide-agent Service by Dapr, or in-process
    return app


def agent_app() -> FastAPI:
    """uvicorn factory for the `tasktide-agent` Service (`TASKTIDE_ROLE=agent`): the chat agent alone."""
    from tasktide.agent.app import create_agent_app
    from tasktide.observability.logs import configure_logging
    from tasktide.services import Services
    from tasktide.settings import get_settings

    settings = get_settings()
    configure_logging("agent", settings.log_level)
    return create_agent_app(Services.build(settings))


def command(environ: dict[str, str] | None = None) -> list[str]:
    """The exact argv `tasktide serve` runs for this environment (gunicorn in-process, the rest by exec)."""
    env = dict(os.environ if environ is None else environ)
    port = env.get("PORT", "8080")
    host = env.get("TASKTIDE_HOST") or DEFAULT_HOST
    target = env.get("FUNCTION_TARGET")
    if env.get("TASKTIDE_ROLE") == "agent":
        return [
            *(sys.executable, "-m", "uvicorn", "tasktide.entrypoints.serve:agent_app", "--factory"),
            *("--host", host, "--port", port, "--workers", env.get("TASKTIDE_WORKERS", "1")),
        ]
    if target:
        threads = env.get("TASKTIDE_THREADS", "8")
        return [
            *("gunicorn", "tasktide.functions._server:asgi_app_from_env()"),
            *("--config", "python:tasktide.functions._gunicorn_conf"),
            *("--bind", f"{host}:{port}", "--worker-class", "tasktide.functions._worker.FunctionWorker"),
            *("--workers", env.get("TASKTIDE_WORKERS", "1"), "--threads", threads, "--timeout", "0"),
        ]
    workers = env.get("TASKTIDE_WORKERS", "2")
    return [
        *(sys.executable, "-m", "tasktide.entrypoints.apiserver"),
        *("--host", host, "--port", port, "--workers", workers),
    ]


def serve() -> None:
    os.environ.setdefault(*NO_PYDANTIC_PLUGINS)
    argv = command()
    if argv[0] == "gunicorn":  # run gunicorn in this process: one interpreter start fewer per cold start
        # No cyclic collection while the app is imported and built (full collections over the growing heap
        # cost a cold start about 30 ms here): `_gunicorn_conf.when_ready` freezes what was built and turns
        # collection back on before the workers fork (the `gc` module's documented fork pattern).
        gc.disable()
        from gunicorn.app.wsgiapp import run  # type: ignore[import-untyped]

        sys.argv = argv
        run()
        return
    os.execvp(argv[0], argv)
