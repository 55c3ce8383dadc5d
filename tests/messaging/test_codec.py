"""Tests for tasktide.messaging.codec: HTTP (binary/structured) and Kafka codecs and validation."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

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


# -- where the cloudevents SDK alone is lenient or departs from the bindings ---------------------------


BINARY_HEADERS = {"ce-specversion": "1.0", "ce-id": "b-1", "ce-source": "/s", "ce-type": "t"}


def test_from_http_structured_null_id_raises_instead_of_a_fresh_id() -> None:
    body = json.dumps({"specversion": "1.0", "id": None, "source": "/s", "type": "t"}).encode()
    with pytest.raises(codec.InvalidEvent, match="'id'"):
        codec.from_http({"content-type": codec.STRUCTURED_CONTENT_TYPE}, body)


def test_from_http_structured_null_extension_is_absent() -> None:
    doc = {"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "traceparent": None, "data": None}
    event = codec.from_http({"content-type": codec.STRUCTURED_CONTENT_TYPE}, json.dumps(doc).encode())
    assert "traceparent" not in event and event.get_data() is None


def test_from_http_structured_content_type_wins_over_binary_headers() -> None:
    doc = {"specversion": "1.0", "id": "s-1", "source": "/s", "type": "structured", "data": {"x": 1}}
    headers = {**BINARY_HEADERS, "content-type": codec.STRUCTURED_CONTENT_TYPE}
    event = codec.from_http(headers, json.dumps(doc).encode())
    assert (event["id"], event["type"], codec.event_data(event)) == ("s-1", "structured", {"x": 1})


@pytest.mark.parametrize("name", ["extensions", "data"])
def test_from_http_binary_sdk_reserved_attribute_name_raises_invalid_event(name: str) -> None:
    with pytest.raises(codec.InvalidEvent, match="reserved"):
        codec.from_http({**BINARY_HEADERS, f"ce-{name}": "x"}, b"{}")


def test_from_http_binary_raw_data_keeps_bytes_and_percent_decodes_headers() -> None:
    body = b'{ "b" : 1,\n  "a": [1.50] }'
    headers = {**BINARY_HEADERS, "ce-subject": "%C3%9Cber%20alles", "content-type": "application/json"}
    event = codec.from_http(headers, body, raw_data=True)
    assert event.get_data() == body and event["subject"] == "Über alles"
    out_headers, out_body = codec.to_binary_http(event)
    assert out_body == body and out_headers["ce-subject"] == "%C3%9Cber%20alles"


def test_from_http_binary_empty_body_has_no_data() -> None:
    assert codec.from_http(BINARY_HEADERS, b"").get_data() is None
    assert codec.from_http(BINARY_HEADERS, b"", raw_data=True).get_data() is None


def test_to_structured_http_raw_json_data_embedded_as_json() -> None:
    headers = {**BINARY_HEADERS, "content-type": "application/json"}
    event = codec.from_http(headers, b'{"x": [1, 2]}', raw_data=True)
    doc = json.loads(codec.to_structured_http(event)[1])
    assert doc["data"] == {"x": [1, 2]} and "data_base64" not in doc


def test_from_kafka_record_structured_ignores_header_copies_and_key() -> None:
    key, headers, value = codec.to_kafka_structured_record(_event(), key="other")
    parsed = codec.from_kafka_record(key, [*headers, ("ce_extra", b"header-only")], value)
    assert codec.attributes(parsed) == codec.attributes(_event())  # no ce_* names, datacontenttype kept


def test_from_kafka_record_binary_key_is_not_an_attribute() -> None:
    event = codec.new_event("t", "/s", {"n": 1})
    _, headers, value = codec.to_kafka_record(event)
    parsed = codec.from_kafka_record(b"some-key", headers, value)
    assert "partitionkey" not in parsed
    assert codec.attributes(parsed) == codec.attributes(event)


def test_from_kafka_record_non_utf8_header_keeps_the_event() -> None:
    _, headers, value = codec.to_kafka_record(_event())
    mangled = [(n, b"\xff\xfeoops" if n == "ce_subject" else v) for n, v in headers]
    parsed = codec.from_kafka_record(None, mangled, value)
    assert parsed["id"] == "evt-1" and parsed["subject"].endswith("oops")


def test_from_kafka_record_binary_missing_id_raises_instead_of_a_fresh_id() -> None:
    _, headers, value = codec.to_kafka_record(_event())
    with pytest.raises(codec.InvalidEvent, match="'id'"):
        codec.from_kafka_record(None, [(n, v) for n, v in headers if n != "ce_id"], value)


def test_to_kafka_record_without_datacontenttype_encodes_json_data() -> None:
    event = codec.from_http(BINARY_HEADERS, b'{"n": 1}')  # binary mode without content-type
    assert "datacontenttype" not in event
    _, headers, value = codec.to_kafka_record(event)
    assert "content-type" not in dict(headers) and json.loads(value) == {"n": 1}


def test_to_kafka_structured_record_keeps_datacontenttype_in_the_document() -> None:
    _, headers, value = codec.to_kafka_structured_record(_event())
    assert dict(headers)["content-type"] == codec.STRUCTURED_CONTENT_TYPE.encode()
    assert json.loads(value)["datacontenttype"] == "application/json"
    assert "ce_datacontenttype" not in dict(headers)


# -- structured-mode dicts (the outbox) and time ----------------------------------------------------------


def test_to_dict_from_dict_roundtrip_preserves_event() -> None:
    doc = codec.to_dict(_event())
    assert doc["data"] == {"id": "t1", "title": "write tests"} and doc["time"] == "2025-01-02T03:04:05Z"
    parsed = codec.from_dict(doc)
    assert codec.attributes(parsed) == codec.attributes(_event())
    assert parsed.get_data() == _event().get_data()


def test_to_dict_raw_json_data_is_decoded() -> None:
    event = codec.from_http({**BINARY_HEADERS, "content-type": "application/json"}, b"[1]", raw_data=True)
    assert codec.to_dict(event)["data"] == [1]


def test_from_dict_null_attribute_is_absent() -> None:
    event = codec.from_dict({**codec.to_dict(_event()), "subject": None})
    assert "subject" not in event


@pytest.mark.parametrize(
    ("change", "message"),
    [({"id": None}, "'id'"), ({"time": "yesterday"}, "RFC 3339"), ({"Bad": "x"}, "'Bad'")],
)
def test_from_dict_invalid_raises_invalid_event(change: dict[str, object], message: str) -> None:
    with pytest.raises(codec.InvalidEvent, match=message):
        codec.from_dict({**codec.to_dict(_event()), **change})


def test_new_event_offset_time_written_in_utc_with_z() -> None:
    plus_two = datetime(2025, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    assert codec.new_event("t", "/s", None, time=plus_two)["time"] == "2025-01-02T03:04:05Z"
    naive = datetime(2025, 1, 2, 3, 4, 5)
    assert codec.new_event("t", "/s", None, time=naive)["time"] == "2025-01-02T03:04:05Z"


def test_to_binary_http_none_extension_is_not_a_header() -> None:
    event = codec.CloudEvent({**codec.attributes(_event()), "traceparent": None}, {"n": 1})
    headers, _ = codec.to_binary_http(event)
    assert "ce-traceparent" not in headers and headers["ce-id"] == "evt-1"


def test_to_kafka_structured_record_value_is_compact_with_attributes_in_order_then_data() -> None:
    _, _, value = codec.to_kafka_structured_record(_event())
    doc = json.loads(value)
    assert value == json.dumps(doc, separators=(",", ":")).encode()  # the relay's records stay small
    assert list(doc) == [*codec.attributes(_event()), "data"]
