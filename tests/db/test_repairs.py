"""Repairs on a real database: a tag row an earlier release wrote without its user (a rollout's overlap or
a traffic rollback) is completed by the next `outbox-sweep` tick's transaction and found by a tag filter."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text

from tasktide.app.ports import TaskQuery
from tasktide.db import retention
from tasktide.domain.tasks import new_task
from tasktide.services import Services


def _tag_filter(services: Services) -> list[str]:
    with services.unit_of_work(read_only=True) as uow:
        found = uow.tasks.search("u1", TaskQuery(tags=("home",)), now=datetime.now(UTC))
    return [task.title for task in found]


def test_repair_tag_without_user_completed_by_the_sweep_tick(services: Services) -> None:
    with services.unit_of_work() as uow:
        uow.tasks.add(new_task("u1", {"title": "kept", "tags": ["home"]}, now=datetime.now(UTC)))
    with services.sessions() as session, session.begin():
        session.execute(text("UPDATE task_tags SET user_id = NULL"))  # as the release before 0004 writes it
    assert _tag_filter(services) == []
    retention.purge(services.sessions, outbox_age=3600, state_age=3600)
    assert _tag_filter(services) == ["kept"]
