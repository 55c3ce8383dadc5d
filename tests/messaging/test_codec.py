"""Tests for tasktide.messaging.codec: HTTP (binary/structured) and Kafka codecs and validation."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from tasktide.messaging import codec


def _event() -> codec.CloudEvent:
    return codec.new_event(
        "com.tasktide.task.created",
        "/tasktide/api",
        {"id": "t1", "title": "write tests"},
        subject="t1",
        id="evt-1",
        time=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        extensions={"partitionkey": "t1", "traceparent": "00-abc-def-01"},
    )


def test_new_event_defaults_fills_id_time_and_content_type() -> None:
    event = codec.new_event("t", "/s", None)
    attrs = codec.attributes(event)
    assert attrs["specversion"] == "1.0"
    assert attrs["id"]
    assert attrs["time"].endswith("Z")
    assert attrs["datacontenttype"] == "application/json"


def test_new_event_bad_extension_name_raises_invalid_event() -> None:
    with pytest.raises(codec.InvalidEvent, match="Bad-Name"):
        codec.new_event("t", "/s", None, extensions={"Bad-Name": "x"})


def test_binary_http_roundtrip_preserves_attributes_and_data() -> None:
    headers, body = codec.to_binary_http(_event())
    assert headers["ce-type"] == "com.tasktide.task.created"
    assert headers["ce-partitionkey"] == "t1"
    assert headers["content-type"] == "application/json"
    parsed = codec.from_http(headers, body)
    assert codec.attributes(parsed) == codec.attributes(_event())
    assert codec.event_data(parsed) == {"id": "t1", "title": "write tests"}


def test_structured_http_roundtrip_preserves_attributes_and_data() -> None:
    headers, body = codec.to_structured_http(_event())
    assert headers["content-type"] == "application/cloudevents+json"
    assert json.loads(body)["subject"] == "t1"
    parsed = codec.from_http(headers, body)
    assert codec.attributes(parsed) == codec.attributes(_event())
    assert codec.event_data(parsed) == {"id": "t1", "title": "write tests"}


def test_structured_http_bytes_data_uses_data_base64() -> None:
    event = codec.new_event("t", "/s", b"\x00\x01", datacontenttype="application/octet-stream")
    headers, body = codec.to_structured_http(event)
    assert "data_base64" in json.loads(body)
    assert codec.event_data(codec.from_http(headers, body)) == b"\x00\x01"


def test_from_http_text_content_type_yields_str() -> None:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "1",
        "ce-source": "/s",
        "ce-type": "t",
        "content-type": "text/plain",
    }
    assert codec.event_data(codec.from_http(headers, b"hello")) == "hello"


@pytest.mark.parametrize(
    ("headers", "body", "message"),
    [
        ({"ce-specversion": "1.0", "ce-source": "/s", "ce-type": "t"}, b"{}", "'id'"),
        ({"ce-specversion": "0.3", "ce-id": "1", "ce-source": "/s", "ce-type": "t"}, b"{}", "specversion"),
        (
            {
                "ce-specversion": "1.0",
                "ce-id": "1",
                "ce-source": "/s",
                "ce-type": "t",
                "content-type": "application/json",
            },
            b"{not json",
            "not valid JSON",
        ),
        ({"content-type": "application/cloudevents+json"}, b"[1, 2]", "JSON object"),
        ({"content-type": "application/cloudevents+json"}, b"{oops", "not valid JSON"),
        ({"content-type": "application/cloudevents+json"}, b'{"specversion": "1.0", "id": "1"}', "'source'"),
        ({"content-type": "application/json"}, b"{}", "not a CloudEvent"),
    ],
)
def test_from_http_malformed_raises_invalid_event(headers: dict[str, str], body: bytes, message: str) -> None:
    with pytest.raises(codec.InvalidEvent, match=message):
        codec.from_http(headers, body)


def test_to_kafka_record_key_defaults_to_partitionkey() -> None:
    key, headers, value = codec.to_kafka_record(_event())
    assert key == b"t1"
    names = dict(headers)
    assert names["ce_type"] == b"com.tasktide.task.created"
    assert names["content-type"] == b"application/json"
    assert json.loads(value) == {"id": "t1", "title": "write tests"}


def test_to_kafka_record_explicit_key_wins() -> None:
    key, _, _ = codec.to_kafka_record(_event(), key="other")
    assert key == b"other"


def test_kafka_binary_roundtrip_preserves_event() -> None:
    parsed = codec.from_kafka_record(*codec.to_kafka_record(_event()))
    assert codec.attributes(parsed) == codec.attributes(_event())
    assert codec.event_data(parsed) == codec.event_data(_event())


def test_from_kafka_record_structured_parses() -> None:
    _, body = codec.to_structured_http(_event())
    parsed = codec.from_kafka_record(None, [("content-type", b"application/cloudevents+json")], body)
    assert parsed["id"] == "evt-1"


def test_to_kafka_structured_record_value_is_whole_event_and_roundtrips() -> None:
    key, headers, value = codec.to_kafka_structured_record(_event())
    names = dict(headers)
    assert key == b"t1"
    assert names["content-type"] == b"application/cloudevents+json"
    assert names["ce_type"] == b"com.tasktide.task.created"  # a copy for header-based tools
    doc = json.loads(value)
    assert doc["specversion"] == "1.0" and doc["id"] == "evt-1"
    assert doc["data"] == {"id": "t1", "title": "write tests"}
    parsed = codec.from_kafka_record(key, headers, value)
    assert codec.attributes(parsed) == codec.attributes(_event())
    assert codec.event_data(parsed) == codec.event_data(_event())


def test_from_kafka_record_plain_value_raises_invalid_event() -> None:
    with pytest.raises(codec.InvalidEvent, match="not a CloudEvent"):
        codec.from_kafka_record(None, [], b"raw")


def test_attributes_all_values_are_strings() -> None:
    attrs = codec.attributes(_event())
    assert all(isinstance(v, str) for v in attrs.values())
    assert attrs["traceparent"] == "00-abc-def-01"
