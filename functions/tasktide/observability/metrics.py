"""Every Prometheus metric tasktide exports, defined exactly once.

Consumes: calls from the API, the functions, the outbox relay and the router (``REQUESTS.labels(...).inc()``,
``with observe("api"):`` ...) and, optionally, the env var ``PROMETHEUS_MULTIPROC_DIR`` (read by
``prometheus_client`` itself; when set, values live in mmap files shared by every worker process).
Emits: the Prometheus text exposition via :func:`render` (served at ``/metrics`` by the HTTP app owner).

Metric names are a contract: dashboards (``grafana/dashboards``) and alert rules (``grafana/alerts``) are
tested against :func:`family_names`, so rename nothing here without updating them.

Label vocabularies:

- ``function``: ``api``, ``agent``, ``recurring``, ``reminders``, ``notifier``, ``audit``, ``relay``
- ``CHAT_TURNS`` ``outcome``: ``ok|no_model|not_found|conflict|failed``; ``CHAT_TOOL_CALLS`` ``tool``: an MCP
  tool name (``add_task``, ``list_tasks``, ...)
- ``EVENTS_CONSUMED`` ``outcome``: ``ok|retried|dead_lettered|duplicate_ignored|invalid``
- ``NOTIFICATIONS`` ``channel``: ``in_app|webhook|email``; ``outcome``: ``sent|failed|duplicate|in_flight``
- ``DB_POOL`` ``state``: ``in_use|idle|overflow``
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final, Literal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

__all__ = [
    "CHAT_OUTCOMES",
    "CHAT_TOOL_CALLS",
    "CHAT_TURNS",
    "CHAT_TURN_DURATION",
    "DB_POOL",
    "DEAD_LETTERS",
    "DEAD_LETTER_FAILURES",
    "EVENTS_CONSUMED",
    "EVENTS_EMITTED",
    "EVENT_OUTCOMES",
    "KAFKA_CONSUMER_LAG",
    "NOTIFICATIONS",
    "NOTIFICATION_CHANNELS",
    "NOTIFICATION_OUTCOMES",
    "OCCURRENCES_CREATED",
    "OUTBOX_BACKLOG",
    "OUTBOX_OLDEST_AGE",
    "POOL_STATES",
    "RELAY_PUBLISH_SECONDS",
    "REMINDERS_FIRED",
    "REMINDERS_SKIPPED",
    "REMINDER_LATENESS",
    "REQUESTS",
    "REQUEST_DURATION",
    "REQUEST_ERRORS",
    "RETENTION_DELETED",
    "ChatOutcome",
    "EventOutcome",
    "NotificationChannel",
    "NotificationOutcome",
    "PoolState",
    "RequestOutcome",
    "family_names",
    "mark_process_dead",
    "observe",
    "observe_request",
    "render",
]

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"

EventOutcome = Literal["ok", "retried", "dead_lettered", "duplicate_ignored", "invalid"]
NotificationChannel = Literal["in_app", "webhook", "email"]
NotificationOutcome = Literal["sent", "failed", "duplicate", "in_flight"]
PoolState = Literal["in_use", "idle", "overflow"]
ChatOutcome = Literal["ok", "no_model", "not_found", "conflict", "failed"]

EVENT_OUTCOMES: Final[tuple[EventOutcome, ...]] = (
    "ok",
    "retried",
    "dead_lettered",
    "duplicate_ignored",
    "invalid",
)
NOTIFICATION_CHANNELS: Final[tuple[NotificationChannel, ...]] = ("in_app", "webhook", "email")
NOTIFICATION_OUTCOMES: Final[tuple[NotificationOutcome, ...]] = ("sent", "failed", "duplicate", "in_flight")
POOL_STATES: Final[tuple[PoolState, ...]] = ("in_use", "idle", "overflow")
CHAT_OUTCOMES: Final[tuple[ChatOutcome, ...]] = ("ok", "no_model", "not_found", "conflict", "failed")

# --- requests (HTTP API and every CloudEvents function endpoint) --------------------------------------------

REQUESTS: Final = Counter(
    "tasktide_requests_total",
    "HTTP requests handled, by function and status code.",
    ["function", "code"],
)
REQUEST_ERRORS: Final = Counter(
    "tasktide_request_errors_total",
    "HTTP requests that ended in a 5xx status or an unhandled exception.",
    ["function"],
)
REQUEST_DURATION: Final = Histogram(
    "tasktide_request_duration_seconds",
    "Wall time spent handling one HTTP request.",
    ["function"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

# --- events ----------------------------------------------------------------------------------------------

EVENTS_CONSUMED: Final = Counter(
    "tasktide_events_consumed_total",
    "CloudEvents received by a function, by type and outcome "
    "(ok|retried|dead_lettered|duplicate_ignored|invalid).",
    ["function", "type", "outcome"],
)
EVENTS_EMITTED: Final = Counter(
    "tasktide_events_emitted_total",
    "CloudEvents published (by the relay or directly), by type and destination topic.",
    ["type", "topic"],
)

# --- outbox relay ----------------------------------------------------------------------------------------

OUTBOX_BACKLOG: Final = Gauge(
    "tasktide_outbox_backlog",
    "Outbox rows not yet published.",
    multiprocess_mode="livemax",
)
OUTBOX_OLDEST_AGE: Final = Gauge(
    "tasktide_outbox_oldest_age_seconds",
    "Age of the oldest unpublished outbox row (0 when the outbox is empty).",
    multiprocess_mode="livemax",
)
RELAY_PUBLISH_SECONDS: Final = Histogram(
    "tasktide_relay_publish_seconds",
    "Time to publish one outbox row to the broker.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

# --- reminders and recurrence ----------------------------------------------------------------------------

REMINDER_LATENESS: Final = Histogram(
    "tasktide_reminder_lateness_seconds",
    "Delay between a reminder's due time and the moment it fired.",
    buckets=(0.5, 1, 2.5, 5, 10, 15, 30, 45, 60, 90, 120, 180, 240, 300),
)
REMINDERS_FIRED: Final = Counter(
    "tasktide_reminders_fired_total",
    "Reminders fired (reminder.due events emitted).",
)
REMINDERS_SKIPPED: Final = Counter(
    "tasktide_reminders_skipped_total",
    "Reminders not fired because their task was already past due when the scan found them (a clock jump"
    " or a long outage of the reminders function).",
)
OCCURRENCES_CREATED: Final = Counter(
    "tasktide_recurring_occurrences_created_total",
    "Task occurrences created by the recurring function.",
)

# --- notifications and failures --------------------------------------------------------------------------

NOTIFICATIONS: Final = Counter(
    "tasktide_notifications_total",
    "Notifications attempted, by channel (in_app|webhook|email) and outcome (sent|failed|duplicate).",
    ["channel", "outcome"],
)
RETENTION_DELETED: Final = Counter(
    "tasktide_retention_deleted_total",
    "Rows deleted by retention, by table (outbox: sent rows; dapr_state: expired rows; idempotency_keys).",
    ["table"],
)
DEAD_LETTERS: Final = Counter(
    "tasktide_dead_letters_total",
    "Events sent to the dead-letter sink, by the trigger (subscription) that gave up on them.",
    ["trigger"],
)
DEAD_LETTER_FAILURES: Final = Counter(
    "tasktide_dead_letter_failures_total",
    "Events the dead-letter sink did not accept (neither delivered nor dead-lettered), by trigger.",
    ["trigger"],
)

# --- chat agent (tasktide-agent) ------------------------------------------------------------------------

CHAT_TURNS: Final = Counter(
    "tasktide_chat_turns_total",
    "Chat turns the agent was asked for, by outcome (ok|no_model|not_found|conflict|failed).",
    ["outcome"],
)
CHAT_TURN_DURATION: Final = Histogram(
    "tasktide_chat_turn_duration_seconds",
    "Wall time of one answered chat turn: the model's requests and the MCP tool calls it made.",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160),
)
CHAT_TOOL_CALLS: Final = Counter(
    "tasktide_chat_tool_calls_total",
    "MCP task tools the chat agent called, by tool.",
    ["tool"],
)

# --- infrastructure --------------------------------------------------------------------------------------

DB_POOL: Final = Gauge(
    "tasktide_db_pool_connections",
    "Database pool connections by state (in_use|idle|overflow), summed over live processes.",
    ["state"],
    multiprocess_mode="livesum",
)
KAFKA_CONSUMER_LAG: Final = Gauge(
    "tasktide_kafka_consumer_lag",
    "Kafka consumer lag (messages) per consumer group and topic.",
    ["group", "topic"],
    multiprocess_mode="livemax",
)

_ALL: Final = (
    REQUESTS,
    REQUEST_ERRORS,
    REQUEST_DURATION,
    EVENTS_CONSUMED,
    EVENTS_EMITTED,
    OUTBOX_BACKLOG,
    OUTBOX_OLDEST_AGE,
    RELAY_PUBLISH_SECONDS,
    REMINDER_LATENESS,
    REMINDERS_FIRED,
    REMINDERS_SKIPPED,
    OCCURRENCES_CREATED,
    NOTIFICATIONS,
    RETENTION_DELETED,
    DEAD_LETTERS,
    DEAD_LETTER_FAILURES,
    CHAT_TURNS,
    CHAT_TURN_DURATION,
    CHAT_TOOL_CALLS,
    DB_POOL,
    KAFKA_CONSUMER_LAG,
)


def family_names() -> frozenset[str]:
    """Metric family names defined here (counters without ``_total``, histograms without suffixes)."""
    return frozenset(family.name for metric in _ALL for family in metric.describe())


# --- helpers ---------------------------------------------------------------------------------------------


@dataclass
class RequestOutcome:
    """Mutable holder the caller of :func:`observe_request` sets the response status code on."""

    code: str = "200"


def _is_error(code: str) -> bool:
    return code.startswith("5")


@contextmanager
def observe_request(function: str, default_code: str = "200") -> Iterator[RequestOutcome]:
    """Time the block into ``REQUEST_DURATION`` and count it in ``REQUESTS`` with the code the caller sets.

    ``with observe_request("api") as outcome: ...; outcome.code = "404"``. If the block raises and the code
    is still ``default_code``, it is counted as ``"500"``; the exception is re-raised. 5xx codes also count
    in ``REQUEST_ERRORS``.
    """
    outcome = RequestOutcome(code=default_code)
    start = time.perf_counter()
    try:
        yield outcome
    except BaseException:
        if outcome.code == default_code:
            outcome.code = "500"
        raise
    finally:
        REQUEST_DURATION.labels(function=function).observe(time.perf_counter() - start)
        REQUESTS.labels(function=function, code=outcome.code).inc()
        if _is_error(outcome.code):
            REQUEST_ERRORS.labels(function=function).inc()


@contextmanager
def observe(function: str) -> Iterator[None]:
    """Time the block and count it as ``"200"``, or ``"500"`` if it raises (the exception is re-raised)."""
    with observe_request(function):
        yield


def render() -> tuple[bytes, str]:
    """Return ``(payload, content_type)`` for a ``/metrics`` response.

    With ``PROMETHEUS_MULTIPROC_DIR`` set, aggregates every process's mmap files through a fresh
    ``CollectorRegistry`` + ``MultiProcessCollector``; otherwise renders the default registry.
    """
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    """Drop a dead worker's live gauges (call from e.g. gunicorn's ``child_exit``); no-op single-process."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
