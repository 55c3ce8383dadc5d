"""Structured logging: one JSON object per line on stdout (containers), or one readable line per record on
a terminal (``TASKTIDE_LOG_FORMAT=auto|json|text``), the same fields either way, with secrets redacted.

Consumes: standard ``logging`` records from every module, contextual fields bound with :func:`bind` (a
contextvar, so it follows asyncio tasks) or passed as ``extra=``, and a W3C ``traceparent`` header value
(``00-<trace_id>-<span_id>-<flags>``) from which ``trace_id`` is extracted.
Emits: lines like ``{"ts": "...", "level": "INFO", "logger": "tasktide.api", "function": "api",
"msg": "...", "ce_id": "...", "ce_type": "...", "task_id": "...", "user_id": "...", "trace_id": "..."}``
on stdout (Grafana Alloy ships them to Loki, see ``grafana/loki/config.alloy``).

Redaction: values under keys that look secret (authorization, token, password, secret, jwt, api_key, ...)
and ``Bearer ...`` / ``Basic ...`` credentials, JWT-looking strings, ``whsec_`` signing secrets, the
password of ``scheme://user:password@host`` URLs and ``password=...``-style pairs (``?access_token=...``
included) inside any string are replaced by ``[REDACTED]``. :func:`redact_url` also drops secret-looking
path segments (webhook URLs carry their secret in the path).

Server loggers: uvicorn's (``uvicorn``, ``uvicorn.error``, ``uvicorn.access``) and gunicorn's loggers are
routed through the same handler, so every line of every entrypoint is JSON; access lines carry
``http_method``, ``path`` (redacted), ``status`` and ``client`` fields.

Nothing happens at import time; call :func:`configure_logging` once at process start.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final, TextIO
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

__all__ = [
    "CONTEXT_FIELDS",
    "REDACTED",
    "JsonFormatter",
    "TextFormatter",
    "bind",
    "bound_fields",
    "configure_logging",
    "parse_traceparent",
    "record_fields",
    "redact",
    "redact_text",
    "redact_url",
    "route_server_loggers",
]

REDACTED: Final = "[REDACTED]"
CONTEXT_FIELDS: Final = ("ce_id", "ce_type", "task_id", "user_id", "trace_id")

_SECRET_KEY_PARTS: Final = (
    "authorization",
    "token",
    "password",
    "passwd",
    "secret",
    "jwt",
    "api_key",
    "apikey",
    "api-key",
    "cookie",
    "credential",
    "private_key",
)
_SECRET_KEY_ALT: Final = "|".join(re.escape(part) for part in _SECRET_KEY_PARTS)
_SECRET_PATTERNS: Final = (
    # Authorization schemes: "Bearer abc.def", "Basic dXNlcjpwYXNz"
    re.compile(r"\b(?:Bearer|Basic)\s+[A-Za-z0-9\-._~+/]+=*", re.IGNORECASE),
    # JWT / JWS compact form: base64url JSON header ("eyJ") . payload . signature
    re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"),
    # Standard Webhooks signing secrets
    re.compile(r"\bwhsec_[A-Za-z0-9+/=_-]+"),
)
# scheme://user:password@host -> scheme://user:[REDACTED]@host
_URL_CREDENTIALS: Final = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/:@]*):(?P<pw>[^\s/@]+)@")
# a path segment that looks like a credential: long, url-safe, mixing letters and digits, not a UUID
_SECRET_SEGMENT: Final = re.compile(r"^(?=[A-Za-z0-9_\-]*\d)(?=[A-Za-z0-9_\-]*[A-Za-z])[A-Za-z0-9_\-]{20,}$")
_UUID: Final = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# password=hunter2, "api_key": "abc", token: abc  -> keep the key, drop the value
_SECRET_PAIR: Final = re.compile(
    rf"""(?P<key>["']?[\w-]*(?:{_SECRET_KEY_ALT})[\w-]*["']?\s*[:=]\s*)(?P<quote>["']?)(?P<value>[^\s"',;&}}]+)""",
    re.IGNORECASE,
)
# Every text any pattern above can match contains one of these (case folded): a scheme, the JWT header's
# "eyJ", "whsec_", the "@" of URL credentials or a secret key's name.
_MAYBE_SECRET: Final = re.compile(rf"bearer|basic|eyj|whsec_|@|{_SECRET_KEY_ALT}", re.IGNORECASE)
_TRACEPARENT: Final = re.compile(
    r"^(?P<version>[0-9a-f]{2})-(?P<trace_id>[0-9a-f]{32})-(?P<span_id>[0-9a-f]{16})-(?P<flags>[0-9a-f]{2})"
)

_CONTEXT: ContextVar[Mapping[str, Any]] = ContextVar("tasktide_log_context", default=MappingProxyType({}))

_RESERVED_ATTRS: Final = frozenset(
    [*logging.LogRecord("", 0, "", 0, "", None, None).__dict__, "message", "asctime", "taskName"]
)
_HANDLER_MARK: Final = "_tasktide_json_handler"


def _is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return any(part in lowered for part in _SECRET_KEY_PARTS)


def redact_text(text: str) -> str:
    """Replace credentials embedded in free text by ``[REDACTED]``."""
    if _MAYBE_SECRET.search(text) is None:  # most log text: one scan instead of five substitutions
        return text
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(REDACTED, text)
    text = _URL_CREDENTIALS.sub(lambda m: f"{m.group('head')}:{REDACTED}@", text)
    return _SECRET_PAIR.sub(
        lambda m: (
            f"{m.group('key')}{m.group('quote')}{REDACTED}" if m.group("value") != REDACTED else m.group(0)
        ),
        text,
    )


def redact_url(url: str) -> str:
    """``url`` (absolute, or a path with a query) without credentials, secret query values or secret-looking
    path segments: ``https://u:p@h/hooks/T0/AbC123...?token=x&page=2`` -> ``https://h/hooks/T0/[REDACTED]
    ?token=[REDACTED]&page=2``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    segments = [
        REDACTED if _SECRET_SEGMENT.match(segment) and not _UUID.match(segment) else segment
        for segment in parts.path.split("/")
    ]
    query = "&".join(
        f"{quote(k, safe='')}={REDACTED if _is_secret_key(k) or _SECRET_SEGMENT.match(v) else quote(v)}"
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    )
    return redact_text(urlunsplit((parts.scheme, netloc, "/".join(segments), query, "")))


def redact(value: Any, key: str | None = None) -> Any:
    """Redact ``value`` (recursively for mappings and sequences); everything under a secret key goes."""
    if key is not None and _is_secret_key(key) and value not in (None, ""):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {str(k): redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(v) for v in value]
    return value


def parse_traceparent(value: str | None) -> str | None:
    """Return the trace id of a W3C ``traceparent`` value, or ``None`` if it is missing or invalid."""
    if not value:
        return None
    match = _TRACEPARENT.match(value.strip().lower())
    if match is None or match.group("version") == "ff":
        return None
    trace_id = match.group("trace_id")
    if trace_id == "0" * 32 or match.group("span_id") == "0" * 16:
        return None
    return trace_id


def _normalise(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Drop ``None`` values and turn a ``traceparent`` into ``trace_id``."""
    out = {k: v for k, v in fields.items() if v is not None and k != "traceparent"}
    if "traceparent" in fields and "trace_id" not in out:
        trace_id = parse_traceparent(fields["traceparent"])
        if trace_id is not None:
            out["trace_id"] = trace_id
    return out


@contextmanager
def bind(**fields: Any) -> Iterator[Mapping[str, Any]]:
    """Add contextual fields to every log record emitted inside the block (nested binds merge).

    ``with bind(ce_id=event["id"], ce_type=event["type"], traceparent=event.get("traceparent")):``;
    ``None`` values are ignored, a ``traceparent`` becomes ``trace_id``.
    """
    merged = {**_CONTEXT.get(), **_normalise(fields)}
    token = _CONTEXT.set(merged)
    try:
        yield merged
    finally:
        _CONTEXT.reset(token)


def bound_fields() -> Mapping[str, Any]:
    """The fields currently bound by :func:`bind`."""
    return dict(_CONTEXT.get())


_ANSI: Final = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Extras some libraries add that duplicate ``msg`` (uvicorn's ``color_message`` carries ANSI colours).
_DROPPED_EXTRAS: Final = frozenset({"color_message"})


def record_fields(record: logging.LogRecord, function: str, formatter: logging.Formatter) -> dict[str, Any]:
    """The redacted fields of one record, the same whichever format prints them (see module docstring)."""
    payload: dict[str, Any] = {
        "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname,
        "logger": record.name,
        "function": function,
        "msg": _ANSI.sub("", record.getMessage()),
    }
    extras = {
        k: v for k, v in record.__dict__.items() if k not in _RESERVED_ATTRS and k not in _DROPPED_EXTRAS
    }
    context = {**_CONTEXT.get(), **_normalise(extras)}
    # a bound/extra `function` (one process serving several functions, e.g. `tasktide dev`) wins
    if context.get("function"):
        payload["function"] = str(context.pop("function"))
    for name in CONTEXT_FIELDS:
        if name in context:
            payload[name] = context.pop(name)
    for name, value in context.items():
        payload.setdefault(name, value)
    if record.exc_info:
        payload["exc"] = formatter.formatException(record.exc_info)
    if record.stack_info:
        payload["stack"] = formatter.formatStack(record.stack_info)
    redacted: dict[str, Any] = redact(payload)
    return redacted


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON line (see module docstring): for containers and Loki."""

    def __init__(self, function: str) -> None:
        super().__init__()
        self.function = function

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(record_fields(record, self.function, self), default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Format a record for a person at a terminal, with the same fields as :class:`JsonFormatter`:
    ``12:00:01.234 INFO  reminders tasktide.functions.reminders: msg  ce_id=... task_id=...``
    (the date and the exception follow on their own lines)."""

    def __init__(self, function: str) -> None:
        super().__init__()
        self.function = function

    def format(self, record: logging.LogRecord) -> str:
        fields = record_fields(record, self.function, self)
        ts, level, logger = fields.pop("ts"), fields.pop("level"), fields.pop("logger")
        function, msg = fields.pop("function"), fields.pop("msg")
        exc, stack = fields.pop("exc", None), fields.pop("stack", None)
        clock = str(ts)[11:23]
        line = f"{clock} {level:<7} {function} {logger}: {msg}"
        if fields:
            line += "  " + " ".join(f"{k}={_text_value(v)}" for k, v in fields.items())
        for extra in (exc, stack):
            if extra:
                line += "\n" + str(extra)
        return line


def _text_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return json.dumps(text, ensure_ascii=False) if (not text or " " in text or '"' in text) else text


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that looks ``sys.stdout`` up at emit time (so redirection/capture keeps working)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


class AccessLogFields(logging.Filter):
    """uvicorn's access records (``client, method, path, http_version, status``) as redacted fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5:
            client, method, path, _version, status = args
            safe_path = redact_url(str(path))
            record.args = (client, method, safe_path, _version, status)  # uvicorn's format, path redacted
            record.http_method, record.path, record.status, record.client = method, safe_path, status, client
        return True


class KafkaClosedSocketRace(logging.Filter):
    """kafka-python 3's network thread can read a transport that ``close()`` has just closed (its socket is
    ``None``) and logs that as an ERROR with a traceback: a shutdown race inside the library, harmless (the
    transport is already closed). It is logged at DEBUG without the traceback; every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, AttributeError) and "(closed)" in record.getMessage():
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            record.exc_info, record.exc_text = None, None
            return logging.getLogger().getEffectiveLevel() <= logging.DEBUG
        return True


