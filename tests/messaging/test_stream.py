"""StreamHub: fan-out of `task-updates` events, and its lazily started source."""

from __future__ import annotations

import asyncio

from tasktide.messaging.stream import StreamHub


def test_stream_hub_first_subscriber_starts_source_once() -> None:
    started: list[int] = []
    hub = StreamHub(on_first_subscriber=lambda: started.append(1))
    event = {"id": "e1", "type": "t", "data": {"task": {"user_id": "alice"}}}

    async def first(user: str) -> str:
        updates = hub.subscribe(user)
        task = asyncio.ensure_future(anext(updates))
        await asyncio.sleep(0)
        hub.publish(event if user == "alice" else {**event, "id": "e2", "data": {"user_id": user}})
        update = await asyncio.wait_for(task, 5)
        await updates.aclose()
        return update.id

    assert started == []
    assert asyncio.run(first("alice")) == "e1"
    assert asyncio.run(first("bob")) == "e2"
    assert started == [1]
