"""Recurrence rules: validate RFC 5545 RRULE text and compute a series' next due time.

Consumes RRULE text without the ``RRULE:`` prefix (FREQ, INTERVAL, BYDAY with ordinals, BYMONTHDAY,
BYMONTH, BYSETPOS, COUNT, UNTIL, WKST), aware datetimes and an IANA time zone name; emits the
normalised rule text and the next due time in UTC.  Rules are evaluated in the task's local wall time,
so 09:00 Europe/Berlin stays 09:00 local across daylight-saving changes.
"""

from __future__ import annotations

import calendar
import heapq
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from dateutil.rrule import rrule, rrulestr

from tasktide.domain.errors import FieldError, ValidationFailed
from tasktide.domain.tasks import DATES_MAX, RecurrenceBasis

FIELD = "recurrence"


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
        # INTERVAL only thins the periods out and depends on the real start, so probe without it, over
        # one whole Gregorian cycle, where dateutil's walk ends by itself (see `_occurs_from`).
        probe = _build({k: v for k, v in parts.items() if k != "INTERVAL"}, _CYCLE_PROBE_START)
        if probe is None:
            errors = ["is not a valid recurrence rule"]
        elif probe.after(_CYCLE_PROBE_START, inc=True) is None:
            errors = ["the rule never produces an occurrence"]
    if errors:
        raise ValidationFailed(FieldError(FIELD, message) for message in errors)
    return _normalise(parts)


# The Gregorian calendar, weekdays included, repeats every 400 years, and dateutil walks a rule until it
# yields or passes year 9999 (an UNTIL stops it only at a candidate). A rule with no instance at all, or
# none from its start (INTERVAL can thin every instance out), is therefore probed in the last cycles
# before 9999, where dateutil's walk ends by itself after one or two cycles instead of about 8,000 years
# (0.4 s). With INTERVAL the pattern repeats only after lcm(INTERVAL, periods in a cycle) periods: a rule
# whose pattern is longer than two cycles is not probed (only the full walk knows).
_CYCLE_YEARS = 400
_PERIODS_PER_CYCLE = {"YEARLY": 400, "MONTHLY": 4800, "WEEKLY": 20871, "DAILY": 146097}
_MAX_PROBE_CYCLES = 2
_CYCLE_PROBE_START = datetime(9600, 1, 1)  # 9600..9999: one whole cycle


def _cycles(parts: dict[str, str]) -> int:
    """The 400-year cycles after which the rule's pattern, calendar and INTERVAL together, repeats."""
    periods = _PERIODS_PER_CYCLE[parts["FREQ"]]
    return math.lcm(periods, int(parts.get("INTERVAL", "1"))) // periods


def _occurs_from(parts: dict[str, str], dtstart: datetime) -> bool | None:
    """Whether the rule over ``dtstart`` has any instance, from a walk of its whole pattern: the same
    rule over the same day moved into the last cycles before 9999 (a move by whole cycles keeps weekdays,
    leap days and INTERVAL's phase, so the instances move with it); None if the pattern is too long."""
    cycles = _cycles(parts)
    if cycles > _MAX_PROBE_CYCLES:
        return None
    base = 10_000 - (cycles + 1) * _CYCLE_YEARS  # a multiple of 400: leaves >= `cycles` whole cycles
    moved = dtstart if dtstart.year >= base else dtstart.replace(year=base + dtstart.year % _CYCLE_YEARS)
    probe = _build(parts, moved)
    return probe is not None and probe.after(moved, inc=True) is not None


def _build(parts: dict[str, str], dtstart: datetime) -> rrule | None:
    """The dateutil rule without COUNT/UNTIL (the series bounds are checked by the caller)."""
    body = _normalise({k: v for k, v in parts.items() if k not in ("COUNT", "UNTIL")})
    try:
        built = rrulestr(body, dtstart=dtstart)
    except (ValueError, TypeError):
        return None
    return built if isinstance(built, rrule) else None


def _localise(local: datetime, tz: ZoneInfo) -> datetime:
    """Attach ``tz`` to a naive wall time and convert to UTC (RFC 5545 3.3.5).

    ``fold=0`` gives exactly the RFC's rules: a wall time inside a gap takes the offset from before the
    gap (so 02:30 on a spring-forward night becomes 03:30 new time), and an ambiguous wall time means its
    first occurrence.
    """
    return local.replace(tzinfo=tz, fold=0).astimezone(UTC)


