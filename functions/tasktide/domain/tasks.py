"""Tasks: the ``Task`` value object and the pure operations on it.

Consumes raw JSON-ish field mappings (strings, lists, ``None``; RFC 3339 date-times with an offset) and
existing ``Task`` values; emits new ``Task`` values, JSON-ish field dicts (``task_fields``), RFC 7396
merge-patch results, the next occurrence of a recurring series (after completing or skipping one) and
its upcoming due times.  Raises ``ValidationFailed`` listing every bad field, ``Conflict`` for an
operation the task's state does not allow.

A series is anchored to its start: the first occurrence's due time as local wall time plus IANA zone
(``series_start``, ``series_timezone``, RFC 5545 DTSTART), and every occurrence is computed from the rule
over that start (``tasktide.domain.recurrence.Series``).  Each occurrence remembers the rule instance it
stands for (``original_due_at``), so moving one occurrence's ``due_at`` reschedules that one only;
changing ``recurrence`` or ``timezone`` re-anchors the series at the occurrence's due time.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, TypeVar
from uuid import UUID, uuid4, uuid5
from zoneinfo import ZoneInfo, available_timezones

from tasktide.domain.errors import Conflict, FieldError, ValidationFailed
from tasktide.domain.reminders import parse_offset

if TYPE_CHECKING:  # the rule engine (dateutil) is imported by the operations on series, when they run:
    # a consumer that only reads tasks (the audit function) never loads it
    from tasktide.domain.recurrence import Series
    from tasktide.domain.recurrence_text import Phrase

__all__ = [
    "DATES_MAX",
    "DESCRIPTION_MAX",
    "EDITABLE_FIELDS",
    "INPUT_ONLY_FIELDS",
    "PRIORITY_RANK",
    "READ_ONLY_FIELDS",
    "RECURRENCE_MAX",
    "RECURRENCE_TEXT_MAX",
    "REMINDERS_MAX",
    "TAGS_MAX",
    "TAG_MAX",
    "TIMEZONE_MAX",
    "TITLE_MAX",
    "Priority",
    "RecurrenceBasis",
    "Status",
    "Task",
    "changed_fields",
    "format_datetime",
    "merge_patch",
    "new_task",
    "next_occurrence_task",
    "occurrence_id",
    "parse_datetime",
    "revise_task",
    "series_of",
    "set_completed",
    "skip_occurrence",
    "task_fields",
    "upcoming_due",
]


class Priority(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    NONE = "none"


class Status(StrEnum):
    PENDING = "pending"
    COMPLETED = "completed"


class RecurrenceBasis(StrEnum):
    """What the next occurrence is scheduled from: the previous due time or the completion time."""

    DUE = "due"
    COMPLETION = "completion"


PRIORITY_RANK: Final[Mapping[Priority, int]] = {
    Priority.HIGH: 0,
    Priority.MEDIUM: 1,
    Priority.LOW: 2,
    Priority.NONE: 3,
}

# The limits of a task's fields, declared once: the validation below enforces them, the API's schema
# (tasktide.api.schemas) states them. Lengths count characters (a title's after trimming).
TITLE_MAX: Final = 200
DESCRIPTION_MAX: Final = 4000
TAGS_MAX: Final = 20  # distinct tags, each 1-TAG_MAX characters after trimming
TAG_MAX: Final = 40
REMINDERS_MAX: Final = 5
TIMEZONE_MAX: Final = 64  # the longest IANA name is 32
RECURRENCE_MAX: Final = 20_000  # an RRULE, or RFC 5545 lines with up to DATES_MAX EXDATE/RDATE values
RECURRENCE_TEXT_MAX: Final = 200  # a recurrence_text phrase
DATES_MAX: Final = 200  # exdates, rdates (EXDATE, RDATE values)

_NO_SERIES: Final = UUID(int=0)
_EDITABLE: Final = {"editable": True}  # a field a client sets (create, PUT, PATCH); the rest are read-only


@dataclass(frozen=True, slots=True, kw_only=True)
class Task:
    """One task (one occurrence of a series).  Datetimes are aware and in UTC.

    ``series_id`` defaults to ``id`` (the first occurrence starts its own series).  A recurring task also
    carries its series: ``series_start`` (naive local wall time, RFC 5545 DTSTART) in ``series_timezone``,
    ``exdates``/``rdates`` (UTC instants) and ``original_due_at``, the rule instance this occurrence stands
    for (``due_at`` differs from it when the occurrence was rescheduled).
    """

    id: UUID
    user_id: str
    title: str = field(metadata=_EDITABLE)
    description: str = field(default="", metadata=_EDITABLE)
    priority: Priority = field(default=Priority.NONE, metadata=_EDITABLE)
    tags: tuple[str, ...] = field(default=(), metadata=_EDITABLE)
    status: Status = field(default=Status.PENDING, metadata=_EDITABLE)
    due_at: datetime | None = field(default=None, metadata=_EDITABLE)
    timezone: str = field(default="UTC", metadata=_EDITABLE)
    recurrence: str | None = field(default=None, metadata=_EDITABLE)
    recurrence_basis: RecurrenceBasis = field(default=RecurrenceBasis.DUE, metadata=_EDITABLE)
    reminders: tuple[str, ...] = field(default=(), metadata=_EDITABLE)
    series_id: UUID = _NO_SERIES
    occurrence: int = 1
    version: int = 1
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None = None
    series_start: datetime | None = None
    series_timezone: str | None = None
    original_due_at: datetime | None = None
    exdates: tuple[datetime, ...] = field(default=(), metadata=_EDITABLE)
    rdates: tuple[datetime, ...] = field(default=(), metadata=_EDITABLE)

    def __post_init__(self) -> None:
        if self.series_id == _NO_SERIES:
            object.__setattr__(self, "series_id", self.id)


EDITABLE_FIELDS: Final = tuple(f.name for f in dataclasses.fields(Task) if f.metadata.get("editable"))
READ_ONLY_FIELDS: Final = tuple(f.name for f in dataclasses.fields(Task) if not f.metadata.get("editable"))
# Accepted on input only: turned into the fields above.
INPUT_ONLY_FIELDS: Final = ("recurrence_text",)
_Editable = dict[str, Any]  # the editable fields by name, validated


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


def _validate(fields: Mapping[str, object], now: datetime | None = None) -> _Editable:
    """Validate a complete editable-field mapping; missing optional fields take their defaults."""
    errors: list[FieldError] = []
    for key in fields:
        if key not in EDITABLE_FIELDS and key not in READ_ONLY_FIELDS and key not in INPUT_ONLY_FIELDS:
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
    exdates = set(_instants(fields.get("exdates"), "exdates", errors))
    rdates = set(_instants(fields.get("rdates"), "rdates", errors))
    raw_rule = fields.get("recurrence")
    raw_text = fields.get("recurrence_text")
    if raw_text is not None:
        if raw_rule is not None:
            errors.append(FieldError("recurrence_text", "give recurrence or recurrence_text, not both"))
        elif not isinstance(raw_text, str):
            errors.append(FieldError("recurrence_text", 'must be a phrase such as "every 2nd monday"'))
        else:
            from tasktide.domain.recurrence_text import parse_phrase

            try:
                phrase = parse_phrase(raw_text)
            except ValidationFailed as failed:
                errors.extend(failed.errors)
            else:
                raw_rule = phrase.rule
                # The phrase says the basis: "every!" repeats from completion, "every" from the due time.
                basis = RecurrenceBasis.COMPLETION if phrase.from_completion else RecurrenceBasis.DUE
                due_at = _phrase_due(phrase, due_at, timezone, now)
    if raw_rule is not None:
        if isinstance(raw_rule, str) and len(raw_rule) > RECURRENCE_MAX:
            errors.append(FieldError("recurrence", f"must be at most {RECURRENCE_MAX} characters"))
        elif isinstance(raw_rule, str):
            from tasktide.domain.recurrence import parse_recurrence

            try:
                parsed = parse_recurrence(raw_rule, timezone)
            except ValidationFailed as failed:
                errors.extend(failed.errors)
            else:
                recurrence = parsed.rule
                exdates.update(parsed.exdates)
                rdates.update(parsed.rdates)
        else:
            errors.append(FieldError("recurrence", "must be an RRULE string such as FREQ=WEEKLY;BYDAY=MO"))
        if due_at is None and "due_at" not in {error.field for error in errors}:
            errors.append(FieldError("recurrence", "requires due_at"))
    elif exdates or rdates:
        errors.append(FieldError("exdates" if exdates else "rdates", "requires recurrence"))
    if rdates and basis is RecurrenceBasis.COMPLETION:
        errors.append(FieldError("rdates", "RDATE needs recurrence_basis due (a completion-based series "
                                 "restarts at each completion)"))  # fmt: skip
    if len(exdates) > DATES_MAX or len(rdates) > DATES_MAX:
        errors.append(FieldError("exdates", f"exdates and rdates take at most {DATES_MAX} date-times each"))

    reminders = _validate_reminders(fields.get("reminders"), errors)
    if reminders and due_at is None and "due_at" not in {error.field for error in errors}:
        errors.append(FieldError("reminders", "requires due_at"))

    if errors:
        raise ValidationFailed(errors)
    return {
        "title": title,
        "description": description,
        "priority": priority,
        "tags": tags,
        "status": status,
        "due_at": due_at,
        "timezone": timezone,
        "recurrence": recurrence,
        "recurrence_basis": basis,
        "reminders": reminders,
        "exdates": tuple(sorted(exdates)),
        "rdates": tuple(sorted(rdates)),
    }


DEFAULT_TIME: Final = time(9)


def _phrase_due(phrase: Phrase, due_at: datetime | None, tz: str, now: datetime | None) -> datetime | None:
    """The due time a phrase implies: ``due_at`` at the phrase's time of day (``at 9``) on its local
    date; without ``due_at``, the rule's first instance after ``now`` at that time (default 09:00)."""
    zone = ZoneInfo(tz)
    if due_at is not None:
        if phrase.at is None:
            return due_at
        wall = datetime.combine(due_at.astimezone(zone).date(), phrase.at)
        return wall.replace(tzinfo=zone).astimezone(UTC)
    if now is None:
        return None
    from tasktide.domain.recurrence import Series

    start = datetime.combine(now.astimezone(zone).date(), phrase.at or DEFAULT_TIME)
    return Series(rule=phrase.rule, start=start, tz=tz).after(now)


