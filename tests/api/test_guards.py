"""The API's edges under abuse and outages: database down -> 503 problem with Retry-After and one log
line (issue 12 finding 4), deep JSON -> 400, and `Link` headers never reflect `Host` (finding 8)."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from tasktide.api.app import create_app
from tasktide.services import Services
from tasktide.settings import Settings
from tests.testenv import JWT_SECRET

Auth = Callable[[str], dict[str, str]]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the block ends: nothing listens there


@pytest.fixture
def down_client() -> Iterator[TestClient]:
    url = f"postgresql+psycopg://tasktide:pw@127.0.0.1:{closed_port()}/tasktide"
    services = Services.build(Settings(database_url=url, jwt_secret=JWT_SECRET))
    with TestClient(create_app(services), raise_server_exceptions=False) as client:
        yield client
    services.engine.dispose()


def test_api_database_unreachable_answers_503_retry_after_one_log_line(
    down_client: TestClient, auth: Auth, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    responses = [down_client.get("/api/alice/tasks", headers=auth("alice")) for _ in range(4)]
    responses.append(down_client.post("/api/alice/tasks", json={"title": "x"}, headers=auth("alice")))
    for response in responses:
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert int(response.headers["retry-after"]) > 0
        assert response.json()["status"] == 503
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1 and errors[0].exc_info is None, [r.getMessage() for r in errors]
    assert "pw" not in errors[0].getMessage().split()


def test_api_deep_json_body_answers_400(client: TestClient, auth: Auth) -> None:
    deep = "[" * 30_000 + "]" * 30_000
    response = client.post(
        "/api/alice/tasks", content=deep, headers={**auth("alice"), "content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    nested: object = "x"
    for _ in range(200):
        nested = {"a": nested}
    body = json.dumps({"title": "t", "description": nested})
    response = client.post(
        "/api/alice/tasks", content=body, headers={**auth("alice"), "content-type": "application/json"}
    )
    assert response.status_code == 400, response.text


def test_list_tasks_link_header_ignores_host_header(client: TestClient, auth: Auth) -> None:
    for title in ("a", "b"):
        assert (
            client.post("/api/alice/tasks", json={"title": title}, headers=auth("alice")).status_code == 201
        )
    response = client.get("/api/alice/tasks?limit=1", headers={**auth("alice"), "host": "evil.example:666"})
    assert response.status_code == 200
    link = response.headers["link"]
    assert "evil.example" not in link
    assert link.startswith("</api/alice/tasks?") and 'rel="next"' in link
