"""Kafka outage: tasks created while the broker is down reach `task-events` exactly once after it returns.

Consumes a REAL Kafka (TASKTIDE_TEST_KAFKA) that this test stops and restarts with TASKTIDE_KAFKA_SCRIPT
(eventing/local/kafka.sh), and a REAL Postgres (TASKTIDE_TEST_DATABASE_URL). Skipped locally when either is
absent, a failure under CI=true. The broker is always started again, whatever happens.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import text

from tasktide.db.engine import make_engine
from tasktide.messaging.kafka import KafkaPublisher
from tasktide.messaging.outbox import Relay
from tasktide.services import Services

# Broker stop + start (each up to SCRIPT_TIMEOUT) plus the delivery bound exceed the suite's 300 s default.
pytestmark = [pytest.mark.slow, pytest.mark.kafka, pytest.mark.postgres, pytest.mark.timeout(900)]

Auth = Callable[[str], dict[str, str]]
TOPIC = "task-events"
TASKS = 200
DELIVERY_BOUND_SECONDS = 180.0  # Kafka restart + the relay's capped (30 s) retry backoff, with headroom
QUIET_SECONDS = 3.0
SCRIPT_TIMEOUT = 240


def require_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not set: `make test` provisions it")
        pytest.skip(f"{name} not set (run `make test` to provision it)")
    return value


@pytest.fixture
def database_url(postgres_url: str) -> str:
    """Postgres only; an empty outbox so the relay publishes just this test's events."""
    engine = make_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM outbox"))
    engine.dispose()
    return postgres_url


def kafka_script(action: str) -> None:
    script = require_env("TASKTIDE_KAFKA_SCRIPT")
    subprocess.run(["bash", script, action], check=True, timeout=SCRIPT_TIMEOUT)


def end_offsets(bootstrap: str) -> dict[TopicPartition, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(TOPIC, p) for p in sorted(consumer.partitions_for_topic(TOPIC) or ())]
        assert partitions, f"topic {TOPIC} does not exist (run `bash eventing/local/kafka.sh topics`)"
        offsets: dict[TopicPartition, int] = consumer.end_offsets(partitions)
        return offsets
    finally:
        consumer.close()


def created_ids_for(
    bootstrap: str, start: dict[TopicPartition, int], user: str, expected: int
) -> Counter[str]:
    """Count `created` events of `user` on the topic from `start` by ce_id, until `expected` or the bound."""
    seen: Counter[str] = Counter()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        deadline = time.monotonic() + DELIVERY_BOUND_SECONDS
        quiet_until: float | None = None
        while time.monotonic() < (quiet_until or deadline):
            for batch in consumer.poll(timeout_ms=500).values():
                for record in batch:
                    headers = {name: value.decode() for name, value in record.headers}
                    if headers.get("ce_type") != "com.tasktide.task.created":
                        continue
                    if json.loads(record.value)["data"]["task"]["user_id"] == user:
                        seen[headers["ce_id"]] += 1
            if quiet_until is None and len(seen) >= expected:
                quiet_until = time.monotonic() + QUIET_SECONDS
    finally:
        consumer.close()
    return seen


@pytest.fixture
def relay_services(services: Services) -> Iterator[tuple[Services, KafkaPublisher]]:
    bootstrap = require_env("TASKTIDE_TEST_KAFKA")
    publisher = KafkaPublisher(bootstrap)
    services.start_relay(Relay(services.sessions, publisher), sweep_every=0.5)
    yield services, publisher
    if services.relay_worker is not None:
        services.relay_worker.stop(timeout=30)
    publisher.close()


def test_outage_tasks_created_while_kafka_down_are_published_exactly_once_after_restart(
    client: TestClient, relay_services: tuple[Services, KafkaPublisher], auth: Auth
) -> None:
    bootstrap = require_env("TASKTIDE_TEST_KAFKA")
    require_env("TASKTIDE_KAFKA_SCRIPT")
    services, _ = relay_services
    assert services.relay is not None
    user = f"outage-{uuid.uuid4().hex[:8]}"
    start = end_offsets(bootstrap)

    try:
        kafka_script("stop")
        statuses = [
            client.post(
                f"/api/{user}/tasks", json={"title": f"during outage {n}"}, headers=auth(user)
            ).status_code
            for n in range(TASKS)
        ]
        backlog_during_outage, _ = services.relay.update_backlog()
    finally:
        kafka_script("start")

    seen = created_ids_for(bootstrap, start, user, TASKS)

    assert statuses == [201] * TASKS, "the API keeps accepting writes while Kafka is down"
    assert backlog_during_outage == 2 * TASKS, "every event waits in the outbox (task-events + task-updates)"
    assert len(seen) == TASKS, f"{len(seen)} of {TASKS} created events reached {TOPIC}"
    assert set(seen.values()) == {1}, f"duplicates: {[i for i, n in seen.items() if n > 1][:5]}"
    assert services.relay.update_backlog()[0] == 0
