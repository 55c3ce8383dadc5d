"""Liveness, readiness (database reachable) and Prometheus metrics."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response

from tasktide.api.deps import ServicesDep
from tasktide.api.problems import problem_response
from tasktide.db.engine import ping
from tasktide.messaging.outbox import measure_backlog
from tasktide.observability import metrics

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
def readyz(services: ServicesDep) -> dict[str, str] | Response:
    try:
        ping(services.engine)
    except Exception as exc:
        return problem_response(503, f"The database is not reachable: {type(exc).__name__}.")
    return {"status": "ready"}


@router.get("/metrics", include_in_schema=False)
def prometheus_metrics(services: ServicesDep) -> Response:
    try:
        measure_backlog(services.sessions)
    except Exception:  # the database being down must not hide every other metric
        log.warning("could not measure the outbox backlog", exc_info=True)
    payload, content_type = metrics.render()
    return Response(payload, media_type=content_type)
