"""Test doubles shared by the router tests."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from tasktide import ce


@dataclass
class Behaviour:
    """How the fake subscriber ``/services/<name>`` answers."""

    fail_times: int = 0  # answer ``fail_status`` this many times, then succeed
    always_fail: bool = False
    fail_status: int = 500
    fail_body: bytes = b"subscriber exploded"
    reply_type: str | None = None  # on success, reply with a CloudEvent of this type


@dataclass
class Subscribers:
    base_url: str
    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    received: dict[str, list[ce.CloudEvent]] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.behaviours.clear()
            self.received.clear()
            self.attempts.clear()

    def events(self, name: str) -> list[ce.CloudEvent]:
        with self.lock:
            return list(self.received.get(name, []))


class RecordingSleep:
    """Injectable ``sleep`` that records requested backoff delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
