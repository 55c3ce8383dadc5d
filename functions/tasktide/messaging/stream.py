"""Live updates hub: fans `task-updates` CloudEvents out to each user's SSE clients, with resume.

Consumes: structured CloudEvents from the `task-updates` topic (in-process when embedded, a Kafka
follower otherwise). Emits: per-user async streams of (event id, type, data) for `GET /api/{user}/stream`.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Update:
    id: str
    type: str
    data: dict[str, Any]


def _user_of(event: dict[str, Any]) -> str | None:
    data = event.get("data")
    if not isinstance(data, dict):
        return None
    task = data.get("task")
    user = task.get("user_id") if isinstance(task, dict) else data.get("user_id")
    return user if isinstance(user, str) else None


class StreamHub:
    """`on_first_subscriber` runs once, when the first SSE client subscribes: the API starts its
    `task-updates` follower there, so a process that never streams never consumes the topic."""

    def __init__(self, history: int = 500, on_first_subscriber: Callable[[], None] | None = None) -> None:
        self.history = history
        self._on_first_subscriber = on_first_subscriber
        self._lock = threading.Lock()
        self._buffers: dict[str, deque[Update]] = {}
        self._subscribers: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[Update]]]] = {}

    def publish(self, event: dict[str, Any]) -> None:
        """Thread-safe; duplicates (same event id) are dropped."""
        user = _user_of(event)
        if user is None or not isinstance(event.get("id"), str):
            return
        data = event.get("data")
        update = Update(event["id"], str(event.get("type", "")), data if isinstance(data, dict) else {})
        with self._lock:
            buffer = self._buffers.setdefault(user, deque(maxlen=self.history))
            if any(u.id == update.id for u in buffer):
                return
            buffer.append(update)
            subscribers = list(self._subscribers.get(user, ()))
        for loop, queue in subscribers:
            loop.call_soon_threadsafe(queue.put_nowait, update)

    async def subscribe(self, user: str, last_event_id: str | None = None) -> AsyncIterator[Update]:
        queue: asyncio.Queue[Update] = asyncio.Queue()
        entry = (asyncio.get_running_loop(), queue)
        with self._lock:
            start, self._on_first_subscriber = self._on_first_subscriber, None
        if start is not None:
            start()
        with self._lock:
            backlog = list(self._buffers.get(user, ()))
            self._subscribers.setdefault(user, set()).add(entry)
        try:
            ids = [u.id for u in backlog]
            if last_event_id in ids:
                for update in backlog[ids.index(last_event_id) + 1 :]:
                    yield update
            while True:
                yield await queue.get()
        finally:
            with self._lock:
                self._subscribers.get(user, set()).discard(entry)
