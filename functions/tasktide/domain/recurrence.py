"""Recurrence rules: validate RFC 5545 RRULE text and compute a series' next due time.

Consumes RRULE text without the ``RRULE:`` prefix (FREQ, INTERVAL, BYDAY with ordinals, BYMONTHDAY,
BYMONTH, BYSETPOS, COUNT, UNTIL, WKST), aware datetimes and an IANA time zone name; emits the
normalised rule text and the next due time in UTC.  Rules are evaluated in the task's local wall time,
so 09:00 Europe/Berlin stays 09:00 local across daylight-saving changes.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from dateutil.rrule import rrule, rrulestr

from tasktide.domain.errors import FieldError, ValidationFailed

FIELD = "recurrence"


class RecurrenceBasis(StrEnum):
    """What the next occurrence is scheduled from: the previous due time or the completion time."""

    DUE = "due"
    COMPLETION = "completion"


SUPPORTED_FREQS = ("DAILY", "WEEKLY", "MONTHLY", "YEARLY")
_PART_ORDER = ("FREQ", "INTERVAL", "COUNT", "UNTIL", "BYMONTH", "BYMONTHDAY", "BYDAY", "BYSETPOS", "WKST")
_WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_BYDAY_ITEM = re.compile(r"^(?P<ordinal>[+-]?\d{1,2})?(?P<day>MO|TU|WE|TH|FR|SA|SU)$")
_SIGNED_INT = re.compile(r"^[+-]?\d{1,3}$")
_UNSIGNED_INT = re.compile(r"^\d{1,9}$")
_UNTIL = re.compile(r"^(?P<date>\d{8})(?:T(?P<time>\d{6})(?P<utc>Z)?)?$")
# Longest month that can carry each month number (February counts leap years).
_MONTH_DAYS = {month: (29 if month == 2 else calendar.monthrange(2001, month)[1]) for month in range(1, 13)}
_MAX_INTERVAL = 1000


@dataclass(frozen=True, slots=True)
class _Until:
    """An UNTIL bound: a UTC instant, a floating local date-time, or a local date (inclusive)."""

    moment: datetime
    is_utc: bool
    is_date: bool

    def local_bound(self, tz: ZoneInfo) -> datetime:
        """The last allowed local wall time (naive) in ``tz``."""
        if self.is_utc:
            return self.moment.astimezone(tz).replace(tzinfo=None)
        if self.is_date:
            return datetime.combine(self.moment.date(), time.max)
        return self.moment


def _int_list(name: str, value: str, low: int, high: int, *, signed: bool, errors: list[str]) -> list[int]:
    numbers: list[int] = []
    for item in value.split(","):
        if not _SIGNED_INT.match(item) or (not signed and item[0] in "+-"):
            errors.append(f"{name} has an invalid value {item!r}")
            continue
        number = int(item)
        if number == 0 or not low <= abs(number) <= high or (not signed and number < 0):
            bounds = f"±{low}..{high}" if signed else f"{low}..{high}"
            errors.append(f"{name} values must be in {bounds}, got {item!r}")
            continue
        numbers.append(number)
    return numbers


def _parse_until(value: str) -> _Until | None:
    match = _UNTIL.match(value)
    if match is None:
        return None
    try:
        day = datetime.strptime(match["date"], "%Y%m%d")
        if match["time"] is None:
            return _Until(day, is_utc=False, is_date=True)
        moment = datetime.strptime(match["date"] + match["time"], "%Y%m%d%H%M%S")
    except ValueError:
        return None
    if match["utc"]:
        return _Until(moment.replace(tzinfo=UTC), is_utc=True, is_date=False)
    return _Until(moment, is_utc=False, is_date=False)


def _split(text: str) -> tuple[dict[str, str], list[str]]:
    """Split rule text into upper-cased parts; returns ``(parts, problems)``."""
    errors: list[str] = []
    parts: dict[str, str] = {}
    body = text.strip().upper()
    if body.startswith("RRULE:"):
        body = body[len("RRULE:") :]
    if not body:
        return parts, ["must not be empty"]
    for chunk in body.rstrip(";").split(";"):
        name, sep, value = chunk.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            errors.append(f"{chunk!r} is not a NAME=VALUE rule part")
        elif name not in _PART_ORDER:
            errors.append(f"{name} is not supported")
        elif name in parts:
            errors.append(f"{name} appears more than once")
        else:
            parts[name] = value
    return parts, errors


def _check(parts: dict[str, str]) -> list[str]:
    """Every problem with the parsed parts (empty when the rule is acceptable)."""
    errors: list[str] = []
    freq = parts.get("FREQ")
    if freq is None:
        errors.append("FREQ is required")
    elif freq in ("SECONDLY", "MINUTELY", "HOURLY"):
        errors.append(f"FREQ={freq} is not supported")
    elif freq not in SUPPORTED_FREQS:
        errors.append(f"FREQ must be one of {', '.join(SUPPORTED_FREQS)}")
    if "INTERVAL" in parts and (
        not _UNSIGNED_INT.match(parts["INTERVAL"]) or not 1 <= int(parts["INTERVAL"]) <= _MAX_INTERVAL
    ):
        errors.append(f"INTERVAL must be an integer between 1 and {_MAX_INTERVAL}")
    if "COUNT" in parts and (not _UNSIGNED_INT.match(parts["COUNT"]) or int(parts["COUNT"]) < 1):
        errors.append("COUNT must be a positive integer")
    if "UNTIL" in parts and _parse_until(parts["UNTIL"]) is None:
        errors.append("UNTIL must be a date (YYYYMMDD) or date-time (YYYYMMDDTHHMMSS[Z])")
    if "COUNT" in parts and "UNTIL" in parts:
        errors.append("COUNT and UNTIL must not both be given")
    if "WKST" in parts and parts["WKST"] not in _WEEKDAYS:
        errors.append(f"WKST must be one of {', '.join(_WEEKDAYS)}")
    months = (
        _int_list("BYMONTH", parts["BYMONTH"], 1, 12, signed=False, errors=errors)
        if "BYMONTH" in parts
        else []
    )
    monthdays = (
        _int_list("BYMONTHDAY", parts["BYMONTHDAY"], 1, 31, signed=True, errors=errors)
        if "BYMONTHDAY" in parts
        else []
    )
    if monthdays and freq == "WEEKLY":
        errors.append("BYMONTHDAY is not allowed with FREQ=WEEKLY")
    if "BYDAY" in parts:
        ordinal_limit = 5 if freq == "MONTHLY" or (freq == "YEARLY" and "BYMONTH" in parts) else 53
        for item in parts["BYDAY"].split(","):
            match = _BYDAY_ITEM.match(item)
            if match is None:
                errors.append(f"BYDAY has an invalid value {item!r}")
            elif match["ordinal"] is not None:
                ordinal = int(match["ordinal"])
                if freq not in ("MONTHLY", "YEARLY"):
                    errors.append("BYDAY ordinals (e.g. 1MO, -1FR) need FREQ=MONTHLY or FREQ=YEARLY")
                elif ordinal == 0 or abs(ordinal) > ordinal_limit:
                    errors.append(f"BYDAY ordinal in {item!r} must be in ±1..{ordinal_limit}")
    if "BYSETPOS" in parts:
        # The set BYSETPOS picks from has one day per period (DAILY) or one per BYDAY day (WEEKLY).
        weekly_days = len(parts["BYDAY"].split(",")) if "BYDAY" in parts else 1
        limit = {"DAILY": 1, "WEEKLY": weekly_days}.get(freq or "", 366)
        _int_list("BYSETPOS", parts["BYSETPOS"], 1, limit, signed=True, errors=errors)
        if not {"BYMONTH", "BYMONTHDAY", "BYDAY"} & parts.keys():
            errors.append("BYSETPOS needs another BYxxx rule part")
    if months and monthdays and not any(abs(d) <= _MONTH_DAYS[m] for m in months for d in monthdays):
        errors.append("BYMONTHDAY never falls within BYMONTH, so the rule never occurs")
    return errors


def _normalise(parts: dict[str, str]) -> str:
    return ";".join(f"{name}={parts[name]}" for name in _PART_ORDER if name in parts)


def validate_rule(text: str) -> str:
    """Validate RRULE text and return it normalised (upper case, canonical part order).

    Raises ``ValidationFailed`` whose errors all name the field ``recurrence``, e.g.
    ``recurrence: BYHOUR is not supported``.
    """
    parts, errors = _split(text)
    if not errors:
        errors = _check(parts)
    if not errors:
        # INTERVAL only thins the periods out and depends on the real start, so probe without it.
        probe = _build({k: v for k, v in parts.items() if k != "INTERVAL"}, datetime(2001, 1, 1))
        if probe is None:
            errors = ["is not a valid recurrence rule"]
        elif probe.after(datetime(2001, 1, 1), inc=True) is None:
            errors = ["the rule never produces an occurrence"]
    if errors:
        raise ValidationFailed(FieldError(FIELD, message) for message in errors)
    return _normalise(parts)


def _build(parts: dict[str, str], dtstart: datetime) -> rrule | None:
    """The dateutil rule without COUNT/UNTIL (the series bounds are checked by the caller)."""
    body = _normalise({k: v for k, v in parts.items() if k not in ("COUNT", "UNTIL")})
    try:
        built = rrulestr(body, dtstart=dtstart)
    except (ValueError, TypeError):
        return None
    return built if isinstance(built, rrule) else None


def _localise(local: datetime, tz: ZoneInfo) -> datetime:
    """Attach ``tz`` to a naive wall time (gaps shift forward, ambiguous times take the first) -> UTC."""
    return local.replace(tzinfo=tz).astimezone(UTC)


def next_due(
    rule: str,
    *,
    due_at: datetime,
    occurrence: int,
    completed_at: datetime,
    tz: str,
    basis: RecurrenceBasis | str,
) -> datetime | None:
    """The due time (UTC) of occurrence ``occurrence + 1`` of the series, or ``None`` if it has ended.

    Basis ``due``: the first rule instance strictly after ``max(due_at, completed_at)`` (missed periods
    are skipped).  Basis ``completion``: the series restarts on the local completion day at the original
    local time of day, and the answer is the first instance strictly after that restart.  COUNT counts
    occurrences of the whole series; UNTIL (UTC, floating or date form) bounds it.
    """
    parts, errors = _split(rule)
    errors = errors or _check(parts)
    if errors:
        raise ValidationFailed(FieldError(FIELD, message) for message in errors)
    if "COUNT" in parts and occurrence + 1 > int(parts["COUNT"]):
        return None
    zone = ZoneInfo(tz)
    local_due = due_at.astimezone(zone).replace(tzinfo=None)
    if RecurrenceBasis(basis) is RecurrenceBasis.COMPLETION:
        completion_day: date = completed_at.astimezone(zone).date()
        dtstart = datetime.combine(completion_day, local_due.time())
        threshold = _localise(dtstart, zone)
    else:
        dtstart = local_due
        threshold = max(due_at, completed_at).astimezone(UTC)
    built = _build(parts, dtstart)
    if built is None:
        raise ValidationFailed.single(FIELD, "is not a valid recurrence rule")
    until = _parse_until(parts["UNTIL"]) if "UNTIL" in parts else None
    # Start a little before the threshold in wall time so DST folds cannot skip an instance; the
    # strict comparison is then made on UTC instants.
    search_from = threshold.astimezone(zone).replace(tzinfo=None) - timedelta(hours=3)
    for candidate in built.xafter(max(search_from, dtstart), inc=True):
        if until is not None and candidate > until.local_bound(zone):
            return None
        moment = _localise(candidate, zone)
        if moment > threshold:
            return moment
    return None
