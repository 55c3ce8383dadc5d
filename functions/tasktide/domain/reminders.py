"""Reminder offsets: ISO 8601 durations before a task's ``due_at``.

Consumes offset texts such as ``"PT15M"`` or ``"P1D"`` (weeks, days, hours, minutes, seconds);
emits ``timedelta`` values, ``(offset, remind_at)`` pairs and the fire/no-fire decision.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, timedelta

from tasktide.domain.errors import ValidationFailed

FIELD = "reminders"
MAX_OFFSET = timedelta(days=3660)

_DURATION = re.compile(
    r"^P(?:(?P<weeks>\d{1,6})W)?(?:(?P<days>\d{1,6})D)?"
    r"(?:T(?:(?P<hours>\d{1,6})H)?(?:(?P<minutes>\d{1,6})M)?(?:(?P<seconds>\d{1,6})S)?)?$"
)


def parse_offset(text: str) -> timedelta:
    """Parse an ISO 8601 duration (``PnW``, ``PnDTnHnMnS``) into a positive ``timedelta``.

    Raises ``ValidationFailed`` (field ``reminders``) when the text is malformed, zero, or too large.
    """
    normalised = text.strip().upper()
    match = _DURATION.match(normalised)
    if match is None or normalised.endswith("T") or normalised == "P":
        raise ValidationFailed.single(FIELD, f"{text!r} is not an ISO 8601 duration such as PT15M or P1D")
    parts = {name: int(value) for name, value in match.groupdict().items() if value is not None}
    offset = timedelta(**parts)
    if offset <= timedelta(0):
        raise ValidationFailed.single(FIELD, f"{text!r} must be a positive duration")
    if offset > MAX_OFFSET:
        raise ValidationFailed.single(FIELD, f"{text!r} must be at most {MAX_OFFSET.days} days")
    return offset


def reminder_times(due_at: datetime, offsets: Iterable[str]) -> tuple[tuple[str, datetime], ...]:
    """For each offset text, the pair ``(offset, remind_at)`` with ``remind_at = due_at - offset``."""
    return tuple((offset, due_at - parse_offset(offset)) for offset in offsets)


def should_fire(*, remind_at: datetime, due_at: datetime, now: datetime) -> bool:
    """A reminder fires once its time has come, unless the task is already past due.

    A reminder whose time passed while nothing was ticking still fires at the next tick, as long as
    ``now`` is before ``due_at``.
    """
    return remind_at <= now < due_at
