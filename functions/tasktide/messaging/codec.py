"""CloudEvents codec: the only module that imports ``cloudevents``.

Consumes HTTP requests (binary or structured mode) and Kafka records; emits ``CloudEvent`` objects and
their HTTP / Kafka encodings. Every malformed input raises :class:`InvalidEvent` with a human message
(:class:`UnsupportedEvent` for a valid encoding we do not take: batches).

The HTTP protocol binding as the spec (and Knative's Go SDK) has it: the mode is chosen by `Content-Type`
(`application/cloudevents+json` is structured even if `ce-*` headers are present, a `ce-specversion`
header otherwise means binary); a JSON `null` attribute is an absent one; attribute names are `a-z0-9`;
`time` must be RFC 3339; binary header values are percent-decoded on the way in and percent-encoded on
the way out (so a non-ASCII attribute never makes an event undeliverable); with ``raw_data=True`` the
payload is kept as the bytes that arrived and sent on byte for byte. The SDK's own ``from_http`` picks the
mode by `ce-specversion` rather than by `Content-Type` and re-serialises data, so the parsing is here and
the SDK supplies the ``CloudEvent`` type.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

from cloudevents.http import CloudEvent

__all__ = [
    "CloudEvent",
    "InvalidEvent",
    "UnsupportedEvent",
    "attributes",
    "data_bytes",
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
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$")
# HTTP binding 3.1.3.2: space, '"', '%' and everything outside U+0021..U+007E are percent-encoded.
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')


class InvalidEvent(ValueError):
    """The input is not a valid CloudEvent; ``str(exc)`` is a message fit for a human."""


class UnsupportedEvent(InvalidEvent):
    """A valid CloudEvents encoding this codec does not take (batched mode)."""


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
    time = attrs.get("time")
    if time is not None and not _is_rfc3339(str(time)):
        raise InvalidEvent(f"attribute 'time' is not an RFC 3339 timestamp: {time!r}")


def _is_rfc3339(text: str) -> bool:
    if not _RFC3339.match(text):
        return False
    try:
        datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


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


def _loads(body: bytes | str, what: str) -> object:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidEvent(f"{what} is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise InvalidEvent(f"{what} is nested too deeply to be parsed") from exc


def _decode_data(body: bytes, content_type: str | None) -> object:
    if not body:
        return None
    if _is_json(content_type):
        return _loads(body, "data (datacontenttype is JSON)")
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


def _attribute_value(name: str, value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and name not in ("id", "source", "type", "specversion", "time"):
        return str(value)
    raise InvalidEvent(f"attribute {name!r} must be a string, got JSON {type(value).__name__}")


def _from_structured(body: bytes, raw_data: bool = False) -> CloudEvent:
    raw = _loads(body, "structured CloudEvent body")
    if not isinstance(raw, dict):
        raise InvalidEvent("structured CloudEvent body must be a JSON object")
    attrs: dict[str, Any] = {}
    for key, value in raw.items():
        if key in ("data", "data_base64") or value is None:  # JSON null: the attribute is absent
            continue
        attrs[key] = _attribute_value(key, value)
    data: object = raw.get("data")
    if raw.get("data_base64") is not None:
        if data is not None:
            raise InvalidEvent("structured CloudEvent must not carry both 'data' and 'data_base64'")
        try:
            data = base64.b64decode(str(raw["data_base64"]), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidEvent(f"'data_base64' is not valid base64: {exc}") from exc
    elif raw_data and data is not None:
        content_type = attrs.get("datacontenttype")
        if isinstance(data, str) and not _is_json(content_type):
            data = data.encode()
        else:
            data = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    return _make(attrs, data)


def _header_value(value: str) -> str:
    """Percent-decode a ``ce-*`` header value; raw non-ASCII (received as latin-1) is read as UTF-8."""
    with suppress(UnicodeEncodeError, UnicodeDecodeError):  # else: keep what arrived, never lose the event
        value = value.encode("latin-1").decode("utf-8")
    return unquote(value, errors="replace") if "%" in value else value


def from_http(headers: Mapping[str, str], body: bytes, *, raw_data: bool = False) -> CloudEvent:
    """Parse an HTTP request or response (binary or structured mode) into a CloudEvent.

    ``raw_data``: keep the payload as the bytes that arrived (what a broker forwards) instead of decoding
    it (what a function consumes); :func:`event_data` decodes either."""
    lowered = {k.lower(): v for k, v in headers.items()}
    content_type = lowered.get("content-type")
    media = _media(content_type)
    if media == STRUCTURED_CONTENT_TYPE:
        return _from_structured(body, raw_data)
    if media == BATCH_CONTENT_TYPE:
        raise UnsupportedEvent("batched CloudEvents (application/cloudevents-batch+json) are not supported")
    if "ce-specversion" in lowered:
        attrs: dict[str, Any] = {k[3:]: _header_value(v) for k, v in lowered.items() if k.startswith("ce-")}
        if content_type:
            attrs["datacontenttype"] = content_type
        data = (bytes(body) or None) if raw_data else _decode_data(body, content_type)
        return _make(attrs, data)
    raise InvalidEvent(
        "not a CloudEvent: expected a 'ce-specversion' header (binary mode) "
        f"or content-type {STRUCTURED_CONTENT_TYPE!r} (structured mode)"
    )


def attributes(event: CloudEvent) -> dict[str, str]:
    """Every context attribute and extension of ``event`` as strings (what Trigger filters see)."""
    return {name: str(event[name]) for name in event if event[name] is not None}


def event_data(event: CloudEvent) -> object:
    """The event payload: decoded JSON, ``str`` for text, ``bytes`` otherwise, or ``None`` (raw bytes kept
    by ``raw_data=True`` are decoded by the event's ``datacontenttype``)."""
    data: object = event.get_data()
    if isinstance(data, bytes | bytearray):
        content_type = event.get("datacontenttype")
        if _is_json(content_type) or _media(content_type).startswith("text/"):
            return _decode_data(bytes(data), content_type)
    return data


def data_bytes(event: CloudEvent) -> bytes:
    """The payload as it goes on the wire (raw bytes are passed through untouched)."""
    return _encode_data(event.get_data(), event.get("datacontenttype"))


def to_binary_http(event: CloudEvent) -> tuple[dict[str, str], bytes]:
    """Binary mode: attributes as percent-encoded ``ce-*`` headers, data as the body (byte for byte)."""
    attrs = attributes(event)
    content_type = attrs.pop("datacontenttype", None)
    headers = {f"ce-{name}": quote(value, safe=_HEADER_SAFE) for name, value in attrs.items()}
    if content_type:
        headers["content-type"] = content_type
    return headers, _encode_data(event.get_data(), content_type)


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
    value = _encode_data(event.get_data(), content_type)
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


def from_kafka_record(
    key: bytes | None, headers: Sequence[tuple[str, bytes]], value: bytes, *, raw_data: bool = False
) -> CloudEvent:
    """Parse a Kafka record in binary (``ce_*`` headers) or structured mode into a CloudEvent.

    A header that is not UTF-8 is decoded with replacement characters rather than losing the event."""
    decoded = {name.lower(): (raw or b"").decode("utf-8", errors="replace") for name, raw in headers}
    content_type = decoded.get("content-type")
    if _media(content_type) == STRUCTURED_CONTENT_TYPE:
        return _from_structured(value or b"", raw_data)
    if "ce_specversion" in decoded:
        attrs: dict[str, Any] = {k[3:]: v for k, v in decoded.items() if k.startswith("ce_")}
        if content_type:
            attrs["datacontenttype"] = content_type
        data = (bytes(value) or None) if raw_data else _decode_data(value or b"", content_type)
        return _make(attrs, data)
    raise InvalidEvent(
        "Kafka record is not a CloudEvent: no 'ce_specversion' header and content-type is not "
        f"{STRUCTURED_CONTENT_TYPE!r}"
    )
