"""Tasks: the ``Task`` value object and the pure operations on it.

Consumes raw JSON-ish field mappings (strings, lists, ``None``; RFC 3339 date-times with an offset) and
existing ``Task`` values; emits new ``Task`` values, JSON-ish field dicts (``task_fields``), RFC 7396
merge-patch results and the next occurrence of a recurring series.  Raises ``ValidationFailed`` listing
every bad field.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, TypeVar
from uuid import UUID, uuid4
from zoneinfo import available_timezones

from tasktide.domain.errors import FieldError, ValidationFailed
from tasktide.domain.recurrence import RecurrenceBasis, next_due, validate_rule
from tasktide.domain.reminders import parse_offset

__all__ = [
    "EDITABLE_FIELDS",
    "PRIORITY_RANK",
    "READ_ONLY_FIELDS",
    "Priority",
    "RecurrenceBasis",
    "Status",
    "Task",
    "changed_fields",
    "format_datetime",
    "merge_patch",
    "new_task",
    "next_occurrence_task",
    "parse_datetime",
    "revise_task",
    "set_completed",
    "task_fields",
]


class Priority(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    NONE = "none"


class Status(StrEnum):
    PENDING = "pending"
    COMPLETED = "completed"


PRIORITY_RANK: Final[Mapping[Priority, int]] = {
    Priority.HIGH: 0,
    Priority.MEDIUM: 1,
    Priority.LOW: 2,
    Priority.NONE: 3,
}

TITLE_MAX = 200
DESCRIPTION_MAX = 4000
TAGS_MAX = 20
TAG_MAX = 40
REMINDERS_MAX = 5

EDITABLE_FIELDS: Final = (
    "title",
    "description",
    "priority",
    "tags",
    "status",
    "due_at",
    "timezone",
    "recurrence",
    "recurrence_basis",
    "reminders",
)
READ_ONLY_FIELDS: Final = (
    "id",
    "user_id",
    "series_id",
    "occurrence",
    "version",
    "created_at",
    "updated_at",
    "completed_at",
)


_NO_SERIES: Final = UUID(int=0)


@dataclass(frozen=True, slots=True, kw_only=True)
class Task:
    """One task (one occurrence of a series).  Datetimes are aware and in UTC.

    ``series_id`` defaults to ``id`` (the first occurrence starts its own series).
    """

    id: UUID
    user_id: str
    title: str
    created_at: datetime
    updated_at: datetime
    description: str = ""
    priority: Priority = Priority.NONE
    tags: tuple[str, ...] = ()
    status: Status = Status.PENDING
    due_at: datetime | None = None
    timezone: str = "UTC"
    recurrence: str | None = None
    recurrence_basis: RecurrenceBasis = RecurrenceBasis.DUE
    reminders: tuple[str, ...] = ()
    series_id: UUID = _NO_SERIES
    occurrence: int = 1
    version: int = 1
    completed_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.series_id == _NO_SERIES:
            object.__setattr__(self, "series_id", self.id)


@dataclass(frozen=True, slots=True)
class _Editable:
    title: str
    description: str
    priority: Priority
    tags: tuple[str, ...]
    status: Status
    due_at: datetime | None
    timezone: str
    recurrence: str | None
    recurrence_basis: RecurrenceBasis
    reminders: tuple[str, ...]

    def as_fields(self) -> dict[str, Any]:
        """The editable fields by name, to build or revise a ``Task``."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


# --- date-times -------------------------------------------------------------------------------------


EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 12, 31, 23, 59, 59, tzinfo=UTC)


def parse_datetime(value: object) -> datetime:
    """An aware RFC 3339 date-time (string with offset, or aware ``datetime``) converted to UTC.

    Raises ``ValueError`` with a message fit for a ``FieldError``.
    """
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        text = value.strip()
        if len(text) < 11 or text[10] not in "Tt ":
            raise ValueError("must be an RFC 3339 date-time such as 2025-03-01T09:00:00Z")
        try:
            parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1] in "zZ" else text)
        except ValueError:
            raise ValueError("must be an RFC 3339 date-time such as 2025-03-01T09:00:00Z") from None
    else:
        raise ValueError("must be an RFC 3339 date-time string")
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError("must include a UTC offset (e.g. Z or +01:00)")
    try:
        utc = parsed.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST <= utc <= LATEST:
        raise ValueError(f"must lie between {format_datetime(EARLIEST)} and {format_datetime(LATEST)}")
    return utc


