"""audit on a real database: events the database contradicts are not written into anyone's history
(issue 12 finding 1: a forged `task.deleted` by "support-admin" for another user's live task)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from tasktide.app.audit import Audit
from tasktide.db.models import AuditRow
from tasktide.db.repository import TaskRepository
from tasktide.domain.tasks import Task, new_task
from tasktide.functions import _kit, audit
from tasktide.messaging import codec
from tasktide.messaging.events import TASK_DELETED, TASK_UPDATED, Envelope, task_envelope
from tasktide.services import Services


@pytest.fixture
def installed(services: Services) -> Iterator[Services]:
    """``services`` bound to the functions called directly in this test (what a function server does
    per app)."""
    with _kit.serving(services):
        yield services


def live_task(services: Services) -> Task:
    task = new_task("victim", {"title": "mine"}, now=datetime.now(UTC))
    with services.sessions() as session, session.begin():
        TaskRepository(session).add(task)
    return task


def event(envelope: Envelope) -> codec.CloudEvent:
    body = json.dumps(envelope.to_json()).encode()
    return codec.from_http({"content-type": "application/cloudevents+json"}, body)


def history(services: Services) -> list[tuple[str, str]]:
    with services.sessions() as session:
        return [(r.type, r.actor) for r in session.scalars(select(AuditRow))]


def test_audit_forged_delete_of_live_task_not_recorded(installed: Services) -> None:
    task = live_task(installed)
    audit.audit(event(task_envelope(TASK_DELETED, task, actor="victim")))
    assert history(installed) == []


def test_audit_actor_not_owner_not_recorded(installed: Services) -> None:
    task = live_task(installed)
    audit.audit(event(task_envelope(TASK_UPDATED, task, changed=["title"], actor="support-admin")))
    assert history(installed) == []


def test_audit_owner_and_recurring_events_recorded(installed: Services) -> None:
    task = live_task(installed)
    audit.audit(event(task_envelope(TASK_UPDATED, task, changed=["title"], actor="victim")))
    audit.audit(event(task_envelope(TASK_UPDATED, task, changed=["due_at"], actor="recurring")))
    with installed.sessions() as session, session.begin():
        TaskRepository(session).delete(task)
    audit.audit(event(task_envelope(TASK_DELETED, task, actor="victim")))
    assert sorted(history(installed)) == [
        (TASK_DELETED, "victim"),
        (TASK_UPDATED, "recurring"),
        (TASK_UPDATED, "victim"),
    ]


def test_audit_redelivered_event_recorded_once(installed: Services) -> None:
    task = live_task(installed)
    delivered = event(task_envelope(TASK_UPDATED, task, changed=["title"], actor="victim"))
    audit.audit(delivered)
    audit.audit(delivered)
    assert history(installed) == [(TASK_UPDATED, "victim")]


def test_audit_reordered_events_listed_by_event_time(installed: Services) -> None:
    task = live_task(installed)
    later = task_envelope(TASK_UPDATED, task, changed=["due_at"], actor="victim")
    earlier = task_envelope(TASK_UPDATED, task, changed=["title"], actor="victim")
    earlier = dataclasses.replace(earlier, time=later.time - timedelta(minutes=1))
    audit.audit(event(later))
    audit.audit(event(earlier))
    entries = Audit(installed.unit_of_work).history("victim", task.id)
    assert [e.changed for e in entries] == [("title",), ("due_at",)]


def test_audit_data_not_a_task_event_raises_bad_event(installed: Services) -> None:
    bad = codec.new_event(TASK_UPDATED, "/tasktide/api", {"task": {"id": "nope"}}, subject="x")
    with pytest.raises(_kit.BadEvent):
        audit.audit(bad)
    assert history(installed) == []


CONTAINER_PROBE = """
import json, sys
from tasktide.functions._server import app_from_env
response = app_from_env().test_client().post(
    "/", data=sys.stdin.buffer.read(), headers={"content-type": "application/cloudevents+json"}
)
unused = ("sqlalchemy", "dateutil", "tasktide.domain.recurrence", "tasktide.domain.recurrence_text")
loaded = [name for name in unused if name in sys.modules]
print(json.dumps({"status": response.status_code, "loaded": loaded}))
"""


def test_audit_container_records_without_importing_sqlalchemy_or_the_rule_engine(services: Services) -> None:
    """What `FUNCTION_TARGET=audit tasktide serve` runs: no container bound, so the DBAPI store."""
    import os
    import subprocess
    import sys

    task = live_task(services)
    body = json.dumps(task_envelope(TASK_UPDATED, task, changed=["title"], actor="victim").to_json())
    env = {**os.environ, "FUNCTION_TARGET": "audit", "TASKTIDE_DATABASE_URL": services.settings.database_url}
    done = subprocess.run(
        [sys.executable, "-c", CONTAINER_PROBE], input=body.encode(), env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert json.loads(done.stdout.decode().strip().splitlines()[-1]) == {"status": 204, "loaded": []}
    assert history(services) == [(TASK_UPDATED, "victim")]
