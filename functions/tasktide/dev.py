"""`tasktide dev`: the embedded default — API, functions and the event router in one process."""

from __future__ import annotations

import logging

import uvicorn

from tasktide.api.app import create_app
from tasktide.db.migrate import upgrade
from tasktide.services import Services
from tasktide.settings import get_settings

log = logging.getLogger(__name__)


def serve_dev() -> None:
    settings = get_settings()
    upgrade(settings.database_url)
    services = Services.build(settings)
    app = create_app(services)
    log.info("tasktide dev on http://%s:%s (%s)", settings.host, settings.port, settings.database_url)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")
