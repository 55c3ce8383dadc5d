"""Dead-letter replay against real Kafka: events go back to a broker ingress without the error extensions."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from kafka import KafkaProducer

from tasktide.messaging import codec
from tasktide.messaging.replay import replay, without_error_extensions
from tests.testenv import require_env


class Recorder(BaseHTTPRequestHandler):
    received: list[dict[str, str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        Recorder.received.append({k.lower(): v for k, v in self.headers.items()})
        self.send_response(202)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        return


@pytest.fixture
def broker_url() -> Iterator[str]:
    Recorder.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/tasktide/default"
    server.shutdown()


def dead_letter(event_id: str) -> codec.CloudEvent:
    return codec.new_event(
        "com.tasktide.reminder.due",
        "/tasktide/reminders",
        {"x": 1},
        subject="task-1",
        id=event_id,
        extensions={
            "knativeerrorcode": "500",
            "knativeerrordest": "http://notifier",
            "partitionkey": "task-1",
        },
    )


def test_without_error_extensions_keeps_identity_and_drops_errors() -> None:
    original = dead_letter("e1")
    cleaned = codec.attributes(without_error_extensions(original))
    assert cleaned["id"] == "e1" and cleaned["subject"] == "task-1" and cleaned["partitionkey"] == "task-1"
    assert cleaned["time"] == codec.attributes(original)["time"]  # history keeps its place
    assert not any(k.startswith("knativeerror") for k in cleaned)


@pytest.mark.kafka
def test_replay_dead_letters_posts_each_once_then_nothing(broker_url: str) -> None:
    bootstrap = require_env("TASKTIDE_TEST_KAFKA")
    topic = f"dead-letter-{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    ids = [f"dl-{i}-{uuid.uuid4().hex[:6]}" for i in range(2)]
    for event_id in ids:
        key, headers, value = codec.to_kafka_record(dead_letter(event_id))
        producer.send(topic, key=key, value=value, headers=headers)
    producer.flush()
    producer.close()
    group = f"replay-{uuid.uuid4().hex[:8]}"
    assert replay(bootstrap, broker_url, group=group, topic=topic) == 2
    assert sorted(h["ce-id"] for h in Recorder.received) == sorted(ids)
    assert not any(k.startswith("ce-knativeerror") for h in Recorder.received for k in h)
    assert replay(bootstrap, broker_url, group=group, topic=topic) == 0
