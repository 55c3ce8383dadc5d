"""Request and response bodies of the task API (the OpenAPI contract)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, computed_field, model_validator

from tasktide.domain.tasks import (
    DATES_MAX,
    DESCRIPTION_MAX,
    EDITABLE_FIELDS,
    INPUT_ONLY_FIELDS,
    READ_ONLY_FIELDS,
    RECURRENCE_MAX,
    RECURRENCE_TEXT_MAX,
    REMINDERS_MAX,
    TAG_MAX,
    TAGS_MAX,
    TIMEZONE_MAX,
    TITLE_MAX,
)
from tasktide.messaging.events import BasisName, PriorityName, StatusName, TaskSnapshot

Priority = PriorityName
Basis = BasisName

READ_ONLY_FIELDS_SET = frozenset(READ_ONLY_FIELDS)
_INPUT_FIELDS = set(EDITABLE_FIELDS) | set(INPUT_ONLY_FIELDS)


def _read_only_ignored(schema: dict[str, Any]) -> None:
    """The read-only fields in TaskIn's schema: a client may send them back unchanged, they are ignored."""
    for name in READ_ONLY_FIELDS:
        schema["properties"][name] = {"description": "read-only, ignored"}


class TaskIn(BaseModel):
    """Create (POST) and replace (PUT) body: the task's editable fields (`tasktide.domain.tasks.
    EDITABLE_FIELDS`, with the domain's limits), `recurrence_text`, and `completed` for Phase II clients.
    Read-only fields (e.g. in a PUT of a task just GOT) are accepted and ignored."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_read_only_ignored)

    title: str = Field(max_length=TITLE_MAX, description=f"1-{TITLE_MAX} characters after trimming")
    description: str = Field(default="", max_length=DESCRIPTION_MAX)
    priority: Priority = "none"
    tags: list[Annotated[str, Field(max_length=TAG_MAX)]] = Field(
        default_factory=list, max_length=TAGS_MAX, description="Trimmed, lower-cased, duplicates dropped"
    )
    status: StatusName | None = None
    completed: StrictBool | None = None  # JSON true/false only: "yes" or 1 is a 422, not true
    due_at: datetime | None = None
    timezone: str = Field(default="UTC", max_length=TIMEZONE_MAX, description="IANA time zone name")
    recurrence: str | None = Field(
        default=None,
        max_length=RECURRENCE_MAX,
        description="RRULE (FREQ=WEEKLY;BYDAY=MO), or RFC 5545 lines: RRULE:... plus EXDATE/RDATE lines",
    )
    recurrence_text: str | None = Field(
        default=None,
        max_length=RECURRENCE_TEXT_MAX,
        description='Plain-language rule instead of recurrence, e.g. "every 2nd monday", "every! 3 days"',
    )
    recurrence_basis: Basis = "due"
    reminders: list[str] = Field(
        default_factory=list, max_length=REMINDERS_MAX, description="ISO 8601 durations before due_at"
    )
    exdates: list[datetime] = Field(
        default_factory=list, max_length=DATES_MAX, description="Excluded instances of the series (EXDATE)"
    )
    rdates: list[datetime] = Field(
        default_factory=list, max_length=DATES_MAX, description="Extra instances of the series (RDATE)"
    )

    @model_validator(mode="before")
    @classmethod
    def _ignore_read_only(cls, value: object) -> object:
        if isinstance(value, dict) and not READ_ONLY_FIELDS_SET.isdisjoint(value):
            return {k: v for k, v in value.items() if k not in READ_ONLY_FIELDS_SET}
        return value


class CompleteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    completed: StrictBool


class TaskOut(TaskSnapshot):
    """A task as the API returns it: the event's task shape plus `completed`."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def completed(self) -> bool:
        """`status == "completed"`, for Phase II clients."""
        return self.status == "completed"


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
    """JSON-ish field map for the domain (its editable and input-only fields); `completed` folds into
    `status`."""
    fields = body.model_dump(mode="json", include=_INPUT_FIELDS)
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
    field for field, the MCP `list_tasks` tool's arguments (`tasktide.api.mcp_tools` derives its
    signature from these fields)."""

    status: Literal["pending", "completed", "all"] = "all"
    priority: list[Priority] = Field(default=[], description="Any of these priorities")
    tag: list[Annotated[str, Field(max_length=TAG_MAX)]] = Field(
        default=[], max_length=TAGS_MAX, description="Every one of these tags"
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
