"""The pure domain: tasks, recurrence rules, reminder offsets and domain errors.

Stdlib + python-dateutil only; no I/O, no settings.  Consumes raw JSON-ish values and ``Task`` values;
emits validated ``Task`` values, next occurrences and ``DomainError`` exceptions.
"""

from tasktide.domain.errors import (
    Conflict,
    DomainError,
    FieldError,
    NotFound,
    PreconditionFailed,
    ValidationFailed,
)
from tasktide.domain.recurrence import RecurrenceBasis, next_due, validate_rule
from tasktide.domain.reminders import parse_offset, reminder_times, should_fire
from tasktide.domain.tasks import (
    PRIORITY_RANK,
    Priority,
    Status,
    Task,
    changed_fields,
    format_datetime,
    merge_patch,
    new_task,
    next_occurrence_task,
    parse_datetime,
    revise_task,
    set_completed,
    task_fields,
)

__all__ = [
    "PRIORITY_RANK",
    "Conflict",
    "DomainError",
    "FieldError",
    "NotFound",
    "PreconditionFailed",
    "Priority",
    "RecurrenceBasis",
    "Status",
    "Task",
    "ValidationFailed",
    "changed_fields",
    "format_datetime",
    "merge_patch",
    "new_task",
    "next_due",
    "next_occurrence_task",
    "parse_datetime",
    "parse_offset",
    "reminder_times",
    "revise_task",
    "set_completed",
    "should_fire",
    "task_fields",
    "validate_rule",
]
