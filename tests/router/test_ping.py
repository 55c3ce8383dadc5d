"""Tests for PingSources: event shape, cron scheduling and the ``every`` override."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from tasktide.messaging import codec
from tasktide.router.manifests import Destination, Manifests, PingSource
from tasktide.router.ping import PING_TYPE, PingScheduler, next_delay, ping_event
from tasktide.router.runtime import EventRuntime

from .support import Subscribers


def _source(
    data: str | None = '{"job": "tick"}',
    data_base64: str | None = None,
    content_type: str | None = "application/json",
) -> PingSource:
    return PingSource(
        name="tick",
        schedule="* * * * *",
        sink=Destination(uri="http://x"),
        data=data,
        data_base64=data_base64,
        content_type=content_type,
    )


def test_ping_event_json_data_has_knative_type_and_source() -> None:
    event = ping_event(_source())
    attrs = codec.attributes(event)
    assert attrs["type"] == PING_TYPE
    assert attrs["source"] == "/apis/v1/namespaces/default/pingsources/tick"
    assert attrs["datacontenttype"] == "application/json"
    assert codec.event_data(event) == {"job": "tick"}


def test_ping_event_text_data_kept_as_text() -> None:
    event = ping_event(_source(data="hello", content_type=None))
    assert (codec.attributes(event)["datacontenttype"], codec.event_data(event)) == ("text/plain", "hello")


def test_ping_event_base64_data_decoded_to_bytes() -> None:
    event = ping_event(_source(data=None, data_base64="aGk=", content_type=None))
    assert codec.event_data(event) == b"hi"


@pytest.mark.parametrize(
    ("schedule", "now", "expected"),
    [
        ("* * * * *", datetime(2025, 1, 1, 12, 0, 30, tzinfo=UTC), 30.0),
        ("*/15 * * * *", datetime(2025, 1, 1, 12, 1, 0, tzinfo=UTC), 14 * 60.0),
        ("0,30 * * * *", datetime(2025, 1, 1, 12, 10, 0, tzinfo=UTC), 20 * 60.0),
    ],
)
def test_next_delay_cron_schedule_returns_seconds_to_next_tick(
    schedule: str, now: datetime, expected: float
) -> None:
    assert next_delay(schedule, "Etc/UTC", now) == expected


def test_ping_scheduler_invalid_schedule_rejected() -> None:
    bad = PingSource(name="bad", schedule="every minute", sink=Destination(uri="http://x"))

    async def send(dest: Destination, event: codec.CloudEvent) -> None:
        return None

    with pytest.raises(ValueError, match="bad"):
        PingScheduler((bad,), send)


@pytest.mark.anyio
async def test_ping_every_override_fires_to_sink(subscribers: Subscribers, manifests: Manifests) -> None:
    runtime = EventRuntime.create(subscribers.base_url, manifests=manifests, ping_every=0.01)
    await runtime.start()
    try:
        for _ in range(1000):  # yearly cron in the fixture: only the override can fire it
            if subscribers.events("pinged"):
                break
            await asyncio.sleep(0.01)
    finally:
        await runtime.stop()
    received = subscribers.events("pinged")
    assert received, "the overridden PingSource never fired"
    assert received[0]["type"] == PING_TYPE
    assert codec.event_data(received[0]) == {"job": "tick"}
