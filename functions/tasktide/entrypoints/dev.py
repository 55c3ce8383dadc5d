"""`tasktide dev`: the API, every function and the Knative-faithful event router in one process.

Reads the same `eventing/` and `knative/` YAML a cluster runs: each Knative Service with a
`FUNCTION_TARGET` is served by `tasktide.functions._server`'s app (as in the container) at
`/services/<name>`, the
broker ingress at
`/<namespace>/<broker>`, and Triggers, KafkaSources and PingSources route events to them over HTTP.
Embedded (default): outbox -> in-process topics. With `--kafka`: outbox -> Kafka -> KafkaSource consumers.
As on a cluster with Knative's OIDC sender authentication, the router signs every delivery for the target
function's audience and each function refuses a POST without that token (`tasktide.edges.senderauth`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from tasktide.agent import chat
from tasktide.api.app import create_app
from tasktide.db.migrate import upgrade
from tasktide.edges import senderauth
from tasktide.edges.bodyguard import BufferedBody
from tasktide.functions._server import create_function_app, guarded
from tasktide.messaging import codec
from tasktide.messaging.events import TOPIC_TASK_UPDATES
from tasktide.messaging.outbox import OutboxRecord, Relay
from tasktide.messaging.stream import StreamHub
from tasktide.observability.logs import configure_logging
from tasktide.router.manifests import ServiceDef
from tasktide.router.runtime import EventRuntime
from tasktide.services import Services
from tasktide.settings import Settings, get_settings

log = logging.getLogger(__name__)


def function_app(
    target: str, settings: Settings, services: Services | None = None, audience: str | None = None
) -> BufferedBody | senderauth.SenderAuth:
    """The exact app a Knative Service with `FUNCTION_TARGET=target` runs (see
    `tasktide.functions._server`), here running with the API's ``services``; with ``audience`` it requires
    the router's sender token."""
    return guarded(create_function_app(target, services=services), settings, audience=audience)


def sender_auth(settings: Settings, services: Sequence[ServiceDef]) -> tuple[Settings, dict[str, str]]:
    """As on a cluster with Knative's OIDC sender authentication: the router signs each delivery for the
    target function's audience and every function verifies it. Returns the settings the functions run with
    (the signing key filled in) and each function's audience by Service name; none when
    `TASKTIDE_EVENT_AUTH=false`."""
    if not settings.event_auth:
        senderauth.install_signer(None)
        return settings, {}
    key = settings.event_signing_key or senderauth.process_key()
    audiences = {
        s.name: senderauth.service_audience(s.name, s.namespace)
        for s in services
        if s.env.get("FUNCTION_TARGET")
    }
    signing_key = senderauth.split_keys(key)[0]
    senderauth.install_signer(
        senderauth.Signer(signing_key, {f"/services/{name}": aud for name, aud in audiences.items()})
    )
    return settings.model_copy(update={"event_signing_key": key}), audiences


class EmbeddedPublisher:
    """Outbox -> in-process topics: the KafkaSources of each topic, and the live-updates hub (the stored
    structured-mode dict goes to the hub as it is, and becomes a CloudEvent without a JSON round trip)."""

    def __init__(self, runtime: EventRuntime, hub: StreamHub, loop: asyncio.AbstractEventLoop) -> None:
        self.runtime, self.hub, self.loop = runtime, hub, loop

    def publish(self, records: Sequence[OutboxRecord]) -> None:
        for record in records:
            if record.topic == TOPIC_TASK_UPDATES:
                self.hub.publish(record.event)
            event = codec.from_dict(record.event)
            asyncio.run_coroutine_threadsafe(
                self.runtime.publish_to_topic(record.topic, event), self.loop
            ).result(30)


def build_dev_app(settings: Settings) -> FastAPI:
    upgrade(settings.database_url)
    services = Services.build(settings)
    hub = StreamHub()
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    runtime = EventRuntime.create(
        settings.public_url or f"http://{host}:{settings.port}",
        settings.eventing_dir,
        settings.knative_dir,
        settings.kafka_bootstrap,
        settings.ping_every,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if settings.kafka_bootstrap:
            from tasktide.messaging.kafka import KafkaPublisher

            publisher: KafkaPublisher | EmbeddedPublisher = KafkaPublisher(settings.kafka_bootstrap)
            services.follow_updates(hub)
        else:
            publisher = EmbeddedPublisher(runtime, hub, asyncio.get_running_loop())
        await runtime.start()
        services.start_relay(Relay(services.sessions, publisher), sweep_every=1.0)
        mode = f"Kafka at {settings.kafka_bootstrap}" if settings.kafka_bootstrap else "embedded events"
        safe_url = services.engine.url.render_as_string(hide_password=True)
        log.info("tasktide dev ready: %s, %s", safe_url, mode)
        try:
            yield
        finally:
            await asyncio.to_thread(services.close)  # the relay first: it publishes into the runtime
            await runtime.stop()

    app = create_app(services, hub, lifespan)
    app.include_router(chat.router)  # the chat agent, in-process (its own Service on a cluster)
    function_settings, audiences = sender_auth(settings, runtime.manifests.services)
    functions: dict[str, ASGIApp] = {}
    for service in runtime.manifests.services:
        target = service.env.get("FUNCTION_TARGET")
        if target:
            served = function_app(target, function_settings, services, audiences.get(service.name))
            functions[f"/services/{service.name}"] = served  # exactly the Knative-style URL
    app.add_middleware(FunctionRoutes, functions=functions)  # added last: outermost, ahead of the API's
    app.include_router(runtime.ingress_router)
    app.state.runtime = runtime
    return app


class FunctionRoutes:
    """ASGI: a request for exactly `/services/<name>` goes straight to that function's app (its own body
    guard and sender check), past the API's middleware and routes, as a Knative Service has its own pod;
    anything else goes on to the API."""

    def __init__(self, app: ASGIApp, functions: dict[str, ASGIApp]) -> None:
        self.app, self.functions = app, functions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        function = self.functions.get(scope.get("path", "")) if scope["type"] == "http" else None
        await (function or self.app)(scope, receive, send)


def quiet_internal_deliveries(record: logging.LogRecord) -> bool:
    """Drop uvicorn's access line for the router's own successful deliveries to `/services/<name>`: the
    function logs its outcome already, so `--ping-every 1s` does not add two lines a second."""
    args = record.args
    if isinstance(args, tuple) and len(args) >= 5:
        path, status = str(args[2]), args[4]
        if path.startswith("/services/") and isinstance(status, int) and status < 400:
            return False
    return True


def serve_dev() -> None:
    settings = get_settings()
    configure_logging("dev", settings.log_level)
    logging.getLogger("uvicorn.access").addFilter(quiet_internal_deliveries)
    app = build_dev_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None)
