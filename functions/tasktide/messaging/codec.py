"""CloudEvents codec: the only module that imports ``cloudevents``.

Consumes HTTP requests and responses (binary or structured mode), Kafka records and structured-mode
dicts (the outbox's stored events); emits ``CloudEvent`` objects and their HTTP / Kafka encodings. Every
malformed input raises :class:`InvalidEvent` with a human message (:class:`UnsupportedEvent` for a valid
encoding we do not take: batches).

The SDK's bindings do the encoding (``cloudevents.http.from_http``, ``cloudevents.conversion``,
``cloudevents.kafka``). The SDK is lenient where the Knative data plane is strict, so this module checks
in front of it and fixes its output where it departs from the protocol bindings:

- the mode is chosen by `Content-Type` (`application/cloudevents+json` is structured even if `ce-*`
  headers are present; the SDK picks binary whenever the four required `ce-*` headers are there);
- a JSON `null` attribute is an absent one (the SDK keeps `null` extensions, and replaces a `null` id with
  a fresh UUID), attribute names are `a-z0-9`, `time` must be RFC 3339 (the SDK checks neither);
- binary header values are percent-decoded on the way in and percent-encoded on the way out, and a header
  that is not UTF-8 is read with replacement characters, so a non-ASCII attribute never loses an event;
- with ``raw_data=True`` the payload is kept as the bytes that arrived and sent on byte for byte;
- a structured document is parsed once (the SDK's HTTP path parses it twice and re-serialises `data`),
  then built by ``cloudevents.conversion.from_dict``;
- in Kafka, the SDK's ``to_structured`` sets `content-type` to the *data*'s type and moves
  `datacontenttype` out of the document, and its ``from_structured`` turns every header into an
  attribute: both contradict the Kafka binding, so structured records carry `content-type:
  application/cloudevents+json` and the whole JSON document, read by the same parser as HTTP structured
  mode. Binary records keep `ce_partitionkey` beside the key, and the key is not read back as an
  attribute.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

from cloudevents import conversion, kafka
from cloudevents.exceptions import GenericException
from cloudevents.http import CloudEvent
from cloudevents.http import from_http as _sdk_from_http

from tasktide.domain.tasks import format_datetime

__all__ = [
    "CloudEvent",
    "InvalidEvent",
    "UnsupportedEvent",
    "attributes",
    "event_data",
    "from_dict",
    "from_http",
    "from_kafka_record",
    "new_event",
    "to_binary_http",
    "to_dict",
    "to_kafka_record",
    "to_kafka_structured_record",
    "to_structured_http",
]

SPECVERSION = "1.0"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
REQUIRED = ("id", "source", "type")
DATA_MEMBERS = ("data", "data_base64")
# Names the SDK's event model cannot carry as attributes (it stores the data and the extensions there).
SDK_RESERVED = ("data", "extensions")
_ATTRIBUTE_NAME = re.compile(r"^[a-z0-9]+$")
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$")
# HTTP binding 3.1.3.2: space, '"', '%' and everything outside U+0021..U+007E are percent-encoded.
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')

KafkaRecord = tuple[bytes | None, list[tuple[str, bytes]], bytes]


class InvalidEvent(ValueError):
    """The input is not a valid CloudEvent; ``str(exc)`` is a message fit for a human."""


class UnsupportedEvent(InvalidEvent):
    """A valid CloudEvents encoding this codec does not take (batched mode)."""


@contextmanager
def _sdk(what: str) -> Iterator[None]:
    """Run an SDK call; its errors become :class:`InvalidEvent` (ours, raised in a (un)marshaller it called,
    come out as they were)."""
    try:
        yield
    except InvalidEvent:
        raise
    except (GenericException, ValueError, TypeError, KeyError, AttributeError) as exc:
        cause = exc.__context__
        if isinstance(cause, InvalidEvent):
            raise cause from None
        raise InvalidEvent(f"{what}: {exc}") from exc


# -- validation (in front of the SDK) ----------------------------------------------------------------------


def _media(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return True  # CloudEvents spec: absent datacontenttype implies application/json
    media = _media(content_type)
    return media in ("application/json", "text/json") or media.endswith("+json")


def _is_rfc3339(text: str) -> bool:
    if not _RFC3339.match(text):
        return False
    try:
        datetime.fromisoformat(text.upper())
    except ValueError:
        return False
    return True


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
        if not _ATTRIBUTE_NAME.match(name):
            raise InvalidEvent(f"invalid attribute name {name!r}: must be lowercase letters and digits only")
        if name in SDK_RESERVED:
            raise InvalidEvent(f"attribute name {name!r} is reserved")
    time = attrs.get("time")
    if time is not None and not _is_rfc3339(str(time)):
        raise InvalidEvent(f"attribute 'time' is not an RFC 3339 timestamp: {time!r}")


def _loads(body: bytes | str, what: str) -> object:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidEvent(f"{what} is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise InvalidEvent(f"{what} is nested too deeply to be parsed") from exc


def _attribute_value(name: str, value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and name not in ("id", "source", "type", "specversion", "time"):
        return str(value)
    raise InvalidEvent(f"attribute {name!r} must be a string, got JSON {type(value).__name__}")


def _header_value(value: str) -> str:
    """Percent-decode a ``ce-*`` header value; raw non-ASCII (received as latin-1) is read as UTF-8."""
    with suppress(UnicodeEncodeError, UnicodeDecodeError):  # else: keep what arrived, never lose the event
        value = value.encode("latin-1").decode("utf-8")
    return unquote(value, errors="replace") if "%" in value else value


# -- data ------------------------------------------------------------------------------------------------


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


def _data_unmarshaller(content_type: str | None, raw_data: bool) -> Callable[[bytes], object]:
    if raw_data:
        return lambda body: bytes(body) if body else None
    return lambda body: _decode_data(body, content_type)


def _data_marshaller(content_type: str | None) -> Callable[[object], bytes]:
    return lambda data: _encode_data(data, content_type)


def _decoded(data: object, content_type: str | None) -> object:
    """Raw bytes of a JSON or text type decoded (what ``raw_data=True`` kept); anything else as it is."""
    if isinstance(data, bytes | bytearray) and (
        _is_json(content_type) or _media(content_type).startswith("text/")
    ):
        return _decode_data(bytes(data), content_type)
    return data


def _embedded_data(content_type: str | None) -> Callable[[object], object]:
    """Structured mode: JSON (and text) data embedded as `data`, other bytes left to become `data_base64`."""

    def marshal(data: object) -> object:
        data = _decoded(data, content_type)
        if data is None or isinstance(data, bytes | bytearray) or _is_json(content_type):
            return data
        return str(data)

    return marshal


def event_data(event: CloudEvent) -> object:
    """The event payload: decoded JSON, ``str`` for text, ``bytes`` otherwise, or ``None`` (raw bytes kept
    by ``raw_data=True`` are decoded by the event's ``datacontenttype``)."""
    return _decoded(event.get_data(), event.get("datacontenttype"))


def attributes(event: CloudEvent) -> dict[str, str]:
    """Every context attribute and extension of ``event`` as strings (what Trigger filters see)."""
    return {name: str(event[name]) for name in event if event[name] is not None}


# -- building --------------------------------------------------------------------------------------------


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
    """Build a CloudEvent 1.0; ``id`` defaults to a UUID4 and ``time`` to now, written in UTC with `Z`
    (a naive ``time`` is taken as UTC)."""
    when = time or datetime.now(UTC)
    attrs: dict[str, Any] = {
        "specversion": SPECVERSION,
        "id": id or str(uuid.uuid4()),
        "source": source,
        "type": type,
        "time": format_datetime(when if when.tzinfo else when.replace(tzinfo=UTC)),
        "datacontenttype": datacontenttype,
    }
    if subject is not None:
        attrs["subject"] = subject
    for name, value in (extensions or {}).items():
        if name in attrs:
            raise InvalidEvent(f"extension {name!r} collides with a context attribute")
        attrs[name] = str(value)
    _check(attrs)
    return CloudEvent.create(attrs, data)


def _structured_attributes(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A structured document's attributes, checked; its data decoded (``data_base64`` to bytes)."""
    attrs: dict[str, Any] = {
        key: _attribute_value(key, value)
        for key, value in doc.items()
        if key not in DATA_MEMBERS and value is not None  # JSON null: the attribute is absent
    }
    _check(attrs)
    data = doc.get("data")
    encoded = doc.get("data_base64")
    if encoded is not None:
        if data is not None:
            raise InvalidEvent("structured CloudEvent must not carry both 'data' and 'data_base64'")
        try:
            data = base64.b64decode(str(encoded), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidEvent(f"'data_base64' is not valid base64: {exc}") from exc
    attrs["data"] = data
    return attrs


def from_dict(doc: Mapping[str, Any], *, raw_data: bool = False) -> CloudEvent:
    """A CloudEvent from its structured-mode dict (the JSON document, parsed): what the outbox stores.
    ``raw_data``: the data as the bytes it would be sent as (see :func:`from_http`)."""
    attrs = _structured_attributes(doc)
    data = attrs["data"]
    if raw_data and data is not None and not isinstance(data, bytes):
        if isinstance(data, str) and not _is_json(attrs.get("datacontenttype")):
            attrs["data"] = data.encode()
        else:
            attrs["data"] = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    with _sdk("not a CloudEvent"):
        return conversion.from_dict(CloudEvent, attrs)


def to_dict(event: CloudEvent) -> dict[str, Any]:
    """The structured-mode dict of ``event`` (its attributes and ``data``; raw bytes decoded by type)."""
    doc: dict[str, Any] = conversion.to_dict(event)
    doc["data"] = event_data(event)
    return doc


def _from_structured(body: bytes, raw_data: bool) -> CloudEvent:
    doc = _loads(body, "structured CloudEvent body")
    if not isinstance(doc, dict):
        raise InvalidEvent("structured CloudEvent body must be a JSON object")
    return from_dict(doc, raw_data=raw_data)


# -- HTTP ------------------------------------------------------------------------------------------------


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
    if "ce-specversion" not in lowered:
        raise InvalidEvent(
            "not a CloudEvent: expected a 'ce-specversion' header (binary mode) "
            f"or content-type {STRUCTURED_CONTENT_TYPE!r} (structured mode)"
        )
    binary = {k: _header_value(v) for k, v in lowered.items() if k.startswith("ce-")}
    _check({k[3:]: v for k, v in binary.items()})
    if content_type:
        binary["content-type"] = content_type
    with _sdk("not a CloudEvent"):
        return _sdk_from_http(binary, bytes(body), _data_unmarshaller(content_type, raw_data))


def to_binary_http(event: CloudEvent) -> tuple[dict[str, str], bytes]:
    """Binary mode: attributes as percent-encoded ``ce-*`` headers, data as the body (byte for byte)."""
    with _sdk("cannot encode the CloudEvent"):
        headers, body = conversion.to_binary(event, _data_marshaller(event.get("datacontenttype")))
    encoded = {
        name: quote(str(value), safe=_HEADER_SAFE) if name.startswith("ce-") else value
        for name, value in headers.items()
        if value is not None  # the SDK writes a `None` extension as a header
    }
    return encoded, body


def to_structured_http(event: CloudEvent) -> tuple[dict[str, str], bytes]:
    """Structured mode: the whole event as one ``application/cloudevents+json`` document."""
    with _sdk("cannot encode the CloudEvent"):
        headers, body = conversion.to_structured(event, _embedded_data(event.get("datacontenttype")))
    return headers, body


# -- Kafka -----------------------------------------------------------------------------------------------


def _partition_key(key: str | None) -> Callable[[CloudEvent], bytes | None]:
    def mapper(event: CloudEvent) -> bytes | None:
        chosen = key if key is not None else event.get("partitionkey")
        return None if chosen is None else str(chosen).encode()

    return mapper


def to_kafka_record(event: CloudEvent, key: str | None = None) -> KafkaRecord:
    """Kafka binary mode: ``(key, headers, value)``; the key defaults to extension ``partitionkey``, which
    is also kept as header ``ce_partitionkey``."""
    content_type = event.get("datacontenttype")
    if "datacontenttype" not in event:  # the SDK's `to_binary` reads `event["datacontenttype"]`
        event = CloudEvent.create({**event.get_attributes(), "datacontenttype": None}, event.get_data())
    with _sdk("cannot encode the CloudEvent"):
        message = kafka.to_binary(event, _data_marshaller(content_type), _partition_key(key))
    headers = [(name, value) for name, value in message.headers.items() if name != "content-type"]
    if event.get("partitionkey") is not None:
        headers.append(("ce_partitionkey", str(event["partitionkey"]).encode()))
    if content_type:
        headers.append(("content-type", content_type.encode()))
    return _as_bytes(message.key), headers, _as_bytes(message.value) or b""


def _as_bytes(value: str | bytes | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


def to_kafka_structured_record(event: CloudEvent, key: str | None = None) -> KafkaRecord:
    """Kafka structured mode, what the relay writes: the value is the whole event as one compact JSON
    document (the JSON event format, as in HTTP structured mode), header ``content-type:
    application/cloudevents+json``. A Knative KafkaSource and a Dapr ``pubsub.kafka`` subscription both
    read it as the same CloudEvent. The ``ce_*`` headers of binary mode stay beside it as a copy of the
    attributes for header-based tools (readers pick structured mode by content-type first, as the
    CloudEvents Kafka binding says)."""
    content_type = event.get("datacontenttype")

    def envelope(doc: dict[str, Any]) -> bytes:
        # The SDK moved `datacontenttype` out of the document into the header: back in its place.
        restored = {
            name: doc.get(name, content_type)
            for name in event.get_attributes()
            if name in doc or name == "datacontenttype"
        }
        restored.update(doc)  # then `data` / `data_base64`
        return json.dumps(restored, separators=(",", ":"), default=str).encode()

    with _sdk("cannot encode the CloudEvent"):
        message = kafka.to_structured(event, _embedded_data(content_type), envelope, _partition_key(key))
    mirrored = [(f"ce_{name}", value.encode()) for name, value in attributes(event).items()]
    headers = [(name, value) for name, value in mirrored if name != "ce_datacontenttype"]
    # The envelope's media type, not the data's (which the SDK puts there).
    headers.append(("content-type", STRUCTURED_CONTENT_TYPE.encode()))
    return _as_bytes(message.key), headers, _as_bytes(message.value) or b""


def from_kafka_record(
    key: bytes | None, headers: Sequence[tuple[str, bytes]], value: bytes, *, raw_data: bool = False
) -> CloudEvent:
    """Parse a Kafka record in binary (``ce_*`` headers) or structured mode into a CloudEvent.

    A header that is not UTF-8 is decoded with replacement characters rather than losing the event."""
    decoded = {name.lower(): (raw or b"").decode("utf-8", errors="replace") for name, raw in headers}
    content_type = decoded.get("content-type")
    if _media(content_type) == STRUCTURED_CONTENT_TYPE:
        return _from_structured(value or b"", raw_data)
    if "ce_specversion" not in decoded:
        raise InvalidEvent(
            "Kafka record is not a CloudEvent: no 'ce_specversion' header and content-type is not "
            f"{STRUCTURED_CONTENT_TYPE!r}"
        )
    binary = {k: v for k, v in decoded.items() if k.startswith("ce_") or k == "content-type"}
    _check({k[3:]: v for k, v in binary.items() if k != "content-type"})
    # The key is the record's, not an attribute: `partitionkey` travels as its own `ce_` header.
    message = kafka.KafkaMessage({k: v.encode() for k, v in binary.items()}, None, value or b"")
    with _sdk("not a CloudEvent"):
        event: CloudEvent = kafka.from_binary(message, None, _data_unmarshaller(content_type, raw_data))
    return event
