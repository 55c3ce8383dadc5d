"""The local runtime as the twin of the Knative Kafka Broker data plane, one test per measured behaviour.

What the real eventing-kafka-broker dispatcher does with each subscriber answer (issue 9's table):
2xx empty = success; 2xx with a non-CloudEvent body = failure, no retry, dead letter with only
``knativeerrordest``; a CloudEvent reply goes back into the broker; 5xx/404/408/409/429/timeout/no connection
are retried with ``backoffDelay * 2^n`` and then dead-lettered with the error extensions; other 4xx are
dead-lettered at once. Plus the request headers it sends, ordered vs unordered delivery and a failing
dead-letter sink.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tasktide.messaging import codec
from tasktide.observability import metrics
from tasktide.router.manifests import load_documents
from tasktide.router.runtime import EventRuntime

from .support import Behaviour, GatedSleep, RecordingSleep, Subscribers

pytestmark = pytest.mark.anyio

DLQ = "test-dead-letter"


def trigger(name: str, *, ordered: bool | None = None, **delivery: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "tasktide"}
    if ordered is not None:
        meta["annotations"] = {
            "kafka.eventing.knative.dev/delivery.order": "ordered" if ordered else "unordered"
        }
    spec: dict[str, Any] = {
        "broker": "default",
        "filter": {"attributes": {"type": f"test.{name}"}},
        "subscriber": {"ref": {"kind": "Service", "name": name}},
        "delivery": {
            "retry": 3,
            "backoffPolicy": "exponential",
            "backoffDelay": "PT0.1S",
            "deadLetterSink": {"ref": {"kind": "KafkaSink", "name": "dlq"}},
            **delivery,
        },
    }
    return {"kind": "Trigger", "metadata": meta, "spec": spec}


def documents(*triggers: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"kind": "Broker", "metadata": {"name": "default", "namespace": "tasktide"}},
        {"kind": "KafkaSink", "metadata": {"name": "dlq", "namespace": "tasktide"}, "spec": {"topic": DLQ}},
        *triggers,
    ]


@pytest.fixture
async def plane(subscribers: Subscribers, fake_sleep: RecordingSleep) -> AsyncIterator[EventRuntime]:
    docs = documents(
        trigger("sub"),
        trigger("nodls", deadLetterSink=None),
        trigger("slow", timeout="PT0.2S", retry=1),
        trigger("replier"),
        trigger("answers"),
    )
    rt = EventRuntime.create(subscribers.base_url, manifests=load_documents(docs), sleep=fake_sleep)
    await rt.start()
    yield rt
    await rt.stop()


def event(kind: str, subject: str = "s1", data: object = None) -> codec.CloudEvent:
    return codec.new_event(f"test.{kind}", "/test", {"n": 1} if data is None else data, subject=subject)


async def publish(rt: EventRuntime, *events: codec.CloudEvent) -> None:
    for e in events:
        await rt.publish(e, "default", "tasktide")
    await rt.drain()


# -- 2xx ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 202, 204])
async def test_dispatch_2xx_empty_body_is_success_once(
    status: int, plane: EventRuntime, subscribers: Subscribers
) -> None:
    subscribers.behaviours["sub"] = Behaviour(ok_status=status)
    await publish(plane, event("sub"))
    assert subscribers.attempts["sub"] == 1
    assert plane.dead_letters == []


@pytest.mark.parametrize(
    ("status", "content_type", "body"),
    [
        (200, "text/html; charset=utf-8", b"OK"),  # functions-framework's default answer
        (200, "application/json", b'{"ok": true}'),
        (202, "text/plain", b"Accepted"),
    ],
)
async def test_dispatch_2xx_non_cloudevent_body_dead_lettered_once_with_dest_only(
    status: int, content_type: str, body: bytes, plane: EventRuntime, subscribers: Subscribers
) -> None:
    subscribers.behaviours["sub"] = Behaviour(
        ok_status=status, ok_body=body, ok_headers={"content-type": content_type}
    )
    sent = event("sub")
    await publish(plane, sent)
    assert subscribers.attempts["sub"] == 1  # not retried
    (letter,) = plane.dead_letters
    attrs = codec.attributes(letter.event)
    assert letter.target == DLQ and attrs["id"] == sent["id"]
    assert attrs["knativeerrordest"] == f"{subscribers.base_url}/services/sub"
    assert "knativeerrorcode" not in attrs and "knativeerrordata" not in attrs


async def test_dispatch_2xx_non_cloudevent_without_sink_is_logged_and_dropped(
    plane: EventRuntime, subscribers: Subscribers, caplog: pytest.LogCaptureFixture
) -> None:
    subscribers.behaviours["nodls"] = Behaviour(ok_status=200, ok_body=b"OK")
    with caplog.at_level(logging.WARNING, logger="tasktide.router.delivery"):
        await publish(plane, event("nodls"))
    assert subscribers.attempts["nodls"] == 1
    assert plane.dead_letters == []
    assert any("dropping event" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("structured", [False, True])
async def test_dispatch_cloudevent_reply_published_back_into_broker(
    structured: bool, plane: EventRuntime, subscribers: Subscribers
) -> None:
    subscribers.behaviours["replier"] = Behaviour(reply_type="test.answers", reply_structured=structured)
    question = event("replier")
    await publish(plane, question)
    (answer,) = subscribers.events("answers")
    assert codec.event_data(answer) == {"in_reply_to": question["id"]}
    assert plane.dead_letters == []


# -- retried -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 404, 408, 409, 429])
async def test_dispatch_retryable_status_retried_then_dead_lettered_with_error_extensions(
    status: int, plane: EventRuntime, subscribers: Subscribers, fake_sleep: RecordingSleep
) -> None:
    subscribers.behaviours["sub"] = Behaviour(
        always_fail=True, fail_status=status, fail_body=b"nope", fail_headers={"Kne-Reason": "quota"}
    )
    sent = event("sub")
    await publish(plane, sent)
    assert subscribers.attempts["sub"] == 4  # retry: 3
    assert fake_sleep.delays == pytest.approx([0.2, 0.4, 0.8])  # backoffDelay * 2^n, n = 1..3
    (letter,) = plane.dead_letters
    attrs = codec.attributes(letter.event)
    assert attrs["knativeerrorcode"] == str(status)
    assert base64.b64decode(attrs["knativeerrordata"]) == b"nope"
    assert attrs["knativeerrordest"] == f"{subscribers.base_url}/services/sub"
    assert attrs["reason"] == "quota"  # Kne-Reason -> extension `reason`
    assert codec.event_data(letter.event) == {"n": 1}


async def test_dispatch_timeout_retried_then_dead_lettered_with_dest_only(
    plane: EventRuntime, subscribers: Subscribers
) -> None:
    subscribers.behaviours["slow"] = Behaviour(delay=2.0)
    await publish(plane, event("slow"))
    assert subscribers.attempts["slow"] == 2  # retry: 1
    (letter,) = plane.dead_letters
    attrs = codec.attributes(letter.event)
    assert attrs["knativeerrordest"] == f"{subscribers.base_url}/services/slow"
    assert "knativeerrorcode" not in attrs and "knativeerrordata" not in attrs


async def test_dispatch_connection_refused_retried_then_dead_lettered_with_dest_only(
    fake_sleep: RecordingSleep,
) -> None:
    rt = EventRuntime.create(
        "http://127.0.0.1:9", manifests=load_documents(documents(trigger("gone"))), sleep=fake_sleep
    )
    await rt.start()
    try:
        await publish(rt, event("gone"))
    finally:
        await rt.stop()
    assert len(fake_sleep.delays) == 3
    (letter,) = rt.dead_letters
    attrs = codec.attributes(letter.event)
    assert attrs["knativeerrordest"] == "http://127.0.0.1:9/services/gone"
    assert "knativeerrorcode" not in attrs and "knativeerrordata" not in attrs


@pytest.mark.parametrize("status", [400, 401, 403, 422])
async def test_dispatch_other_4xx_dead_lettered_at_once(
    status: int, plane: EventRuntime, subscribers: Subscribers, fake_sleep: RecordingSleep
) -> None:
    subscribers.behaviours["sub"] = Behaviour(always_fail=True, fail_status=status, fail_body=b"bad")
    await publish(plane, event("sub"))
    assert subscribers.attempts["sub"] == 1
    assert fake_sleep.delays == []
    (letter,) = plane.dead_letters
    assert codec.attributes(letter.event)["knativeerrorcode"] == str(status)


# -- what the dispatcher sends -----------------------------------------------------------------------------


async def test_dispatch_headers_prefer_reply_namespace_binary_and_kafka_coordinates(
    plane: EventRuntime, subscribers: Subscribers
) -> None:
    first, second = event("sub", subject="k"), event("sub", subject="k")
    await publish(plane, first, second)
    requests = subscribers.raw("sub")
    assert len(requests) == 2
    for request in requests:
        headers = request.headers
        assert headers["prefer"] == "reply"
        assert headers["kn-namespace"] == "tasktide"
        assert headers["ce-specversion"] == "1.0" and "ce-id" in headers  # binary mode
        assert headers["ce-knativekafkapartition"] == "0"
        assert "traceparent" not in headers
    offsets = sorted(int(r.headers["ce-knativekafkaoffset"]) for r in requests)
    assert offsets == [offsets[0], offsets[0] + 1]


async def test_dispatch_traceparent_only_when_the_record_carries_one(
    plane: EventRuntime, subscribers: Subscribers
) -> None:
    traced = codec.new_event(
        "test.sub", "/t", {"n": 1}, extensions={"traceparent": "00-" + "a" * 32 + "-b" * 1}
    )
    await publish(plane, traced)  # the extension alone: no W3C header (the relay writes only ce_traceparent)
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    await plane.broker.publish(event("sub"), "default", "tasktide", traceparent=parent)
    await plane.drain()
    first, second = subscribers.raw("sub")
    assert "traceparent" not in first.headers
    assert second.headers["traceparent"] == parent


# -- dead-letter sink failure ------------------------------------------------------------------------------


async def test_dispatch_dead_letter_sink_failure_counted_and_logged(
    subscribers: Subscribers, fake_sleep: RecordingSleep, caplog: pytest.LogCaptureFixture
) -> None:
    docs = documents(trigger("sub", deadLetterSink={"uri": "http://127.0.0.1:9/dlq"}))
    rt = EventRuntime.create(subscribers.base_url, manifests=load_documents(docs), sleep=fake_sleep)
    subscribers.behaviours["sub"] = Behaviour(always_fail=True, fail_status=400)

    def failures() -> float:
        labels = {"trigger": "sub"}
        return metrics.REGISTRY.get_sample_value("tasktide_dead_letter_failures_total", labels) or 0.0

    before = failures()
    await rt.start()
    try:
        with caplog.at_level(logging.ERROR, logger="tasktide.router.broker"):
            await publish(rt, event("sub"))
    finally:
        await rt.stop()
    assert failures() == before + 1
    assert any("dead-letter sink failed" in r.getMessage() for r in caplog.records)


# -- ordering ----------------------------------------------------------------------------------------------


async def _ordering_run(
    subscribers: Subscribers, ordered: bool, stuck: int
) -> tuple[GatedSleep, EventRuntime]:
    """Publish ``stuck`` always-failing events, then one good one, all on one partition; return once every
    stuck event the trigger may run has failed once and waits in its backoff."""
    sleep = GatedSleep()
    docs = documents(trigger("lane", ordered=ordered))
    rt = EventRuntime.create(subscribers.base_url, manifests=load_documents(docs), sleep=sleep)
    subjects = [f"stuck{i}" for i in range(stuck)]
    subscribers.behaviours["lane"] = Behaviour(fail_subjects=frozenset(subjects))
    await rt.start()
    for subject in [*subjects, "other"]:
        e = codec.new_event("test.lane", "/t", {}, subject=subject, extensions={"partitionkey": "same"})
        await rt.publish(e, "default", "tasktide")
    in_backoff = 1 if ordered else stuck
    async with asyncio.timeout(20):
        while len(sleep.delays) < in_backoff:
            await asyncio.sleep(0.01)
    return sleep, rt


async def test_dispatch_unordered_retrying_events_hold_nothing_back(subscribers: Subscribers) -> None:
    # 5 users' webhooks failing (more than any fixed worker pool) must not delay a 6th user's reminder
    sleep, rt = await _ordering_run(subscribers, ordered=False, stuck=5)
    try:
        received = await subscribers.wait_for("lane", 6)  # delivered while all five still retry
        assert "other" in {str(e["subject"]) for e in received}
    finally:
        sleep.open()
        await rt.drain()
        await rt.stop()
    assert len(rt.dead_letters) == 5


async def test_dispatch_ordered_retrying_event_holds_its_partition(subscribers: Subscribers) -> None:
    sleep, rt = await _ordering_run(subscribers, ordered=True, stuck=1)
    try:
        await asyncio.sleep(0.3)  # give `other` every chance to overtake (it must not)
        assert [str(e["subject"]) for e in subscribers.events("lane")] == ["stuck0"]
    finally:
        sleep.open()
        await rt.drain()
        await rt.stop()
    subjects = [str(e["subject"]) for e in subscribers.events("lane")]
    assert subjects == ["stuck0"] * 4 + ["other"]
    assert [codec.attributes(d.event)["subject"] for d in rt.dead_letters] == ["stuck0"]


async def test_publish_from_topic_ordered_source_to_broker_holds_back_no_unordered_trigger(
    subscribers: Subscribers,
) -> None:
    # an ordered KafkaSource (spec.ordering absent: Knative defaults it to ordered) hands its events to the
    # Broker in order and at once, as the Broker ingress answers it; the unordered Trigger decides from there
    sleep = GatedSleep()
    source = {
        "kind": "KafkaSource",
        "metadata": {"name": "src", "namespace": "tasktide"},
        "spec": {"topics": ["t"], "sink": {"ref": {"kind": "Broker", "name": "default"}}},
    }
    docs = [*documents(trigger("lane", ordered=False)), source]
    rt = EventRuntime.create(subscribers.base_url, manifests=load_documents(docs), sleep=sleep)
    subscribers.behaviours["lane"] = Behaviour(fail_subjects=frozenset({"stuck"}))
    await rt.start()
    try:
        assert rt.manifests.kafka_sources[0].ordered
        for subject in ("stuck", "other"):
            e = codec.new_event("test.lane", "/t", {}, subject=subject, extensions={"partitionkey": "same"})
            await rt.publish_to_topic("t", e)
        received = await subscribers.wait_for("lane", 2)  # while "stuck" waits in its backoff
        assert {str(e["subject"]) for e in received} == {"stuck", "other"}
    finally:
        sleep.open()
        await rt.drain()
        await rt.stop()


# -- the CloudEvents HTTP binding at the ingress -----------------------------------------------------------


@pytest.fixture
async def ingress(plane: EventRuntime) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.include_router(plane.ingress_router)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingress") as client:
        yield client


BINARY = {"ce-specversion": "1.0", "ce-id": "b-1", "ce-source": "/curl", "ce-type": "test.sub"}


async def test_ingress_data_passed_through_byte_for_byte(
    ingress: httpx.AsyncClient, plane: EventRuntime, subscribers: Subscribers
) -> None:
    body = b'{ "b" : 1,\n  "a": [1.50, "\\u00e9"] }'
    response = await ingress.post(
        "/tasktide/default", headers={**BINARY, "content-type": "application/json"}, content=body
    )
    assert response.status_code == 202 and response.content == b""
    await plane.drain()
    (request,) = subscribers.raw("sub")
    assert request.body == body


async def test_ingress_mode_chosen_by_content_type(
    ingress: httpx.AsyncClient, plane: EventRuntime, subscribers: Subscribers
) -> None:
    doc = b'{"specversion":"1.0","id":"s-1","source":"/s","type":"test.sub","data":{"x":1}}'
    # structured content type wins over stray ce-* headers
    headers = {**BINARY, "ce-type": "test.nobody", "content-type": "application/cloudevents+json"}
    assert (await ingress.post("/tasktide/default", headers=headers, content=doc)).status_code == 202
    await plane.drain()
    (received,) = subscribers.events("sub")
    assert received["id"] == "s-1" and codec.event_data(received) == {"x": 1}


async def test_ingress_json_null_attribute_is_absent(
    ingress: httpx.AsyncClient, plane: EventRuntime, subscribers: Subscribers
) -> None:
    doc = b'{"specversion":"1.0","id":"n-1","source":"/s","type":"test.sub","subject":null,"data":null}'
    headers = {"content-type": "application/cloudevents+json"}
    assert (await ingress.post("/tasktide/default", headers=headers, content=doc)).status_code == 202
    await plane.drain()
    (request,) = subscribers.raw("sub")
    assert "ce-subject" not in request.headers and request.body == b""
    null_id = doc.replace(b'"n-1"', b"null")
    response = await ingress.post("/tasktide/default", headers=headers, content=null_id)
    assert response.status_code == 400 and "'id'" in response.json()["detail"]


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({**BINARY, "ce-Bad_Name": "x"}, "bad_name"),
        ({**BINARY, "ce-time": "2026-12-01 10:00"}, "RFC 3339"),
        ({**BINARY, "ce-time": "2026-13-01T10:00:00Z"}, "RFC 3339"),
    ],
)
async def test_ingress_invalid_attribute_rejected_400(
    headers: dict[str, str], detail: str, ingress: httpx.AsyncClient
) -> None:
    response = await ingress.post("/tasktide/default", headers=headers, content=b"{}")
    assert response.status_code == 400
    assert detail in response.json()["detail"]


async def test_ingress_batch_rejected_415(ingress: httpx.AsyncClient) -> None:
    headers = {"content-type": "application/cloudevents-batch+json"}
    response = await ingress.post("/tasktide/default", headers=headers, content=b"[]")
    assert response.status_code == 415
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_ingress_percent_encoded_and_non_ascii_attributes_never_lose_the_event(
    ingress: httpx.AsyncClient, plane: EventRuntime, subscribers: Subscribers
) -> None:
    encoded: dict[str, str | bytes] = {
        **BINARY,
        "ce-id": "p-1",
        "ce-subject": "%C3%9Cberweisung%20f%C3%BCr%20%22Max%22",
    }
    raw: dict[str, str | bytes] = {**BINARY, "ce-id": "p-2", "ce-subject": "Überweisung".encode()}
    for headers in (encoded, raw):
        response = await ingress.post("/tasktide/default", headers=headers, content=b"{}")
        assert response.status_code == 202
    await plane.drain()
    by_id = {str(e["id"]): e["subject"] for e in subscribers.events("sub")}
    assert by_id == {"p-1": 'Überweisung für "Max"', "p-2": "Überweisung"}
    sent = {r.headers["ce-id"]: r.headers["ce-subject"] for r in subscribers.raw("sub")}
    assert sent["p-2"] == "%C3%9Cberweisung"  # percent-encoded on the way out
    assert plane.dead_letters == []
