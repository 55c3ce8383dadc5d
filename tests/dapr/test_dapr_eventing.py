"""The plan's Dapr wiring end to end, from the YAML under dapr/, with real daprd, Kafka and Postgres: the
apps of `tasktide dapr-run` (tasktide.dapr.mode), each beside its own daprd, for the whole module.

- service invocation: a caller's sidecar reaches the task API at /v1.0/invoke/tasktide-api/method/...
- pubsub.kafka + the `audit` Subscription: the relay's structured record reaches the audit function
- bindings.cron `reminders-tick`: daprd's `POST /reminders-tick` runs the reminder scan
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from sqlalchemy import select

from tasktide.api.auth import encode_token
from tasktide.dapr.mode import LOCAL_SECRETS, DaprMode
from tasktide.db.engine import make_engine, session_factory
from tasktide.db.models import AuditRow, OutboxRow
from tasktide.messaging.events import REMINDER_DUE
from tests.dapr import realdaprd
from tests.testenv import require_env

pytestmark = [pytest.mark.postgres, pytest.mark.kafka]
T = TypeVar("T")
APPS = ("tasktide-api", "tasktide-audit", "tasktide-reminders")


@pytest.fixture(scope="module")
def mode(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaprMode]:
    kafka = require_env("TASKTIDE_TEST_KAFKA")
    running = DaprMode(
        tmp_path_factory.mktemp("dapr-mode"),
        database_url=postgres_url,
        kafka=kafka,
        apps=APPS,
        cron_schedule="@every 1s",
        binary=realdaprd.require_daprd(),
    )
    running.start(timeout=120)
    yield running
    running.stop()


def invoke_url(mode: DaprMode, caller: str, path: str) -> str:
    return f"{mode.daprd(caller).http_url}/v1.0/invoke/tasktide-api/method/{path.lstrip('/')}"


def auth(user: str) -> dict[str, str]:
    secret = json.loads(Path(LOCAL_SECRETS).read_text())["jwt-secret"]
    return {"Authorization": f"Bearer {encode_token(user, secret)}"}


def eventually(probe: Callable[[], T | None], timeout: float = 60.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s")


def test_dapr_service_invocation_caller_sidecar_reaches_task_api(mode: DaprMode) -> None:
    health = httpx.get(invoke_url(mode, "tasktide-reminders", "healthz"), timeout=10)
    assert health.status_code == 200, health.text

    created = httpx.post(
        invoke_url(mode, "tasktide-reminders", "api/alice/tasks"),
        json={"title": "invoked through two sidecars"},
        headers=auth("alice"),
        timeout=10,
    )
    assert created.status_code == 201, created.text
    listed = httpx.get(
        invoke_url(mode, "tasktide-audit", "api/alice/tasks"), headers=auth("alice"), timeout=10
    )
    assert created.json()["id"] in {task["id"] for task in listed.json()}


def test_dapr_pubsub_relay_record_reaches_audit_function_with_its_event_id(
    mode: DaprMode, postgres_url: str
) -> None:
    created = httpx.post(
        invoke_url(mode, "tasktide-audit", "api/bob/tasks"),
        json={"title": "audited through Kafka and a Dapr subscription"},
        headers=auth("bob"),
        timeout=10,
    )
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    engine = make_engine(postgres_url)
    sessions = session_factory(engine)

    def audited() -> list[tuple[str, str]] | None:
        with sessions() as session:
            rows = session.execute(
                select(AuditRow.event_id, AuditRow.type).where(AuditRow.task_id == task_id)
            )
            return [(row.event_id, row.type) for row in rows] or None

    rows = eventually(audited)
    with sessions() as session:
        outbox_ids = set(session.scalars(select(OutboxRow.event_id).where(OutboxRow.key == task_id)))
    engine.dispose()
    assert rows[0][1] == "com.tasktide.task.created"
    assert rows[0][0] in outbox_ids  # delivered as the relay's own CloudEvent, not re-wrapped by Dapr


def test_dapr_cron_binding_tick_runs_reminder_scan(mode: DaprMode, postgres_url: str) -> None:
    due = datetime.now(UTC) + timedelta(minutes=5)
    created = httpx.post(
        invoke_url(mode, "tasktide-audit", "api/carol/tasks"),
        json={"title": "remind me", "due_at": due.isoformat(), "reminders": ["PT10M"]},
        headers=auth("carol"),
        timeout=10,
    )
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    engine = make_engine(postgres_url)
    sessions = session_factory(engine)

    def announced() -> list[str] | None:
        with sessions() as session:
            query = select(OutboxRow.event_id).where(OutboxRow.type == REMINDER_DUE, OutboxRow.key == task_id)
            return list(session.scalars(query)) or None

    assert len(eventually(announced)) == 1
    engine.dispose()
