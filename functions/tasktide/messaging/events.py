"""Event catalogue: CloudEvents 1.0 types, their pydantic data models, topics and envelopes.

Emits (through the outbox): ``com.tasktide.task.created|updated|completed|reopened|deleted|skipped`` on
``task-events`` and ``task-updates``; ``com.tasktide.reminder.due`` on ``reminders``;
``com.tasktide.notification.sent`` on ``task-updates``. An envelope becomes a CloudEvent, and the
structured-mode dict the outbox stores, through ``tasktide.messaging.codec``, the one module importing the
cloudevents SDK.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tasktide.domain.tasks import Task
from tasktide.messaging import codec

TASK_CREATED = "com.tasktide.task.created"
TASK_UPDATED = "com.tasktide.task.updated"
TASK_COMPLETED = "com.tasktide.task.completed"
TASK_REOPENED = "com.tasktide.task.reopened"
TASK_DELETED = "com.tasktide.task.deleted"
TASK_SKIPPED = "com.tasktide.task.skipped"
REMINDER_DUE = "com.tasktide.reminder.due"
NOTIFICATION_SENT = "com.tasktide.notification.sent"
TASK_TYPES = (TASK_CREATED, TASK_UPDATED, TASK_COMPLETED, TASK_REOPENED, TASK_DELETED, TASK_SKIPPED)

TOPIC_TASK_EVENTS = "task-events"
TOPIC_TASK_UPDATES = "task-updates"
TOPIC_REMINDERS = "reminders"


# The names of the domain's Priority, Status and RecurrenceBasis values (tests/messaging/test_events.py
# checks they are the same), as the JSON Schema enums of the wire and the API.
PriorityName = Literal["high", "medium", "low", "none"]
StatusName = Literal["pending", "completed"]
BasisName = Literal["due", "completion"]


# One field per tasktide.domain.tasks.Task field, same names, same order (tests/api/test_task_shape.py);
# the API's TaskOut is this plus `completed`.
class TaskSnapshot(BaseModel):
    """The task after the change (the API returns tasks in the same shape). Date-times are RFC 3339."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: uuid.UUID
    user_id: str
    title: str
    description: str
    priority: PriorityName
    tags: list[str]
    status: StatusName
    due_at: datetime | None
    timezone: str
    recurrence: str | None
    recurrence_basis: BasisName
    reminders: list[str]
    series_id: uuid.UUID
    occurrence: int
    version: int
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    # The series (absent in events written before series were anchored).
    series_start: str | None = Field(
        default=None,
        description="The series' start (RFC 5545 DTSTART) as local wall time YYYY-MM-DDTHH:MM:SS "
        "in series_timezone",
    )
    series_timezone: str | None = None
    original_due_at: datetime | None = Field(
        default=None,
        description="The rule instance this occurrence stands for; due_at differs when it was moved",
    )
    exdates: list[datetime] = []
    rdates: list[datetime] = []

    @field_validator("series_start", mode="before")
    @classmethod
    def _wall_time(cls, value: object) -> object:
        return value.isoformat() if isinstance(value, datetime) else value

    @classmethod
    def of(cls, task: Task) -> Self:
        return cls.model_validate(task, from_attributes=True)


class TaskEventData(BaseModel):
    """`data` of every ``com.tasktide.task.*`` event: the task after the change and what changed."""

    model_config = ConfigDict(frozen=True)

    task: TaskSnapshot
    changed: list[str] = []
    actor: str | None = None


class ReminderDueData(BaseModel):
    model_config = ConfigDict(frozen=True)

    reminder_id: uuid.UUID
    task_id: uuid.UUID
    user_id: str
    title: str
    offset: str
    remind_at: datetime
    due_at: datetime
    fired_at: datetime


class NotificationSentData(BaseModel):
    model_config = ConfigDict(frozen=True)

    reminder_event_id: str
    task_id: uuid.UUID
    user_id: str
    channels: list[str]


DATA_MODELS: dict[str, type[BaseModel]] = {
    **{t: TaskEventData for t in TASK_TYPES},
    REMINDER_DUE: ReminderDueData,
    NOTIFICATION_SENT: NotificationSentData,
}


def topics_for(event_type: str) -> tuple[str, ...]:
    if event_type in TASK_TYPES:
        return (TOPIC_TASK_EVENTS, TOPIC_TASK_UPDATES)
    if event_type == REMINDER_DUE:
        return (TOPIC_REMINDERS,)
    if event_type == NOTIFICATION_SENT:
        return (TOPIC_TASK_UPDATES,)
    raise ValueError(f"unknown event type {event_type!r}")


@dataclass(frozen=True)
class Envelope:
    """A catalogue event before it is stored: its CloudEvent has `partitionkey` = the subject (task id)."""

    type: str
    source: str
    subject: str
    data: dict[str, Any]
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    extensions: dict[str, str] = field(default_factory=dict)

    def to_cloud_event(self) -> codec.CloudEvent:
        return codec.new_event(
            self.type,
            self.source,
            self.data,
            subject=self.subject,
            id=self.id,
            time=self.time,
            extensions={"partitionkey": self.subject, **self.extensions},
        )

    def to_json(self) -> dict[str, Any]:
        """The structured-mode dict (what the outbox stores and the relay publishes)."""
        return codec.to_dict(self.to_cloud_event())


def envelope(
    event_type: str,
    function: str,
    subject: str,
    data: BaseModel,
    *,
    traceparent: str | None = None,
    event_id: str | None = None,
) -> Envelope:
    extensions = {"traceparent": traceparent} if traceparent else {}
    payload = data.model_dump(mode="json")
    if event_id is None:
        return Envelope(event_type, f"/tasktide/{function}", subject, payload, extensions=extensions)
    return Envelope(event_type, f"/tasktide/{function}", subject, payload, id=event_id, extensions=extensions)


def task_envelope(
    event_type: str,
    task: Task,
    *,
    function: str = "api",
    changed: tuple[str, ...] = (),
    actor: str | None = None,
    traceparent: str | None = None,
) -> Envelope:
    data = TaskEventData(task=TaskSnapshot.of(task), changed=list(changed), actor=actor)
    return envelope(event_type, function, str(task.id), data, traceparent=traceparent)


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema of each event's `data`, keyed by event type."""
    return {t: model.model_json_schema() for t, model in sorted(DATA_MODELS.items())}


def write_json_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for event_type, schema in json_schemas().items():
        path = directory / f"{event_type}.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
