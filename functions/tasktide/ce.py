"""CloudEvents codec: the only module that imports ``cloudevents``.

Consumes HTTP requests (binary or structured mode) and Kafka records; emits ``CloudEvent`` objects and
their HTTP / Kafka encodings. Every malformed input raises :class:`InvalidEvent` with a human message.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from cloudevents.http import CloudEvent

__all__ = [
    "CloudEvent",
    "InvalidEvent",
    "attributes",
    "event_data",
    "from_http",
    "from_kafka_record",
    "new_event",
    "to_binary_http",
    "to_kafka_record",
    "to_kafka_structured_record",
    "to_structured_http",
]

SPECVERSION = "1.0"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
REQUIRED = ("id", "source", "type")
_EXTENSION_NAME = re.compile(r"^[a-z0-9]+$")


class InvalidEvent(ValueError):
    """The input is not a valid CloudEvent; ``str(exc)`` is a message fit for a human."""


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return True  # CloudEvents spec: absent datacontenttype implies application/json
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("application/json", "text/json") or media.endswith("+json")


def _media(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _check(attrs: Mapping[str, Any]) -> None:
    spec = attrs.get("specversion")
    if spec is None:
        raise InvalidEvent("missing required attribute 'specversion'")
    if spec != SPECVERSION:
        raise InvalidEvent(f"unsupported specversion {spec!r}; only '1.0' is accepted")
    missing = [name for name in REQUIRED if not attrs.get(name)]
    if missing:
        raise InvalidEvent(f"missing required attribute(s): {', '.join(repr(m) for m in missing)}")
    for name in attrs:
        if name not in ("data", "data_base64") and not _EXTENSION_NAME.match(name):
            raise InvalidEvent(f"invalid attribute name {name!r}: must be lowercase letters and digits only")


def _make(attrs: dict[str, Any], data: object) -> CloudEvent:
    _check(attrs)
    return CloudEvent(attrs, data)


def new_event(
    type: str,
    source: str,
    data: object,
    *,
    subject: str | None = None,
    id: str | None = None,
    time: datetime | None = None,
    extensions: Mapping[str, str] | None = None,
    datacontenttype: str = "application/json",
) -> CloudEvent:
    """Build a CloudEvent 1.0; ``id`` defaults to a UUID4 and ``time`` to now (UTC)."""
    when = time or datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    attrs: dict[str, Any] = {
        "specversion": SPECVERSION,
        "id": id or str(uuid.uuid4()),
        "source": source,
        "type": type,
        "time": when.isoformat().replace("+00:00", "Z"),
        "datacontenttype": datacontenttype,
    }
    if subject is not None:
        attrs["subject"] = subject
    for name, value in (extensions or {}).items():
        if name in attrs:
            raise InvalidEvent(f"extension {name!r} collides with a context attribute")
        attrs[name] = str(value)
    return _make(attrs, data)


def _decode_data(body: bytes, content_type: str | None) -> object:
    if not body:
        return None
    if _is_json(content_type):
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidEvent(f"data is not valid JSON although datacontenttype is JSON: {exc}") from exc
    if _media(content_type).startswith("text/"):
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidEvent(f"text data is not valid UTF-8: {exc}") from exc
    return bytes(body)


def _encode_data(data: object, content_type: str | None) -> bytes:
    if data is None:
        return b""
    if isinstance(data, bytes | bytearray):
        return bytes(data)
    if _is_json(content_type):
        try:
            return json.dumps(data, separators=(",", ":"), default=str).encode()
        except (TypeError, ValueError) as exc:
            raise InvalidEvent(f"data is not JSON serialisable: {exc}") from exc
    return str(data).encode()


def _from_structured(body: bytes) -> CloudEvent:
    try:
        raw = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidEvent(f"structured CloudEvent body is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise InvalidEvent("structured CloudEvent body must be a JSON object")
    attrs: dict[str, Any] = {}
    for key, value in raw.items():
        if key in ("data", "data_base64"):
            continue
        attrs[key.lower()] = value if isinstance(value, str) else json.dumps(value)
    data: object = raw.get("data")
    if "data_base64" in raw:
        if "data" in raw:
            raise InvalidEvent("structured CloudEvent must not carry both 'data' and 'data_base64'")
        try:
            data = base64.b64decode(str(raw["data_base64"]), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidEvent(f"'data_base64' is not valid base64: {exc}") from exc
    return _make(attrs, data)


def from_http(headers: Mapping[str, str], body: bytes) -> CloudEvent:
    """Parse an HTTP request or response (binary or structured mode) into a CloudEvent."""
    lowered = {k.lower(): v for k, v in headers.items()}
    content_type = lowered.get("content-type")
    media = _media(content_type)
    if "ce-specversion" in lowered:
        attrs: dict[str, Any] = {k[3:]: v for k, v in lowered.items() if k.startswith("ce-")}
        if content_type:
            attrs["datacontenttype"] = content_type
        return _make(attrs, _decode_data(body, content_type))
    if media == STRUCTURED_CONTENT_TYPE:
        return _from_structured(body)
    if media == BATCH_CONTENT_TYPE:
        raise InvalidEvent("batched CloudEvents are not supported")
    raise InvalidEvent(
        "not a CloudEvent: expected a 'ce-specversion' header (binary mode) "
        f"or content-type {STRUCTURED_CONTENT_TYPE!r} (structured mode)"
    )


def attributes(event: CloudEvent) -> dict[str, str]:
    """Every context attribute and extension of ``event`` as strings (what Trigger filters see)."""
    return {name: str(event[name]) for name in event if event[name] is not None}


def event_data(event: CloudEvent) -> object:
    """The event payload: decoded JSON, ``str`` for text, ``bytes`` otherwise, or ``None``."""
    data: object = event.get_data()
    return data


def to_binary_http(event: CloudEvent) -> tuple[dict[str, str], bytes]:
    """Binary mode: attributes as ``ce-*`` headers, data as the body."""
    attrs = attributes(event)
    content_type = attrs.pop("datacontenttype", None)
    headers = {f"ce-{name}": value for name, value in attrs.items()}
    if content_type:
        headers["content-type"] = content_type
    return headers, _encode_data(event_data(event), content_type)


def _structured_dict(event: CloudEvent) -> dict[str, Any]:
    doc: dict[str, Any] = dict(attributes(event))
    data = event_data(event)
    if isinstance(data, bytes | bytearray):
        doc["data_base64"] = base64.b64encode(bytes(data)).decode()
    elif data is not None:
        doc["data"] = data if _is_json(doc.get("datacontenttype")) else str(data)
    return doc


def to_structured_http(event: CloudEvent) -> tuple[dict[str, str], bytes]:
    """Structured mode: the whole event as one ``application/cloudevents+json`` document."""
    body = json.dumps(_structured_dict(event), separators=(",", ":"), default=str).encode()
    return {"content-type": STRUCTURED_CONTENT_TYPE}, body


def to_kafka_record(
    event: CloudEvent, key: str | None = None
) -> tuple[bytes | None, list[tuple[str, bytes]], bytes]:
    """Kafka binary mode: ``(key, headers, value)``; the key defaults to extension ``partitionkey``."""
    attrs = attributes(event)
    content_type = attrs.pop("datacontenttype", None)
    headers = [(f"ce_{name}", value.encode()) for name, value in attrs.items()]
    if content_type:
        headers.append(("content-type", content_type.encode()))
    record_key = key if key is not None else attrs.get("partitionkey")
    value = _encode_data(event_data(event), content_type)
    return (record_key.encode() if record_key is not None else None), headers, value


def to_kafka_structured_record(
    event: CloudEvent, key: str | None = None
) -> tuple[bytes | None, list[tuple[str, bytes]], bytes]:
    """Kafka structured mode, what the relay writes: the value is the whole event as one JSON document,
    header ``content-type: application/cloudevents+json``. A Knative KafkaSource and a Dapr ``pubsub.kafka``
    subscription both read it as the same CloudEvent. The ``ce_*`` headers of binary mode stay beside it as
    a copy of the attributes for header-based tools (readers pick structured mode by content-type first,
    as the CloudEvents Kafka binding says)."""
    record_key, headers, _ = to_kafka_record(event, key)
    mirrored = [(name, value) for name, value in headers if name != "content-type"]
    _, value = to_structured_http(event)
    return record_key, [*mirrored, ("content-type", STRUCTURED_CONTENT_TYPE.encode())], value


def from_kafka_record(key: bytes | None, headers: Sequence[tuple[str, bytes]], value: bytes) -> CloudEvent:
    """Parse a Kafka record in structured (content-type ``application/cloudevents+json``, checked first, as
    the CloudEvents Kafka binding says) or binary (``ce_*`` headers) mode into a CloudEvent."""
    try:
        decoded = {name.lower(): (raw or b"").decode() for name, raw in headers}
    except UnicodeDecodeError as exc:
        raise InvalidEvent(f"Kafka header is not valid UTF-8: {exc}") from exc
    content_type = decoded.get("content-type")
    if _media(content_type) == STRUCTURED_CONTENT_TYPE:
        return _from_structured(value or b"")
    if "ce_specversion" in decoded:
        attrs: dict[str, Any] = {k[3:]: v for k, v in decoded.items() if k.startswith("ce_")}
        if content_type:
            attrs["datacontenttype"] = content_type
        return _make(attrs, _decode_data(value or b"", content_type))
    raise InvalidEvent(
        "Kafka record is not a CloudEvent: no 'ce_specversion' header and content-type is not "
        f"{STRUCTURED_CONTENT_TYPE!r}"
    )
