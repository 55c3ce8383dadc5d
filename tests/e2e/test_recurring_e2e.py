"""E2E: completing a recurring task yields exactly one next occurrence, even under duplicate deliveries.

Drives only the public HTTP API, the broker ingress (`POST /tasktide/default`) and the function's Knative URL
(`POST /services/tasktide-recurring`) of a running `tasktide dev`, in embedded and Kafka mode.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from .support import (
    COMPLETED,
    DevServer,
    UserApi,
    completed_binary,
    completed_structured,
    holds_for,
    sender_headers,
    unique_user,
    wait_for,
)

pytestmark = pytest.mark.slow
BERLIN = ZoneInfo("Europe/Berlin")
WEEKLY_MONDAY = "FREQ=WEEKLY;BYDAY=MO"


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def monday_before_dst_change(now: datetime) -> datetime:
    """A future Monday 09:00 Berlin whose following Monday has another UTC offset (DST switch between)."""
    day = (now.astimezone(BERLIN) + timedelta(days=1)).date()
    while True:
        if day.weekday() == 0:
            this = datetime(day.year, day.month, day.day, 9, tzinfo=BERLIN)
            following = datetime.combine(day + timedelta(days=7), this.timetz())
            if this.utcoffset() != following.utcoffset():
                return this
        day += timedelta(days=1)


def recurring_task(api: UserApi) -> tuple[dict[str, Any], datetime]:
    """A pending weekly task and its due time in Berlin local time."""
    due_local = monday_before_dst_change(datetime.now(UTC))
    task = api.create_task(
        title="weekly review",
        due_at=due_local.astimezone(UTC).isoformat(),
        timezone="Europe/Berlin",
        recurrence=WEEKLY_MONDAY,
    )
    return task, due_local


def test_recurring_weekly_task_completed_creates_exactly_one_next_monday(dev: DevServer) -> None:
    api = dev.api(unique_user("weekly"))
    task, due_local = recurring_task(api)
    assert parse(task["due_at"]) == due_local

    completed = api.complete(task["id"])
    assert completed["status"] == "completed"

    found = wait_for(
        lambda: api.occurrences(task["series_id"], 2), timeout=dev.timeout, what="the next occurrence"
    )
    nxt = found[0]
    next_local = parse(nxt["due_at"]).astimezone(BERLIN)
    assert (next_local.date(), next_local.hour, next_local.minute) == (
        (due_local + timedelta(days=7)).date(),
        9,
        0,
    )
    assert next_local.weekday() == 0
    assert next_local.utcoffset() != due_local.utcoffset()  # 09:00 local across the DST switch
    assert nxt["status"] == "pending"
    assert nxt["id"] != task["id"]
    assert (nxt["recurrence"], nxt["timezone"], nxt["title"]) == (
        WEEKLY_MONDAY,
        "Europe/Berlin",
        task["title"],
    )

    def exactly_one_next() -> None:
        series = [t for t in api.tasks() if t["series_id"] == task["series_id"]]
        assert sorted(t["occurrence"] for t in series) == [1, 2]

    holds_for(exactly_one_next, seconds=3.0)


def test_recurring_completed_event_delivered_five_times_concurrently_creates_one_occurrence(
    dev: DevServer,
) -> None:
    user = unique_user("dupes")
    api = dev.api(user)
    task, _ = recurring_task(api)
    completed = api.complete(task["id"])
    history = wait_for(
        lambda: [h for h in api.history(task["id"]) if h["type"] == COMPLETED],
        timeout=dev.timeout,
        what="the completed event in the history",
    )
    event_id = history[0]["event_id"]
    structured = completed_structured(event_id, completed, user)
    headers, body = completed_binary(event_id, completed, user)

    def to_broker(_: int) -> int:
        response = httpx.post(
            f"{dev.base_url}/tasktide/default",
            json=structured,
            headers={"content-type": "application/cloudevents+json"},
            timeout=30.0,
        )
        return response.status_code

    def to_function(_: int) -> int:
        response = httpx.post(
            f"{dev.base_url}/services/tasktide-recurring",
            content=body,
            headers={**headers, **sender_headers("tasktide-recurring")},
            timeout=30.0,
        )
        return response.status_code

    with ThreadPoolExecutor(max_workers=10) as pool:
        to_broker_futures = [pool.submit(to_broker, i) for i in range(5)]
        to_function_futures = [pool.submit(to_function, i) for i in range(5)]
        broker_codes = [f.result() for f in to_broker_futures]
        function_codes = [f.result() for f in to_function_futures]
    assert broker_codes == [202] * 5
    assert all(200 <= code < 300 for code in function_codes), function_codes

    wait_for(lambda: api.occurrences(task["series_id"], 2), timeout=dev.timeout, what="the next occurrence")

    def one_occurrence_one_completion() -> None:
        series = [t for t in api.tasks() if t["series_id"] == task["series_id"]]
        assert sorted(t["occurrence"] for t in series) == [1, 2]
        completions = [h for h in api.history(task["id"]) if h["type"] == COMPLETED]
        assert [h["event_id"] for h in completions] == [event_id]

    holds_for(one_occurrence_one_completion, seconds=3.0)
