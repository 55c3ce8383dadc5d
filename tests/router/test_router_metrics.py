"""Metrics the router and the database layer export: dead letters per trigger, router-side outcomes,
Kafka consumer lag and database pool connections."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from tasktide.db.engine import make_engine, pool_connections, track_pool
from tasktide.messaging import codec
from tasktide.observability import metrics
from tasktide.router.kafka_source import consumer_lag
from tasktide.router.manifests import Manifests
from tasktide.router.runtime import EventRuntime

from .support import Behaviour, RecordingSleep, Subscribers


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def runtime(
    subscribers: Subscribers, manifests: Manifests, fake_sleep: RecordingSleep
) -> AsyncIterator[EventRuntime]:
    rt = EventRuntime.create(subscribers.base_url, manifests=manifests, sleep=fake_sleep)
    await rt.start()
    yield rt
    await rt.stop()


@pytest.mark.anyio
async def test_broker_always_failing_counts_dead_letter_per_trigger(
    runtime: EventRuntime, subscribers: Subscribers
) -> None:
    subscribers.behaviours["broken"] = Behaviour(always_fail=True, fail_status=502)
    outcome = {"function": "broken", "type": "test.broken"}
    before_dead = sample("tasktide_dead_letters_total", trigger="broken")
    before_dl = sample("tasktide_events_consumed_total", **outcome, outcome="dead_lettered")
    before_retried = sample("tasktide_events_consumed_total", **outcome, outcome="retried")

    await runtime.publish(codec.new_event("test.broken", "/test", {"x": 1}))
    await runtime.drain()

    assert sample("tasktide_dead_letters_total", trigger="broken") == before_dead + 1
    assert sample("tasktide_events_consumed_total", **outcome, outcome="dead_lettered") == before_dl + 1
    # 5xx answers come from the function, which counts its own retries: the router adds none.
    assert sample("tasktide_events_consumed_total", **outcome, outcome="retried") == before_retried


@pytest.mark.anyio
async def test_broker_retryable_4xx_counts_router_side_retries(
    runtime: EventRuntime, subscribers: Subscribers
) -> None:
    subscribers.behaviours["flaky"] = Behaviour(fail_times=2, fail_status=429)
    labels = {"function": "flaky", "type": "test.flaky", "outcome": "retried"}
    before = sample("tasktide_events_consumed_total", **labels)
    before_dead = sample("tasktide_dead_letters_total", trigger="flaky")

    await runtime.publish(codec.new_event("test.flaky", "/test", {"x": 1}))
    await runtime.drain()

    assert len(subscribers.events("flaky")) == 3
    assert sample("tasktide_events_consumed_total", **labels) == before + 2
    assert sample("tasktide_dead_letters_total", trigger="flaky") == before_dead


@dataclass(frozen=True)
class TP:
    topic: str
    partition: int


class FakeConsumer:
    def __init__(self, ends: dict[TP, int], positions: dict[TP, int]) -> None:
        self.ends, self.positions = ends, positions

    def assignment(self) -> set[TP]:
        return set(self.positions)

    def end_offsets(self, partitions: list[TP]) -> dict[TP, int]:
        return {tp: self.ends[tp] for tp in partitions}

    def position(self, tp: TP) -> int:
        return self.positions[tp]


def test_consumer_lag_assigned_partitions_summed_per_topic() -> None:
    a0, a1, b0 = TP("task-events", 0), TP("task-events", 1), TP("reminders", 0)
    consumer = FakeConsumer({a0: 10, a1: 5, b0: 3}, {a0: 7, a1: 5, b0: 3})

    assert consumer_lag(consumer) == {"task-events": 3, "reminders": 0}


def test_consumer_lag_no_assignment_reports_nothing() -> None:
    assert consumer_lag(FakeConsumer({}, {})) == {}


def test_pool_connections_checkout_and_checkin_track_states(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'pool.db'}", pool_size=2, max_overflow=2)
    track_pool(engine)
    try:
        connections = [engine.connect() for _ in range(3)]
        gauges = {state: sample("tasktide_db_pool_connections", state=state) for state in metrics.POOL_STATES}
        assert gauges == {"in_use": 3.0, "idle": 0.0, "overflow": 1.0}

        for connection in connections:
            connection.close()
        gauges = {state: sample("tasktide_db_pool_connections", state=state) for state in metrics.POOL_STATES}
        assert gauges == {"in_use": 0.0, "idle": 2.0, "overflow": 0.0}
        assert pool_connections(engine.pool) == {"in_use": 0, "idle": 2, "overflow": 0}
    finally:
        engine.dispose()
