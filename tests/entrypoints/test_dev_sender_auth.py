"""`tasktide dev` authenticates the event path as a cluster does (issue 12, finding 1): the router sends a
bearer token for each function's audience, and every function refuses a POST without one.

Consumes a real `tasktide dev --ping-every 1s` subprocess on SQLite (tests.loadtests.devserver) with a known
`TASKTIDE_EVENT_SIGNING_KEY`, so the test can sign as the router does. Emits nothing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest

from tasktide.edges import senderauth
from tasktide.messaging import codec
from tasktide.messaging.events import REMINDER_DUE, ReminderDueData
from tests.loadtests.devserver import DevServer, run_dev_server

KEY = "test-event-signing-key-0123456789abcdef"
NOTIFIER = "/services/tasktide-notifier"
T = TypeVar("T")


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    with run_dev_server(
        tmp_path_factory.mktemp("dev-sender-auth"), env={"TASKTIDE_EVENT_SIGNING_KEY": KEY}
    ) as dev:
        yield dev


def wait_for(probe: Callable[[], T | None], what: str, timeout: float = 45.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout} s")


def create_task(dev: DevServer, user: str, **body: Any) -> dict[str, Any]:
    response = httpx.post(
        f"{dev.base_url}/api/{user}/tasks", json=body, headers=dev.headers(user), timeout=10
    )
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


def notifications(dev: DevServer, user: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{dev.base_url}/api/{user}/notifications", headers=dev.headers(user), timeout=10)
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()
    return result


def forged_reminder(task: dict[str, Any], user: str) -> tuple[dict[str, str], bytes]:
    due = datetime.fromisoformat(task["due_at"])
    data = ReminderDueData(
        reminder_id=uuid.uuid4(),
        task_id=uuid.UUID(task["id"]),
        user_id=user,
        title="support: verify your account at evil.example",
        offset="PT1H",
        remind_at=due - timedelta(hours=1),
        due_at=due,
        fired_at=datetime.now(UTC),
    )
    event = codec.new_event(
        REMINDER_DUE, "/tasktide/reminders", data.model_dump(mode="json"), subject=task["id"]
    )
    return codec.to_binary_http(event)


def test_dev_forged_notifier_event_without_token_answers_401(dev: DevServer) -> None:
    user = f"victim-{uuid.uuid4().hex[:8]}"
    task = create_task(
        dev, user, title="pay rent", due_at=(datetime.now(UTC) + timedelta(days=1)).isoformat()
    )
    headers, body = forged_reminder(task, user)
    response = httpx.post(f"{dev.base_url}{NOTIFIER}", headers=headers, content=body, timeout=10)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    signed_elsewhere = senderauth.sign(
        "not-the-router-key-0123456789abcdef", senderauth.service_audience("tasktide-notifier", "tasktide")
    )
    response = httpx.post(
        f"{dev.base_url}{NOTIFIER}",
        headers={**headers, "Authorization": f"Bearer {signed_elsewhere}"},
        content=body,
        timeout=10,
    )
    assert response.status_code == 401
    assert notifications(dev, user) == []


def test_dev_notifier_event_with_router_token_delivered(dev: DevServer) -> None:
    user = f"owner-{uuid.uuid4().hex[:8]}"
    task = create_task(
        dev, user, title="pay rent", due_at=(datetime.now(UTC) + timedelta(days=1)).isoformat()
    )
    headers, body = forged_reminder(task, user)
    token = senderauth.sign(KEY, senderauth.service_audience("tasktide-notifier", "tasktide"))
    response = httpx.post(
        f"{dev.base_url}{NOTIFIER}",
        headers={**headers, "Authorization": f"Bearer {token}"},
        content=body,
        timeout=10,
    )
    assert response.status_code == 204, response.text
    [note] = notifications(dev, user)
    assert note["title"] == "Reminder: pay rent"  # the stored title, never the event's


def test_dev_router_deliveries_authenticated_reminder_reaches_inbox(dev: DevServer) -> None:
    """PingSource tick -> reminders -> Broker -> Trigger notifier: every hop the router signs is accepted."""
    refused_before = dev.log_path.read_text().count("event refused")
    user = f"remind-{uuid.uuid4().hex[:8]}"
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=8)
    task = create_task(dev, user, title="call the bank", due_at=due.isoformat(), reminders=["PT6S"])
    [note] = wait_for(lambda: notifications(dev, user), "the reminder in the inbox")
    assert note["task_id"] == task["id"] and note["title"] == "Reminder: call the bank"
    assert dev.log_path.read_text().count("event refused") == refused_before  # no router delivery refused
