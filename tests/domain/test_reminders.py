"""Reminder offsets: ISO 8601 duration parsing, reminder times and the fire decision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tasktide.domain.errors import ValidationFailed
from tasktide.domain.reminders import parse_offset, reminder_times, should_fire

DUE = datetime(2025, 6, 2, 9, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT15M", timedelta(minutes=15)),
        ("P1D", timedelta(days=1)),
        ("P2W", timedelta(weeks=2)),
        ("PT1H30M", timedelta(hours=1, minutes=30)),
        ("P1DT2H", timedelta(days=1, hours=2)),
        ("PT45S", timedelta(seconds=45)),
        ("P1W2DT3H4M5S", timedelta(weeks=1, days=2, hours=3, minutes=4, seconds=5)),
        ("pt10m", timedelta(minutes=10)),
        (" PT15M ", timedelta(minutes=15)),
    ],
)
def test_parse_offset_valid_duration_returns_timedelta(text: str, expected: timedelta) -> None:
    assert parse_offset(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "P", "PT", "P1DT", "15M", "PT15", "P1Y", "P1M", "-PT5M", "PT0M", "P0D", "P1.5D", "P9999D"],
)
def test_parse_offset_invalid_text_raises_reminders_error(text: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_offset(text)
    assert [error.field for error in caught.value.errors] == ["reminders"]


def test_parse_offset_zero_duration_message_says_positive() -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_offset("PT0S")
    assert "positive" in caught.value.errors[0].message


def test_reminder_times_offsets_subtracted_from_due_in_order() -> None:
    assert reminder_times(DUE, ["P1D", "PT15M"]) == (
        ("P1D", datetime(2025, 6, 1, 9, tzinfo=UTC)),
        ("PT15M", datetime(2025, 6, 2, 8, 45, tzinfo=UTC)),
    )


def test_reminder_times_no_offsets_returns_empty() -> None:
    assert reminder_times(DUE, []) == ()


@pytest.mark.parametrize(
    ("now", "fires"),
    [
        (DUE - timedelta(minutes=16), False),  # before the reminder time
        (DUE - timedelta(minutes=15), True),  # exactly at the reminder time
        (DUE - timedelta(minutes=5), True),  # missed tick: still fires before due
        (DUE, False),  # task is due: too late
        (DUE + timedelta(hours=1), False),  # past due
    ],
)
def test_should_fire_now_relative_to_window_decides(now: datetime, fires: bool) -> None:
    assert should_fire(remind_at=DUE - timedelta(minutes=15), due_at=DUE, now=now) is fires