def local_wall_time(moment: datetime, tz: str) -> datetime:
    """The naive wall time of the aware ``moment`` in the zone ``tz`` (seconds precision)."""
    return moment.astimezone(ZoneInfo(tz)).replace(tzinfo=None, microsecond=0)


# --- RFC 5545 multi-line form: RRULE plus EXDATE / RDATE lines ------------------------------------------

_DATE_TIME = re.compile(r"^(?P<date>\d{8})T(?P<time>\d{6})(?P<utc>Z)?$", re.ASCII)
_KNOWN_LINE = re.compile(r"^(?P<name>[A-Z][A-Z-]*)(?P<sep>[;:])")
_REFUSED_LINES = {
    "DTSTART": "DTSTART is not accepted: the series starts at due_at in timezone",
    "EXRULE": "EXRULE is not supported (RFC 5545 deprecated it); list the dates with EXDATE",
    "DURATION": "DURATION is not supported: a task has a due time, not a duration",
    "RECURRENCE-ID": "RECURRENCE-ID is not accepted: move one occurrence by changing its due_at",
}


@dataclass(frozen=True, slots=True)
class Recurrence:
    """A validated recurrence: the normalised RRULE and the EXDATE / RDATE instants (UTC, sorted)."""

    rule: str
    exdates: tuple[datetime, ...] = ()
    rdates: tuple[datetime, ...] = ()


def _unfold(text: str) -> list[str]:
    """Content lines of RFC 5545 text (CRLF or LF; a line starting with a space or tab continues)."""
    lines: list[str] = []
    # A literal backslash-n (e.g. typed into a shell) separates lines too.
    normalised = text.replace("\\n", "\n").replace("\r\n", "\n").replace("\r", "\n")
    for raw in normalised.split("\n"):
        if raw[:1] in (" ", "\t") and lines:
            lines[-1] += raw[1:]
        elif raw.strip():
            lines.append(raw.strip())
    return lines


def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        return None


def _date_values(line: str, tz: str, errors: list[str]) -> tuple[str, list[datetime]]:
    """Parse ``EXDATE;TZID=Europe/Berlin:20300107T090000,20300114T090000`` into UTC instants."""
    head, sep, values = line.partition(":")
    name, *params = head.split(";")
    name = name.upper()
    if not sep or not values.strip():
        errors.append(f"{name} needs a value, e.g. {name};TZID=Europe/Berlin:20300107T090000")
        return name, []
    zone_name = tz
    for param in params:
        key, _, value = param.partition("=")
        key = key.strip().upper()
        if key == "TZID":
            zone_name = value.strip().strip('"')
            if _zone(zone_name) is None:
                errors.append(f"{name} TZID {zone_name!r} is not an IANA time zone name")
                return name, []
        elif key == "VALUE":
            kind = value.strip().upper()
            if kind in ("DATE", "PERIOD"):
                errors.append(
                    f"{name};VALUE={kind} is not supported: give date-times, "
                    f"e.g. {name};TZID=Europe/Berlin:20300107T090000"
                )
                return name, []
            if kind != "DATE-TIME":
                errors.append(f"{name} VALUE must be DATE-TIME")
                return name, []
        else:
            errors.append(f"{name} parameter {key} is not supported (only TZID and VALUE)")
            return name, []
    zone = ZoneInfo(zone_name)
    moments: list[datetime] = []
    for item in values.split(","):
        match = _DATE_TIME.match(item.strip().upper())
        if match is None:
            errors.append(f"{name} value {item.strip()!r} must be a date-time such as 20300107T090000")
            continue
        try:
            moment = datetime.strptime(match["date"] + match["time"], "%Y%m%d%H%M%S")
        except ValueError:
            errors.append(f"{name} value {item.strip()!r} is not a valid date-time")
            continue
        if not 1900 <= moment.year <= 9000:
            errors.append(f"{name} value {item.strip()!r} must lie between the years 1900 and 9000")
        elif match["utc"]:
            if any(p.strip().upper().startswith("TZID=") for p in params):
                errors.append(f"{name} value {item.strip()!r} has both TZID and a Z suffix")
                continue
            moments.append(moment.replace(tzinfo=UTC))
        else:
            moments.append(_localise(moment, zone))
    return name, moments


