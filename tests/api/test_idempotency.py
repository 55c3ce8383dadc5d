"""Idempotency-Key on POST and PATCH (issue 12, finding 7): a retried write has no second effect.

Consumes the API on SQLite and on real Postgres (the `client` fixture runs each test on both) and, for the
concurrent case, the API behind a real uvicorn server (tests.liveserver) hit from 20 threads.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from tasktide.api.app import create_app
from tasktide.db import idempotency, retention
from tasktide.db.models import NotificationSettingsRow, TaskRow
from tasktide.services import Services
from tests.liveserver import live_server

Auth = Callable[[str], dict[str, str]]


def keyed(auth: Auth, user: str, key: str) -> dict[str, str]:
    return {**auth(user), "Idempotency-Key": f'"{key}"'}


def task_count(services: Services, user: str) -> int:
    with services.sessions() as session:
        return int(
            session.scalar(select(func.count()).select_from(TaskRow).where(TaskRow.user_id == user)) or 0
        )


def test_idempotency_retried_post_same_key_creates_once(
    client: TestClient, auth: Auth, services: Services
) -> None:
    key = str(uuid.uuid4())
    first = client.post("/api/alice/tasks", json={"title": "pay rent"}, headers=keyed(auth, "alice", key))
    again = client.post("/api/alice/tasks", json={"title": "pay rent"}, headers=keyed(auth, "alice", key))
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["etag"] == first.headers["etag"]
    assert again.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    assert task_count(services, "alice") == 1
    other = client.post("/api/alice/tasks", json={"title": "pay rent"}, headers=keyed(auth, "alice", "k2"))
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]  # a new key: a new task


def test_idempotency_key_mark_fails_create_rolled_back_with_it(
    client: TestClient, auth: Auth, services: Services
) -> None:
    """The key is marked in the create's own transaction: a crash in its commit leaves neither, and the
    key is free for the retry (not replaying the failure, not in flight)."""

    def crash(session: Session) -> None:  # runs after `_mark_committed`, inside the same commit
        if idempotency.CURRENT.get() is not None and not session.info.get(idempotency.STORE_SESSION):
            raise RuntimeError("crashed between the effect and its key")

    event.listen(Session, "before_commit", crash)
    try:
        response = client.post("/api/alice/tasks", json={"title": "x"}, headers=keyed(auth, "alice", "k"))
        assert response.status_code >= 500
    except RuntimeError:
        pass
    finally:
        event.remove(Session, "before_commit", crash)
    assert task_count(services, "alice") == 0
    retried = client.post("/api/alice/tasks", json={"title": "x"}, headers=keyed(auth, "alice", "k"))
    assert retried.status_code == 201 and "idempotent-replayed" not in retried.headers  # not a stored 5xx
    assert task_count(services, "alice") == 1


def test_idempotency_same_key_different_body_answers_422(client: TestClient, auth: Auth) -> None:
    key = str(uuid.uuid4())
    assert (
        client.post("/api/alice/tasks", json={"title": "a"}, headers=keyed(auth, "alice", key)).status_code
        == 201
    )
    response = client.post("/api/alice/tasks", json={"title": "b"}, headers=keyed(auth, "alice", key))
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert "Idempotency-Key" in response.json()["detail"]


def test_idempotency_keys_scoped_per_user(client: TestClient, auth: Auth, services: Services) -> None:
    key = str(uuid.uuid4())
    for user in ("alice", "bob"):
        response = client.post(f"/api/{user}/tasks", json={"title": "same"}, headers=keyed(auth, user, key))
        assert response.status_code == 201 and "idempotent-replayed" not in response.headers
    assert task_count(services, "alice") == task_count(services, "bob") == 1


def test_idempotency_unauthenticated_request_claims_no_key(client: TestClient, auth: Auth) -> None:
    key = str(uuid.uuid4())
    forged = client.post(
        "/api/alice/tasks", json={"title": "x"}, headers={"Idempotency-Key": key, **auth("mallory")}
    )
    assert forged.status_code == 403
    real = client.post("/api/alice/tasks", json={"title": "x"}, headers=keyed(auth, "alice", key))
    assert real.status_code == 201  # the key was never taken by the foreign request


def test_idempotency_malformed_key_answers_400(client: TestClient, auth: Auth) -> None:
    headers = {**auth("alice"), "Idempotency-Key": '"' + "k" * 300 + '"'}
    response = client.post("/api/alice/tasks", json={"title": "x"}, headers=headers)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"


def test_idempotency_patch_retried_applies_once(client: TestClient, auth: Auth) -> None:
    task = client.post("/api/alice/tasks", json={"title": "draft"}, headers=auth("alice")).json()
    key = str(uuid.uuid4())
    first = client.patch(
        f"/api/alice/tasks/{task['id']}", json={"title": "final"}, headers=keyed(auth, "alice", key)
    )
    again = client.patch(
        f"/api/alice/tasks/{task['id']}", json={"title": "final"}, headers=keyed(auth, "alice", key)
    )
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    history = client.get(f"/api/alice/tasks/{task['id']}/history", headers=auth("alice"))
    assert [h["type"] for h in history.json()].count("com.tasktide.task.updated") <= 1


def test_idempotency_bare_complete_retried_does_not_toggle(client: TestClient, auth: Auth) -> None:
    task = client.post("/api/alice/tasks", json={"title": "pay rent"}, headers=auth("alice")).json()
    key = str(uuid.uuid4())
    url = f"/api/alice/tasks/{task['id']}/complete"
    answers = [client.patch(url, headers=keyed(auth, "alice", key)) for _ in range(3)]
    assert {a.status_code for a in answers} == {200}
    assert client.get(f"/api/alice/tasks/{task['id']}", headers=auth("alice")).json()["completed"] is True


def test_idempotency_bare_complete_retried_does_not_toggle_in_parallel(
    services: Services, auth: Auth
) -> None:
    """20 parallel bare completes with one key leave the task completed (without a key they toggled)."""
    with (
        live_server(create_app(services)) as server,
        httpx.Client(base_url=server.base_url, timeout=30) as http,
    ):
        task = http.post("/api/alice/tasks", json={"title": "pay rent"}, headers=auth("alice")).json()
        key = str(uuid.uuid4())
        url = f"/api/alice/tasks/{task['id']}/complete"
        with ThreadPoolExecutor(max_workers=20) as pool:
            answers = list(pool.map(lambda _: http.patch(url, headers=keyed(auth, "alice", key)), range(20)))
        codes = [a.status_code for a in answers]
        assert set(codes) <= {200, 409} and codes.count(200) >= 1, codes
        assert all(
            a.headers["content-type"] == "application/problem+json" for a in answers if a.status_code == 409
        )
        assert len({a.text for a in answers if a.status_code == 200}) == 1  # every 200 is the same answer
        assert http.get(f"/api/alice/tasks/{task['id']}", headers=auth("alice")).json()["completed"] is True
        retried = http.patch(url, headers=keyed(auth, "alice", key))
        assert retried.status_code == 200 and retried.headers["idempotent-replayed"] == "true"


def test_idempotency_in_flight_duplicate_answers_409(services: Services, auth: Auth) -> None:
    store = idempotency.IdempotencyStore(services.sessions, retention=3600)
    key = str(uuid.uuid4())
    body = b'{"title":"x"}'
    scope = {"method": "POST", "path": "/api/alice/tasks", "query_string": b""}
    assert store.claim("alice", key, idempotency_fingerprint(scope, body)).outcome == "new"
    with TestClient(create_app(services)) as client:
        headers = {**keyed(auth, "alice", key), "content-type": "application/json"}
        response = client.post("/api/alice/tasks", content=body, headers=headers)
    assert response.status_code == 409
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"] == "application/problem+json"


def test_idempotency_key_committed_in_the_effects_transaction(services: Services, auth: Auth) -> None:
    """The effect's own commit marks the key: a crash before the response is stored cannot re-run it."""
    store = idempotency.IdempotencyStore(services.sessions, retention=3600, lock=0.0)
    assert store.claim("alice", "k-commit", "fp").outcome == "new"
    token = idempotency.CURRENT.set(idempotency.Pending("alice", "k-commit"))
    try:
        with services.sessions() as session, session.begin():
            session.add(
                NotificationSettingsRow(user_id="alice", email="a@example.com", updated_at=datetime.now(UTC))
            )
    finally:
        idempotency.CURRENT.reset(token)
    later = datetime.now(UTC) + timedelta(minutes=5)  # the in-flight lock (0 s) long expired
    assert store.claim("alice", "k-commit", "fp", now=later).outcome == "committed"


