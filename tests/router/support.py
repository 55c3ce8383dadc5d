"""Test doubles shared by the router tests."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

from tasktide.messaging import codec


@dataclass
class Behaviour:
    """How the fake subscriber ``/services/<name>`` answers."""

    fail_times: int = 0  # answer ``fail_status`` this many times, then succeed
    always_fail: bool = False
    fail_status: int = 500
    fail_body: bytes = b"subscriber exploded"
    fail_headers: dict[str, str] = field(default_factory=dict)
    fail_subjects: frozenset[str] = frozenset()  # events with these subjects always fail
    reply_type: str | None = None  # on success, reply with a CloudEvent of this type
    reply_structured: bool = False
    ok_status: int = 202
    ok_body: bytes = b""
    ok_headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering


@dataclass(frozen=True)
class Request:
    """One request a fake subscriber received, as it arrived."""

    headers: dict[str, str]
    body: bytes


@dataclass
class Subscribers:
    base_url: str
    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    received: dict[str, list[codec.CloudEvent]] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    requests: dict[str, list[Request]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.behaviours.clear()
            self.received.clear()
            self.attempts.clear()
            self.requests.clear()

    def events(self, name: str) -> list[codec.CloudEvent]:
        with self.lock:
            return list(self.received.get(name, []))

    def raw(self, name: str) -> list[Request]:
        with self.lock:
            return list(self.requests.get(name, []))

    async def wait_for(self, name: str, count: int, timeout: float = 20.0) -> list[codec.CloudEvent]:
        """Await until ``name`` received ``count`` requests (bounded)."""
        async with asyncio.timeout(timeout):
            while len(self.events(name)) < count:
                await asyncio.sleep(0.01)
        return self.events(name)


class GatedSleep:
    """Injectable ``sleep``: every backoff waits until :meth:`open` (records the delays too)."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.gate = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await self.gate.wait()

    def open(self) -> None:
        self.gate.set()


class RecordingSleep:
    """Injectable ``sleep`` that records requested backoff delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
