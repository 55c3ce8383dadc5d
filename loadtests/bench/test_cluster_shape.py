"""The cluster shape of the event-latency benchmark: the router process's wiring (unit tests, no services)
and the whole harness run small against the real Postgres and Kafka of `make test`.

Run: make pytest PYTEST_ARGS="loadtests/bench/test_cluster_shape.py"
"""

from __future__ import annotations

import os
from pathlib import Path

import cluster_shape
import event_latency
import httpx
import pytest
import router_proc
from tests.testenv import require_env

from tasktide.edges import senderauth
from tasktide.router.broker import UnresolvableDestination
from tasktide.router.manifests import Destination, KafkaSource, Manifests, Ref, ServiceDef

AUDIENCE = senderauth.service_audience("tasktide-audit", "tasktide")
MANIFESTS = Manifests(
    kafka_sources=(
        KafkaSource(
            "task-events", ("task-events",), "task-events-group", Destination(Ref("Broker", "default"))
        ),
    ),
    services=(ServiceDef("tasktide-audit", "tasktide"), ServiceDef("tasktide-notifier", "tasktide")),
)


def service(name: str, uri: str | None = None) -> Destination:
    return Destination(Ref("Service", name), uri)


def test_url_resolver_started_service_resolves_to_its_own_url() -> None:
    resolve = router_proc.url_resolver({"tasktide-audit": "http://127.0.0.1:9001"})
    assert resolve(service("tasktide-audit")) == "http://127.0.0.1:9001"
    assert resolve(service("tasktide-audit", "/hook")) == "http://127.0.0.1:9001/hook"
    assert resolve(Destination(uri="http://elsewhere/x")) == "http://elsewhere/x"


def test_url_resolver_service_without_url_raises() -> None:
    resolve = router_proc.url_resolver({})
    with pytest.raises(UnresolvableDestination):
        resolve(service("tasktide-audit"))
    with pytest.raises(UnresolvableDestination):
        resolve(Destination(Ref("Broker", "default")))


def test_service_urls_unstarted_service_points_at_the_stub() -> None:
    urls = router_proc.service_urls(MANIFESTS, {"tasktide-audit": "http://a:1"}, "http://r:2")
    assert urls == {"tasktide-audit": "http://a:1", "tasktide-notifier": "http://r:2/stub/tasktide-notifier"}


def test_url_signer_delivery_under_base_url_carries_a_token_the_function_verifies() -> None:
    signer = router_proc.UrlSigner("k" * 32, {"http://127.0.0.1:9001": AUDIENCE})
    headers = signer.headers("http://127.0.0.1:9001")
    claims = senderauth.Verifier(AUDIENCE, ("k" * 32,)).verify(headers["Authorization"])
    assert claims["aud"] == AUDIENCE
    assert "Authorization" in signer.headers("http://127.0.0.1:9001/x")
    assert signer.headers("http://127.0.0.1:90011") == {}


def test_with_group_suffix_renames_every_consumer_group() -> None:
    renamed = router_proc.with_group_suffix(MANIFESTS, "-bench")
    assert [s.consumer_group for s in renamed.kafka_sources] == ["task-events-group-bench"]
    assert renamed.services == MANIFESTS.services


@pytest.mark.kafka
@pytest.mark.postgres
@pytest.mark.timeout(120)
def test_cluster_shape_three_tasks_audited_through_kafka_by_signed_deliveries(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    database = require_env("TASKTIDE_TEST_DATABASE_URL")
    bootstrap = require_env("TASKTIDE_TEST_KAFKA")
    monkeypatch.setenv("TASKTIDE_BENCH_PG", "postgresql://" + database.split("://", 1)[1])
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    libpq_url, url = event_latency.fresh_database(f"tasktide_bench_events_test_{worker}")
    audits = event_latency.AuditCommits(libpq_url)
    try:
        with cluster_shape.cluster(url, bootstrap, group_suffix="-bench-test", log_dir=tmp_path) as running:
            unsigned = httpx.post(
                running.audit,
                content=b"{}",
                headers={
                    "ce-specversion": "1.0",
                    "ce-id": "x",
                    "ce-type": "com.tasktide.task.created",
                    "ce-source": "/test",
                    "content-type": "application/json",
                },
            )
            samples = event_latency.measure(running.api, bootstrap, audits, tasks=3, warmup=1)
    finally:
        audits.stop()
    assert unsigned.status_code == 401
    assert len(samples.audit) == 3
    # Each timestamp is when one of the benchmark's own observers woke (the HTTP client, a Kafka consumer
    # thread, a LISTEN thread), so their order is not causal: under load the audit's NOTIFY can wake its
    # thread before the consumer thread's fetch returns the record it was delivered from (CI saw it).
    for post, kafka, audit in zip(samples.post, samples.kafka, samples.audit, strict=True):
        assert post > 0 and kafka > 0 and audit > 0
