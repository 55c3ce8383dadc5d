"""Request and response bodies of the task API (the OpenAPI contract)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, computed_field, field_validator

from tasktide.domain.tasks import Task

Priority = Literal["high", "medium", "low", "none"]
StatusName = Literal["pending", "completed"]
Basis = Literal["due", "completion"]


class TaskIn(BaseModel):
    """Create (POST) and replace (PUT) body. `completed` is accepted for Phase II clients."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(max_length=1000)
    description: str = Field(default="", max_length=20000)
    priority: Priority = "none"
    tags: list[str] = Field(default_factory=list, max_length=100)
    status: StatusName | None = None
    completed: StrictBool | None = None  # JSON true/false only: "yes" or 1 is a 422, not true
    due_at: datetime | None = None
    timezone: str = Field(default="UTC", max_length=64)
    recurrence: str | None = Field(
        default=None,
        max_length=20000,
        description="RRULE (FREQ=WEEKLY;BYDAY=MO), or RFC 5545 lines: RRULE:... plus EXDATE/RDATE lines",
    )
    recurrence_text: str | None = Field(
        default=None,
        max_length=200,
        description='Plain-language rule instead of recurrence, e.g. "every 2nd monday", "every! 3 days"',
    )
    recurrence_basis: Basis = "due"
    reminders: list[str] = Field(default_factory=list, max_length=50)
    exdates: list[datetime] = Field(
        default_factory=list, max_length=200, description="Excluded instances of the series (EXDATE)"
    )
    rdates: list[datetime] = Field(
        default_factory=list, max_length=200, description="Extra instances of the series (RDATE)"
    )
    # Read-only fields a client may send back unchanged (e.g. PUT of a task it just GOT): ignored.
    id: Any = Field(default=None, exclude=True, description="read-only, ignored")
    user_id: Any = Field(default=None, exclude=True, description="read-only, ignored")
    series_id: Any = Field(default=None, exclude=True, description="read-only, ignored")
    occurrence: Any = Field(default=None, exclude=True, description="read-only, ignored")
    version: Any = Field(default=None, exclude=True, description="read-only, ignored")
    created_at: Any = Field(default=None, exclude=True, description="read-only, ignored")
    updated_at: Any = Field(default=None, exclude=True, description="read-only, ignored")
    completed_at: Any = Field(default=None, exclude=True, description="read-only, ignored")
    series_start: Any = Field(default=None, exclude=True, description="read-only, ignored")
    series_timezone: Any = Field(default=None, exclude=True, description="read-only, ignored")
    original_due_at: Any = Field(default=None, exclude=True, description="read-only, ignored")


class CompleteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    completed: StrictBool


class TaskOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    user_id: str
    title: str
    description: str
    priority: Priority
    tags: list[str]
    status: StatusName
    due_at: datetime | None
    timezone: str
    recurrence: str | None
    recurrence_basis: Basis
    reminders: list[str]
    series_id: uuid.UUID
    occurrence: int
    version: int
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    series_start: str | None = Field(
        description="The series' start (RFC 5545 DTSTART) as local wall time YYYY-MM-DDTHH:MM:SS "
        "in series_timezone"
    )
    series_timezone: str | None
    original_due_at: datetime | None = Field(
        description="The rule instance this occurrence stands for; due_at differs when it was moved"
    )
    exdates: list[datetime]
    rdates: list[datetime]

    @field_validator("series_start", mode="before")
    @classmethod
    def _wall_time(cls, value: object) -> object:
        return value.isoformat() if isinstance(value, datetime) else value

    @computed_field  # type: ignore[prop-decorator]
    @property
    def completed(self) -> bool:
        """`status == "completed"`, for Phase II clients."""
        return self.status == "completed"

    @classmethod
    def of(cls, task: Task) -> TaskOut:
        return cls.model_validate(task, from_attributes=True)


class SkipOut(BaseModel):
    """`POST .../skip`: the occurrence skipped (now gone, its instance an EXDATE) and the next one."""

    skipped: TaskOut
    next: TaskOut | None = Field(description="The next occurrence, or null when the skip ended the series")


class OccurrenceOut(BaseModel):
    due_at: datetime = Field(description="UTC")
    local: datetime = Field(description="The same instant in the task's timezone, with its offset")


class OccurrencesOut(BaseModel):
    """`GET .../occurrences`: the series' next due times from this occurrence on."""

    task_id: uuid.UUID
    timezone: str
    recurrence: str | None
    recurrence_basis: Basis
    series_start: str | None = Field(description="Local wall time YYYY-MM-DDTHH:MM:SS in timezone")
    occurrences: list[OccurrenceOut]


class ProblemOut(BaseModel):
    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[dict[str, str]] | None = None


def to_fields(body: TaskIn) -> dict[str, object]:
    """JSON-ish field map for the domain; `completed` folds into `status`."""
    fields = body.model_dump(mode="json", exclude={"completed"}, exclude_none=False)
    if fields.get("recurrence_text") is None:
        fields.pop("recurrence_text", None)
    if fields.get("status") is None:
        fields.pop("status", None)
        if body.completed is not None:
            fields["status"] = "completed" if body.completed else "pending"
    return fields


Sort = Literal[
    "due_at",
    "-due_at",
    "priority",
    "-priority",
    "title",
    "-title",
    "created_at",
    "-created_at",
    "updated_at",
    "-updated_at",
]


class TaskFilters(BaseModel):
    """The list's filters, sort and page: the REST list's query parameters (`GET /api/{user}/tasks`) and,
    field for field, the MCP `list_tasks` tool's arguments (`tasktide.api.mcp_server` derives its
    signature from these fields)."""

    status: Literal["pending", "completed", "all"] = "all"
    priority: list[Priority] = Field(default=[], description="Any of these priorities")
    tag: list[Annotated[str, Field(max_length=40)]] = Field(
        default=[], max_length=20, description="Every one of these tags"
    )
    q: str | None = Field(default=None, max_length=200, description="Text in the title or description")
    due_from: datetime | None = Field(default=None, description="RFC 3339, inclusive")
    due_to: datetime | None = Field(default=None, description="RFC 3339, inclusive")
    overdue: bool = Field(default=False, description="Only pending tasks whose due time has passed")
    sort: Sort = Field(default="created_at", description="A field, `-` first for descending")
    limit: int = Field(default=50, ge=1, le=200, description="Page size")
    cursor: str | None = Field(default=None, max_length=200, description="next_cursor of a previous page")

    def query_params(self) -> list[tuple[str, str]]:
        """These filters as the REST list's query string (defaults omitted, lists repeated)."""
        params: list[tuple[str, str]] = []
        for name, value in self.model_dump(exclude_defaults=True).items():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, bool):
                    params.append((name, "true" if item else "false"))
                elif isinstance(item, datetime):
                    params.append((name, item.isoformat()))
                else:
                    params.append((name, str(item)))
        return params
