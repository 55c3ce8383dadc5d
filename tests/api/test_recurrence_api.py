"""Recurring series through the HTTP API (SQLite and Postgres): recurrence_text, the RFC 5545 multi-line
form, skipping and moving one occurrence, and the occurrences preview."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

Auth = Callable[[str], dict[str, str]]
PROBLEM = "application/problem+json"


def create(client: TestClient, auth: Auth, user: str = "alice", **fields: object) -> dict[str, Any]:
    response = client.post(f"/api/{user}/tasks", json={"title": "Stand-up", **fields}, headers=auth(user))
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def occurrences(client: TestClient, auth: Auth, task_id: str, count: int, user: str = "alice") -> list[str]:
    response = client.get(f"/api/{user}/tasks/{task_id}/occurrences?count={count}", headers=auth(user))
    assert response.status_code == 200, response.text
    return [item["local"] for item in response.json()["occurrences"]]


def test_create_task_recurrence_text_shows_rrule_back(client: TestClient, auth: Auth) -> None:
    task = create(client, auth, recurrence_text="every weekday at 9", due_at="2030-01-07T00:00:00+01:00",
                  timezone="Europe/Berlin")  # fmt: skip
    assert task["recurrence"] == "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"
    assert task["due_at"] == "2030-01-07T08:00:00Z"  # 09:00 Berlin on the given day
    assert task["recurrence_basis"] == "due"
    assert task["series_start"] == "2030-01-07T09:00:00" and task["series_timezone"] == "Europe/Berlin"


def test_create_task_recurrence_text_every_bang_without_due_starts_next_instance(
    client: TestClient, auth: Auth
) -> None:
    task = create(client, auth, recurrence_text="every! 2nd monday at 10:30", timezone="America/New_York")
    assert task["recurrence"] == "FREQ=MONTHLY;BYDAY=2MO"
    assert task["recurrence_basis"] == "completion"
    assert task["due_at"] is not None
    [local] = occurrences(client, auth, task["id"], 1)
    assert local.endswith(("10:30:00-05:00", "10:30:00-04:00"))


def test_create_task_recurrence_text_not_understood_returns_422_naming_it(
    client: TestClient, auth: Auth
) -> None:
    response = client.post("/api/alice/tasks", json={"title": "t", "recurrence_text": "every full moon"},
                           headers=auth("alice"))  # fmt: skip
    assert response.status_code == 422
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.json()["errors"] == [
        {"field": "recurrence_text", "message": 'did not understand "full moon" in "every full moon"'}
    ]


def test_create_task_multiline_rrule_with_exdate_excludes_that_instance(
    client: TestClient, auth: Auth
) -> None:
    rule = "RRULE:FREQ=WEEKLY;BYDAY=MO\nEXDATE;TZID=Europe/Berlin:20300114T090000"
    task = create(client, auth, recurrence=rule, due_at="2030-01-07T09:00:00+01:00", timezone="Europe/Berlin")
    assert task["recurrence"] == "FREQ=WEEKLY;BYDAY=MO"
    assert task["exdates"] == ["2030-01-14T08:00:00Z"]
    assert occurrences(client, auth, task["id"], 3) == [
        "2030-01-07T09:00:00+01:00",
        "2030-01-21T09:00:00+01:00",
        "2030-01-28T09:00:00+01:00",
    ]


def test_create_task_unsupported_line_is_refused_by_name(client: TestClient, auth: Auth) -> None:
    response = client.post(
        "/api/alice/tasks",
        json={
            "title": "t",
            "due_at": "2030-01-07T09:00:00Z",
            "recurrence": "RRULE:FREQ=DAILY\nEXRULE:FREQ=WEEKLY",
        },
        headers=auth("alice"),
    )
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["field"] == "recurrence" and error["message"].startswith("EXRULE is not supported")
    assert "TZID" not in response.text


def test_skip_task_recurring_occurrence_creates_next_with_exdate(client: TestClient, auth: Auth) -> None:
    task = create(client, auth, recurrence="FREQ=DAILY;COUNT=3", due_at="2030-01-01T09:00:00Z")
    response = client.post(f"/api/alice/tasks/{task['id']}/skip", headers=auth("alice"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["skipped"]["exdates"] == ["2030-01-01T09:00:00Z"]
    nxt = body["next"]
    assert (nxt["due_at"], nxt["occurrence"], nxt["exdates"]) == (
        "2030-01-02T09:00:00Z",
        2,
        ["2030-01-01T09:00:00Z"],
    )
    assert response.headers["location"] == f"/api/alice/tasks/{nxt['id']}"
    assert client.get(f"/api/alice/tasks/{task['id']}", headers=auth("alice")).status_code == 404
    # The skip counted: of COUNT=3 only Jan 2 and Jan 3 are left.
    assert occurrences(client, auth, nxt["id"], 5) == [
        "2030-01-02T09:00:00Z",
        "2030-01-03T09:00:00Z",
    ]
    last = client.post(f"/api/alice/tasks/{nxt['id']}/skip", headers=auth("alice")).json()["next"]
    ended = client.post(f"/api/alice/tasks/{last['id']}/skip", headers=auth("alice"))
    assert ended.status_code == 200 and ended.json()["next"] is None


def test_skip_task_one_off_or_completed_returns_409(client: TestClient, auth: Auth) -> None:
    one_off = create(client, auth, due_at="2030-01-01T09:00:00Z")
    response = client.post(f"/api/alice/tasks/{one_off['id']}/skip", headers=auth("alice"))
    assert response.status_code == 409 and response.headers["content-type"].startswith(PROBLEM)
    other = client.post(f"/api/bob/tasks/{one_off['id']}/skip", headers=auth("bob"))
    assert other.status_code == 404


def test_patch_task_due_at_moves_one_occurrence_keeps_series(client: TestClient, auth: Auth) -> None:
    task = create(client, auth, recurrence="FREQ=WEEKLY;BYDAY=MO", due_at="2030-01-07T09:00:00+01:00",
                  timezone="Europe/Berlin")  # fmt: skip
    moved = client.patch(f"/api/alice/tasks/{task['id']}", json={"due_at": "2030-01-08T15:00:00+01:00"},
                         headers=auth("alice")).json()  # fmt: skip
    assert moved["due_at"] == "2030-01-08T14:00:00Z"
    assert moved["original_due_at"] == "2030-01-07T08:00:00Z"
    assert moved["series_start"] == "2030-01-07T09:00:00"
    assert occurrences(client, auth, task["id"], 2) == [
        "2030-01-08T15:00:00+01:00",
        "2030-01-14T09:00:00+01:00",
    ]
    url = f"/api/alice/tasks/{task['id']}?scope=series"
    series = client.patch(url, json={"due_at": "2030-01-08T10:00:00+01:00"}, headers=auth("alice")).json()
    assert series["series_start"] == "2030-01-08T10:00:00"


def test_patch_task_recurrence_text_replaces_rule(client: TestClient, auth: Auth) -> None:
    task = create(client, auth, recurrence="FREQ=DAILY", due_at="2030-01-07T09:00:00Z")
    phrase = {"recurrence_text": "every other week on tue and thu"}
    patched = client.patch(f"/api/alice/tasks/{task['id']}", json=phrase, headers=auth("alice"))
    assert patched.status_code == 200, patched.text
    assert patched.json()["recurrence"] == "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU,TH"


def test_task_occurrences_dst_gap_lists_local_and_utc(client: TestClient, auth: Auth) -> None:
    task = create(client, auth, recurrence="FREQ=DAILY", due_at="2030-03-09T02:30:00-05:00",
                  timezone="America/New_York")  # fmt: skip
    response = client.get(f"/api/alice/tasks/{task['id']}/occurrences?count=3", headers=auth("alice"))
    body = response.json()
    assert body["series_start"] == "2030-03-09T02:30:00"
    assert [(o["due_at"], o["local"]) for o in body["occurrences"]] == [
        ("2030-03-09T07:30:00Z", "2030-03-09T02:30:00-05:00"),
        ("2030-03-10T07:30:00Z", "2030-03-10T03:30:00-04:00"),
        ("2030-03-11T06:30:00Z", "2030-03-11T02:30:00-04:00"),
    ]


def test_task_occurrences_bounds_and_other_users_return_problems(client: TestClient, auth: Auth) -> None:
    task = create(client, auth, recurrence="FREQ=DAILY", due_at="2030-01-01T09:00:00Z")
    assert (
        client.get(f"/api/alice/tasks/{task['id']}/occurrences?count=101", headers=auth("alice")).status_code
        == 422
    )
    assert (
        client.get(f"/api/alice/tasks/{task['id']}/occurrences?count=0", headers=auth("alice")).status_code
        == 422
    )
    assert client.get(f"/api/bob/tasks/{task['id']}/occurrences", headers=auth("bob")).status_code == 404
    assert len(occurrences(client, auth, task["id"], 100)) == 100
