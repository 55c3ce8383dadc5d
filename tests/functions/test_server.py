"""The function server: a Dapr input binding call (`POST /<binding>`, empty JSON body, no CloudEvent)
runs the same function as a Knative PingSource tick does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from tasktide.db.models import OutboxRow
from tasktide.db.repository import TaskRepository
from tasktide.domain.tasks import new_task
from tasktide.functions._server import BINDING_ROUTES, create_function_app
from tasktide.messaging.events import REMINDER_DUE
from tasktide.services import Services


def add_due_reminder(services: Services) -> None:
    now = datetime.now(UTC)
    due = now + timedelta(minutes=5)
    task = new_task("u1", {"title": "t", "due_at": due.isoformat(), "reminders": ["PT10M"]}, now=now)
    with services.sessions() as session, session.begin():
        TaskRepository(session).add(task)


def announced(services: Services) -> int:
    with services.sessions() as session:
        return len(list(session.scalars(select(OutboxRow.event_id).where(OutboxRow.type == REMINDER_DUE))))


@pytest.mark.parametrize("body", [b"", b"{}"], ids=["empty", "empty-object"])
def test_fnserver_dapr_cron_binding_call_runs_reminder_scan(services: Services, body: bytes) -> None:
    add_due_reminder(services)
    client = create_function_app("reminders", services=services).test_client()

    response = client.post("/reminders-tick", data=body, headers={"content-type": "application/json"})

    assert response.status_code < 300, response.text
    assert announced(services) == 1


def test_fnserver_ping_cloudevent_on_root_still_runs_reminder_scan(services: Services) -> None:
    add_due_reminder(services)
    client = create_function_app("reminders", services=services).test_client()
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "tick-1",
        "ce-type": "dev.knative.sources.ping",
        "ce-source": "/apis/v1/namespaces/tasktide/pingsources/reminders-tick",
        "content-type": "application/json",
    }

    response = client.post("/", data=b'{"job": "reminders-tick"}', headers=headers)

    assert response.status_code < 300, response.text
    assert announced(services) == 1


def test_fnserver_dapr_binding_options_probe_answers_200() -> None:
    client = create_function_app("reminders").test_client()

    response = client.options("/reminders-tick")

    assert response.status_code == 200


def test_fnserver_binding_routes_name_ping_sources_of_their_function() -> None:
    import yaml

    from tasktide.settings import REPO_ROOT

    pings = [d for d in yaml.safe_load_all((REPO_ROOT / "eventing" / "ping-sources.yaml").read_text()) if d]
    by_target = {p["metadata"]["name"]: p["spec"]["sink"]["ref"]["name"] for p in pings}
    routed = {name: f"tasktide-{target}" for target, names in BINDING_ROUTES.items() for name in names}
    assert routed == by_target


def test_fnserver_dapr_subscribe_answers_no_programmatic_subscriptions() -> None:
    client = create_function_app("audit").test_client()

    response = client.get("/dapr/subscribe")

    assert response.status_code == 200
    assert response.json == []
