"""The chat agent through the real OpenAI Agents SDK, against a local server speaking the OpenAI Chat
Completions HTTP protocol that scripts the model's tool calls; the tools are the real MCP server over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

from tasktide.agent import chat
from tasktide.api.app import create_app
from tasktide.services import Services
from tasktide.settings import Settings
from tests.agent.fakemodel import ASK, Auth, FakeModel, text_of
from tests.liveserver import LiveServer, live_server
from tests.testenv import JWT_SECRET


def on_event_loop() -> bool:
    """Whether the calling thread is running an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def chat_app(services: Services) -> FastAPI:
    app = create_app(services)
    app.include_router(chat.router)
    return app


@pytest.fixture
def configured(database_url: str, model: tuple[FakeModel, LiveServer]) -> Iterator[Services]:
    settings = Settings(
        database_url=database_url,
        jwt_secret=JWT_SECRET,
        model_name="fake-model",
        model_base_url=f"{model[1].base_url}/v1",
        model_api_key="test-key",
    )
    services = Services.build(settings)
    yield services
    services.engine.dispose()


def test_chat_remind_every_second_monday_one_add_task_task_exists(
    configured: Services, model: tuple[FakeModel, LiveServer], auth: Auth
) -> None:
    fake, _ = model
    with live_server(chat_app(configured)) as api:
        response = httpx.post(
            f"{api.base_url}/api/alice/chat", json={"message": ASK}, headers=auth("alice"), timeout=60
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["tool_calls"] == ["add_task"]
        assert body["reply"] == "Added Call mom (FREQ=MONTHLY;BYDAY=2MO)."
        tasks = httpx.get(f"{api.base_url}/api/alice/tasks", headers=auth("alice")).json()
    (task,) = tasks
    assert (task["title"], task["recurrence"], task["timezone"]) == (
        "Call mom",
        "FREQ=MONTHLY;BYDAY=2MO",
        "Europe/Berlin",
    )
    assert task["due_at"].startswith("2030-01-14T08:00:00") and task["reminders"] == ["PT15M"]
    first = fake.requests[0]
    assert first["model"] == "fake-model"
    assert "add_task" in {t["function"]["name"] for t in first["tools"]}
    assert len(fake.requests) == 2


def test_chat_conversation_resumed_by_a_new_process_from_the_state_store(
    configured: Services, model: tuple[FakeModel, LiveServer], auth: Auth
) -> None:
    fake, _ = model
    with live_server(chat_app(configured)) as api:
        first = httpx.post(
            f"{api.base_url}/api/alice/chat", json={"message": ASK}, headers=auth("alice"), timeout=60
        )
    conversation_id = first.json()["conversation_id"]
    again = Services.build(configured.settings)  # a scaled-from-zero agent: nothing in memory
    try:
        with live_server(chat_app(again)) as api:
            body = {"message": "what did I ask?", "conversation_id": conversation_id}
            second = httpx.post(
                f"{api.base_url}/api/alice/chat", json=body, headers=auth("alice"), timeout=60
            )
            stranger = httpx.post(f"{api.base_url}/api/bob/chat", json=body, headers=auth("bob"), timeout=60)
    finally:
        again.engine.dispose()
    assert second.status_code == 200, second.text
    assert second.json()["conversation_id"] == conversation_id
    replayed = [text_of(m.get("content")) for m in fake.requests[-1]["messages"]]
    assert ASK in replayed and "Added Call mom (FREQ=MONTHLY;BYDAY=2MO)." in replayed
    assert stranger.status_code == 404


def test_chat_without_model_provider_503_problem_says_how(services: Services, auth: Auth) -> None:
    with live_server(chat_app(services)) as api:
        status = httpx.get(f"{api.base_url}/api/alice/chat", headers=auth("alice"))
        turn = httpx.post(f"{api.base_url}/api/alice/chat", json={"message": "hi"}, headers=auth("alice"))
    for response in (status, turn):
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert "TASKTIDE_MODEL_NAME" in response.json()["detail"]


@pytest.mark.parametrize(
    ("url", "sent"),
    [
        ("http://127.0.0.1:3500/v1.0/invoke/tasktide-api/method/mcp", True),
        ("https://mcp.example.com/mcp", False),
        ("http://127.0.0.1:8080/mcp", False),
    ],
)
def test_chat_mcp_headers_dapr_api_token_only_to_own_sidecar(
    url: str, sent: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAPR_API_TOKEN", "sidecar-token")
    headers = chat.mcp_headers(Settings(), url, "Bearer jwt")
    assert headers["Authorization"] == "Bearer jwt"
    assert ("dapr-api-token" in headers) is sent
    assert headers.get("dapr-api-token", "sidecar-token") == "sidecar-token"


def test_chat_dapr_headers_token_from_settings_sent_and_kept_out_of_repr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DAPR_API_TOKEN", "sidecar-token")
    settings = Settings()
    assert chat.dapr_headers(settings) == {"dapr-api-token": "sidecar-token"}
    assert "sidecar-token" not in repr(settings)
    monkeypatch.delenv("DAPR_API_TOKEN")
    assert chat.dapr_headers(Settings()) == {}


def test_chat_model_config_read_off_the_event_loop(
    services: Services, auth: Auth, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model key can come from the Dapr sidecar (gRPC, retries): never read on the event loop."""
    on_loop: list[bool] = []

    def recorded(services: Services) -> None:
        on_loop.append(on_event_loop())
        return None  # no model: the turn answers 503

    monkeypatch.setattr(chat, "model_config", recorded)
    with live_server(chat_app(services)) as api:
        turn = httpx.post(f"{api.base_url}/api/alice/chat", json={"message": "hi"}, headers=auth("alice"))
    assert turn.status_code == 503
    assert on_loop == [False]


def test_chat_sdk_first_imported_off_the_event_loop(
    configured: Services, auth: Auth, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Importing the agents SDK takes over a second: the first turn does it on a thread, not the loop."""
    on_loop: list[bool] = []
    imported = chat.import_sdk

    def recorded() -> None:
        on_loop.append(on_event_loop())
        imported()

    monkeypatch.setattr(chat, "import_sdk", recorded)
    monkeypatch.setattr(chat, "_sdk_imported", False)  # as in a worker's first turn
    with live_server(chat_app(configured)) as api:
        turn = httpx.post(f"{api.base_url}/api/alice/chat", json={"message": "hi"}, headers=auth("alice"))
    assert turn.status_code in (200, 502)  # the scripted model may not answer "hi"; the import happened
    assert on_loop == [False]
