"""kafka-python plumbing shared by the outbox relay (`messaging.kafka`) and the local router (`router/`).

Imports nothing of ours, so the router can use it without the database (import-linter contract). Holds the
one kafka-python version shim, the one way a producer is built, and the dead-letter topic's name.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from kafka import KafkaProducer

log = logging.getLogger(__name__)

# The KafkaTopic behind KafkaSink `tasktide-dead-letter` (eventing/kafka-sink.yaml); the router falls back
# to it for a KafkaSink it has no manifest of, `tasktide dead-letters` reads it.
DEAD_LETTER_TOPIC = "tasktide-dead-letter"

# kafka-python 3 bootstraps eagerly in __init__ for `bootstrap_timeout_ms` (30 s by default); 2.x names it
# `api_version_auto_timeout_ms`. Bounding it keeps a client built during a broker outage (and a stop()
# waiting for one) within its timeout.
BOOTSTRAP_TIMEOUT_SETTING = (
    "bootstrap_timeout_ms"
    if "bootstrap_timeout_ms" in KafkaProducer.DEFAULT_CONFIG
    else "api_version_auto_timeout_ms"
)

# Fetch settings of every latency-sensitive consumer (the router's KafkaSources, the SSE feed's follower).
# kafka-python's defaults let the broker hold a fetch up to 500 ms (`fetch_max_wait_ms`) until
# `fetch_min_bytes` arrive; a fetch that misses a record (sent just before a seek, a rebalance or a commit
# reordered it) then stalls delivery for that long. Answering after at most 20 ms bounds such a stall;
# an idle consumer makes about 50 empty fetches a second for it. One byte: answer as soon as anything is
# there.
CONSUMER_FETCH_SETTINGS: dict[str, int] = {"fetch_max_wait_ms": 20, "fetch_min_bytes": 1}


def make_producer(bootstrap: str, *, timeout_s: float, client_id: str, **settings: Any) -> KafkaProducer:
    """A producer with acks=all and idempotence whose every wait (bootstrap, metadata, request) is bounded
    by ``timeout_s``; ``settings`` add or override kafka-python settings (e.g. ``linger_ms``)."""
    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "acks": "all",
        "enable_idempotence": True,
        "retries": 3,
        "max_block_ms": int(timeout_s * 1000),
        "request_timeout_ms": int(timeout_s * 1000),
        "client_id": client_id,
        BOOTSTRAP_TIMEOUT_SETTING: int(timeout_s * 1000),
    }
    return KafkaProducer(**(config | settings))


class RecordProducer:
    """Produces single records and waits for Kafka's ack; one producer, built on first use, dropped after a
    failure so that the next send reconnects. Thread-safe (sends are serialised)."""

    def __init__(self, bootstrap: str, *, timeout_s: float = 30.0, client_id: str = "tasktide") -> None:
        self.bootstrap, self.timeout_s, self.client_id = bootstrap, timeout_s, client_id
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()

    def send(
        self, topic: str, value: bytes, *, key: bytes | None, headers: Sequence[tuple[str, bytes]]
    ) -> None:
        """Produce one record; raises (and drops the producer) if Kafka did not acknowledge it."""
        with self._lock:
            try:
                if self._producer is None:
                    self._producer = make_producer(
                        self.bootstrap, timeout_s=self.timeout_s, client_id=self.client_id
                    )
                future = self._producer.send(topic, value=value, key=key, headers=list(headers))
                future.get(timeout=self.timeout_s)
            except Exception:
                self._close_locked()
                raise

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        close_quietly(self._producer)
        self._producer = None


def close_quietly(producer: Any | None) -> None:
    """Close a (possibly broken) kafka-python producer within a second; a failure is only logged."""
    if producer is None:
        return
    try:
        producer.close(timeout=1)
    except Exception:
        log.debug("closing a producer failed", exc_info=True)
