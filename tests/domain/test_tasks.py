"""Task validation, revision (PUT / merge patch), completion and next occurrence of a series."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import pytest

from tasktide.domain.errors import Conflict, FieldError, ValidationFailed
from tasktide.domain.tasks import (
    PRIORITY_RANK,
    Priority,
    RecurrenceBasis,
    Status,
    Task,
    changed_fields,
    merge_patch,
    new_task,
    next_occurrence_task,
    occurrence_id,
    revise_task,
    set_completed,
    skip_occurrence,
    task_fields,
    upcoming_due,
)

NOW = datetime(2025, 1, 1, 12, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)
TASK_ID = UUID("00000000-0000-4000-8000-000000000001")

FULL_FIELDS: dict[str, object] = {
    "title": "  Water the plants  ",
    "description": "balcony first",
    "priority": "high",
    "tags": [" Home ", "garden", "HOME", "Plants"],
    "due_at": "2025-01-06T09:00:00+01:00",
    "timezone": "Europe/Berlin",
    "recurrence": "freq=weekly;byday=mo",
    "recurrence_basis": "completion",
    "reminders": ["pt15m", "P1D"],
}


def make(fields: dict[str, object] | None = None) -> Task:
    return new_task(
        "user-1", fields if fields is not None else {"title": "Pay rent"}, now=NOW, task_id=TASK_ID
    )


def errors_of(fields: dict[str, object]) -> tuple[FieldError, ...]:
    with pytest.raises(ValidationFailed) as caught:
        make(fields)
    return caught.value.errors


# --- new_task ---------------------------------------------------------------------------------------


def test_new_task_title_only_takes_defaults() -> None:
    task = make()
    assert task == Task(
        id=TASK_ID,
        user_id="user-1",
        title="Pay rent",
        created_at=NOW,
        updated_at=NOW,
    )
    assert task.series_id == TASK_ID
    assert (task.version, task.occurrence, task.status, task.priority) == (
        1,
        1,
        Status.PENDING,
        Priority.NONE,
    )
    assert (task.timezone, task.recurrence_basis, task.completed_at) == ("UTC", RecurrenceBasis.DUE, None)


def test_new_task_full_fields_are_normalised() -> None:
    task = make(FULL_FIELDS)
    assert task.title == "Water the plants"
    assert task.tags == ("home", "garden", "plants")
    assert task.due_at == datetime(2025, 1, 6, 8, tzinfo=UTC)
    assert task.due_at.tzinfo is UTC
    assert task.recurrence == "FREQ=WEEKLY;BYDAY=MO"
    assert task.recurrence_basis is RecurrenceBasis.COMPLETION
    assert task.reminders == ("PT15M", "P1D")
    assert task.priority is Priority.HIGH


def test_new_task_without_id_generates_one() -> None:
    task = new_task("user-1", {"title": "x"}, now=NOW)
    assert isinstance(task.id, UUID)
    assert task.series_id == task.id


def test_new_task_completed_status_sets_completed_at() -> None:
    task = make({"title": "done already", "status": "completed"})
    assert task.status is Status.COMPLETED
    assert task.completed_at == NOW


def test_new_task_z_suffix_due_at_parses_as_utc() -> None:
    assert make({"title": "t", "due_at": "2025-03-01T09:00:00Z"}).due_at == datetime(
        2025, 3, 1, 9, tzinfo=UTC
    )


def test_new_task_read_only_keys_are_ignored() -> None:
    task = make({"title": "t", "id": str(uuid4()), "version": 7, "user_id": "mallory", "created_at": "x"})
    assert (task.id, task.version, task.user_id, task.created_at) == (TASK_ID, 1, "user-1", NOW)


def test_new_task_null_optional_fields_take_defaults() -> None:
    task = make({"title": "t", "description": None, "tags": None, "due_at": None, "priority": None})
    assert (task.description, task.tags, task.due_at, task.priority) == ("", (), None, Priority.NONE)


def test_new_task_tag_and_title_limits_at_boundary_are_accepted() -> None:
    task = make(
        {"title": "x" * 200, "tags": [f"t{i}" for i in range(19)] + ["y" * 40], "description": "d" * 4000}
    )
    assert len(task.title) == 200
    assert len(task.description) == 4000
    assert task.tags[-1] == "y" * 40


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": 5}, "title"),
        ({"title": "t", "description": "d" * 4001}, "description"),
        ({"title": "t", "priority": "urgent"}, "priority"),
        ({"title": "t", "priority": 1}, "priority"),
        ({"title": "t", "status": "done"}, "status"),
        ({"title": "t", "tags": "home"}, "tags"),
        ({"title": "t", "tags": ["ok", 3]}, "tags"),
        ({"title": "t", "tags": ["  "]}, "tags"),
        ({"title": "t", "tags": ["x" * 41]}, "tags"),
        ({"title": "t", "tags": [f"t{i}" for i in range(21)]}, "tags"),
        ({"title": "t", "due_at": "2025-01-06T09:00:00"}, "due_at"),
        ({"title": "t", "due_at": "2025-01-06"}, "due_at"),
        ({"title": "t", "due_at": "tomorrow"}, "due_at"),
        ({"title": "t", "due_at": 1736150400}, "due_at"),
        ({"title": "t", "timezone": "Mars/Olympus"}, "timezone"),
        ({"title": "t", "timezone": "../etc/passwd"}, "timezone"),
        ({"title": "t", "timezone": ""}, "timezone"),
        ({"title": "t", "due_at": "2025-01-06T09:00:00Z", "recurrence": "FREQ=DAILY;BYHOUR=9"}, "recurrence"),
        ({"title": "t", "due_at": "2025-01-06T09:00:00Z", "recurrence": 7}, "recurrence"),
        ({"title": "t", "recurrence": "FREQ=DAILY"}, "recurrence"),
        ({"title": "t", "recurrence_basis": "whenever"}, "recurrence_basis"),
        ({"title": "t", "due_at": "2025-01-06T09:00:00Z", "reminders": ["15 minutes"]}, "reminders"),
        ({"title": "t", "due_at": "2025-01-06T09:00:00Z", "reminders": ["PT60M", "PT1H"]}, "reminders"),
        (
            {"title": "t", "due_at": "2025-01-06T09:00:00Z", "reminders": [f"PT{i}M" for i in range(1, 7)]},
            "reminders",
        ),
        ({"title": "t", "reminders": ["PT15M"]}, "reminders"),
        ({"title": "t", "colour": "red"}, "colour"),
    ],
)
def test_new_task_bad_field_error_names_it(fields: dict[str, object], field: str) -> None:
    assert [error.field for error in errors_of(fields)] == [field]


def test_new_task_several_bad_fields_all_listed() -> None:
    errors = errors_of(
        {
            "title": "",
            "priority": "urgent",
            "tags": ["x" * 41],
            "due_at": "2025-01-06T09:00:00",
            "timezone": "Nowhere/City",
            "reminders": ["soon"],
            "unknown": 1,
        }
    )
    assert {error.field for error in errors} == {
        "unknown",
        "title",
        "priority",
        "tags",
        "due_at",
        "timezone",
        "reminders",
    }


def test_new_task_naive_due_at_message_asks_for_offset() -> None:
    (error,) = errors_of({"title": "t", "due_at": "2025-01-06T09:00:00"})
    assert error == FieldError("due_at", "must include a UTC offset (e.g. Z or +01:00)")


def test_new_task_unknown_field_message() -> None:
    assert errors_of({"title": "t", "colour": "red"}) == (FieldError("colour", "unknown field"),)


def test_new_task_recurrence_without_due_at_message() -> None:
    assert errors_of({"title": "t", "recurrence": "FREQ=DAILY"}) == (
        FieldError("recurrence", "requires due_at"),
    )


def test_validation_failed_detail_joins_all_errors() -> None:
    with pytest.raises(ValidationFailed) as caught:
        make({"title": "", "priority": "urgent"})
    assert caught.value.detail == (
        "title: must be 1-200 characters after trimming; priority: must be one of high, medium, low, none"
    )


def test_new_task_naive_now_raises_value_error() -> None:
    with pytest.raises(ValueError, match="aware"):
        new_task("user-1", {"title": "t"}, now=datetime(2025, 1, 1))


# --- revise_task / merge_patch / task_fields -------------------------------------------------------------


def test_revise_task_full_replacement_bumps_version_and_resets_missing_fields() -> None:
    task = make(FULL_FIELDS)
    revised = revise_task(task, {"title": "New title"}, now=LATER)
    assert (revised.title, revised.version, revised.updated_at, revised.created_at) == (
        "New title",
        2,
        LATER,
        NOW,
    )
    assert (revised.tags, revised.due_at, revised.recurrence, revised.reminders) == ((), None, None, ())
    assert (revised.id, revised.series_id, revised.user_id) == (task.id, task.series_id, task.user_id)


def test_revise_task_to_completed_sets_completed_at() -> None:
    revised = revise_task(make(), {"title": "Pay rent", "status": "completed"}, now=LATER)
    assert (revised.status, revised.completed_at) == (Status.COMPLETED, LATER)


def test_revise_task_back_to_pending_clears_completed_at() -> None:
    done = make({"title": "t", "status": "completed"})
    revised = revise_task(done, {"title": "t", "status": "pending"}, now=LATER)
    assert (revised.status, revised.completed_at) == (Status.PENDING, None)


def test_revise_task_staying_completed_keeps_completed_at() -> None:
    done = make({"title": "t", "status": "completed"})
    revised = revise_task(done, {"title": "t2", "status": "completed"}, now=LATER)
    assert revised.completed_at == NOW


def test_revise_task_unknown_field_raises() -> None:
    with pytest.raises(ValidationFailed) as caught:
        revise_task(make(), {"title": "t", "bogus": True}, now=LATER)
    assert caught.value.errors == (FieldError("bogus", "unknown field"),)


def test_task_fields_round_trip_through_revise_changes_nothing_but_version() -> None:
    task = make(FULL_FIELDS)
    revised = revise_task(task, task_fields(task), now=LATER)
    assert changed_fields(task, revised) == ()
    assert revised.version == task.version + 1


def test_task_fields_json_ish_values() -> None:
    fields = task_fields(make(FULL_FIELDS))
    assert fields == {
        "title": "Water the plants",
        "description": "balcony first",
        "priority": "high",
        "tags": ["home", "garden", "plants"],
        "status": "pending",
        "due_at": "2025-01-06T08:00:00Z",
        "timezone": "Europe/Berlin",
        "recurrence": "FREQ=WEEKLY;BYDAY=MO",
        "recurrence_basis": "completion",
        "reminders": ["PT15M", "P1D"],
        "exdates": [],
        "rdates": [],
    }


def test_merge_patch_then_revise_changes_only_patched_fields() -> None:
    task = make(FULL_FIELDS)
    revised = revise_task(
        task, merge_patch(task_fields(task), {"title": "Water", "reminders": None}), now=LATER
    )
    assert changed_fields(task, revised) == ("title", "reminders")
    assert (revised.title, revised.reminders, revised.tags) == ("Water", (), task.tags)


@pytest.mark.parametrize(
    ("current", "patch", "expected"),
    [  # RFC 7396 appendix A
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ({"a": "foo"}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_rfc7396_vector_matches(
    current: dict[str, object], patch: dict[str, object], expected: dict[str, object]
) -> None:
    assert merge_patch(current, patch) == expected


def test_merge_patch_leaves_inputs_unchanged() -> None:
    current: dict[str, object] = {"a": {"b": 1}}
    merge_patch(current, {"a": {"b": None}})
    assert current == {"a": {"b": 1}}


# --- set_completed / changed_fields ---------------------------------------------------------------------


def test_set_completed_unchanged_returns_same_object() -> None:
    task = make()
    assert set_completed(task, False, now=LATER) is task


def test_set_completed_true_then_false_toggles_completed_at() -> None:
    done = set_completed(make(), True, now=LATER)
    assert (done.status, done.completed_at, done.version, done.updated_at) == (
        Status.COMPLETED,
        LATER,
        2,
        LATER,
    )
    reopened = set_completed(done, False, now=LATER + timedelta(minutes=1))
    assert (reopened.status, reopened.completed_at, reopened.version) == (Status.PENDING, None, 3)


def test_changed_fields_completion_lists_status_and_completed_at() -> None:
    task = make()
    assert changed_fields(task, set_completed(task, True, now=LATER)) == ("status", "completed_at")


def test_priority_rank_sorts_high_first() -> None:
    ordered = sorted(
        [Priority.NONE, Priority.LOW, Priority.HIGH, Priority.MEDIUM], key=PRIORITY_RANK.__getitem__
    )
    assert ordered == [Priority.HIGH, Priority.MEDIUM, Priority.LOW, Priority.NONE]


# --- next_occurrence_task ----------------------------------------------------------------------------------


def test_next_occurrence_task_recurring_copies_series_with_new_due() -> None:
    task = make({**FULL_FIELDS, "recurrence_basis": "due"})
    new_id = uuid4()
    following = next_occurrence_task(task, completed_at=LATER, new_id=new_id, now=LATER)
    assert following is not None
    assert (following.id, following.series_id, following.occurrence) == (new_id, task.id, 2)
    assert following.due_at == datetime(2025, 1, 13, 8, tzinfo=UTC)  # next Monday 09:00 Berlin
    assert (following.status, following.completed_at, following.version) == (Status.PENDING, None, 1)
    assert (following.created_at, following.updated_at) == (LATER, LATER)
    for name in ("user_id", "title", "description", "priority", "tags", "reminders", "timezone"):
        assert getattr(following, name) == getattr(task, name)
    assert (following.recurrence, following.recurrence_basis) == (task.recurrence, task.recurrence_basis)


def test_next_occurrence_task_completion_basis_counts_from_completion() -> None:
    task = make({"title": "t", "due_at": "2025-01-06T09:00:00Z", "recurrence": "FREQ=DAILY",
                 "recurrence_basis": "completion"})  # fmt: skip
    following = next_occurrence_task(
        task, completed_at=datetime(2025, 1, 8, 15, tzinfo=UTC), new_id=uuid4(), now=LATER
    )
    assert following is not None
    assert following.due_at == datetime(2025, 1, 9, 9, tzinfo=UTC)


def test_next_occurrence_task_third_of_three_returns_none() -> None:
    first = make({"title": "t", "due_at": "2025-01-06T09:00:00Z", "recurrence": "FREQ=DAILY;COUNT=3"})
    second = next_occurrence_task(first, completed_at=LATER, new_id=uuid4(), now=LATER)
    assert second is not None
    third = next_occurrence_task(second, completed_at=LATER, new_id=uuid4(), now=LATER)
    assert third is not None
    assert (third.occurrence, third.series_id) == (3, first.id)
    assert next_occurrence_task(third, completed_at=LATER, new_id=uuid4(), now=LATER) is None


def test_next_occurrence_task_without_recurrence_returns_none() -> None:
    task = make({"title": "t", "due_at": "2025-01-06T09:00:00Z"})
    assert next_occurrence_task(task, completed_at=LATER, new_id=uuid4(), now=LATER) is None


# --- series anchored to their start (issue 13) ----------------------------------------------------------

NEW_YORK = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")


def _chain(first: Task, steps: int, *, done_after: timedelta = timedelta(hours=1)) -> list[Task]:
    """``first`` and the occurrences that completing each one ``done_after`` its due time creates."""
    series = [first]
    for _ in range(steps):
        current = series[-1]
        assert current.due_at is not None
        done = current.due_at + done_after
        following = next_occurrence_task(
            set_completed(current, True, now=done), completed_at=done, new_id=uuid4(), now=done
        )
        if following is None:
            break
        series.append(following)
    return series


def _walls(series: list[Task], zone: ZoneInfo) -> list[str]:
    return [t.due_at.astimezone(zone).strftime("%m-%d %H:%M%z") for t in series if t.due_at is not None]


@pytest.mark.parametrize("basis", ["due", "completion"])
def test_next_occurrence_task_new_york_dst_gap_shifts_one_instance_only(basis: str) -> None:
    first = make({"title": "t", "due_at": "2030-03-09T02:30:00-05:00", "timezone": "America/New_York",
                  "recurrence": "FREQ=DAILY", "recurrence_basis": basis})  # fmt: skip
    assert first.series_start == datetime(2030, 3, 9, 2, 30)
    assert first.series_timezone == "America/New_York"
    # 02:30 does not exist on 03-10: it takes the offset from before the gap (03:30 EDT), that day only.
    assert _walls(_chain(first, 3), NEW_YORK) == [
        "03-09 02:30-0500",
        "03-10 03:30-0400",
        "03-11 02:30-0400",
        "03-12 02:30-0400",
    ]


@pytest.mark.parametrize("basis", ["due", "completion"])
def test_next_occurrence_task_lord_howe_half_hour_gap_shifts_one_instance_only(basis: str) -> None:
    first = make({"title": "t", "due_at": "2030-10-05T02:15:00+10:30", "timezone": "Australia/Lord_Howe",
                  "recurrence": "FREQ=DAILY", "recurrence_basis": basis})  # fmt: skip
    assert _walls(_chain(first, 3), LORD_HOWE) == [
        "10-05 02:15+1030",
        "10-06 02:45+1100",
        "10-07 02:15+1100",
        "10-08 02:15+1100",
    ]


def test_next_occurrence_task_ambiguous_wall_time_takes_first_occurrence() -> None:
    # 01:30 happens twice in New York on 2030-11-03; the series means the first (EDT, -04:00).
    first = make({"title": "t", "due_at": "2030-11-02T01:30:00-04:00", "timezone": "America/New_York",
                  "recurrence": "FREQ=DAILY"})  # fmt: skip
    assert _walls(_chain(first, 2), NEW_YORK) == ["11-02 01:30-0400", "11-03 01:30-0400", "11-04 01:30-0500"]


def test_next_occurrence_task_count_after_missed_periods_counts_rule_instances() -> None:
    first = make({"title": "t", "due_at": "2030-01-01T09:00:00Z", "recurrence": "FREQ=DAILY;COUNT=5"})
    late = datetime(2030, 1, 3, 12, tzinfo=UTC)
    second = next_occurrence_task(
        set_completed(first, True, now=late), completed_at=late, new_id=uuid4(), now=late
    )
    assert second is not None and second.due_at == datetime(2030, 1, 4, 9, tzinfo=UTC)
    rest = _chain(second, 5, done_after=timedelta(minutes=5))
    # Jan 1-5 are the rule's instances: Jan 2 and 3 were missed but still count, so Jan 5 is the last.
    assert [t.due_at for t in rest] == [
        datetime(2030, 1, 4, 9, tzinfo=UTC),
        datetime(2030, 1, 5, 9, tzinfo=UTC),
    ]
    assert [t.occurrence for t in rest] == [2, 3]


def test_next_occurrence_task_until_counts_from_series_start() -> None:
    first = make(
        {"title": "t", "due_at": "2030-01-01T09:00:00Z", "recurrence": "FREQ=DAILY;UNTIL=20300103T090000Z"}
    )
    assert [t.due_at.day for t in _chain(first, 5) if t.due_at] == [1, 2, 3]


def test_next_occurrence_task_rescheduled_occurrence_keeps_the_rule() -> None:
    first = make({"title": "t", "due_at": "2030-01-07T09:00:00+01:00", "timezone": "Europe/Berlin",
                  "recurrence": "FREQ=WEEKLY;BYDAY=MO"})  # fmt: skip
    # Move this Monday's occurrence to Tuesday 15:00 and do it then: next is still Monday 09:00.
    moved = revise_task(first, {**task_fields(first), "due_at": "2030-01-08T15:00:00+01:00"}, now=NOW)
    assert moved.original_due_at == first.due_at and moved.series_start == first.series_start
    done = datetime(2030, 1, 8, 14, 30, tzinfo=UTC)
    following = next_occurrence_task(moved, completed_at=done, new_id=uuid4(), now=done)
    assert following is not None
    assert following.due_at == datetime(2030, 1, 14, 8, tzinfo=UTC)
    assert following.original_due_at == following.due_at


def test_next_occurrence_task_rescheduled_earlier_does_not_repeat_its_instance() -> None:
    first = make({"title": "t", "due_at": "2030-01-04T09:00:00Z", "recurrence": "FREQ=DAILY"})
    moved = revise_task(first, {**task_fields(first), "due_at": "2030-01-03T15:00:00Z"}, now=NOW)
    done = datetime(2030, 1, 3, 16, tzinfo=UTC)
    following = next_occurrence_task(moved, completed_at=done, new_id=uuid4(), now=done)
    assert following is not None and following.due_at == datetime(2030, 1, 5, 9, tzinfo=UTC)


def test_revise_task_changed_rule_re_anchors_series_at_due() -> None:
    first = make({"title": "t", "due_at": "2030-01-07T09:00:00Z", "recurrence": "FREQ=DAILY"})
    changed = revise_task(
        first, {**task_fields(first), "due_at": "2030-01-09T10:00:00Z", "recurrence": "FREQ=WEEKLY"}, now=NOW
    )
    assert changed.series_start == datetime(2030, 1, 9, 10)
    assert changed.original_due_at == datetime(2030, 1, 9, 10, tzinfo=UTC)
    one_off = revise_task(changed, {**task_fields(changed), "recurrence": None}, now=NOW)
    assert (one_off.series_start, one_off.series_timezone, one_off.original_due_at) == (None, None, None)


def test_next_occurrence_task_legacy_row_without_start_uses_its_due() -> None:
    legacy = replace(
        make({"title": "t", "due_at": "2030-01-07T09:00:00Z", "recurrence": "FREQ=DAILY"}),
        series_start=None,
        series_timezone=None,
        original_due_at=None,
    )
    following = next_occurrence_task(legacy, completed_at=LATER, new_id=uuid4(), now=LATER)
    assert following is not None and following.due_at == datetime(2030, 1, 8, 9, tzinfo=UTC)
    assert following.series_start == datetime(2030, 1, 7, 9)  # anchored from now on


def test_occurrence_id_same_series_and_number_is_stable() -> None:
    series = UUID("00000000-0000-4000-8000-00000000000a")
    assert occurrence_id(series, 2) == occurrence_id(series, 2) != occurrence_id(series, 3)


def test_skip_occurrence_pending_adds_exdate_and_returns_next() -> None:
    first = make({"title": "t", "due_at": "2030-01-07T09:00:00Z", "recurrence": "FREQ=WEEKLY;BYDAY=MO"})
    skipped, following = skip_occurrence(first, now=NOW)
    assert skipped.exdates == (datetime(2030, 1, 7, 9, tzinfo=UTC),)
    assert following is not None
    assert (following.due_at, following.occurrence) == (datetime(2030, 1, 14, 9, tzinfo=UTC), 2)
    assert following.id == occurrence_id(first.series_id, 2)
    assert following.exdates == skipped.exdates


def test_skip_occurrence_one_off_or_completed_raises_conflict() -> None:
    with pytest.raises(Conflict):
        skip_occurrence(make({"title": "t", "due_at": "2030-01-07T09:00:00Z"}), now=NOW)
    done = set_completed(make({"title": "t", "due_at": "2030-01-07T09:00:00Z", "recurrence": "FREQ=DAILY"}),
                         True, now=NOW)  # fmt: skip
    with pytest.raises(Conflict):
        skip_occurrence(done, now=NOW)


def test_upcoming_due_completion_basis_assumes_done_on_time() -> None:
    task = make({"title": "t", "due_at": "2030-01-01T09:00:00Z", "recurrence": "FREQ=DAILY;COUNT=3",
                 "recurrence_basis": "completion"})  # fmt: skip
    assert [d.day for d in upcoming_due(task, 10)] == [1, 2, 3]


def test_new_task_recurrence_text_every_bang_sets_completion_basis() -> None:
    task = make({"title": "t", "due_at": "2030-01-07T00:00:00Z", "recurrence_text": "every! 3 days at 8"})
    assert (task.recurrence, task.recurrence_basis) == ("FREQ=DAILY;INTERVAL=3", RecurrenceBasis.COMPLETION)
    assert task.due_at == datetime(2030, 1, 7, 8, tzinfo=UTC)


def test_new_task_recurrence_and_recurrence_text_both_given_is_an_error() -> None:
    errors = errors_of({"title": "t", "due_at": "2030-01-07T00:00:00Z", "recurrence": "FREQ=DAILY",
                        "recurrence_text": "every day"})  # fmt: skip
    assert [e.field for e in errors] == ["recurrence_text"]
