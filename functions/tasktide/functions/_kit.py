"""Plumbing every CloudEvents function shares (not a function itself): the services container a call
runs with, parsing an event's data into its catalogue model, RED metrics, consumption outcomes and bound
log fields.

A bad event (a type this function does not take, data that does not match its model) raises
:class:`BadEvent`, counted `invalid`: `tasktide.functions._server` answers it `400
application/problem+json`, which the
Knative Kafka Broker never retries and dead-letters at once (with `knativeerrorcode=400` and the problem
as `knativeerrordata`), so the evidence is kept in the dead-letter topic instead of being acknowledged and
forgotten. A transient error propagates: the server answers 500 and Knative redelivers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from tasktide.observability import logs, metrics

if TYPE_CHECKING:  # the container (SQLAlchemy, the relay) is imported at the first event that needs it
    from tasktide.db.dbapi import DbapiDatabase
    from tasktide.services import Services

M = TypeVar("M", bound=BaseModel)
log = logging.getLogger("tasktide.function")
CRASH_AFTER_COMMIT_ENV = "TASKTIDE_CRASH_AFTER_COMMIT"
_default: Services | None = None  # a function server's own container, built at its first event
_light: DbapiDatabase | None = None  # the audit function's own database, without SQLAlchemy
_bound: ContextVar[Services | None] = ContextVar("tasktide_function_services", default=None)


class Redeliver(RuntimeError):
    """An expected transient failure (a channel down): answered 503 so Knative redelivers, logged as one
    warning line naming the reason (no traceback; the message must carry no secret)."""


class BadEvent(Exception):
    """An event this function can never handle: answered with a 4xx problem, never retried."""

    def __init__(self, detail: str, *, title: str = "Event not processable", status: int = 400) -> None:
        super().__init__(detail)
        self.detail, self.title, self.status = detail, title, status


@contextmanager
def serving(services: Services | None) -> Iterator[None]:
    """Run the calls inside with ``services``: `tasktide.functions._server` binds the container its app
    was made with (e.g. the one `tasktide dev` shares with the API), a test the one it calls a function
    with; ``None`` leaves the process default."""
    token = _bound.set(services)
    try:
        yield
    finally:
        _bound.reset(token)


def services() -> Services:
    """The container of the current call: the one bound by :func:`serving`, else the process default
    (a function server builds its own at the first event)."""
    global _default
    bound = _bound.get()
    if bound is not None:
        return bound
    if _default is None:
        from tasktide.services import Services
        from tasktide.settings import get_settings

        _default = Services.build(get_settings(), with_relay=True)
        if os.environ.get("FUNCTION_TARGET") == "relay":  # the relay Service publishes on every NOTIFY
            _default.listen_outbox()
    return _default


def audit_unit_of_work() -> DbapiDatabase:
    """Units of work for recording audit entries, on the DBAPI driver alone (`tasktide.db.dbapi`): the
    bound (or already built) container's database, else the configured one, so an audit container never
    imports SQLAlchemy."""
    global _light
    bound = _bound.get() or _default
    if bound is not None:
        return bound.audit_log
    if _light is None:
        from tasktide.dapr import secret_store
        from tasktide.db.dbapi import DbapiDatabase
        from tasktide.services import database_url
        from tasktide.settings import get_settings

        settings = get_settings()
        _light = DbapiDatabase(database_url(settings, secret_store(settings)))
    return _light


def attr(event: Any, name: str) -> str | None:
    try:
        value = event[name]
    except KeyError:
        return None
    return None if value is None else str(value)


@contextmanager
def bind_event(function: str, event: Any) -> Iterator[None]:
    """Bind the event's id, type, subject and trace to every log line; time and count the call."""
    fields = {"ce_id": attr(event, "id"), "ce_type": attr(event, "type"), "task_id": attr(event, "subject")}
    with (
        logs.bind(**fields, function=function, traceparent=attr(event, "traceparent")),
        metrics.observe(function),
    ):
        yield


def _bad(function: str, event_type: str, detail: str) -> BadEvent:
    metrics.EVENTS_CONSUMED.labels(function, event_type, "invalid").inc()
    log.warning("rejecting event: %s", detail)
    return BadEvent(detail)


@contextmanager
def consuming(function: str, event: Any, model: type[M], *types: str) -> Iterator[M]:
    """Yield the parsed data; time and count the call. Raises :class:`BadEvent` (counted `invalid`) for an
    event of another type or whose data does not match ``model``."""
    event_type = attr(event, "type") or ""
    with bind_event(function, event):
        if types and event_type not in types:
            raise _bad(function, event_type, f"{function} does not handle events of type {event_type!r}")
        try:
            parsed = model.model_validate(event.data)
        except ValidationError as exc:
            errors = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(data)'}: {e['msg']}" for e in exc.errors()[:3]
            )
            raise _bad(function, event_type, f"data does not match {model.__name__}: {errors}") from None
        except RecursionError:
            raise _bad(function, event_type, "data is nested too deeply") from None
        try:
            yield parsed
        except Redeliver as exc:
            metrics.EVENTS_CONSUMED.labels(function, event_type, "retried").inc()
            log.warning("%s; answering 503 so the event is redelivered", exc)
            raise
        except Exception:
            metrics.EVENTS_CONSUMED.labels(function, event_type, "retried").inc()
            log.exception("transient failure; answering 5xx so the event is redelivered")
            raise


def outcome(function: str, event: Any, result: str) -> None:
    metrics.EVENTS_CONSUMED.labels(function, attr(event, "type") or "", result).inc()
    log.info("event %s", result)


def crash_after_commit() -> None:
    """Test hook (tests/e2e crash test only, never set in production): with `TASKTIDE_CRASH_AFTER_COMMIT=1`
    the process dies right after a function's commit and before its HTTP reply, like a pod killed then."""
    if os.environ.get(CRASH_AFTER_COMMIT_ENV) == "1":
        log.error("%s=1: exiting between commit and reply", CRASH_AFTER_COMMIT_ENV)
        os._exit(1)
