"""Task API against a real database (SQLite and Postgres): CRUD, list queries, ETags and every error path."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tasktide.db.engine import make_engine
from tasktide.services import Services

Auth = Callable[[str], dict[str, str]]
PROBLEM = "application/problem+json"


def create(client: TestClient, auth: Auth, user: str = "alice", **fields: object) -> dict[str, object]:
    body = {"title": "Write report", **fields}
    response = client.post(f"/api/{user}/tasks", json=body, headers=auth(user))
    assert response.status_code == 201, response.text
    result: dict[str, object] = response.json()
    return result


def test_create_task_behind_root_path_location_matches_url_for(services: Services, auth: Auth) -> None:
    from tasktide.api.app import create_app

    with TestClient(create_app(services), root_path="/edge") as client:
        response = client.post("/api/alice/tasks", json={"title": "Behind a proxy"}, headers=auth("alice"))
        assert response.status_code == 201, response.text
        task_id = response.json()["id"]
        assert response.headers["location"] == f"/edge/api/alice/tasks/{task_id}"
        path = response.headers["location"].removeprefix("/edge")
        assert client.get(path, headers=auth("alice")).is_success


def test_create_task_valid_body_returns_201_with_location_and_etag(client: TestClient, auth: Auth) -> None:
    response = client.post(
        "/api/alice/tasks",
        json={
            "title": "  Pay rent  ",
            "priority": "high",
            "tags": ["Home", "money", "home"],
            "due_at": "2030-01-31T09:00:00+01:00",
        },
        headers=auth("alice"),
    )
    assert response.status_code == 201
    task = response.json()
    assert response.headers["location"] == f"/api/alice/tasks/{task['id']}"
    assert response.headers["etag"] == '"1"'
    assert task["title"] == "Pay rent"
    assert task["tags"] == ["home", "money"]
    assert task["due_at"].startswith("2030-01-31T08:00:00")
    assert task["status"] == "pending" and task["completed"] is False
    assert task["series_id"] == task["id"] and task["occurrence"] == 1


def test_get_task_other_users_task_returns_404(client: TestClient, auth: Auth) -> None:
    task = create(client, auth, "alice")
    response = client.get(f"/api/bob/tasks/{task['id']}", headers=auth("bob"))
    assert response.status_code == 404
    assert response.headers["content-type"].startswith(PROBLEM)


def test_auth_missing_token_returns_401_and_other_user_403(client: TestClient, auth: Auth) -> None:
    missing = client.get("/api/alice/tasks")
    assert missing.status_code == 401 and missing.headers["content-type"].startswith(PROBLEM)
    assert "Bearer" in missing.json()["detail"]
    invalid = client.get("/api/alice/tasks", headers={"Authorization": "Bearer not-a-jwt"})
    assert invalid.status_code == 401
    other = client.get("/api/alice/tasks", headers=auth("bob"))
    assert other.status_code == 403


def test_create_task_invalid_fields_lists_every_field(client: TestClient, auth: Auth) -> None:
    response = client.post(
        "/api/alice/tasks",
        json={
            "title": "   ",
            "recurrence": "FREQ=DAILY;BYHOUR=9",
            "reminders": ["PT15M"],
            "timezone": "Mars/Base",
        },
        headers=auth("alice"),
    )
    assert response.status_code == 422
    assert response.headers["content-type"].startswith(PROBLEM)
    fields = {e["field"] for e in response.json()["errors"]}
    assert {"title", "recurrence", "timezone"} <= fields


def test_create_task_unknown_field_and_wrong_types_return_422(client: TestClient, auth: Auth) -> None:
    for body in ({"title": "x", "colour": "red"}, {"title": 5}, {"title": "x", "priority": "urgent"}, []):
        response = client.post("/api/alice/tasks", json=body, headers=auth("alice"))
        assert response.status_code == 422, body
        assert response.json()["errors"]


def test_create_task_naive_due_at_returns_422(client: TestClient, auth: Auth) -> None:
    response = client.post(
        "/api/alice/tasks", json={"title": "x", "due_at": "2030-01-01T09:00:00"}, headers=auth("alice")
    )
    assert response.status_code == 422
    assert any(e["field"] == "due_at" for e in response.json()["errors"])


def test_create_task_oversized_body_returns_413(client: TestClient, auth: Auth) -> None:
    response = client.post(
        "/api/alice/tasks",
        content=b'{"title": "' + b"x" * 70_000 + b'"}',
        headers={**auth("alice"), "content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.headers["content-type"].startswith(PROBLEM)


def test_create_task_malformed_json_returns_400(client: TestClient, auth: Auth) -> None:
    response = client.post(
        "/api/alice/tasks",
        content=b"{not json",
        headers={**auth("alice"), "content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith(PROBLEM)


def test_patch_task_merge_patch_updates_fields_and_version(client: TestClient, auth: Auth) -> None:
    task = create(client, auth, description="old", tags=["a"])
    response = client.patch(
        f"/api/alice/tasks/{task['id']}",
        json={"description": None, "tags": ["b"], "priority": "low"},
        headers={**auth("alice"), "content-type": "application/merge-patch+json"},
    )
    assert response.status_code == 200, response.text
    patched = response.json()
    assert patched["description"] == "" and patched["tags"] == ["b"] and patched["priority"] == "low"
    assert patched["version"] == 2 and response.headers["etag"] == '"2"'


def test_patch_task_stale_if_match_returns_412(client: TestClient, auth: Auth) -> None:
    task = create(client, auth)
    url = f"/api/alice/tasks/{task['id']}"
    ok = client.patch(url, json={"title": "v2"}, headers={**auth("alice"), "If-Match": '"1"'})
    assert ok.status_code == 200
    stale = client.patch(url, json={"title": "v3"}, headers={**auth("alice"), "If-Match": '"1"'})
    assert stale.status_code == 412
    assert client.get(url, headers=auth("alice")).json()["title"] == "v2"


def test_put_task_replaces_all_fields(client: TestClient, auth: Auth) -> None:
    task = create(client, auth, description="keep?", priority="high")
    response = client.put(f"/api/alice/tasks/{task['id']}", json={"title": "Replaced"}, headers=auth("alice"))
    assert response.status_code == 200
    assert response.json()["description"] == "" and response.json()["priority"] == "none"


def test_complete_task_toggles_and_accepts_body(client: TestClient, auth: Auth) -> None:
    task = create(client, auth)
    url = f"/api/alice/tasks/{task['id']}/complete"
    first = client.patch(url, headers=auth("alice")).json()
    assert first["status"] == "completed" and first["completed_at"] is not None
    second = client.patch(url, headers=auth("alice")).json()
    assert second["status"] == "pending" and second["completed_at"] is None
    explicit = client.patch(url, json={"completed": True}, headers=auth("alice")).json()
    assert explicit["completed"] is True
    again = client.patch(url, json={"completed": True}, headers=auth("alice")).json()
    assert again["version"] == explicit["version"]


def test_delete_task_then_get_returns_404(client: TestClient, auth: Auth) -> None:
    task = create(client, auth)
    url = f"/api/alice/tasks/{task['id']}"
    assert client.delete(url, headers=auth("alice")).status_code == 204
    assert client.get(url, headers=auth("alice")).status_code == 404
    assert client.delete(url, headers=auth("alice")).status_code == 404


def test_list_tasks_filters_by_status_priority_tags_and_search(client: TestClient, auth: Auth) -> None:
    create(client, auth, title="Buy milk", priority="low", tags=["home", "shop"])
    create(client, auth, title="Ship release", description="Tag v1 and SHIP", priority="high", tags=["work"])
    done = create(client, auth, title="Old chore", tags=["home"])
    client.patch(f"/api/alice/tasks/{done['id']}/complete", headers=auth("alice"))
    create(client, auth, "bob", title="Bob's milk")

    def titles(query: str) -> list[str]:
        response = client.get(f"/api/alice/tasks?{query}", headers=auth("alice"))
        assert response.status_code == 200, response.text
        return sorted(t["title"] for t in response.json())

    assert titles("") == ["Buy milk", "Old chore", "Ship release"]
    assert titles("status=pending") == ["Buy milk", "Ship release"]
    assert titles("status=completed") == ["Old chore"]
    assert titles("priority=high&priority=low") == ["Buy milk", "Ship release"]
    assert titles("tag=home") == ["Buy milk", "Old chore"]
    assert titles("tag=home&tag=shop") == ["Buy milk"]
    assert titles("q=MILK") == ["Buy milk"]
    assert titles("q=ship") == ["Ship release"]
    assert titles("q=100%25") == []


def test_list_tasks_due_range_overdue_and_sort(client: TestClient, auth: Auth) -> None:
    create(client, auth, title="past", due_at="2020-01-01T00:00:00Z", priority="medium")
    create(client, auth, title="future", due_at="2099-01-01T00:00:00Z", priority="high")
    create(client, auth, title="undated", priority="low")

    def titles(query: str) -> list[str]:
        response = client.get(f"/api/alice/tasks?{query}", headers=auth("alice"))
        assert response.status_code == 200, response.text
        return [t["title"] for t in response.json()]

    assert titles("overdue=true") == ["past"]
    assert titles("due_from=2021-01-01T00:00:00Z") == ["future"]
    assert titles("due_to=2021-01-01T00:00:00Z") == ["past"]
    assert titles("sort=due_at") == ["past", "future", "undated"]
    assert titles("sort=-due_at") == ["future", "past", "undated"]
    assert titles("sort=priority") == ["undated", "past", "future"]
    assert titles("sort=-priority") == ["future", "past", "undated"]
    assert titles("sort=title") == ["future", "past", "undated"]


def test_list_tasks_pagination_follows_link_header(client: TestClient, auth: Auth) -> None:
    for i in range(5):
        create(client, auth, title=f"t{i}")
    seen: list[str] = []
    url: str | None = "/api/alice/tasks?limit=2&sort=title"
    pages = 0
    while url:
        response = client.get(url, headers=auth("alice"))
        assert response.status_code == 200
        seen += [t["title"] for t in response.json()]
        link = response.headers.get("link")
        url = link.split(";")[0].strip("<>") if link else None
        pages += 1
    assert seen == ["t0", "t1", "t2", "t3", "t4"] and pages == 3


def test_list_tasks_bad_query_values_return_problem(client: TestClient, auth: Auth) -> None:
    for query, status in (
        ("limit=0", 422),
        ("limit=201", 422),
        ("sort=colour", 422),
        ("status=maybe", 422),
        ("cursor=%%%", 400),
        ("due_from=2020-01-01T00:00:00", 422),
        ("due_from=yesterday", 422),
    ):
        response = client.get(f"/api/alice/tasks?{query}", headers=auth("alice"))
        assert response.status_code == status, query
        assert response.headers["content-type"].startswith(PROBLEM)


def test_health_endpoints_report_ok(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    assert "tasktide_requests_total" in client.get("/metrics").text


def test_readyz_database_unreachable_returns_503_problem(
    client: TestClient, services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "engine", make_engine(f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}"))
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"].startswith(PROBLEM)
    assert "OperationalError" in response.json()["detail"]


def test_create_task_nul_characters_return_422_not_500(client: TestClient, auth: Auth) -> None:
    response = client.post(
        "/api/alice/tasks", json={"title": "a\u0000b", "tags": ["x\u0000"]}, headers=auth("alice")
    )
    assert response.status_code == 422
    assert {e["field"] for e in response.json()["errors"]} == {"title", "tags"}


def test_list_tasks_nul_in_query_returns_400(client: TestClient, auth: Auth) -> None:
    response = client.get("/api/alice/tasks?q=a%00b", headers=auth("alice"))
    assert response.status_code == 400
    assert "NUL" in response.json()["detail"]


def test_api_metrics_count_api_routes_only(client: TestClient, auth: Auth) -> None:
    from tasktide.observability import metrics

    def api_requests(code: str) -> float:
        value = metrics.REGISTRY.get_sample_value(
            "tasktide_requests_total", {"function": "api", "code": code}
        )
        return value or 0.0

    before = api_requests("201")
    create(client, auth)
    assert api_requests("201") == before + 1
    before_404 = api_requests("404")
    client.post("/services/tasktide-audit", content=b"{}")
    assert api_requests("404") == before_404


def test_extreme_dates_and_cursors_return_problems_not_500(client: TestClient, auth: Auth) -> None:
    for due in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-05:00"):
        response = client.post("/api/alice/tasks", json={"title": "x", "due_at": due}, headers=auth("alice"))
        assert response.status_code == 422, due
        assert response.json()["errors"][0]["field"] == "due_at"
    huge = base64.urlsafe_b64encode(json.dumps({"o": 10**30}).encode()).decode()
    for query in (
        "due_from=0001-01-01T00:00:00%2B01:00",
        "due_to=9999-12-31T23:59:59-05:00",
        f"cursor={huge}",
    ):
        response = client.get(f"/api/alice/tasks?{query}", headers=auth("alice"))
        assert 400 <= response.status_code < 500, query
        assert response.headers["content-type"].startswith(PROBLEM)


def test_put_task_body_from_get_with_read_only_fields_is_accepted(client: TestClient, auth: Auth) -> None:
    task = create(client, auth, priority="low")
    url = f"/api/alice/tasks/{task['id']}"
    body = {**client.get(url, headers=auth("alice")).json(), "title": "Renamed", "id": "ignored"}
    response = client.put(url, json=body, headers=auth("alice"))
    assert response.status_code == 200, response.text
    assert response.json()["title"] == "Renamed" and response.json()["id"] == task["id"]
    assert response.json()["priority"] == "low"


def test_create_task_oversized_chunked_body_returns_413(client: TestClient, auth: Auth) -> None:
    chunks = iter([b'{"title": "', b"x" * 40_000, b"x" * 40_000, b'"}'])
    response = client.post(
        "/api/alice/tasks", content=chunks, headers={**auth("alice"), "content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.headers["content-type"].startswith(PROBLEM)


def test_metrics_scrape_measures_outbox_backlog_without_a_relay(client: TestClient, auth: Auth) -> None:
    create(client, auth)
    lines = client.get("/metrics").text.splitlines()
    assert "tasktide_outbox_backlog 2.0" in lines  # task-events + task-updates, nothing publishing them
    (age,) = [line for line in lines if line.startswith("tasktide_outbox_oldest_age_seconds ")]
    assert float(age.split()[1]) >= 0.0


def threads_running(
    client: TestClient, auth: Auth, monkeypatch: pytest.MonkeyPatch, use_case: str
) -> list[str]:
    """The names of the threads `Tasks.<use_case>` runs on from now on (after a request has left an idle
    connection in the pool, so an inline call may run inline)."""
    import threading

    from tasktide.app.tasks import Tasks

    threads: list[str] = []
    original = getattr(Tasks, use_case)

    def recorded(self: Tasks, *args: object, **kwargs: object) -> object:
        threads.append(threading.current_thread().name)
        return original(self, *args, **kwargs)

    client.get("/api/alice/tasks", headers=auth("alice"))
    monkeypatch.setattr(Tasks, use_case, recorded)
    return threads


@pytest.mark.parametrize(
    ("query", "pooled"),
    [
        ("priority=medium&tag=work&sort=due_at&limit=20", False),
        ("q=report", True),
        ("cursor=" + base64.urlsafe_b64encode(b'{"o": 5000}').decode().rstrip("="), True),
        ("sort=-due_at", True),
        ("sort=-priority", True),
        ("sort=-created_at", False),
    ],
    ids=["index-page", "text-search", "deep-page", "due-descending", "priority", "created-descending"],
)
def test_list_tasks_query_shape_runs_inline_or_on_pool(
    client: TestClient,
    auth: Auth,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
    query: str,
    pooled: bool,
) -> None:
    threads = threads_running(client, auth, monkeypatch, "search")
    response = client.get(f"/api/alice/tasks?{query}", headers=auth("alice"))
    assert response.status_code == 200, response.text
    on_pool = threads == ["AnyIO worker thread"]
    assert on_pool is (pooled or services.engine.dialect.name != "postgresql"), threads


@pytest.mark.parametrize(
    ("extra", "pooled"),
    [({}, False), ({"recurrence": "FREQ=WEEKLY;BYDAY=MO"}, True), ({"recurrence_text": "every day"}, True)],
    ids=["plain", "rrule", "phrase"],
)
def test_create_task_with_a_series_rule_runs_on_pool(
    client: TestClient,
    auth: Auth,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
    extra: dict[str, str],
    pooled: bool,
) -> None:
    threads = threads_running(client, auth, monkeypatch, "create")
    body = {"title": "series", "due_at": "2030-01-07T09:00:00Z", **extra}
    response = client.post("/api/alice/tasks", json=body, headers=auth("alice"))
    assert response.status_code == 201, response.text
    on_pool = threads == ["AnyIO worker thread"]
    assert on_pool is (pooled or services.engine.dialect.name != "postgresql"), threads
