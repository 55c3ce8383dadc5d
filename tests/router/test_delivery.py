"""Tests for single-subscriber delivery against a real local HTTP server."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest

from tasktide.messaging import codec
from tasktide.router.dead_letters import DeadLetterLog
from tasktide.router.delivery import HttpSender, backoff, deliver
from tasktide.router.manifests import DeliverySpec

from .support import Behaviour, RecordingSleep, Subscribers

pytestmark = pytest.mark.anyio

RETRY3 = DeliverySpec(retry=3, backoff_policy="exponential", backoff_delay=0.1)


@pytest.fixture
async def client() -> AsyncIterator[HttpSender]:
    sender = HttpSender()
    try:
        yield sender
    finally:
        await sender.close()


def _event() -> codec.CloudEvent:
    return codec.new_event("test.flaky", "/test", {"n": 1}, extensions={"partitionkey": "k"})


def test_backoff_exponential_is_delay_times_two_to_the_n_and_linear_grows() -> None:
    exp = DeliverySpec(backoff_policy="exponential", backoff_delay=0.5)
    lin = DeliverySpec(backoff_policy="linear", backoff_delay=0.5)
    # measured on the Kafka Broker dispatcher: PT0.2S gave gaps of 0.4, 0.8, 1.6 s
    assert [backoff(exp, n) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert [backoff(lin, n) for n in (1, 2, 3)] == [0.5, 1.0, 1.5]


async def test_deliver_fails_twice_then_succeeds_receives_three_times(
    subscribers: Subscribers, client: HttpSender, fake_sleep: RecordingSleep
) -> None:
    subscribers.behaviours["flaky"] = Behaviour(fail_times=2, fail_status=503)
    sink = DeadLetterLog()
    url = f"{subscribers.base_url}/services/flaky"
    event = _event()
    outcome = await deliver(
        event, url, RETRY3, client, dead_letter=sink, dead_letter_target="dlq", sleep=fake_sleep
    )
    assert (outcome.status, outcome.attempts, outcome.status_code) == ("delivered", 3, 202)
    received = subscribers.events("flaky")
    assert [e["id"] for e in received] == [event["id"]] * 3
    assert fake_sleep.delays == [0.2, 0.4]
    assert not sink.records


@pytest.mark.parametrize("status", [404, 408, 409, 429, 500])
async def test_deliver_retryable_status_is_retried(
    status: int, subscribers: Subscribers, client: HttpSender, fake_sleep: RecordingSleep
) -> None:
    subscribers.behaviours["flaky"] = Behaviour(fail_times=1, fail_status=status)
    url = f"{subscribers.base_url}/services/flaky"
    outcome = await deliver(_event(), url, RETRY3, client, sleep=fake_sleep)
    assert (outcome.status, outcome.attempts) == ("delivered", 2)


async def test_deliver_always_failing_dead_letters_with_error_extensions(
    subscribers: Subscribers, client: HttpSender, fake_sleep: RecordingSleep
) -> None:
    subscribers.behaviours["broken"] = Behaviour(always_fail=True, fail_status=500, fail_body=b"boom")
    sink = DeadLetterLog()
    url = f"{subscribers.base_url}/services/broken"
    spec = DeliverySpec(retry=2, backoff_policy="linear", backoff_delay=0.2)
    event = _event()
    outcome = await deliver(
        event, url, spec, client, dead_letter=sink, dead_letter_target="dlq", sleep=fake_sleep
    )
    assert (outcome.status, outcome.attempts, outcome.status_code) == ("dead_lettered", 3, 500)
    assert len(subscribers.events("broken")) == 3
    assert fake_sleep.delays == [0.2, 0.4]
    (letter,) = sink.records
    attrs = codec.attributes(letter.event)
    assert letter.target == "dlq"
    assert attrs["id"] == event["id"]
    assert attrs["knativeerrorcode"] == "500"
    assert attrs["knativeerrordest"] == url
    assert base64.b64decode(attrs["knativeerrordata"]) == b"boom"
    assert codec.event_data(letter.event) == {"n": 1}


async def test_deliver_error_data_is_truncated(
    subscribers: Subscribers, client: HttpSender, fake_sleep: RecordingSleep
) -> None:
    subscribers.behaviours["broken"] = Behaviour(always_fail=True, fail_body=b"x" * 5000)
    sink = DeadLetterLog()
    url = f"{subscribers.base_url}/services/broken"
    await deliver(_event(), url, None, client, dead_letter=sink, dead_letter_target="dlq", sleep=fake_sleep)
    data = base64.b64decode(codec.attributes(sink.records[0].event)["knativeerrordata"])
    assert data == b"x" * 1024


@pytest.mark.parametrize("status", [400, 403, 413])
async def test_deliver_non_retryable_4xx_dead_letters_immediately(
    status: int, subscribers: Subscribers, client: HttpSender, fake_sleep: RecordingSleep
) -> None:
    subscribers.behaviours["rejecting"] = Behaviour(always_fail=True, fail_status=status)
    sink = DeadLetterLog()
    url = f"{subscribers.base_url}/services/rejecting"
    outcome = await deliver(
        _event(), url, RETRY3, client, dead_letter=sink, dead_letter_target="d", sleep=fake_sleep
    )
    assert (outcome.status, outcome.attempts) == ("dead_lettered", 1)
    assert fake_sleep.delays == []
    assert codec.attributes(sink.records[0].event)["knativeerrorcode"] == str(status)


async def test_deliver_connection_refused_retries_then_drops_without_sink(
    client: HttpSender, fake_sleep: RecordingSleep
) -> None:
    outcome = await deliver(_event(), "http://127.0.0.1:9/nothing", RETRY3, client, sleep=fake_sleep)
    assert (outcome.status, outcome.attempts, outcome.status_code) == ("dropped", 4, None)
    assert len(fake_sleep.delays) == 3


async def test_deliver_connection_refused_dead_letter_has_dest_but_no_code(
    client: HttpSender, fake_sleep: RecordingSleep
) -> None:
    sink = DeadLetterLog()
    url = "http://127.0.0.1:9/nothing"
    await deliver(_event(), url, None, client, dead_letter=sink, dead_letter_target="d", sleep=fake_sleep)
    attrs = codec.attributes(sink.records[0].event)
    assert attrs["knativeerrordest"] == url
    assert "knativeerrorcode" not in attrs


async def test_deliver_reply_event_is_returned(
    subscribers: Subscribers, client: HttpSender, fake_sleep: RecordingSleep
) -> None:
    subscribers.behaviours["replier"] = Behaviour(reply_type="test.answer")
    event = _event()
    outcome = await deliver(event, f"{subscribers.base_url}/services/replier", None, client, sleep=fake_sleep)
    assert outcome.status == "delivered"
    assert outcome.reply is not None
    assert outcome.reply["type"] == "test.answer"
    assert codec.event_data(outcome.reply) == {"in_reply_to": event["id"]}


async def test_deliver_redirect_not_followed_dead_letters_the_3xx(
    subscribers: Subscribers, client: HttpSender, fake_sleep: RecordingSleep
) -> None:
    target = f"{subscribers.base_url}/services/elsewhere"
    subscribers.behaviours["moved"] = Behaviour(
        always_fail=True, fail_status=307, fail_body=b"", fail_headers={"Location": target}
    )
    sink = DeadLetterLog()
    url = f"{subscribers.base_url}/services/moved"
    outcome = await deliver(
        _event(), url, RETRY3, client, dead_letter=sink, dead_letter_target="d", sleep=fake_sleep
    )
    assert (outcome.status, outcome.attempts, outcome.status_code) == ("dead_lettered", 1, 307)
    assert subscribers.events("elsewhere") == []


async def test_deliver_event_without_content_type_arrives_without_one(
    subscribers: Subscribers, client: HttpSender, fake_sleep: RecordingSleep
) -> None:
    event = codec.CloudEvent(
        {"specversion": "1.0", "id": "e-1", "source": "/test", "type": "test.raw"}, b'{"n": 1}'
    )
    outcome = await deliver(event, f"{subscribers.base_url}/services/plain", None, client, sleep=fake_sleep)
    assert outcome.status == "delivered"
    (request,) = subscribers.raw("plain")
    names = {name.lower() for name in request.headers}
    assert "content-type" not in names
    assert not names & {"user-agent", "cookie", "accept-encoding"}