def parse_recurrence(text: str, tz: str) -> Recurrence:
    """Validate recurrence text: one RRULE, in plain form (``FREQ=WEEKLY;BYDAY=MO``, ``RRULE:`` prefix
    optional) or RFC 5545's multi-line form with ``EXDATE`` / ``RDATE`` lines::

        RRULE:FREQ=WEEKLY;BYDAY=MO
        EXDATE;TZID=Europe/Berlin:20300107T090000

    Date-times without ``Z`` or ``TZID`` are wall times in ``tz``.  Every other property is refused by
    name.  Raises ``ValidationFailed`` (field ``recurrence``) listing every problem.
    """
    errors: list[str] = []
    rules: list[str] = []
    exdates: set[datetime] = set()
    rdates: set[datetime] = set()
    lines = _unfold(text)
    if not lines:
        raise ValidationFailed.single(FIELD, "must not be empty")
    for line in lines:
        upper = line.upper()
        known = _KNOWN_LINE.match(upper)
        name = known["name"] if known is not None and "=" not in upper.split(known["sep"], 1)[0] else None
        if name is None or (name == "RRULE" and known is not None and known["sep"] == ":"):
            rules.append(line)
        elif name == "RRULE":
            errors.append("RRULE takes no parameters (write RRULE:FREQ=...)")
        elif name in ("EXDATE", "RDATE"):
            kind, moments = _date_values(line, tz, errors)
            (exdates if kind == "EXDATE" else rdates).update(moments)
        elif name in _REFUSED_LINES:
            errors.append(_REFUSED_LINES[name])
        else:
            errors.append(f"{name} is not supported here (only RRULE, EXDATE and RDATE lines)")
    if len(rules) > 1:
        errors.append("give exactly one RRULE line")
    elif not rules:
        errors.append("an RRULE line is required (EXDATE and RDATE only amend a rule)")
    if len(exdates) > DATES_MAX or len(rdates) > DATES_MAX:
        errors.append(f"EXDATE and RDATE take at most {DATES_MAX} date-times each")
    rule = ""
    if len(rules) == 1:
        try:
            rule = validate_rule(rules[0])
        except ValidationFailed as failed:
            errors.extend(error.message for error in failed.errors)
    if errors:
        raise ValidationFailed(FieldError(FIELD, message) for message in errors)
    return Recurrence(rule, tuple(sorted(exdates)), tuple(sorted(rdates)))