def format_datetime(value: datetime) -> str:
    """RFC 3339 text in UTC with a ``Z`` suffix."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _require_aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
    return now.astimezone(UTC)


_E = TypeVar("_E", bound=StrEnum)


# --- field validation --------------------------------------------------------------------------------


def _text(value: object, field: str, errors: list[FieldError]) -> str | None:
    if not isinstance(value, str):
        errors.append(FieldError(field, "must be a string"))
        return None
    if "\x00" in value:
        errors.append(FieldError(field, "must not contain NUL characters"))
        return None
    return value


def _choice(value: object, field: str, kind: type[_E], default: _E, errors: list[FieldError]) -> _E:
    if value is None:
        return default
    if isinstance(value, str):
        try:
            return kind(value)
        except ValueError:
            pass
    errors.append(FieldError(field, f"must be one of {', '.join(member.value for member in kind)}"))
    return default


def _string_list(value: object, field: str, errors: list[FieldError]) -> list[str] | None:
    if value is None:
        return []
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        errors.append(FieldError(field, "must be a list of strings"))
        return None
    if any("\x00" in item for item in value):
        errors.append(FieldError(field, "must not contain NUL characters"))
        return None
    return [str(item) for item in value]


def _validate_tags(value: object, errors: list[FieldError]) -> tuple[str, ...]:
    raw = _string_list(value, "tags", errors)
    if raw is None:
        return ()
    tags: list[str] = []
    for index, item in enumerate(raw):
        tag = item.strip().lower()
        if not 1 <= len(tag) <= TAG_MAX:
            errors.append(FieldError("tags", f"tags[{index}] must be 1-{TAG_MAX} characters"))
        elif tag not in tags:
            tags.append(tag)
    if len(tags) > TAGS_MAX:
        errors.append(FieldError("tags", f"must have at most {TAGS_MAX} tags"))
    return tuple(tags)


def _validate_reminders(value: object, errors: list[FieldError]) -> tuple[str, ...]:
    raw = _string_list(value, "reminders", errors)
    if raw is None:
        return ()
    reminders: list[str] = []
    seen: set[object] = set()
    for item in raw:
        try:
            offset = parse_offset(item)
        except ValidationFailed as failed:
            errors.extend(failed.errors)
            continue
        if offset in seen:
            errors.append(FieldError("reminders", f"{item!r} duplicates another reminder"))
            continue
        seen.add(offset)
        reminders.append(item.strip().upper())
    if len(raw) > REMINDERS_MAX:
        errors.append(FieldError("reminders", f"must have at most {REMINDERS_MAX} reminders"))
    return tuple(reminders)


@functools.cache
def _known_zones() -> frozenset[str]:
    """IANA zone names available to ``zoneinfo`` (read once, on first use)."""
    return frozenset(available_timezones())


def _validate_timezone(value: object, errors: list[FieldError]) -> str:
    if value is None:
        return "UTC"
    if isinstance(value, str) and value.strip() in _known_zones():
        return value.strip()
    errors.append(FieldError("timezone", "must be an IANA time zone name such as Europe/Berlin"))
    return "UTC"


def _validate(fields: Mapping[str, object]) -> _Editable:
    """Validate a complete editable-field mapping; missing optional fields take their defaults."""
    errors: list[FieldError] = []
    for key in fields:
        if key not in EDITABLE_FIELDS and key not in READ_ONLY_FIELDS:
            errors.append(FieldError(str(key), "unknown field"))

    title = ""
    if "title" not in fields or fields["title"] is None:
        errors.append(FieldError("title", "is required"))
    else:
        raw_title = _text(fields["title"], "title", errors)
        if raw_title is not None:
            title = raw_title.strip()
            if not 1 <= len(title) <= TITLE_MAX:
                errors.append(FieldError("title", f"must be 1-{TITLE_MAX} characters after trimming"))

    description = ""
    if fields.get("description") is not None:
        raw_description = _text(fields["description"], "description", errors)
        if raw_description is not None:
            description = raw_description
            if len(description) > DESCRIPTION_MAX:
                errors.append(FieldError("description", f"must be at most {DESCRIPTION_MAX} characters"))

    priority = _choice(fields.get("priority"), "priority", Priority, Priority.NONE, errors)
    status = _choice(fields.get("status"), "status", Status, Status.PENDING, errors)
    basis = _choice(
        fields.get("recurrence_basis"), "recurrence_basis", RecurrenceBasis, RecurrenceBasis.DUE, errors
    )
    tags = _validate_tags(fields.get("tags"), errors)
    timezone = _validate_timezone(fields.get("timezone"), errors)

    due_at: datetime | None = None
    if fields.get("due_at") is not None:
        try:
            due_at = parse_datetime(fields["due_at"])
        except ValueError as exc:
            errors.append(FieldError("due_at", str(exc)))

    recurrence: str | None = None
    raw_rule = fields.get("recurrence")
    if raw_rule is not None:
        if isinstance(raw_rule, str):
            try:
                recurrence = validate_rule(raw_rule)
            except ValidationFailed as failed:
                errors.extend(failed.errors)
        else:
            errors.append(FieldError("recurrence", "must be an RRULE string such as FREQ=WEEKLY;BYDAY=MO"))
        if due_at is None and "due_at" not in {error.field for error in errors}:
            errors.append(FieldError("recurrence", "requires due_at"))

    reminders = _validate_reminders(fields.get("reminders"), errors)
    if reminders and due_at is None and "due_at" not in {error.field for error in errors}:
        errors.append(FieldError("reminders", "requires due_at"))

    if errors:
        raise ValidationFailed(errors)
    return _Editable(
        title=title,
        description=description,
        priority=priority,
        tags=tags,
        status=status,
        due_at=due_at,
        timezone=timezone,
        recurrence=recurrence,
        recurrence_basis=basis,
        reminders=reminders,
    )


# --- operations ---------------------------------------------------------------------------------------


def new_task(
    user_id: str, fields: Mapping[str, object], *, now: datetime, task_id: UUID | None = None
) -> Task:
    """Validate raw fields and build version 1 of a new task (a completed one gets ``completed_at=now``).

    Read-only keys (``id``, ``version``, ...) in ``fields`` are ignored; unknown keys are errors.
    """
    now = _require_aware(now)
    valid = _validate(fields)
    identifier = task_id if task_id is not None else uuid4()
    return Task(
        id=identifier,
        user_id=user_id,
        created_at=now,
        updated_at=now,
        series_id=identifier,
        completed_at=now if valid.status is Status.COMPLETED else None,
        **valid.as_fields(),
    )


def revise_task(task: Task, fields: Mapping[str, object], *, now: datetime) -> Task:
    """Replace every editable field from a complete mapping (PUT semantics), bumping the version.

    Missing optional fields take their defaults; read-only keys are ignored; unknown keys are errors.
    Moving to ``completed`` sets ``completed_at=now``, moving back to ``pending`` clears it.
    """
    now = _require_aware(now)
    valid = _validate(fields)
    completed_at = task.completed_at
    if valid.status is not task.status:
        completed_at = now if valid.status is Status.COMPLETED else None
    return dataclasses.replace(
        task,
        version=task.version + 1,
        updated_at=now,
        completed_at=completed_at,
        **valid.as_fields(),
    )


def set_completed(task: Task, completed: bool, *, now: datetime) -> Task:
    """Complete or reopen a task; returns the same object when the status would not change."""
    now = _require_aware(now)
    target = Status.COMPLETED if completed else Status.PENDING
    if task.status is target:
        return task
    return dataclasses.replace(
        task,
        status=target,
        completed_at=now if completed else None,
        version=task.version + 1,
        updated_at=now,
    )


def task_fields(task: Task) -> dict[str, object]:
    """The editable fields as JSON-ish values (date-times as RFC 3339 strings, tuples as lists)."""
    return {
        "title": task.title,
        "description": task.description,
        "priority": task.priority.value,
        "tags": list(task.tags),
        "status": task.status.value,
        "due_at": format_datetime(task.due_at) if task.due_at is not None else None,
        "timezone": task.timezone,
        "recurrence": task.recurrence,
        "recurrence_basis": task.recurrence_basis.value,
        "reminders": list(task.reminders),
    }


def _merge(target: object, patch: object) -> object:
    if not isinstance(patch, Mapping):
        return patch
    result: dict[str, object] = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


def merge_patch(current: Mapping[str, object], patch: Mapping[str, object]) -> dict[str, object]:
    """Apply an RFC 7396 JSON merge patch: ``null`` removes a member, objects merge recursively."""
    merged = _merge(current, patch)
    if not isinstance(merged, dict):
        raise TypeError("a merge patch document must be a JSON object")
    return merged


_UNCOMPARED = frozenset({"version", "updated_at"})


def changed_fields(old: Task, new: Task) -> tuple[str, ...]:
    """Names of the fields that differ between two versions (ignoring ``version``/``updated_at``)."""
    return tuple(
        field.name
        for field in dataclasses.fields(Task)
        if field.name not in _UNCOMPARED and getattr(old, field.name) != getattr(new, field.name)
    )


def next_occurrence_task(task: Task, *, completed_at: datetime, new_id: UUID, now: datetime) -> Task | None:
    """The next pending occurrence of a recurring task's series, or ``None`` if the series has ended.

    Keeps title, description, priority, tags, reminders, timezone, rule and basis; bumps ``occurrence``.
    """
    if task.recurrence is None or task.due_at is None:
        return None
    now = _require_aware(now)
    due = next_due(
        task.recurrence,
        due_at=task.due_at,
        occurrence=task.occurrence,
        completed_at=_require_aware(completed_at),
        tz=task.timezone,
        basis=task.recurrence_basis,
    )
    if due is None:
        return None
    return Task(
        id=new_id,
        user_id=task.user_id,
        title=task.title,
        description=task.description,
        priority=task.priority,
        tags=task.tags,
        status=Status.PENDING,
        due_at=due,
        timezone=task.timezone,
        recurrence=task.recurrence,
        recurrence_basis=task.recurrence_basis,
        reminders=task.reminders,
        series_id=task.series_id,
        occurrence=task.occurrence + 1,
        version=1,
        created_at=now,
        updated_at=now,
        completed_at=None,
    )
