"""Tests for the in-process broker: fan-out, retries, dead letters, replies, KafkaSource emulation."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tasktide.messaging import codec
from tasktide.router.broker import HOP_LIMIT, UnresolvableDestination, service_resolver
from tasktide.router.manifests import Destination, Ref, load_documents
from tasktide.router.runtime import EventRuntime

from .support import Behaviour, RecordingSleep, Subscribers

pytestmark = pytest.mark.anyio


def test_service_resolver_service_ref_and_uris() -> None:
    resolve = service_resolver("http://host:8080/")
    ref = Ref(kind="Service", name="tasktide-audit")
    assert resolve(Destination(ref=ref)) == "http://host:8080/services/tasktide-audit"
    assert resolve(Destination(ref=ref, uri="/inbox")) == "http://host:8080/services/tasktide-audit/inbox"
    assert resolve(Destination(uri="http://elsewhere/x")) == "http://elsewhere/x"
    with pytest.raises(UnresolvableDestination):
        resolve(Destination(ref=Ref(kind="Channel", name="c")))


async def test_publish_flaky_subscriber_retried_until_delivered(
    runtime: EventRuntime, subscribers: Subscribers
) -> None:
    subscribers.behaviours["flaky"] = Behaviour(fail_times=2)
    await runtime.publish(codec.new_event("test.flaky", "/test", {"x": 1}))
    await runtime.drain()
    assert len(subscribers.events("flaky")) == 3
    assert runtime.dead_letters == []


async def test_publish_always_failing_uses_broker_dead_letter_sink(
    runtime: EventRuntime, subscribers: Subscribers, fake_sleep: RecordingSleep
) -> None:
    subscribers.behaviours["broken"] = Behaviour(always_fail=True, fail_status=502)
    event = codec.new_event("test.broken", "/test", {"x": 1})
    await runtime.publish(event)
    await runtime.drain()
    assert len(subscribers.events("broken")) == 3  # trigger retry: 2
    assert fake_sleep.delays == [0.2, 0.4]  # trigger's linear backoff
    (letter,) = runtime.dead_letters
    assert letter.target == "test-dead-letter"  # broker-level deadLetterSink -> KafkaSink topic
    attrs = codec.attributes(letter.event)
    assert (attrs["id"], attrs["knativeerrorcode"]) == (event["id"], "502")
    assert attrs["knativeerrordest"] == f"{subscribers.base_url}/services/broken"


async def test_publish_reply_event_routed_to_other_trigger(
    runtime: EventRuntime, subscribers: Subscribers
) -> None:
    subscribers.behaviours["replier"] = Behaviour(reply_type="test.answer")
    question = codec.new_event("test.ask", "/test", {"q": "?"})
    await runtime.publish(question)
    await runtime.drain()
    (answer,) = subscribers.events("answers")
    assert answer["type"] == "test.answer"
    assert codec.event_data(answer) == {"in_reply_to": question["id"]}


async def test_publish_reply_loop_stops_at_hop_limit(runtime: EventRuntime, subscribers: Subscribers) -> None:
    subscribers.behaviours["looper"] = Behaviour(reply_type="test.loop")
    await runtime.publish(codec.new_event("test.loop", "/test", None))
    await runtime.drain()
    assert len(subscribers.events("looper")) == HOP_LIMIT + 1


async def test_publish_unmatched_event_delivered_nowhere(
    runtime: EventRuntime, subscribers: Subscribers
) -> None:
    await runtime.publish(codec.new_event("test.nobody", "/test", None))
    await runtime.drain()
    assert subscribers.received == {}
    assert runtime.dead_letters == []


async def test_publish_unmatched_event_logged_once_with_its_type(
    runtime: EventRuntime, subscribers: Subscribers, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="tasktide.router"):
        await runtime.publish(codec.new_event("test.nobody", "/test", None))
        await runtime.drain()
    lines = [r.getMessage() for r in caplog.records if "matches no Trigger" in r.getMessage()]
    assert len(lines) == 1 and "test.nobody" in lines[0]


async def test_publish_to_topic_goes_through_kafka_source_to_trigger(
    runtime: EventRuntime, subscribers: Subscribers
) -> None:
    event = codec.new_event("com.tasktide.task.created", "/tasktide/api", {"id": "t1"}, subject="t1")
    await runtime.publish_to_topic("task-events", event)
    await runtime.drain()
    (received,) = subscribers.events("audit")  # Trigger `tasks` -> Service audit, uri /inbox
    assert received["id"] == event["id"]


async def test_publish_to_topic_same_partitionkey_delivered_in_order(
    runtime: EventRuntime, subscribers: Subscribers
) -> None:
    events = [
        codec.new_event(
            f"com.tasktide.task.{kind}", "/tasktide/api", {"n": n}, extensions={"partitionkey": "t1"}
        )
        for n, kind in enumerate(["created", "updated", "completed", "reopened", "deleted"])
    ]
    for event in events:
        await runtime.publish_to_topic("task-events", event)
    await runtime.drain()
    assert [e["id"] for e in subscribers.events("audit")] == [e["id"] for e in events]


async def test_publish_to_topic_without_source_delivers_nothing_without_warning(
    runtime: EventRuntime, subscribers: Subscribers, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        await runtime.publish_to_topic(
            "task-updates", codec.new_event("com.tasktide.task.created", "/x", None)
        )
        await runtime.drain()
    assert subscribers.received == {}
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []  # SSE reads it: normal


async def test_trigger_uri_dead_letter_sink_receives_failed_event(
    subscribers: Subscribers, fake_sleep: RecordingSleep
) -> None:
    subscribers.behaviours["broken"] = Behaviour(always_fail=True, fail_status=500)
    docs: list[dict[str, Any]] = [
        {"kind": "Broker", "metadata": {"name": "default"}},
        {
            "kind": "Trigger",
            "metadata": {"name": "t"},
            "spec": {
                "broker": "default",
                "subscriber": {"ref": {"kind": "Service", "name": "broken"}},
                "delivery": {"retry": 1, "deadLetterSink": {"uri": f"{subscribers.base_url}/services/dlq"}},
            },
        },
    ]
    rt = EventRuntime.create(subscribers.base_url, manifests=load_documents(docs), sleep=fake_sleep)
    await rt.start()
    try:
        event = codec.new_event("anything", "/test", {"x": 1})
        await rt.publish(event)
        await rt.drain()
    finally:
        await rt.stop()
    (letter,) = subscribers.events("dlq")
    assert (letter["id"], letter["knativeerrorcode"]) == (event["id"], "500")
    assert len(subscribers.events("broken")) == 2
