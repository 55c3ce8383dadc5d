"""`tasktide.services.built_once`: a container part is built once, however many threads ask for it first."""

from __future__ import annotations

import threading
import time

from tasktide.services import Services, built_once

THREADS = 8


class Parts:
    def __init__(self) -> None:
        self.builds = 0

    @built_once
    def pool(self) -> object:
        self.builds += 1
        time.sleep(0.05)  # a slow build (a connection pool, a client): the window threads race in
        return object()

    @built_once
    def client(self) -> tuple[object, object]:
        return (self.pool, object())  # building one part reads another (the lock is re-entrant)


def test_built_once_threads_racing_first_access_one_build_one_value() -> None:
    parts = Parts()
    start = threading.Barrier(THREADS)
    seen: list[object] = []

    def ask() -> None:
        start.wait(timeout=10)
        seen.append(parts.pool)

    threads = [threading.Thread(target=ask) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert parts.builds == 1
    assert len(seen) == THREADS and all(value is seen[0] for value in seen)


def test_built_once_part_reading_another_part_builds_both_once() -> None:
    parts = Parts()
    assert parts.client[0] is parts.pool
    assert parts.client is parts.client and parts.builds == 1


def test_services_parts_are_built_once() -> None:
    assert isinstance(Services.__dict__["state"], built_once)
    assert isinstance(Services.__dict__["audit_log"], built_once)
