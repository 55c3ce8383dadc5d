"""E2E: the audit trail (`GET /api/{user}/tasks/{id}/history`) and live updates (`GET /api/{user}/stream`).

Both are fed by the event pipeline (audit function via the broker; SSE via the `task-updates` topic), so
these tests wait on them with bounded polling.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from .support import DevServer, SseReader, UserApi, iter_types, unique_user, wait_for

pytestmark = pytest.mark.slow
CREATED, UPDATED, COMPLETED = (
    "com.tasktide.task.created",
    "com.tasktide.task.updated",
    "com.tasktide.task.completed",
)


def test_history_created_updated_completed_in_order_with_changed_fields(dev: DevServer) -> None:
    user = unique_user("history")
    api = dev.api(user)
    task = api.create_task(title="draft", priority="low")
    api.patch_task(task["id"], title="final", priority="high")
    api.complete(task["id"])

    def three_entries() -> list[dict[str, Any]] | None:
        entries = api.history(task["id"])
        return entries if len(entries) >= 3 else None

    history = wait_for(three_entries, timeout=dev.timeout, what="three history entries")
    assert [h["type"] for h in history] == [CREATED, UPDATED, COMPLETED]
    created, updated, completed = history
    assert created["changed"] == []
    assert set(updated["changed"]) == {"title", "priority"}
    assert {"status", "completed_at"} <= set(completed["changed"])
    assert "title" not in completed["changed"]
    assert {h["actor"] for h in history} == {user}
    assert len({h["event_id"] for h in history}) == 3
    assert created["time"] <= updated["time"] <= completed["time"]


def _subscribe(dev: DevServer, api: UserApi, counter: itertools.count[int]) -> SseReader:
    """Open the user's stream and prove it is subscribed: create warm-up tasks until one shows up."""
    reader = SseReader(dev.base_url, api.user, api.token).start()
    created: set[str] = set()

    def warm_up_seen() -> bool:
        created.add(api.create_task(title=f"warm-up {next(counter)}")["id"])
        return any(e.task_id in created for e in reader.seen())

    wait_for(warm_up_seen, timeout=dev.timeout, what=f"{api.user}'s stream to deliver", interval=1.0)
    assert reader.status == 200
    return reader


def test_stream_user_receives_own_created_updated_completed_only(dev: DevServer) -> None:
    alice, bob = dev.api(unique_user("alice")), dev.api(unique_user("bob"))
    counter = itertools.count()
    alice_stream = _subscribe(dev, alice, counter)
    bob_stream = _subscribe(dev, bob, counter)
    try:
        bobs = bob.create_task(title="bob's secret")
        bob.patch_task(bobs["id"], title="bob's renamed secret")
        task = alice.create_task(title="alice's task")
        alice.patch_task(task["id"], description="details")
        alice.complete(task["id"])
        bob.complete(bobs["id"])

        wanted = [CREATED, UPDATED, COMPLETED]
        wait_for(
            lambda: list(iter_types(alice_stream.seen(), task["id"])) == wanted,
            timeout=dev.timeout,
            what="alice's created/updated/completed on her stream",
        )
        wait_for(
            lambda: list(iter_types(bob_stream.seen(), bobs["id"])) == wanted,
            timeout=dev.timeout,
            what="bob's created/updated/completed on his stream",
        )
        alice_events = alice_stream.seen()
        assert {e.user_id for e in alice_events} == {alice.user}
        assert all(e.task_id != bobs["id"] for e in alice_events)
        assert {e.user_id for e in bob_stream.seen()} == {bob.user}
        mine = [e for e in alice_events if e.task_id == task["id"]]
        assert mine[-1].data["task"]["status"] == "completed"
        assert mine[1].data["changed"] == ["description"]
        assert all(e.id for e in mine)
    finally:
        alice_stream.stop()
        bob_stream.stop()