def _instants(value: object, field: str, errors: list[FieldError]) -> list[datetime]:
    """A list of RFC 3339 date-times (``exdates`` / ``rdates``) as UTC instants."""
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        errors.append(FieldError(field, "must be a list of RFC 3339 date-times"))
        return []
    moments: list[datetime] = []
    for index, item in enumerate(value):
        try:
            moments.append(parse_datetime(item))
        except ValueError as exc:
            errors.append(FieldError(field, f"{field}[{index}] {exc}"))
    return moments


# --- operations ---------------------------------------------------------------------------------------


def new_task(
    user_id: str, fields: Mapping[str, object], *, now: datetime, task_id: UUID | None = None
) -> Task:
    """Validate raw fields and build version 1 of a new task (a completed one gets ``completed_at=now``).

    Read-only keys (``id``, ``version``, ...) in ``fields`` are ignored; unknown keys are errors.
    """
    now = _require_aware(now)
    valid = _validate(fields, now)
    identifier = task_id if task_id is not None else uuid4()
    return Task(
        id=identifier,
        user_id=user_id,
        created_at=now,
        updated_at=now,
        series_id=identifier,
        completed_at=now if valid["status"] is Status.COMPLETED else None,
        **valid,
        **_anchor(valid),
    )


def _anchor(valid: _Editable) -> dict[str, Any]:
    """Series fields of a series (re)starting at the task's due time (none for a one-off task)."""
    if valid["recurrence"] is None or valid["due_at"] is None:
        return {"series_start": None, "series_timezone": None, "original_due_at": None}
    from tasktide.domain.recurrence import local_wall_time

    return {
        "series_start": local_wall_time(valid["due_at"], valid["timezone"]),
        "series_timezone": valid["timezone"],
        "original_due_at": valid["due_at"],
    }


