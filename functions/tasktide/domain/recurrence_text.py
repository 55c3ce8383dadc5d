"""Plain-language recurrence: ``"every 2nd monday"`` -> ``FREQ=MONTHLY;BYDAY=2MO``.

Consumes one English phrase (``recurrence_text``); emits a ``Phrase``: the normalised RRULE, whether the
series repeats from completion (Todoist's ``every!``) and the time of day it names (``at 9``), if any.
Raises ``ValidationFailed`` on the field ``recurrence_text`` naming the words it did not understand.

The grammar (case-insensitive; commas and "and" join lists)::

    phrase   := head [unit] clause*
    head     := "every" | "each" | "every!" | "daily" | "weekly" | "fortnightly" | "monthly"
              | "quarterly" | "yearly" | "annually"
    unit     := [N | "other"] ("day(s)" | "week(s)" | "fortnight" | "month(s)" | "quarter(s)" | "year(s)"
              | "weekday(s)" | "workday(s)" | "weekend(s)" | weekday-list | month [day])
              | ordinal (weekday-list | "weekday" | "day") ["of" ("the month" | month)]
              | day-ordinal-list ["of" month]          (every 15th / every 1st and 15th of march)
              | month day | day ["of"] month            (every march 3 / every 3rd of march)
    clause   := "on" ["the"] (weekday-list | ordinal weekday | ordinal "weekday" | "last day" | day-list
                              | month day | day ["of"] month) ["of" ("the month" | month)]
              | "in" month-list | "at" time | ["for"] N "times" | "until" date
    time     := 9 | 9am | 9 pm | 9:30 | 17:00 | noon | midnight
    date     := 2030-12-31 | december 31 2030 | 31 december 2030

"every second monday" is refused as ambiguous (say "every other monday" or "every 2nd monday").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, time

from tasktide.domain.errors import FieldError, ValidationFailed
from tasktide.domain.recurrence import validate_rule
from tasktide.domain.tasks import RECURRENCE_TEXT_MAX

FIELD = "recurrence_text"

_DAYS = {
    "monday": "MO", "mon": "MO", "tuesday": "TU", "tue": "TU", "tues": "TU", "wednesday": "WE",
    "wed": "WE", "thursday": "TH", "thu": "TH", "thur": "TH", "thurs": "TH", "friday": "FR", "fri": "FR",
    "saturday": "SA", "sat": "SA", "sunday": "SU", "sun": "SU",
}  # fmt: skip
_DAYS.update({f"{name}s": code for name, code in list(_DAYS.items()) if len(name) > 3})
_WEEKDAYS = ("MO", "TU", "WE", "TH", "FR")
_MONTHS = {
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3, "april": 4, "apr": 4, "may": 5,
    "june": 6, "jun": 6, "july": 7, "jul": 7, "august": 8, "aug": 8, "september": 9, "sep": 9, "sept": 9,
    "october": 10, "oct": 10, "november": 11, "nov": 11, "december": 12, "dec": 12,
}  # fmt: skip
_NUMBERS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12,
}  # fmt: skip
_ORDINAL_WORDS = {"first": 1, "third": 3, "fourth": 4, "fifth": 5, "last": -1}
_HEADS = {
    "daily": ("DAILY", 1), "weekly": ("WEEKLY", 1), "fortnightly": ("WEEKLY", 2), "biweekly": ("WEEKLY", 2),
    "monthly": ("MONTHLY", 1), "quarterly": ("MONTHLY", 3), "yearly": ("YEARLY", 1),
    "annually": ("YEARLY", 1),
}  # fmt: skip
_UNITS = {
    "day": ("DAILY", 1), "days": ("DAILY", 1), "week": ("WEEKLY", 1), "weeks": ("WEEKLY", 1),
    "fortnight": ("WEEKLY", 2), "fortnights": ("WEEKLY", 2), "month": ("MONTHLY", 1),
    "months": ("MONTHLY", 1), "quarter": ("MONTHLY", 3), "quarters": ("MONTHLY", 3),
    "year": ("YEARLY", 1), "years": ("YEARLY", 1),
}  # fmt: skip
_UNSUPPORTED_UNITS = ("hour", "hours", "hourly", "minute", "minutes", "seconds")
_TOKEN = re.compile(r"\d{4}-\d{2}-\d{2}|\d{1,2}:\d{2}(?:am|pm)?|\d+(?:st|nd|rd|th|am|pm)?|[a-z]+!?|!|,|\S")
_DAY_ORDINAL = re.compile(r"^(\d{1,2})(st|nd|rd|th)$", re.ASCII)
_CLOCK = re.compile(r"^(\d{1,2})(?::(\d{2}))?(am|pm)?$", re.ASCII)


def _digits(token: str) -> bool:
    """ASCII digits only (``"²".isdigit()`` is true, but ``int("²")`` fails)."""
    return token.isascii() and token.isdigit()


@dataclass(frozen=True, slots=True)
class Phrase:
    """What a phrase means: the RRULE, ``every!`` (repeat from completion) and a time of day."""

    rule: str
    from_completion: bool = False
    at: time | None = None


class _NotUnderstood(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[str] = [str(t) for t in _TOKEN.findall(text.lower())]
        self.pos = 0
        self.freq: str | None = None
        self.interval = 1
        self.byday: list[str] = []
        self.bymonthday: list[int] = []
        self.bymonth: list[int] = []
        self.bysetpos: int | None = None
        self.count: int | None = None
        self.until: date | None = None
        self.at: time | None = None
        self.from_completion = False

    # -- cursor ----------------------------------------------------------------------------------
    def peek(self, offset: int = 0) -> str | None:
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def take(self) -> str:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def accept(self, *words: str) -> bool:
        if self.peek() in words:
            self.pos += 1
            return True
        return False

    def stuck(self, start: int | None = None) -> _NotUnderstood:
        rest = " ".join(self.tokens[self.pos if start is None else start :])
        if not rest:
            return _NotUnderstood(
                f'"{self.text.strip()}" ends too early: say what repeats, e.g. "every week"'
            )
        return _NotUnderstood(f'did not understand "{rest}" in "{self.text.strip()}"')

    # -- small pieces ----------------------------------------------------------------------------
    def number(self) -> int | None:
        token = self.peek()
        if token is not None and _digits(token):
            self.pos += 1
            return int(token)
        if token in _NUMBERS:
            self.pos += 1
            return _NUMBERS[token]
        return None

    def weekday_ordinal(self) -> int | None:
        """``first``..``fifth``, ``last``, ``1st``..``5th``, ``second to last`` (``second`` alone: 2)."""
        token = self.peek()
        if token in _ORDINAL_WORDS:
            self.pos += 1
            return _ORDINAL_WORDS[token]
        if token == "second":
            self.pos += 1
            if self.peek() == "to" and self.peek(1) == "last":
                self.pos += 2
                return -2
            return 2
        match = _DAY_ORDINAL.match(token or "")
        if match and 1 <= int(match[1]) <= 5:
            self.pos += 1
            return int(match[1])
        return None

    def nth_weekdays(self) -> bool:
        """``last friday``, ``2nd mon and wed`` (BYDAY=-1FR / 2MO,2WE), ``first weekday`` (BYDAY=MO..FR with
        BYSETPOS=1): sets those and says True; else False, the position kept."""
        start = self.pos
        ordinal = self.weekday_ordinal()
        if ordinal is not None:
            if self.peek() in _DAYS:
                days = self.day_list()
                assert days is not None
                self.byday = [f"{ordinal}{day}" for day in days]
                return True
            if self.accept("weekday", "workday"):
                self.byday, self.bysetpos = list(_WEEKDAYS), ordinal
                return True
        self.pos = start
        return False

    def day_list(self) -> list[str] | None:
        """``monday``, ``mon, wed and fri``, ``tue & thu``; also ``weekdays`` / ``weekends`` inside."""
        days: list[str] = []
        while True:
            token = self.peek()
            if token in _DAYS:
                days.append(_DAYS[token])
            elif token in ("weekday", "weekdays", "workday", "workdays"):
                days.extend(_WEEKDAYS)
            elif token in ("weekend", "weekends"):
                days.extend(("SA", "SU"))
            else:
                break
            self.pos += 1
            if not self._joiner(lambda t: t in _DAYS):
                break
        if not days:
            return None
        return list(dict.fromkeys(days))

    def _joiner(self, then: object) -> bool:
        """Consume ``,`` / ``and`` / ``&`` / ``, and`` when a further list item follows."""
        start = self.pos
        consumed = False
        while self.peek() in (",", "and", "&"):
            self.pos += 1
            consumed = True
        if consumed and self.peek() is not None and callable(then) and then(self.peek()):
            return True
        self.pos = start
        return False

    def month_day(self) -> int | None:
        token = self.peek()
        match = _DAY_ORDINAL.match(token or "")
        if match:
            value = int(match[1])
        elif token is not None and _digits(token) and len(token) <= 2:
            value = int(token)
        else:
            return None
        if not 1 <= value <= 31:
            raise _NotUnderstood(f"day {token} of a month must be 1 to 31")
        self.pos += 1
        return value

    def month_days(self) -> list[int] | None:
        days: list[int] = []
        while True:
            if self.peek() == "last" and self.peek(1) == "day":
                self.pos += 2
                days.append(-1)
            elif self.peek() == "first" and self.peek(1) == "day":
                self.pos += 2
                days.append(1)
            else:
                value = self.month_day()
                if value is None:
                    break
                days.append(value)
            if not self._joiner(
                lambda t: bool(_DAY_ORDINAL.match(t) or _digits(t) or t in ("last", "first"))
            ):
                break
        return days or None

    def of_month(self) -> None:
        """``of the month`` / ``of each month`` / ``of march`` after a day."""
        start = self.pos
        if not self.accept("of"):
            return
        self.accept("the", "each", "every")
        if self.accept("month"):
            return
        if self.peek() in _MONTHS:
            self.bymonth.append(_MONTHS[self.take()])
            return
        self.pos = start

    def months(self) -> list[int] | None:
        found: list[int] = []
        while self.peek() in _MONTHS:
            found.append(_MONTHS[self.take()])
            if not self._joiner(lambda t: t in _MONTHS):
                break
        return found or None

    def clock(self) -> time:
        token = self.peek()
        if token in ("noon", "midday"):
            self.pos += 1
            return time(12)
        if token == "midnight":
            self.pos += 1
            return time(0)
        match = _CLOCK.match(token or "")
        if match is None:
            raise self.stuck()
        self.pos += 1
        hour, minute = int(match[1]), int(match[2] or 0)
        suffix = match[3] or (self.take() if self.peek() in ("am", "pm") else None)
        if suffix is not None:
            if not 1 <= hour <= 12:
                raise _NotUnderstood(f'"{token}" is not a time: with am/pm the hour is 1 to 12')
            hour = hour % 12 + (12 if suffix == "pm" else 0)
        if hour > 23 or minute > 59:
            raise _NotUnderstood(f'"{token}" is not a time of day (00:00 to 23:59)')
        return time(hour, minute)

    def calendar_date(self) -> date:
        token = self.peek()
        try:
            if token is not None and re.fullmatch(r"\d{4}-\d{2}-\d{2}", token):
                self.pos += 1
                return date.fromisoformat(token)
            if token in _MONTHS:  # december 31 2030 / dec 31, 2030
                month = _MONTHS[self.take()]
                day = self.month_day()
                self.accept(",")
                year = self.number() if self.peek() and _digits(str(self.peek())) else None
                if day is not None and year is not None:
                    return date(year, month, day)
            else:  # 31 december 2030
                day = self.month_day()
                self.accept("of")
                if day is not None and self.peek() in _MONTHS:
                    month = _MONTHS[self.take()]
                    year = self.number()
                    if year is not None:
                        return date(year, month, day)
        except ValueError:
            raise _NotUnderstood(f'"until {token} ..." is not a valid date') from None
        raise _NotUnderstood('"until" needs a date such as 2030-12-31 or december 31 2030')

    # -- grammar ---------------------------------------------------------------------------------
    def set_freq(self, freq: str, interval: int = 1) -> None:
        self.freq = freq
        self.interval *= interval

    def head(self) -> None:
        token = self.peek()
        if token is None:
            raise _NotUnderstood("must not be empty")
        if token in ("every!", "each!"):
            self.pos += 1
            self.from_completion = True
            self.unit()
        elif token in ("every", "each"):
            self.pos += 1
            if self.accept("!"):
                self.from_completion = True
            self.unit()
        elif token in _HEADS:
            self.pos += 1
            self.set_freq(*_HEADS[token])
        elif token in _UNSUPPORTED_UNITS:
            raise _NotUnderstood("repeating more often than daily (hours, minutes) is not supported")
        else:
            raise _NotUnderstood(
                f'did not understand "{self.text.strip()}": start with "every" (or "every!", "daily", '
                '"weekly", "monthly", "yearly")'
            )

    def unit(self) -> None:
        start = self.pos
        if self.peek() == "second" and (self.peek(1) in _DAYS or self.peek(1) in ("week", "weekday")):
            raise _NotUnderstood(
                f'"{self.text.strip()}" is ambiguous: say "every other {self.peek(1)}" (every 2 weeks) '
                f'or "every 2nd {self.peek(1)}" (of the month)'
            )
        interval = 2 if self.accept("other") else self.number()
        token = self.peek()
        if token in _UNSUPPORTED_UNITS:
            raise _NotUnderstood("repeating more often than daily (hours, minutes) is not supported")
        if token in _UNITS:
            self.pos += 1
            self.set_freq(*_UNITS[token])
            self.interval *= interval or 1
            return
        if token in _DAYS or token in ("weekday", "weekdays", "workday", "workdays", "weekend", "weekends"):
            days = self.day_list()
            assert days is not None
            self.accept("day", "days")  # "every weekend day"
            self.set_freq("WEEKLY", interval or 1)
            self.byday = days
            return
        if token in _MONTHS and interval is None:
            self.set_freq("YEARLY")
            self.bymonth = [_MONTHS[self.take()]]
            day = self.month_day()
            if day is not None:
                self.bymonthday = [day]
            return
        # "every 15", "every 3 march": a bare number is a day of the month.
        self.pos = start
        self.ordinal_unit()

    def ordinal_unit(self) -> None:
        """``every last friday``, ``every 2nd monday``, ``every first weekday``, ``every 15th``,
        ``every last day of the month``, ``every 3rd of march``, ``every 3 march``."""
        start = self.pos
        if self.nth_weekdays():
            self.set_freq("MONTHLY")
            self.of_month()
            if self.bymonth and self.bysetpos is None:  # every 2nd monday of march (a weekday rule: monthly)
                self.freq = "YEARLY"
            return
        ordinal = self.weekday_ordinal()
        if ordinal is not None:
            if self.accept("day") and ordinal in (1, -1):
                self.set_freq("MONTHLY")
                self.bymonthday = [ordinal]
                self.of_month()
                if self.bymonth:
                    self.freq = "YEARLY"
                return
            self.pos = start
        monthdays = self.month_days()
        if monthdays is not None:
            self.set_freq("MONTHLY")
            self.bymonthday = monthdays
            self.accept("day")
            self.of_month()
            if not self.bymonth and self.peek() in _MONTHS:  # every 3 march
                self.bymonth = [_MONTHS[self.take()]]
            if self.bymonth:
                self.freq = "YEARLY"
            return
        raise self.stuck(start)

    def clause(self) -> None:
        start = self.pos
        token = self.take()
        if token in (",", "and"):
            return
        if token == "on":
            self.accept("the", "every", "each")
            self.on_clause(start)
        elif token == "in":
            self.accept("the")
            months = self.months()
            if months is None:
                raise self.stuck(start)
            self.bymonth.extend(months)
        elif token == "at":
            self.at = self.clock()
        elif token == "for" or (_digits(token) and self.peek() in ("times", "occurrences")):
            count = int(token) if _digits(token) else self.number()
            if count is None or not self.accept("times", "occurrences", "time"):
                raise self.stuck(start)
            self.count = count
        elif token == "until":
            self.until = self.calendar_date()
        elif token in ("starting", "from", "beginning", "after", "except", "but"):
            raise _NotUnderstood(
                f'"{token} ..." is not understood in "{self.text.strip()}": set the first due date with '
                "due_at, and skip single occurrences with POST .../skip"
            )
        else:
            self.pos = start
            raise self.stuck()

    def on_clause(self, start: int) -> None:
        if self.nth_weekdays():
            if self.freq in (None, "DAILY", "WEEKLY"):
                self.freq = "MONTHLY"
            self.of_month()
            return
        days = self.day_list()
        if days is not None:
            self.byday = days
            if self.freq in (None, "DAILY"):
                self.freq = "WEEKLY"
            return
        if self.peek() in _MONTHS:  # on march 3
            self.bymonth = [_MONTHS[self.take()]]
            day = self.month_day()
            if day is None:
                raise self.stuck(start)
            self.bymonthday = [day]
            return
        monthdays = self.month_days()
        if monthdays is not None:
            self.bymonthday = monthdays
            self.accept("day")
            self.of_month()
            if not self.bymonth and self.peek() in _MONTHS:  # on 3 march
                self.bymonth = [_MONTHS[self.take()]]
            return
        raise self.stuck(start)

    def parse(self) -> Phrase:
        if len(self.text) > RECURRENCE_TEXT_MAX:
            raise _NotUnderstood(f"must be at most {RECURRENCE_TEXT_MAX} characters")
        self.head()
        while self.peek() is not None:
            self.clause()
        if self.freq is None:
            raise self.stuck()
        if self.bymonthday and self.freq == "WEEKLY":
            raise _NotUnderstood(
                f'"{self.text.strip()}": a day of the month needs "every month" or "every year", not weeks'
            )
        if self.bymonth and self.freq in ("DAILY", "WEEKLY") and not self.byday:
            self.freq = "YEARLY" if self.bymonthday else self.freq
        return Phrase(self.rule(), self.from_completion, self.at)

    def rule(self) -> str:
        parts = [f"FREQ={self.freq}"]
        if self.interval != 1:
            parts.append(f"INTERVAL={self.interval}")
        if self.count is not None:
            parts.append(f"COUNT={self.count}")
        if self.until is not None:
            parts.append(f"UNTIL={self.until:%Y%m%d}")
        if self.bymonth:
            parts.append("BYMONTH=" + ",".join(str(m) for m in dict.fromkeys(self.bymonth)))
        if self.bymonthday:
            parts.append("BYMONTHDAY=" + ",".join(str(d) for d in dict.fromkeys(self.bymonthday)))
        if self.byday:
            parts.append("BYDAY=" + ",".join(self.byday))
        if self.bysetpos is not None:
            parts.append(f"BYSETPOS={self.bysetpos}")
        return ";".join(parts)


def parse_phrase(text: str) -> Phrase:
    """The meaning of a plain-language recurrence phrase; ``ValidationFailed`` on ``recurrence_text``
    naming what was not understood (or why the rule it describes is not valid)."""
    try:
        phrase = _Parser(text).parse()
    except _NotUnderstood as problem:
        raise ValidationFailed.single(FIELD, problem.message) from None
    try:
        rule = validate_rule(phrase.rule)
    except ValidationFailed as failed:
        raise ValidationFailed(
            FieldError(FIELD, f'"{text.strip()}" gives {phrase.rule}, which {error.message}')
            for error in failed.errors
        ) from None
    return Phrase(rule, phrase.from_completion, phrase.at)
