"""Structured logging: one JSON object per line on stdout (containers), or one readable line per record on
a terminal (``TASKTIDE_LOG_FORMAT=auto|json|text``), the same fields either way, with secrets redacted.

Consumes: standard ``logging`` records from every module, contextual fields bound with :func:`bind` (a
contextvar, so it follows asyncio tasks) or passed as ``extra=``, and a W3C ``traceparent`` header value
(``00-<trace_id>-<span_id>-<flags>``) from which ``trace_id`` is extracted.
Emits: lines like ``{"ts": "...", "level": "INFO", "logger": "tasktide.api", "function": "api",
"msg": "...", "ce_id": "...", "ce_type": "...", "task_id": "...", "user_id": "...", "trace_id": "..."}``
on stdout (Grafana Alloy ships them to Loki, see ``grafana/loki/config.alloy``).

Redaction: values under keys that look secret (authorization, token, password, secret, jwt, api_key, ...)
and ``Bearer ...`` / ``Basic ...`` credentials, JWT-looking strings and ``password=...``-style pairs inside
any string are replaced by ``[REDACTED]``.

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
)
# password=hunter2, "api_key": "abc", token: abc  -> keep the key, drop the value
_SECRET_PAIR: Final = re.compile(
    rf"""(?P<key>["']?[\w-]*(?:{_SECRET_KEY_ALT})[\w-]*["']?\s*[:=]\s*)(?P<quote>["']?)(?P<value>[^\s"',;&}}]+)""",
    re.IGNORECASE,
)
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
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(REDACTED, text)
    return _SECRET_PAIR.sub(
        lambda m: (
            f"{m.group('key')}{m.group('quote')}{REDACTED}" if m.group("value") != REDACTED else m.group(0)
        ),
        text,
    )


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


def _wants_text(log_format: str, stream: TextIO) -> bool:
    if log_format == "auto":
        isatty = getattr(stream, "isatty", None)
        return bool(isatty and isatty())
    return log_format == "text"


def configure_logging(function: str, level: str = "INFO", log_format: str | None = None) -> None:
    """Install the formatter on stdout for the root logger (idempotent: replaces a previous install).

    ``log_format`` (default ``TASKTIDE_LOG_FORMAT``): ``json`` (containers, Loki), ``text`` (a person),
    ``auto`` (the default: text when stdout is a terminal, else JSON). Both carry the same fields."""
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
    logging.captureWarnings(True)
    # One line per outgoing HTTP call (every event delivery) is noise; deliveries log their own outcome.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
