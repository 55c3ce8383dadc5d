"""`tasktide serve`: the container entrypoint. `FUNCTION_TARGET` picks a CloudEvents function
(served by functions-framework); without it the task API is served by uvicorn. Both listen on `$PORT`."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI

FUNCTIONS_DIR = Path(__file__).with_name("functions")


def api_app() -> FastAPI:
    """uvicorn factory for the API Service: migrations first (Postgres: under an advisory lock)."""
    from tasktide import fnkit
    from tasktide.api.app import create_app
    from tasktide.db.migrate import upgrade
    from tasktide.logs import configure_logging
    from tasktide.settings import get_settings

    settings = get_settings()
    configure_logging("api", settings.log_level)
    services = fnkit.services()
    upgrade(services.engine.url.render_as_string(hide_password=False))
    hub = None
    if settings.kafka_bootstrap:
        from tasktide.events import TOPIC_TASK_UPDATES
        from tasktide.kafka import TopicFollower
        from tasktide.stream import StreamHub

        hub = StreamHub()
        TopicFollower(settings.kafka_bootstrap, TOPIC_TASK_UPDATES, hub.publish).start()
    return create_app(services, hub)


def command(environ: dict[str, str] | None = None) -> list[str]:
    """The exact argv `tasktide serve` execs for this environment."""
    env = dict(os.environ if environ is None else environ)
    port = env.get("PORT", "8080")
    target = env.get("FUNCTION_TARGET")
    if target:
        source = env.get("FUNCTION_SOURCE", str(FUNCTIONS_DIR / f"{target}.py"))
        return [
            *(
                "functions-framework",
                "--target",
                target,
                "--source",
                source,
                "--signature-type",
                "cloudevent",
            ),
            *("--host", "0.0.0.0", "--port", port),
        ]
    return [*("uvicorn", "tasktide.serve:api_app", "--factory"), *("--host", "0.0.0.0", "--port", port)]


def serve() -> None:
    argv = command()
    os.execvp(argv[0], argv)