def revise_task(task: Task, fields: Mapping[str, object], *, now: datetime, re_anchor: bool = False) -> Task:
    """Replace every editable field from a complete mapping (PUT semantics), bumping the version.

    Missing optional fields take their defaults; read-only keys are ignored; unknown keys are errors.
    Moving to ``completed`` sets ``completed_at=now``, moving back to ``pending`` clears it.

    Series: a new or changed ``recurrence`` or ``timezone`` (or ``re_anchor``) restarts the series at
    this occurrence's due time; a changed ``due_at`` alone reschedules this occurrence only (the series
    start and ``original_due_at`` stay, so the next occurrence follows the rule as before).
    """
    now = _require_aware(now)
    valid = _validate(fields, now)
    completed_at = task.completed_at
    if valid["status"] is not task.status:
        completed_at = now if valid["status"] is Status.COMPLETED else None
    series: dict[str, Any] = {
        "series_start": task.series_start,
        "series_timezone": task.series_timezone,
        "original_due_at": task.original_due_at,
    }
    if (
        re_anchor
        or valid["recurrence"] is None
        or task.series_start is None
        or valid["recurrence"] != task.recurrence
        or valid["timezone"] != task.timezone
    ):
        series = _anchor(valid)
    return dataclasses.replace(
        task,
        version=task.version + 1,
        updated_at=now,
        completed_at=completed_at,
        **valid,
        **series,
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
        "exdates": [format_datetime(moment) for moment in task.exdates],
        "rdates": [format_datetime(moment) for moment in task.rdates],
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


SERIES_NAMESPACE: Final = UUID("6f1c1c1e-8a39-4c55-9d0a-7b1f6a0c2d11")


def occurrence_id(series_id: UUID, occurrence: int) -> UUID:
    """The id of occurrence ``occurrence`` of a series: the same from every writer, so a redelivered
    completion (or a skip racing a completion) creates the next occurrence at most once."""
    return uuid5(SERIES_NAMESPACE, f"{series_id}:{occurrence}")


def series_of(task: Task) -> Series | None:
    """The series a recurring task belongs to (``None`` for a one-off task).

    Rows written before series were anchored have no ``series_start``: their own due time stands in.
    """
    if task.recurrence is None or task.due_at is None:
        return None
    from tasktide.domain.recurrence import Series, local_wall_time

    tz = task.series_timezone or task.timezone
    start = task.series_start if task.series_start is not None else local_wall_time(task.due_at, tz)
    return Series(rule=task.recurrence, start=start, tz=tz, exdates=task.exdates, rdates=task.rdates)


def _instance(task: Task) -> datetime:
    assert task.due_at is not None
    return task.original_due_at if task.original_due_at is not None else task.due_at


def _following(
    task: Task, series: Series, due: datetime, *, new_id: UUID, now: datetime, exdates: tuple[datetime, ...]
) -> Task:
    """The occurrence after `task`: what the series carries (title ... rule, RDATEs) stays, the rest is
    new: version 1, pending, due at `due`, created now."""
    return dataclasses.replace(
        task,
        id=new_id,
        status=Status.PENDING,
        due_at=due,
        occurrence=task.occurrence + 1,
        version=1,
        created_at=now,
        updated_at=now,
        completed_at=None,
        series_start=series.start,
        series_timezone=series.tz,
        original_due_at=due,
        exdates=exdates,
    )


def next_occurrence_task(task: Task, *, completed_at: datetime, new_id: UUID, now: datetime) -> Task | None:
    """The next pending occurrence of a recurring task's series, or ``None`` if the series has ended.

    Keeps title, description, priority, tags, reminders, timezone, rule, basis and the series (start,
    EXDATEs, RDATEs); bumps ``occurrence``.  The due time comes from the rule over the series start
    (``Series.next_due``), never from this occurrence's (possibly DST-shifted or moved) due time.
    """
    series = series_of(task)
    if series is None:
        return None
    now = _require_aware(now)
    due = series.next_due(
        basis=task.recurrence_basis,
        instance=_instance(task),
        completed_at=_require_aware(completed_at),
        occurrence=task.occurrence,
    )
    if due is None:
        return None
    return _following(task, series, due, new_id=new_id, now=now, exdates=task.exdates)


def skip_occurrence(task: Task, *, now: datetime) -> tuple[Task, Task | None]:
    """Skip one pending occurrence: ``(the skipped occurrence, the next occurrence or None)``.

    The skipped occurrence's rule instance becomes an EXDATE of the series, and the next occurrence is
    what completing it now would give (same basis rules; the skip still counts for COUNT), carrying the
    new EXDATE.  Its id is ``occurrence_id(series_id, occurrence + 1)``.  ``Conflict`` for a one-off or a
    completed task.
    """
    now = _require_aware(now)
    series = series_of(task)
    if series is None:
        raise Conflict(f"Task {task.id} does not repeat; there is no next occurrence to skip to (delete it).")
    if task.status is not Status.PENDING:
        raise Conflict(f"Task {task.id} is already completed; only a pending occurrence can be skipped.")
    instance = _instance(task)
    exdates = tuple(sorted({*task.exdates, instance}))
    skipped = dataclasses.replace(task, exdates=exdates, version=task.version + 1, updated_at=now)
    updated = dataclasses.replace(series, exdates=exdates)
    due = updated.next_due(
        basis=task.recurrence_basis, instance=instance, completed_at=now, occurrence=task.occurrence
    )
    if due is None:
        return skipped, None
    new_id = occurrence_id(task.series_id, task.occurrence + 1)
    return skipped, _following(task, updated, due, new_id=new_id, now=now, exdates=exdates)


def upcoming_due(task: Task, count: int) -> list[datetime]:
    """The next ``count`` due times of the task's series from this occurrence on (UTC, ascending).

    A pending occurrence lists its own due time first.  Basis ``due``: then the rule's instances after
    this occurrence's instance.  Basis ``completion``: as if each occurrence were completed at its due
    time.  A one-off task lists its own due time when pending.
    """
    found: list[datetime] = []
    if task.due_at is not None and task.status is Status.PENDING:
        found.append(task.due_at)
    series = series_of(task)
    if series is None or count <= len(found):
        return found[:count]
    done_at = task.completed_at if task.status is Status.COMPLETED else None
    if task.recurrence_basis is RecurrenceBasis.DUE:
        threshold = max(_instance(task), done_at) if done_at is not None else _instance(task)
        found.extend(series.upcoming(threshold, count - len(found)))
        return sorted(found)[:count]
    moment = done_at if done_at is not None else _instance(task)
    occurrence = task.occurrence
    while len(found) < count:
        nxt = series.next_due(basis=task.recurrence_basis, instance=moment, completed_at=moment,
                              occurrence=occurrence)  # fmt: skip
        if nxt is None:
            break
        found.append(nxt)
        moment, occurrence = nxt, occurrence + 1
    return found
