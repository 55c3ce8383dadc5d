"""PingSources as asyncio tasks.

Consumes PingSource manifests (cron ``schedule`` + optional ``timezone``, evaluated with ``croniter``; or an
``every`` override in seconds, from ``--ping-every``); emits a ``dev.knative.sources.ping`` CloudEvent with
source ``/apis/v1/namespaces/<ns>/pingsources/<name>`` and the PingSource's data to its sink.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from croniter import croniter

from tasktide.messaging import codec
from tasktide.router.manifests import Destination, PingSource

log = logging.getLogger(__name__)

PING_TYPE = "dev.knative.sources.ping"
Send = Callable[[Destination, codec.CloudEvent], Awaitable[object]]


def _json_or_none(text: str) -> tuple[bool, object]:
    try:
        return True, json.loads(text)
    except json.JSONDecodeError:
        return False, None


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def ping_event(source: PingSource, now: datetime | None = None) -> codec.CloudEvent:
    """The CloudEvent a PingSource emits on each tick."""
    data: object = None
    content_type = source.content_type
    if source.data_base64 is not None:
        data = base64.b64decode(source.data_base64)
        content_type = content_type or "application/octet-stream"
    elif source.data is not None:
        parsed_ok, parsed = _json_or_none(source.data)
        content_type = content_type or ("application/json" if parsed_ok else "text/plain")
        data = parsed if parsed_ok and _is_json(content_type) else source.data
    return codec.new_event(
        PING_TYPE,
        f"/apis/v1/namespaces/{source.namespace}/pingsources/{source.name}",
        data,
        time=now,
        datacontenttype=content_type or "application/json",
    )


def next_delay(schedule: str, timezone: str | None, now: datetime | None = None) -> float:
    """Seconds from ``now`` until the next cron tick of ``schedule`` in ``timezone`` (default UTC)."""
    tz = ZoneInfo(timezone) if timezone else UTC
    current = (now or datetime.now(UTC)).astimezone(tz)
    upcoming: datetime = croniter(schedule, current).get_next(datetime)
    return max((upcoming - current).total_seconds(), 0.0)


class PingScheduler:
    """Runs one task per PingSource until ``stop()``."""

    def __init__(self, sources: tuple[PingSource, ...], send: Send, every: float | None = None) -> None:
        for source in sources:
            if not croniter.is_valid(source.schedule):
                raise ValueError(f"PingSource {source.name!r}: invalid cron schedule {source.schedule!r}")
        self._sources = sources
        self._send = send
        self._every = every
        self._tasks: list[asyncio.Task[None]] = []
        self.fired = 0

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(s), name=f"ping-{s.name}") for s in self._sources]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _run(self, source: PingSource) -> None:
        while True:
            delay = self._every if self._every is not None else next_delay(source.schedule, source.timezone)
            await asyncio.sleep(delay)
            try:
                await self._send(source.sink, ping_event(source))
                self.fired += 1
            except Exception:
                log.exception("PingSource %s: delivery failed", source.name)
