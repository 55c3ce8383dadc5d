"""Recurrence rule validation and next-due vectors (DST, COUNT/UNTIL, BYSETPOS, month ends, both bases)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasktide.domain.errors import ValidationFailed
from tasktide.domain.recurrence import RecurrenceBasis, Series, next_due, parse_recurrence, validate_rule

BERLIN = "Europe/Berlin"


def local(tz: str, *args: int) -> datetime:
    """An aware datetime at the given wall time in ``tz``."""
    hour, minute = (*args[3:], 0, 0)[:2]
    return datetime(args[0], args[1], args[2], hour, minute, tzinfo=ZoneInfo(tz))


# (id, rule, tz, due (local), completed (local), basis, occurrence, expected (local) or None)
# fmt: off
VECTORS: list[tuple[str, str, str, tuple[int, ...], tuple[int, ...], str, int, tuple[int, ...] | None]] = [
    ("weekly-monday-to-next-monday", "FREQ=WEEKLY;BYDAY=MO", "UTC",
     (2025, 1, 6, 9), (2025, 1, 6, 10), "due", 1, (2025, 1, 13, 9)),
    ("weekly-berlin-across-march-dst", "FREQ=WEEKLY;BYDAY=MO", BERLIN,
     (2025, 3, 24, 9), (2025, 3, 24, 10), "due", 1, (2025, 3, 31, 9)),
    ("weekly-berlin-across-october-dst", "FREQ=WEEKLY;BYDAY=MO", BERLIN,
     (2025, 10, 20, 9), (2025, 10, 20, 9, 30), "due", 1, (2025, 10, 27, 9)),
    ("count-not-yet-exhausted", "FREQ=DAILY;COUNT=3", "UTC",
     (2025, 1, 1, 9), (2025, 1, 1, 9), "due", 2, (2025, 1, 2, 9)),
    ("until-utc-ends-series", "FREQ=DAILY;UNTIL=20250110T235959Z", "UTC",
     (2025, 1, 10, 9), (2025, 1, 10, 9), "due", 1, None),
    ("until-utc-allows-last", "FREQ=DAILY;UNTIL=20250111T090000Z", "UTC",
     (2025, 1, 10, 9), (2025, 1, 10, 9), "due", 1, (2025, 1, 11, 9)),
    ("until-local-date-inclusive", "FREQ=DAILY;UNTIL=20250111", BERLIN,
     (2025, 1, 10, 9), (2025, 1, 10, 9), "due", 1, (2025, 1, 11, 9)),
    ("until-local-date-ends", "FREQ=DAILY;UNTIL=20250111", BERLIN,
     (2025, 1, 11, 9), (2025, 1, 11, 9), "due", 1, None),
    ("until-utc-in-other-zone", "FREQ=DAILY;UNTIL=20250111T080000Z", BERLIN,
     (2025, 1, 10, 9), (2025, 1, 10, 9), "due", 1, (2025, 1, 11, 9)),
    ("last-weekday-of-month-feb", "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1", "UTC",
     (2025, 1, 31, 17), (2025, 1, 31, 17), "due", 1, (2025, 2, 28, 17)),
    ("last-weekday-of-month-june-ends-monday", "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1", "UTC",
     (2025, 5, 30, 17), (2025, 5, 30, 17), "due", 1, (2025, 6, 30, 17)),
    ("bymonthday-31-skips-february", "FREQ=MONTHLY;BYMONTHDAY=31", "UTC",
     (2025, 1, 31, 9), (2025, 1, 31, 9), "due", 1, (2025, 3, 31, 9)),
    ("bymonthday-31-skips-april", "FREQ=MONTHLY;BYMONTHDAY=31", "UTC",
     (2025, 3, 31, 9), (2025, 3, 31, 9), "due", 1, (2025, 5, 31, 9)),
    ("bymonthday-minus-1-february", "FREQ=MONTHLY;BYMONTHDAY=-1", "UTC",
     (2025, 1, 31, 9), (2025, 1, 31, 9), "due", 1, (2025, 2, 28, 9)),
    ("bymonthday-minus-1-leap-february", "FREQ=MONTHLY;BYMONTHDAY=-1", "UTC",
     (2024, 1, 31, 9), (2024, 1, 31, 9), "due", 1, (2024, 2, 29, 9)),
    ("second-tuesday", "FREQ=MONTHLY;BYDAY=2TU", "UTC",
     (2025, 1, 14, 9), (2025, 1, 14, 9), "due", 1, (2025, 2, 11, 9)),
    ("last-friday", "FREQ=MONTHLY;BYDAY=-1FR", BERLIN,
     (2025, 2, 28, 9), (2025, 2, 28, 9), "due", 1, (2025, 3, 28, 9)),
    ("interval-two-weeks", "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO", "UTC",
     (2025, 1, 6, 9), (2025, 1, 6, 9), "due", 1, (2025, 1, 20, 9)),
    ("leap-day-yearly", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29", "UTC",
     (2024, 2, 29, 9), (2024, 2, 29, 9), "due", 1, (2028, 2, 29, 9)),
    ("due-basis-missed-periods-skipped", "FREQ=DAILY", "UTC",
     (2025, 1, 1, 9), (2025, 1, 5, 12), "due", 1, (2025, 1, 6, 9)),
    ("due-basis-completed-before-time-of-day", "FREQ=DAILY", "UTC",
     (2025, 1, 1, 9), (2025, 1, 5, 8), "due", 1, (2025, 1, 5, 9)),
    ("due-basis-completed-early-keeps-schedule", "FREQ=WEEKLY;BYDAY=MO", "UTC",
     (2025, 1, 13, 9), (2025, 1, 8, 9), "due", 1, (2025, 1, 20, 9)),
    ("completion-basis-daily-wednesday-to-thursday", "FREQ=DAILY", BERLIN,
     (2025, 1, 6, 9), (2025, 1, 8, 15), "completion", 1, (2025, 1, 9, 9)),
    ("completion-basis-weekly-restarts-on-completion-day", "FREQ=WEEKLY", BERLIN,
     (2025, 1, 6, 9), (2025, 1, 8, 15), "completion", 1, (2025, 1, 15, 9)),
    ("completion-basis-completed-early", "FREQ=DAILY;INTERVAL=3", "UTC",
     (2025, 1, 10, 9), (2025, 1, 8, 10), "completion", 1, (2025, 1, 11, 9)),
    ("completion-basis-across-march-dst", "FREQ=DAILY", BERLIN,
     (2025, 3, 20, 9), (2025, 3, 29, 20), "completion", 1, (2025, 3, 30, 9)),
    ("completion-basis-count-exhausted", "FREQ=DAILY;COUNT=2", "UTC",
     (2025, 1, 1, 9), (2025, 1, 1, 9), "completion", 2, None),
]
# fmt: on


@pytest.mark.parametrize(
    ("rule", "tz", "due", "completed", "basis", "occurrence", "expected"),
    [pytest.param(*vector[1:], id=vector[0]) for vector in VECTORS],
)
def test_next_due_vector_matches_expected_local_time(
    rule: str,
    tz: str,
    due: tuple[int, ...],
    completed: tuple[int, ...],
    basis: str,
    occurrence: int,
    expected: tuple[int, ...] | None,
) -> None:
    result = next_due(
        rule,
        due_at=local(tz, *due).astimezone(UTC),
        occurrence=occurrence,
        completed_at=local(tz, *completed).astimezone(UTC),
        tz=tz,
        basis=basis,
    )
    if expected is None:
        assert result is None
    else:
        assert result is not None
        assert result.tzinfo is UTC
        assert result == local(tz, *expected)


def test_next_due_berlin_dst_keeps_wall_time_but_shifts_utc() -> None:
    before = local(BERLIN, 2025, 3, 24, 9)
    after = next_due(
        "FREQ=WEEKLY;BYDAY=MO", due_at=before, occurrence=1, completed_at=before, tz=BERLIN, basis="due"
    )
    assert before.astimezone(UTC).hour == 8
    assert after == datetime(2025, 3, 31, 7, tzinfo=UTC)


def test_next_due_completion_basis_uses_local_completion_day() -> None:
    tz = "America/New_York"
    # 02:00Z on the 9th is still the evening of the 8th in New York.
    result = next_due(
        "FREQ=DAILY",
        due_at=local(tz, 2025, 1, 6, 9),
        occurrence=1,
        completed_at=datetime(2025, 1, 9, 2, tzinfo=UTC),
        tz=tz,
        basis=RecurrenceBasis.COMPLETION,
    )
    assert result == local(tz, 2025, 1, 9, 9)


def test_next_due_impossible_for_this_start_returns_none() -> None:
    # Only valid when the series starts in February; from January it never occurs.
    due = datetime(2025, 1, 15, 9, tzinfo=UTC)
    result = next_due(
        "FREQ=MONTHLY;INTERVAL=12;BYMONTH=2",
        due_at=due,
        occurrence=1,
        completed_at=due,
        tz="UTC",
        basis="due",
    )
    assert result is None


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("FREQ=WEEKLY;BYDAY=MO", "FREQ=WEEKLY;BYDAY=MO"),
        ("freq=weekly;byday=mo,we;interval=2", "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,WE"),
        (" RRULE:FREQ=DAILY;COUNT=5; ", "FREQ=DAILY;COUNT=5"),
        ("FREQ=MONTHLY;BYDAY=1MO,-1FR", "FREQ=MONTHLY;BYDAY=1MO,-1FR"),
        ("FREQ=MONTHLY;BYMONTHDAY=-1", "FREQ=MONTHLY;BYMONTHDAY=-1"),
        ("BYSETPOS=-1;FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR", "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1"),
        ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29"),
        ("FREQ=DAILY;UNTIL=20251231T235959Z", "FREQ=DAILY;UNTIL=20251231T235959Z"),
        ("FREQ=DAILY;UNTIL=20251231", "FREQ=DAILY;UNTIL=20251231"),
        ("FREQ=WEEKLY;WKST=SU;BYDAY=SU", "FREQ=WEEKLY;BYDAY=SU;WKST=SU"),
    ],
)
def test_validate_rule_valid_text_returns_normalised(text: str, normalised: str) -> None:
    assert validate_rule(text) == normalised


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FREQ=DAILY;BYHOUR=9", "BYHOUR is not supported"),
        ("FREQ=DAILY;BYYEARDAY=1", "BYYEARDAY is not supported"),
        ("FREQ=HOURLY", "FREQ=HOURLY is not supported"),
        ("FREQ=FORTNIGHTLY", "FREQ must be one of DAILY, WEEKLY, MONTHLY, YEARLY"),
        ("", "must not be empty"),
        ("BYDAY=MO", "FREQ is required"),
        ("FREQ=DAILY;FREQ=WEEKLY", "FREQ appears more than once"),
        ("FREQ=DAILY;INTERVAL", "'INTERVAL' is not a NAME=VALUE rule part"),
        ("FREQ=DAILY;INTERVAL=0", "INTERVAL must be an integer between 1 and 1000"),
        ("FREQ=DAILY;INTERVAL=x", "INTERVAL must be an integer between 1 and 1000"),
        ("FREQ=DAILY;COUNT=0", "COUNT must be a positive integer"),
        ("FREQ=DAILY;COUNT=2;UNTIL=20250101", "COUNT and UNTIL must not both be given"),
        ("FREQ=DAILY;UNTIL=2025-01-01", "UNTIL must be a date (YYYYMMDD) or date-time (YYYYMMDDTHHMMSS[Z])"),
        ("FREQ=DAILY;UNTIL=20251301", "UNTIL must be a date (YYYYMMDD) or date-time (YYYYMMDDTHHMMSS[Z])"),
        ("FREQ=WEEKLY;BYDAY=1MO", "BYDAY ordinals (e.g. 1MO, -1FR) need FREQ=MONTHLY or FREQ=YEARLY"),
        ("FREQ=MONTHLY;BYDAY=6MO", "BYDAY ordinal in '6MO' must be in ±1..5"),
        ("FREQ=MONTHLY;BYDAY=XX", "BYDAY has an invalid value 'XX'"),
        ("FREQ=MONTHLY;BYMONTHDAY=0", "BYMONTHDAY values must be in ±1..31, got '0'"),
        ("FREQ=MONTHLY;BYMONTHDAY=32", "BYMONTHDAY values must be in ±1..31, got '32'"),
        ("FREQ=YEARLY;BYMONTH=13", "BYMONTH values must be in 1..12, got '13'"),
        ("FREQ=WEEKLY;BYMONTHDAY=1", "BYMONTHDAY is not allowed with FREQ=WEEKLY"),
        ("FREQ=MONTHLY;BYSETPOS=1", "BYSETPOS needs another BYxxx rule part"),
        ("FREQ=DAILY;BYMONTH=1;BYSETPOS=2", "BYSETPOS values must be in ±1..1, got '2'"),
        ("FREQ=WEEKLY;BYDAY=MO;BYSETPOS=3", "BYSETPOS values must be in ±1..1, got '3'"),
        (
            "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30",
            "BYMONTHDAY never falls within BYMONTH, so the rule never occurs",
        ),
        ("FREQ=MONTHLY;BYDAY=1MO;BYMONTHDAY=15", "the rule never produces an occurrence"),
        ("FREQ=WEEKLY;WKST=XX", "WKST must be one of MO, TU, WE, TH, FR, SA, SU"),
    ],
)
def test_validate_rule_invalid_text_raises_recurrence_error(text: str, message: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        validate_rule(text)
    assert {error.field for error in caught.value.errors} == {"recurrence"}
    assert message in [error.message for error in caught.value.errors]


def test_validate_rule_unsupported_part_detail_names_the_problem() -> None:
    with pytest.raises(ValidationFailed) as caught:
        validate_rule("FREQ=DAILY;BYHOUR=9")
    assert caught.value.detail == "recurrence: BYHOUR is not supported"


def test_validate_rule_several_problems_lists_all() -> None:
    with pytest.raises(ValidationFailed) as caught:
        validate_rule("FREQ=DAILY;BYHOUR=9;BYMINUTE=0")
    assert [error.message for error in caught.value.errors] == [
        "BYHOUR is not supported",
        "BYMINUTE is not supported",
    ]


ZONES = ["UTC", BERLIN, "America/New_York", "Australia/Sydney", "Asia/Kolkata"]


@st.composite
def daily_cases(draw: st.DrawFn) -> tuple[str, str, datetime, datetime, int]:
    tz = draw(st.sampled_from(ZONES))
    # Wall times between 06:00 and 21:59 never fall into a DST gap in these zones.
    wall = draw(
        st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2035, 12, 31)).map(
            lambda d: d.replace(hour=6 + d.hour % 16, microsecond=0)
        )
    )
    due = wall.replace(tzinfo=ZoneInfo(tz)).astimezone(UTC)
    completed = due + draw(st.timedeltas(min_value=timedelta(days=-30), max_value=timedelta(days=90)))
    interval = draw(st.integers(min_value=1, max_value=5))
    return tz, f"FREQ=DAILY;INTERVAL={interval}", due, completed, interval


def _wall_time(moment: datetime, tz: str) -> time:
    return moment.astimezone(ZoneInfo(tz)).time()


@settings(deadline=None)
@given(daily_cases())
def test_next_due_due_basis_daily_is_first_after_threshold_at_same_wall_time(
    case: tuple[str, str, datetime, datetime, int],
) -> None:
    tz, rule, due, completed, interval = case
    result = next_due(rule, due_at=due, occurrence=1, completed_at=completed, tz=tz, basis="due")
    assert result is not None
    threshold = max(due, completed)
    assert result > threshold
    assert result - threshold <= timedelta(days=interval, hours=1)
    assert _wall_time(result, tz) == _wall_time(due, tz)


@settings(deadline=None)
@given(daily_cases())
def test_next_due_completion_basis_daily_is_after_completion_at_same_wall_time(
    case: tuple[str, str, datetime, datetime, int],
) -> None:
    tz, rule, due, completed, interval = case
    result = next_due(rule, due_at=due, occurrence=1, completed_at=completed, tz=tz, basis="completion")
    assert result is not None
    assert result > completed
    completion_day = completed.astimezone(ZoneInfo(tz)).date()
    assert (result.astimezone(ZoneInfo(tz)).date() - completion_day).days == interval
    assert _wall_time(result, tz) == _wall_time(due, tz)


# --- RFC 5545 multi-line form and anchored series ------------------------------------------------------


def test_parse_recurrence_multiline_exdate_tzid_converts_to_utc() -> None:
    parsed = parse_recurrence(
        "RRULE:FREQ=WEEKLY;BYDAY=MO\nEXDATE;TZID=Europe/Berlin:20300107T090000,20300114T090000\n"
        "RDATE:20300116T080000Z",
        "UTC",
    )
    assert parsed.rule == "FREQ=WEEKLY;BYDAY=MO"
    assert parsed.exdates == (datetime(2030, 1, 7, 8, tzinfo=UTC), datetime(2030, 1, 14, 8, tzinfo=UTC))
    assert parsed.rdates == (datetime(2030, 1, 16, 8, tzinfo=UTC),)


def test_parse_recurrence_floating_exdate_uses_task_zone_and_crlf_folding() -> None:
    parsed = parse_recurrence("RRULE:FREQ=DAILY\r\nEXDATE:20300107T0\r\n 90000", BERLIN)
    assert parsed.exdates == (datetime(2030, 1, 7, 8, tzinfo=UTC),)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("RRULE:FREQ=DAILY\nEXRULE:FREQ=WEEKLY", "EXRULE is not supported (RFC 5545 deprecated it)"),
        ("RRULE:FREQ=DAILY\nDTSTART;TZID=Europe/Berlin:20300107T090000", "DTSTART is not accepted"),
        ("RRULE:FREQ=DAILY\nEXDATE;VALUE=DATE:20300107", "EXDATE;VALUE=DATE is not supported"),
        ("RRULE:FREQ=DAILY\nRDATE;VALUE=PERIOD:20300107T090000Z/PT1H", "RDATE;VALUE=PERIOD is not supported"),
        ("RRULE:FREQ=DAILY\nEXDATE;TZID=Mars/Olympus:20300107T090000", "is not an IANA time zone name"),
        ("RRULE:FREQ=DAILY\nEXDATE:2030-01-07", "must be a date-time such as 20300107T090000"),
        ("RRULE:FREQ=DAILY\nX-FOO:bar", "X-FOO is not supported here"),
        ("EXDATE:20300107T090000Z", "an RRULE line is required"),
        ("RRULE:FREQ=DAILY\nRRULE:FREQ=WEEKLY", "give exactly one RRULE line"),
    ],
)
def test_parse_recurrence_refused_part_is_named(text: str, message: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_recurrence(text, "UTC")
    assert any(message in error.message for error in caught.value.errors), caught.value.errors
    assert all("TZID is not supported" not in error.message for error in caught.value.errors)


def test_series_instances_count_includes_excluded_and_adds_rdates() -> None:
    series = Series(
        rule="FREQ=DAILY;COUNT=3",
        start=datetime(2030, 1, 1, 9),
        tz="UTC",
        exdates=(datetime(2030, 1, 2, 9, tzinfo=UTC),),
        rdates=(datetime(2030, 1, 10, 9, tzinfo=UTC),),
    )
    assert [m.day for m in series.instances()] == [1, 3, 10]


def test_series_next_due_new_york_gap_day_only_both_bases() -> None:
    series = Series(rule="FREQ=DAILY", start=datetime(2030, 3, 9, 2, 30), tz="America/New_York")
    gap_day = datetime(2030, 3, 10, 7, 30, tzinfo=UTC)  # 03:30 EDT
    for basis in ("due", "completion"):
        assert series.next_due(basis=basis, instance=gap_day, completed_at=gap_day, occurrence=2) == datetime(
            2030, 3, 11, 6, 30, tzinfo=UTC
        )


def test_validate_rule_rare_but_real_rule_accepted_by_the_one_cycle_probe() -> None:
    # 29 February falling on a Monday: 2016, 2044, 2072, ... (the probe spans whole leap cycles)
    assert validate_rule("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO") == (
        "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO"
    )


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("FREQ=YEARLY;INTERVAL=300", datetime(2326, 12, 1, 9, tzinfo=UTC)),  # far apart, still found
        ("FREQ=DAILY;INTERVAL=7;BYDAY=TU", datetime(2026, 12, 8, 9, tzinfo=UTC)),  # 1 Dec 2026: a Tuesday
        ("FREQ=DAILY;INTERVAL=7;BYDAY=MO", None),  # every 7 days from a Tuesday: never a Monday
        # patterns longer than the probe's two cycles (lcm with INTERVAL): walked in full, still found
        ("FREQ=DAILY;INTERVAL=10;BYMONTH=2;BYMONTHDAY=29;BYDAY=WE", datetime(3696, 2, 29, 9, tzinfo=UTC)),
        ("FREQ=YEARLY;INTERVAL=999;BYMONTH=2;BYMONTHDAY=29", datetime(4024, 2, 29, 9, tzinfo=UTC)),
    ],
)
def test_series_after_rule_probed_over_its_start_finds_the_same_instance(
    rule: str, expected: datetime | None
) -> None:
    series = Series(rule=rule, start=datetime(2026, 12, 1, 9, 0), tz="UTC")
    assert series.after(datetime(2026, 12, 1, 10, tzinfo=UTC)) == expected


@pytest.mark.parametrize("freq", ["DAILY", "MONTHLY", "YEARLY"])
@pytest.mark.parametrize("interval", [2, 3, 7, 12])
def test_series_after_sparse_rule_with_interval_same_as_the_full_walk(
    freq: str, interval: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """29 February on a Wednesday, every `interval` periods: the probe never changes the answer."""
    from tasktide.domain import recurrence

    rule = f"FREQ={freq};INTERVAL={interval};BYMONTH=2;BYMONTHDAY=29;BYDAY=WE"
    series = Series(rule=rule, start=datetime(2026, 3, 4, 9, 0), tz="UTC")  # a Wednesday
    probed = series.after(datetime(2026, 3, 5, tzinfo=UTC))
    monkeypatch.setattr(recurrence, "_occurs_from", lambda parts, dtstart: None)  # the full walk
    assert probed == series.after(datetime(2026, 3, 5, tzinfo=UTC))
