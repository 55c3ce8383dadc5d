"""Structured JSON logging: one JSON object per line on stdout, with secrets redacted.

Consumes: standard ``logging`` records from every module, contextual fields bound with :func:`bind` (a
contextvar, so it follows asyncio tasks) or passed as ``extra=``, and a W3C ``traceparent`` header value
(``00-<trace_id>-<span_id>-<flags>``) from which ``trace_id`` is extracted.
Emits: lines like ``{"ts": "...", "level": "INFO", "logger": "tasktide.api", "function": "api",
"msg": "...", "ce_id": "...", "ce_type": "...", "task_id": "...", "user_id": "...", "trace_id": "..."}``
on stdout (Loki/promtail parses them, see ``grafana/loki/promtail.yaml``).

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
    "bind",
    "bound_fields",
    "configure_logging",
    "parse_traceparent",
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


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON line (see module docstring)."""

    def __init__(self, function: str) -> None:
        super().__init__()
        self.function = function

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "function": self.function,
            "msg": record.getMessage(),
        }
        extras = {k: v for k, v in record.__dict__.items() if k not in _RESERVED_ATTRS}
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
            payload["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            payload["stack"] = self.formatStack(record.stack_info)
        return json.dumps(redact(payload), default=str, ensure_ascii=False)


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


def configure_logging(function: str, level: str = "INFO") -> None:
    """Install the JSON formatter on stdout for the root logger (idempotent: replaces a previous install)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
    handler = _StdoutHandler()
    setattr(handler, _HANDLER_MARK, True)
    handler.setFormatter(JsonFormatter(function))
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)
    # One line per outgoing HTTP call (every event delivery) is noise; deliveries log their own outcome.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
