"""One Task shape: the event's TaskSnapshot, the API's TaskOut and TaskIn and the row mapping all follow
`tasktide.domain.tasks.Task`, and the API's schema states the limits the domain enforces."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, get_args

import pytest
from fastapi.testclient import TestClient

from tasktide.api.app import create_app
from tasktide.api.schemas import TaskIn, TaskOut
from tasktide.domain import tasks as domain
from tasktide.messaging import events
from tasktide.services import Services
from tasktide.settings import Settings
from tests.testenv import JWT_SECRET

Auth = Callable[[str], dict[str, str]]
TASK_FIELDS = [f.name for f in dataclasses.fields(domain.Task)]


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    services = Services.build(Settings(jwt_secret=JWT_SECRET, database_url="sqlite://"))
    try:
        schema: dict[str, Any] = create_app(services).openapi()["components"]["schemas"]
    finally:
        services.engine.dispose()
    return schema


def test_task_shape_snapshot_has_the_domain_task_fields_in_order() -> None:
    assert list(events.TaskSnapshot.model_fields) == TASK_FIELDS


def test_task_shape_out_is_the_snapshot_plus_completed() -> None:
    assert list(TaskOut.model_fields) == TASK_FIELDS
    assert list(TaskOut.model_computed_fields) == ["completed"]


def test_task_shape_in_takes_editable_and_input_only_fields_plus_completed() -> None:
    expected = {*domain.EDITABLE_FIELDS, *domain.INPUT_ONLY_FIELDS, "completed"}
    assert set(TaskIn.model_fields) == expected
    assert not set(domain.READ_ONLY_FIELDS) & expected


def test_task_shape_enum_names_are_the_domain_values() -> None:
    assert get_args(events.PriorityName) == tuple(p.value for p in domain.Priority)
    assert get_args(events.StatusName) == tuple(s.value for s in domain.Status)
    assert get_args(events.BasisName) == tuple(b.value for b in domain.RecurrenceBasis)


def test_task_shape_openapi_states_the_domain_limits(openapi: dict[str, Any]) -> None:
    props = openapi["TaskIn"]["properties"]
    assert props["title"]["maxLength"] == domain.TITLE_MAX == 200
    assert props["tags"]["maxItems"] == domain.TAGS_MAX == 20
    assert props["tags"]["items"]["maxLength"] == domain.TAG_MAX
    assert props["description"]["maxLength"] == domain.DESCRIPTION_MAX
    assert props["reminders"]["maxItems"] == domain.REMINDERS_MAX
    assert props["exdates"]["maxItems"] == props["rdates"]["maxItems"] == domain.DATES_MAX
    assert props["recurrence"]["anyOf"][0]["maxLength"] == domain.RECURRENCE_MAX
    assert props["recurrence_text"]["anyOf"][0]["maxLength"] == domain.RECURRENCE_TEXT_MAX
    assert {name for name in domain.READ_ONLY_FIELDS if "ignored" in props[name]["description"]} == set(
        domain.READ_ONLY_FIELDS
    )


def test_task_shape_openapi_out_requires_every_field(openapi: dict[str, Any]) -> None:
    assert openapi["TaskOut"]["required"] == [*TASK_FIELDS, "completed"]


def test_task_shape_event_round_trips_a_task_field_for_field() -> None:
    now = domain.parse_datetime("2030-01-07T09:00:00Z")
    task = domain.new_task(
        "u1",
        {"title": "t", "due_at": "2030-01-07T09:00:00Z", "recurrence": "FREQ=DAILY", "exdates": [
            "2030-01-08T09:00:00Z"]},
        now=now,
    )  # fmt: skip
    wire = events.TaskSnapshot.of(task).model_dump(mode="json")
    assert list(wire) == TASK_FIELDS
    assert wire["series_start"] == "2030-01-07T09:00:00" and wire["exdates"] == ["2030-01-08T09:00:00Z"]
    assert TaskOut.model_validate(wire).model_dump(mode="json") == {**wire, "completed": False}


def test_create_task_over_the_domain_limits_returns_422(client: TestClient, auth: Auth) -> None:
    for body in (
        {"title": "x" * (domain.TITLE_MAX + 1)},
        {"title": "t", "tags": [f"t{i}" for i in range(domain.TAGS_MAX + 1)]},
        {"title": "t", "due_at": "2030-01-01T09:00:00Z", "reminders": [f"PT{i}M" for i in range(1, 7)]},
    ):
        response = client.post("/api/alice/tasks", json=body, headers=auth("alice"))
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
    at_limits = {"title": "x" * domain.TITLE_MAX, "tags": [f"t{i}" for i in range(domain.TAGS_MAX)]}
    assert client.post("/api/alice/tasks", json=at_limits, headers=auth("alice")).status_code == 201
