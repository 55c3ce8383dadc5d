"""The API's answers to a new user's mistakes: each is a problem document that says what to do.

These are about the HTTP layer, not the database, so they run on SQLite only (the CRUD suite in
test_tasks.py covers both databases)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tasktide.api.auth import encode_token
from tasktide.db.migrate import upgrade

Auth = Callable[[str], dict[str, str]]
PROBLEM = "application/problem+json"


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'tasktide.db'}"
    upgrade(url)
    return url


def _create(client: TestClient, auth: Auth, user: str = "alice") -> str:
    response = client.post(f"/api/{user}/tasks", json={"title": "Pay rent"}, headers=auth(user))
    assert response.status_code == 201, response.text
    task_id: str = response.json()["id"]
    return task_id


def test_auth_malformed_token_returns_401_saying_not_a_jwt(client: TestClient) -> None:
    # "tw" is base64url for the byte 0xb7: PyJWT's own message was "'utf-8' codec can't decode byte 0xb7"
    response = client.get("/api/alice/tasks", headers={"Authorization": "Bearer tw.eA.eQ"})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith(PROBLEM)
    detail = response.json()["detail"]
    assert "not a JWT" in detail and "tasktide token" in detail
    assert "codec" not in detail


def test_auth_token_signed_with_other_secret_returns_401_naming_the_secret(client: TestClient) -> None:
    token = encode_token("alice", "some-other-secret-0123456789abcdef0123")
    response = client.get("/api/alice/tasks", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert "TASKTIDE_JWT_SECRET" in response.json()["detail"]


def test_create_task_malformed_json_returns_400_without_offset_as_field(
    client: TestClient, auth: Auth
) -> None:
    response = client.post(
        "/api/alice/tasks",
        content=b'{"title": "x",, }',
        headers={**auth("alice"), "content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["errors"] == [{"field": "body", "message": body["errors"][0]["message"]}]
    assert "not valid JSON" in body["detail"] and "character 14" in body["detail"]


def test_create_task_text_plain_body_returns_415(client: TestClient, auth: Auth) -> None:
    response = client.post(
        "/api/alice/tasks", content=b"title=x", headers={**auth("alice"), "content-type": "text/plain"}
    )
    assert response.status_code == 415
    assert response.headers["content-type"].startswith(PROBLEM)
    assert "application/json" in response.json()["detail"]


def test_put_and_patch_unknown_field_return_the_same_message(client: TestClient, auth: Auth) -> None:
    task_id = _create(client, auth)
    put = client.put(
        f"/api/alice/tasks/{task_id}", json={"title": "x", "colour": "red"}, headers=auth("alice")
    )
    patch = client.patch(f"/api/alice/tasks/{task_id}", json={"colour": "red"}, headers=auth("alice"))
    assert put.status_code == patch.status_code == 422
    assert put.json()["errors"] == patch.json()["errors"] == [{"field": "colour", "message": "unknown field"}]


@pytest.mark.parametrize("value", ["yes", 1, "true", None])
def test_completed_not_a_json_boolean_returns_422(client: TestClient, auth: Auth, value: object) -> None:
    task_id = _create(client, auth)
    created = client.post("/api/alice/tasks", json={"title": "x", "completed": value}, headers=auth("alice"))
    complete = client.patch(
        f"/api/alice/tasks/{task_id}/complete", json={"completed": value}, headers=auth("alice")
    )
    patched = client.patch(f"/api/alice/tasks/{task_id}", json={"completed": value}, headers=auth("alice"))
    if value is None:  # null means "not given" on create
        assert created.status_code == 201
    else:
        assert created.status_code == 422, created.text
    assert complete.status_code == 422, complete.text
    assert patched.status_code == 422, patched.text
    assert client.get(f"/api/alice/tasks/{task_id}", headers=auth("alice")).json()["completed"] is False


def test_tasks_route_without_user_returns_404_naming_the_route(client: TestClient, auth: Auth) -> None:
    for method in ("GET", "POST"):
        response = client.request(method, "/api/tasks", json={"title": "x"}, headers=auth("alice"))
        assert response.status_code == 404
        assert response.headers["content-type"].startswith(PROBLEM)
        assert "/api/{user_id}/tasks" in response.json()["detail"]


def test_trailing_slash_returns_404_problem_saying_so(client: TestClient, auth: Auth) -> None:
    response = client.get("/api/alice/tasks/", headers=auth("alice"), follow_redirects=False)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith(PROBLEM)
    assert "drop the trailing slash: /api/alice/tasks" in response.json()["detail"]


def test_history_other_users_task_returns_404(client: TestClient, auth: Auth) -> None:
    task_id = _create(client, auth, "alice")
    assert client.get(f"/api/alice/tasks/{task_id}/history", headers=auth("alice")).status_code == 200
    response = client.get(f"/api/bob/tasks/{task_id}/history", headers=auth("bob"))
    assert response.status_code == 404
    assert response.headers["content-type"].startswith(PROBLEM)


def test_docs_page_and_assets_served_locally_without_cdn(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower() and "https://" not in page.text.replace("https://fastapi", "")
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert f"/docs/assets/{asset}" in page.text
        response = client.get(f"/docs/assets/{asset}")
        assert response.status_code == 200 and len(response.content) > 10_000
