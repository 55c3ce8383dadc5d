"""Smoke tests for the provisioned services: a real Postgres and a real Kafka broker.

Consumes env TASKTIDE_TEST_DATABASE_URL (SQLAlchemy URL, `postgresql+psycopg://...`) and TASKTIDE_TEST_KAFKA
(bootstrap servers), both exported by `.ci/test-env.sh` after `make services`. When a variable is absent the
test is skipped locally, but fails when env CI is `true`: CI must never silently skip the real services.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

import psycopg
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

# Upper bound for the consume loop; exceeding it fails the test, it is not a speed assertion.
CONSUME_DEADLINE_S = 60.0


def _require_env(name: str) -> str:
    value = os.environ.get(name, "")
    if value:
        return value
    message = f"{name} is not set (run `make services` and source .ci/test-env.sh)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}; CI must run against real services")
    pytest.skip(message)


def _libpq_url(sqlalchemy_url: str) -> str:
    """`postgresql+psycopg://u:p@h:port/db` -> `postgresql://u:p@h:port/db` for psycopg.connect."""
    scheme, sep, rest = sqlalchemy_url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"


def test_libpq_url_sqlalchemy_driver_suffix_stripped() -> None:
    assert _libpq_url("postgresql+psycopg://u:p@127.0.0.1:55432/db") == "postgresql://u:p@127.0.0.1:55432/db"
    assert _libpq_url("postgresql://u:p@h/db") == "postgresql://u:p@h/db"


@pytest.mark.postgres
def test_postgres_select_one_answers() -> None:
    url = _libpq_url(_require_env("TASKTIDE_TEST_DATABASE_URL"))
    with psycopg.connect(url, connect_timeout=10) as conn:
        row = conn.execute("select 1, current_database()").fetchone()
    assert row is not None
    assert row[0] == 1
    assert row[1] == url.rsplit("/", 1)[-1].split("?", 1)[0]


@pytest.mark.kafka
def test_kafka_record_with_headers_round_trips_on_fresh_topic() -> None:
    bootstrap = _require_env("TASKTIDE_TEST_KAFKA")
    topic = f"tasktide-smoke-{uuid.uuid4().hex}"
    headers = [("ce_type", b"com.tasktide.task.created"), ("ce_id", uuid.uuid4().hex.encode())]

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="tasktide-smoke-admin")
    try:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)], timeout_ms=30_000)
    finally:
        admin.close()

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        metadata = producer.send(topic, key=b"task-1", value=b'{"title":"smoke"}', headers=headers).get(30)
    finally:
        producer.close()
    assert metadata.topic == topic

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        partition = TopicPartition(topic, metadata.partition)
        consumer.assign([partition])
        consumer.seek(partition, metadata.offset)
        records: list[Any] = []
        deadline = time.monotonic() + CONSUME_DEADLINE_S
        while not records and time.monotonic() < deadline:
            records = consumer.poll(timeout_ms=1000).get(partition, [])
    finally:
        consumer.close()

    assert records, f"no record consumed back from {topic}"
    record = records[0]
    assert record.key == b"task-1"
    assert record.value == b'{"title":"smoke"}'
    assert list(record.headers) == headers