def format_rfc5545(recurrence: Recurrence) -> str:
    """The multi-line RFC 5545 text of a recurrence (UTC date-times), e.g. for display or export."""
    lines = [f"RRULE:{recurrence.rule}"]
    for name, moments in (("EXDATE", recurrence.exdates), ("RDATE", recurrence.rdates)):
        if moments:
            lines.append(f"{name}:" + ",".join(m.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ") for m in moments))
    return "\n".join(lines)


# --- series: every occurrence computed from the rule over the series' start ---------------------------

_LAST_YEAR = 9000


@dataclass(frozen=True, slots=True)
class Series:
    """A recurring series anchored to its start (RFC 5545 DTSTART as local wall time + IANA zone).

    Every instance is computed from the rule over ``start`` in wall time and only then converted to UTC,
    so a DST adjustment applies to one instance only.  COUNT and UNTIL bound the rule's instances from
    ``start`` (excluded or missed instances still count); RDATE instants are added and EXDATE instants
    removed (RFC 5545 3.8.5).
    """

    rule: str
    start: datetime  # naive wall time in ``tz``
    tz: str
    exdates: tuple[datetime, ...] = ()
    rdates: tuple[datetime, ...] = ()

    def _parts(self) -> dict[str, str]:
        parts, errors = _split(self.rule)
        errors = errors or _check(parts)
        if errors:
            raise ValidationFailed(FieldError(FIELD, message) for message in errors)
        return parts

    def _rule_instances(self, dtstart: datetime, *, with_count: bool) -> Iterator[datetime]:
        """The rule's instances over ``dtstart`` (naive wall times, ascending), bounded by UNTIL and,
        when ``with_count``, by COUNT."""
        parts = self._parts()
        built = _build(parts, dtstart)
        if built is None:
            raise ValidationFailed.single(FIELD, "is not a valid recurrence rule")
        # A valid rule without INTERVAL occurs within 400 years of any start (`validate_rule`); with one,
        # it may never occur from this start, and dateutil would walk to year 9999 yielding nothing.
        if int(parts.get("INTERVAL", "1")) > 1 and _occurs_from(parts, dtstart) is False:
            return
        until = _parse_until(parts["UNTIL"]) if "UNTIL" in parts else None
        bound = until.local_bound(ZoneInfo(self.tz)) if until is not None else None
        limit = int(parts["COUNT"]) if with_count and "COUNT" in parts else None
        for index, candidate in enumerate(built):
            if limit is not None and index >= limit:
                return
            if (bound is not None and candidate > bound) or candidate.year > _LAST_YEAR:
                return
            yield candidate

    def instances(self) -> Iterator[datetime]:
        """Every instance of the series (UTC, ascending): rule instances and RDATEs, less EXDATEs."""
        zone = ZoneInfo(self.tz)
        excluded = set(self.exdates)
        ruled = (_localise(c, zone) for c in self._rule_instances(self.start, with_count=True))
        previous: datetime | None = None
        for moment in heapq.merge(ruled, sorted(self.rdates)):
            if moment == previous or moment in excluded:
                continue
            previous = moment
            yield moment

    def after(self, moment: datetime) -> datetime | None:
        """The first instance strictly after the aware ``moment``, or ``None`` if the series has ended."""
        threshold = moment.astimezone(UTC)
        return next((m for m in self.instances() if m > threshold), None)

    def upcoming(self, moment: datetime, count: int) -> list[datetime]:
        """Up to ``count`` instances strictly after ``moment``."""
        threshold = moment.astimezone(UTC)
        found: list[datetime] = []
        for instance in self.instances():
            if len(found) >= count:
                break
            if instance > threshold:
                found.append(instance)
        return found

    def restarted_after(self, completed_at: datetime) -> datetime | None:
        """Completion basis: the rule restarts on the local completion day at the series' wall time of
        day; the first instance strictly after that restart (EXDATEs skipped, UNTIL applies)."""
        zone = ZoneInfo(self.tz)
        restart = datetime.combine(completed_at.astimezone(zone).date(), self.start.time())
        excluded = set(self.exdates)
        for candidate in self._rule_instances(restart, with_count=False):
            moment = _localise(candidate, zone)
            if candidate > restart and moment not in excluded:
                return moment
        return None

    def next_due(
        self,
        *,
        basis: RecurrenceBasis | str,
        instance: datetime,
        completed_at: datetime,
        occurrence: int,
    ) -> datetime | None:
        """The due time (UTC) of the occurrence after one done (or skipped) at ``completed_at``.

        ``instance`` is the done occurrence's rule instance (its due time before any reschedule).
        Basis ``due``: the first instance strictly after ``max(instance, completed_at)`` (missed instances
        are passed over, and still count for COUNT).  Basis ``completion``: ``restarted_after``; COUNT
        there counts occurrences (``occurrence`` is the done one's number), since each restart has its
        own instances.
        """
        if RecurrenceBasis(basis) is RecurrenceBasis.COMPLETION:
            parts = self._parts()
            if "COUNT" in parts and occurrence + 1 > int(parts["COUNT"]):
                return None
            return self.restarted_after(completed_at)
        return self.after(max(instance.astimezone(UTC), completed_at.astimezone(UTC)))


def next_due(
    rule: str,
    *,
    due_at: datetime,
    occurrence: int,
    completed_at: datetime,
    tz: str,
    basis: RecurrenceBasis | str,
    start: datetime | None = None,
) -> datetime | None:
    """``Series.next_due`` for the occurrence due at ``due_at`` of a series starting at ``start``
    (a naive wall time in ``tz``; by default the wall time of ``due_at``, i.e. a series whose first
    occurrence is this one)."""
    anchor = start if start is not None else local_wall_time(due_at, tz)
    series = Series(rule=validate_rule(rule), start=anchor, tz=tz)
    return series.next_due(basis=basis, instance=due_at, completed_at=completed_at, occurrence=occurrence)