def test_idempotency_keys_expire_and_are_purged(services: Services) -> None:
    store = idempotency.IdempotencyStore(services.sessions, retention=60)
    old = datetime.now(UTC) - timedelta(hours=2)
    assert store.claim("alice", "k-old", "fp1", now=old).outcome == "new"
    store.complete("alice", "k-old", 201, [], b"{}")
    assert store.claim("alice", "k-old", "fp2").outcome == "new"  # expired: the key is free again
    store.complete("alice", "k-old", 201, [], b"{}")
    assert store.claim("bob", "k-old2", "fp", now=old).outcome == "new"
    deleted = retention.purge(services.sessions, 3600, 3600, idempotency_age=60)
    assert deleted["idempotency_keys"] == 1
    assert store.claim("alice", "k-old", "fp2").outcome == "replay"  # the fresh one stays


def idempotency_fingerprint(scope: dict[str, object], body: bytes) -> str:
    from tasktide.api.idempotency import fingerprint

    return fingerprint(scope, body)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _no_leftover_context() -> None:
    assert idempotency.CURRENT.get() is None


def test_idempotency_response_lost_after_commit_retry_has_no_second_effect(
    services: Services, auth: Auth, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process dies after the route's commit, before the response is stored: the retry is refused."""
    monkeypatch.setattr(idempotency.IdempotencyStore, "complete", lambda *args, **kwargs: None)
    key = str(uuid.uuid4())
    with TestClient(create_app(services)) as client:
        first = client.post("/api/alice/tasks", json={"title": "once"}, headers=keyed(auth, "alice", key))
        assert first.status_code == 201
        retried = client.post("/api/alice/tasks", json={"title": "once"}, headers=keyed(auth, "alice", key))
    assert retried.status_code == 409 and "processed" in retried.json()["detail"]
    assert task_count(services, "alice") == 1


def test_idempotency_response_stored_before_it_is_sent(services: Services, auth: Auth) -> None:
    """A client that holds the first answer can always replay it: the key is complete before the answer
    leaves (before, a retry racing the store got 409 "still being processed")."""
    import asyncio

    from starlette.types import Message

    app = create_app(services)
    key = str(uuid.uuid4())
    headers = [(k.lower().encode(), v.encode()) for k, v in keyed(auth, "alice", key).items()]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/alice/tasks",
        "raw_path": b"/api/alice/tasks",
        "query_string": b"",
        "root_path": "",
        "headers": [*headers, (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    states: list[str | None] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b'{"title": "pay rent"}', "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            with services.sessions() as session:
                states.append(
                    session.scalar(
                        select(idempotency.IdempotencyKeyRow.state).where(
                            idempotency.IdempotencyKeyRow.user_id == "alice",
                            idempotency.IdempotencyKeyRow.key == key,
                        )
                    )
                )

    asyncio.run(app(scope, receive, send))
    assert states == [idempotency.COMPLETED]
