"""Consumer settings of the latency-sensitive Kafka consumers (no broker needed)."""

from __future__ import annotations

from typing import Any

import kafka
import pytest

from tasktide.messaging.kafka import TopicFollower


class RecordingConsumer:
    """A KafkaConsumer stand-in that records its settings and knows no partitions."""

    built: list[dict[str, Any]] = []

    def __init__(self, **settings: Any) -> None:
        RecordingConsumer.built.append(settings)

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set()

    def close(self) -> None:
        pass


def test_topic_follower_consumer_fetch_answers_within_20ms_and_on_any_byte(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kafka, "KafkaConsumer", RecordingConsumer)
    RecordingConsumer.built = []
    follower = TopicFollower("127.0.0.1:1", "task-updates", lambda event: None)
    follower._stopped.set()  # its wait for partitions returns at once

    follower._follow()

    (settings,) = RecordingConsumer.built
    assert settings["fetch_max_wait_ms"] <= 20
    assert settings["fetch_min_bytes"] == 1
    assert settings["group_id"] is None