KAFKA_TRANSPORT_LOGGER: Final = "kafka.net.transport"


SERVER_LOGGERS: Final = ("uvicorn", "uvicorn.error", "uvicorn.access", "gunicorn.error", "gunicorn.access")


def route_server_loggers() -> None:
    """Send uvicorn's and gunicorn's loggers through the root (JSON) handler, not their own text ones."""
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, AccessLogFields) for f in access.filters):
        access.addFilter(AccessLogFields())
    transport = logging.getLogger(KAFKA_TRANSPORT_LOGGER)
    if not any(isinstance(f, KafkaClosedSocketRace) for f in transport.filters):
        transport.addFilter(KafkaClosedSocketRace())


def json_handler(function: str) -> logging.Handler:
    """The stdout JSON handler :func:`configure_logging` installs (a factory for ``logging.config``)."""
    handler = _StdoutHandler()
    setattr(handler, _HANDLER_MARK, True)
    handler.setFormatter(JsonFormatter(function))
    return handler


def dict_config(function: str, level: str = "INFO") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` equivalent of :func:`configure_logging` (gunicorn's ``logconfig_dict``:
    its master process logs JSON too, before any app is loaded)."""
    quiet = {"level": level.upper(), "handlers": [], "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "root": {"level": level.upper(), "handlers": ["json"]},
        "loggers": {"gunicorn.error": quiet, "gunicorn.access": quiet},
        "handlers": {"json": {"()": "tasktide.observability.logs.json_handler", "function": function}},
        "formatters": {},
    }


def _wants_text(log_format: str, stream: TextIO) -> bool:
    if log_format == "auto":
        isatty = getattr(stream, "isatty", None)
        return bool(isatty and isatty())
    return log_format == "text"


def configure_logging(function: str, level: str = "INFO", log_format: str | None = None) -> None:
    """Install the formatter on stdout for the root logger (idempotent: replaces a previous install).

    ``log_format`` (default ``TASKTIDE_LOG_FORMAT``): ``json`` (containers, Loki), ``text`` (a person),
    ``auto`` (the default: text when stdout is a terminal, else JSON). Both carry the same fields.
    uvicorn's and gunicorn's loggers are routed through it (:func:`route_server_loggers`)."""
    if log_format is None:
        from tasktide.settings import get_settings

        log_format = get_settings().log_format
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
    handler = _StdoutHandler()
    setattr(handler, _HANDLER_MARK, True)
    text = _wants_text(log_format, sys.stdout)
    handler.setFormatter(TextFormatter(function) if text else JsonFormatter(function))
    root.addHandler(handler)
    root.setLevel(level.upper())
    route_server_loggers()
    logging.captureWarnings(True)
    # One line per outgoing HTTP call (every event delivery) is noise; deliveries log their own outcome.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
