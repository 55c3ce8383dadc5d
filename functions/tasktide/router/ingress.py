"""Broker ingress: ``POST /{namespace}/{broker}`` accepting binary or structured CloudEvents.

Consumes HTTP requests (the data kept as the bytes that arrived, so subscribers get it byte for byte; a
``traceparent`` request header travels with the record); emits ``202 Accepted`` with an empty body after
handing the event to :class:`LocalBroker.publish`, or an RFC 9457 ``application/problem+json`` response:
400 for a malformed event, 415 for a batch, 404 for an unknown broker. Unlike the cluster's ingress, the
202 does not mean the event is on disk (see docs/architecture.md, "local runtime vs cluster").
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from tasktide.messaging import codec
from tasktide.router.broker import LocalBroker

PROBLEM_JSON = "application/problem+json"


def problem(status: int, title: str, detail: str, type_: str = "about:blank") -> JSONResponse:
    body = {"type": type_, "title": title, "status": status, "detail": detail}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def make_ingress_router(broker: LocalBroker) -> APIRouter:
    """A router exposing the ingress of every broker known to ``broker``."""
    router = APIRouter(tags=["eventing"])

    @router.post("/{namespace}/{broker_name}", status_code=202, response_class=Response)
    async def ingest(namespace: str, broker_name: str, request: Request) -> Response:
        if not broker.has_broker(namespace, broker_name):
            return problem(404, "Broker not found", f"no Broker {broker_name!r} in namespace {namespace!r}")
        body = await request.body()
        try:
            event = codec.from_http(dict(request.headers), body, raw_data=True)
        except codec.UnsupportedEvent as exc:
            return problem(415, "Unsupported CloudEvent encoding", str(exc))
        except codec.InvalidEvent as exc:
            return problem(400, "Invalid CloudEvent", str(exc))
        traceparent = request.headers.get("traceparent")
        await broker.publish(event, broker_name, namespace, traceparent=traceparent)
        return Response(status_code=202)

    return router
