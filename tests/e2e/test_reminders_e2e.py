"""E2E: a due reminder reaches every channel exactly once, even with a second scanner; a completed
task's reminder never fires.

Channels observed for real: the in-app list (`GET /api/{user}/notifications`), a Standard Webhooks-signed
POST to a recording HTTP server, and an e-mail accepted by a real aiosmtpd server.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from standardwebhooks.webhooks import Webhook

from .support import DevServer, holds_for, ping_binary, sender_headers, unique_user, wait_for

pytestmark = pytest.mark.slow


def reminder_scans(base_url: str) -> float:
    """How many reminders-tick scans the server has completed (from its public `/metrics`)."""
    response = httpx.get(f"{base_url}/metrics", timeout=10.0)
    assert response.status_code == 200
    return sum(
        sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == "tasktide_events_consumed_total"
        and sample.labels.get("function") == "reminders"
        and sample.labels.get("outcome") == "ok"
    )


class SecondScanner:
    """Another `reminders` scanner: POSTs PingSource ticks to the function's Knative URL in a loop."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ticks = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="second-scanner", daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=30.0) as client:
            while not self._stop.is_set():
                headers, body = ping_binary()
                try:
                    signed = {**headers, **sender_headers("tasktide-reminders")}
                    response = client.post(self.url, content=body, headers=signed)
                    if response.status_code >= 300:
                        self.failures.append(f"{response.status_code}: {response.text[:200]}")
                except httpx.TransportError as exc:
                    self.failures.append(repr(exc))
                self.ticks += 1
                self._stop.wait(0.2)

    def __enter__(self) -> SecondScanner:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)


def test_reminders_due_with_two_scanners_notifies_each_channel_exactly_once(dev: DevServer) -> None:
    user = unique_user("remind")
    api = dev.api(user)
    hook_path, email = f"/hooks/{user}", f"{user}@example.test"
    api.put_notification_settings(webhook_url=dev.webhook.url(hook_path), email=email)
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=20)
    task = api.create_task(title="submit the report", due_at=due.isoformat(), reminders=["PT15S"])

    with SecondScanner(f"{dev.base_url}/services/tasktide-reminders") as scanner:
        wait_for(api.notifications, timeout=dev.timeout, what="the in-app notification")
        wait_for(lambda: dev.webhook.received(hook_path), timeout=dev.timeout, what="the webhook")
        wait_for(lambda: dev.mail.to(email), timeout=dev.timeout, what="the e-mail")

        def exactly_once_per_channel() -> None:
            assert len(api.notifications()) == 1
            assert len(dev.webhook.received(hook_path)) == 1
            assert len(dev.mail.to(email)) == 1

        holds_for(exactly_once_per_channel, seconds=3.0)
    assert scanner.ticks > 0
    assert scanner.failures == []

    [note] = api.notifications()
    assert note["task_id"] == task["id"]
    assert note["title"] == "Reminder: submit the report"
    assert note["read"] is False

    [hook] = dev.webhook.received(hook_path)
    verified = Webhook(dev.webhook_secret).verify(hook.body, hook.headers)
    assert verified == json.loads(hook.body)
    assert verified["type"] == "com.tasktide.reminder.due"
    assert verified["data"]["task_id"] == task["id"]
    assert verified["data"]["user_id"] == user
    assert verified["data"]["offset"] == "PT15S"

    [mail] = dev.mail.to(email)
    assert mail.subject == "Reminder: submit the report"
    assert "submit the report" in mail.body


def test_reminders_task_completed_before_remind_time_never_notifies(dev: DevServer) -> None:
    user = unique_user("done")
    api = dev.api(user)
    hook_path = f"/hooks/{user}"
    api.put_notification_settings(webhook_url=dev.webhook.url(hook_path))
    due = datetime.now(UTC) + timedelta(seconds=10)
    task = api.create_task(title="already done", due_at=due.isoformat(), reminders=["PT5S"])
    assert api.complete(task["id"])["status"] == "completed"
    remind_at = due - timedelta(seconds=5)

    def nothing_sent() -> None:
        assert api.notifications() == []
        assert dev.webhook.received(hook_path) == []

    holds_for(nothing_sent, seconds=max(0.0, (remind_at - datetime.now(UTC)).total_seconds()) + 0.5)
    scans_at_remind_time = reminder_scans(dev.base_url)

    def three_more_scans_sent_nothing() -> bool:
        nothing_sent()
        return reminder_scans(dev.base_url) >= scans_at_remind_time + 3

    wait_for(three_more_scans_sent_nothing, timeout=dev.timeout, what="three reminder scans past remind time")
    nothing_sent()
