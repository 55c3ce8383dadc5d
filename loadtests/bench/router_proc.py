"""The eventing plane alone, as its own process: what Knative's KafkaSource dispatcher, Kafka Broker and
Triggers do on a cluster, for the cluster-shaped event-latency benchmark (`cluster_shape.py`).

Consumes: the manifests of `eventing/` + `knative/` as `kustomize build` renders them
(`tasktide.router.manifests.load_manifests`), a Kafka bootstrap, one `--service NAME=URL` per Service
started as its own process, and `TASKTIDE_EVENT_SIGNING_KEY` (the key the functions verify with).
Emits: `tasktide.router.runtime.EventRuntime` in Kafka mode (a consumer per KafkaSource, in the group of
its manifest plus `--group-suffix`, so a benchmark never joins the group of another process on the same
Kafka) delivering to each Service at its own URL (path `/`, as a Knative Service's address), every
delivery signed for the Service's audience (`tasktide.edges.senderauth`, the local stand-in for Knative's
OIDC tokens); the broker ingress (`POST /{namespace}/{broker}`); `GET /healthz`, 200 once every KafkaSource
consumer has polled (joined its group), else 503. A Service without `--service` is routed to
`POST /stub/<name>` of this process, which answers 202 and counts the event (`GET /stub` lists the
counts): in the benchmark only PingSource ticks and no task event reach a stub.

    .venv/bin/python loadtests/bench/router_proc.py --port 8090 --bootstrap 127.0.0.1:9092 \
        --service tasktide-audit=http://127.0.0.1:8091 [--group-suffix -bench]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI, Response

from tasktide.edges import senderauth
from tasktide.observability.logs import configure_logging
from tasktide.router import broker
from tasktide.router.broker import Resolver
from tasktide.router.manifests import Manifests, load_manifests
from tasktide.router.runtime import EventRuntime
from tasktide.settings import get_settings

log = logging.getLogger("tasktide.bench.router")


def url_resolver(urls: Mapping[str, str]) -> Resolver:
    """Service ``S`` -> ``urls[S]`` (+ a relative ``uri``); a Service without a URL is unresolvable (the
    broker dead-letters or retries, as it would): the broker's own resolver over this mapping."""
    return broker.url_resolver(urls.get)


class UrlSigner(senderauth.Signer):
    """The router's signer when each Service has its own address: ``audiences`` maps a Service's base URL
    (not a ``/services/<name>`` path) to its audience."""

    def headers(self, url: str) -> dict[str, str]:
        for base, audience in self.audiences.items():
            if url == base or url.startswith(base.rstrip("/") + "/"):
                return {"Authorization": f"Bearer {self.token(audience)}"}
        return {}


def service_urls(manifests: Manifests, started: Mapping[str, str], own_url: str) -> dict[str, str]:
    """Every Service of the manifests -> its own process's URL, or this process's stub for it."""
    return {s.name: started.get(s.name, f"{own_url}/stub/{s.name}") for s in manifests.services}


def with_group_suffix(manifests: Manifests, suffix: str) -> Manifests:
    sources = tuple(
        dataclasses.replace(s, consumer_group=s.consumer_group + suffix) for s in manifests.kafka_sources
    )
    return dataclasses.replace(manifests, kafka_sources=sources)


def build_app(
    manifests: Manifests, bootstrap: str, started: Mapping[str, str], own_url: str, signing_key: str | None
) -> FastAPI:
    urls = service_urls(manifests, started, own_url)
    if signing_key:
        audiences = {
            urls[s.name]: senderauth.service_audience(s.name, s.namespace)
            for s in manifests.services
            if s.name in started
        }
        senderauth.install_signer(UrlSigner(senderauth.split_keys(signing_key)[0], audiences))
    runtime = EventRuntime.create(
        own_url, manifests=manifests, kafka_bootstrap=bootstrap, resolver=url_resolver(urls)
    )
    stubbed: Counter[str] = Counter()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        log.info("router ready: %s", ", ".join(f"{name}={url}" for name, url in sorted(urls.items())))
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(lifespan=lifespan)
    app.include_router(runtime.ingress_router)

    @app.get("/healthz")
    def healthz() -> Response:
        ready = all(c.ready.is_set() for c in runtime.consumers) and bool(runtime.consumers)
        return Response(status_code=200 if ready else 503)

    @app.post("/stub/{name}", status_code=202)
    def stub(name: str) -> Response:
        stubbed[name] += 1
        return Response(status_code=202)

    @app.get("/stub")
    def stub_counts() -> dict[str, int]:
        return dict(stubbed)

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--service", action="append", default=[], help="NAME=URL of a started Service")
    parser.add_argument("--group-suffix", default="", help="appended to every KafkaSource consumer group")
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging("router", settings.log_level)
    started = dict(item.split("=", 1) for item in args.service)
    manifests = with_group_suffix(
        load_manifests(settings.eventing_dir, settings.knative_dir), args.group_suffix
    )
    own_url = f"http://127.0.0.1:{args.port}"
    key = os.environ.get("TASKTIDE_EVENT_SIGNING_KEY") if settings.event_auth else None
    app = build_app(manifests, args.bootstrap, started, own_url, key)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_config=None, access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
