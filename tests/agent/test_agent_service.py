"""`tasktide-agent` as its own app: the agent alone (chat, health, metrics, no task routes), the API's chat
forwarded to it by Dapr service invocation, and the whole path through real daprd sidecars:
board -> API -> API's daprd (HTTPEndpoint tasktide-agent) -> agent -> agent's daprd (invoke tasktide-api)
-> the API's /mcp -> the task exists through REST."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tasktide.agent import forward
from tasktide.agent.app import create_agent_app
from tasktide.api.app import create_app
from tasktide.api.auth import encode_token
from tasktide.dapr import selfhosted
from tasktide.dapr.daprd import free_port
from tasktide.entrypoints import serve
from tasktide.services import Services
from tasktide.settings import REPO_ROOT, Settings
from tests.agent.fakemodel import ASK, Auth, FakeModel
from tests.dapr import realdaprd
from tests.liveserver import LiveServer, live_server
from tests.testenv import JWT_SECRET

Model = tuple[FakeModel, LiveServer]
HI = {"message": "hi"}


def model_settings(database_url: str, model: Model, **extra: Any) -> Settings:
    return Settings(
        database_url=database_url,
        jwt_secret=JWT_SECRET,
        model_name="fake-model",
        model_base_url=f"{model[1].base_url}/v1",
        model_api_key="test-key",
        **extra,
    )


@pytest.fixture
def api(services: Services) -> Iterator[LiveServer]:
    with live_server(create_app(services)) as live:
        yield live


def port_of(server: LiveServer) -> int:
    return int(server.base_url.rsplit(":", 1)[1])


def built(settings: Settings) -> Iterator[Services]:
    services = Services.build(settings)
    yield services
    services.engine.dispose()


def test_agent_app_chat_reaches_the_api_tools_by_url_task_exists(
    database_url: str, model: Model, api: LiveServer, auth: Auth
) -> None:
    settings = model_settings(database_url, model, agent_mcp_url=f"{api.base_url}/mcp")
    for services in built(settings):
        with live_server(create_agent_app(services)) as agent:
            answer = httpx.post(
                f"{agent.base_url}/api/alice/chat", json={"message": ASK}, headers=auth("alice"), timeout=60
            )
            tasks_on_agent = httpx.get(f"{agent.base_url}/api/alice/tasks", headers=auth("alice"))
            metrics = httpx.get(f"{agent.base_url}/metrics").text
            ready = httpx.get(f"{agent.base_url}/readyz")
    assert answer.status_code == 200, answer.text
    assert answer.json()["tool_calls"] == ["add_task"]
    (task,) = httpx.get(f"{api.base_url}/api/alice/tasks", headers=auth("alice")).json()
    assert (task["title"], task["recurrence"]) == ("Call mom", "FREQ=MONTHLY;BYDAY=2MO")
    assert tasks_on_agent.status_code == 404  # the agent serves chat only
    assert ready.status_code == 200
    assert 'tasktide_chat_turns_total{outcome="ok"}' in metrics
    assert 'tasktide_chat_tool_calls_total{tool="add_task"}' in metrics
    assert 'tasktide_requests_total{code="200",function="agent"}' in metrics


def test_agent_app_without_tools_route_503_problem_says_how(
    database_url: str, model: Model, auth: Auth
) -> None:
    for services in built(model_settings(database_url, model)):
        with live_server(create_agent_app(services)) as agent:
            answer = httpx.post(f"{agent.base_url}/api/alice/chat", json=HI, headers=auth("alice"))
    assert answer.status_code == 503
    assert "TASKTIDE_AGENT_MCP_URL" in answer.json()["detail"]


def test_agent_app_wrong_user_token_403_before_any_model_call(
    database_url: str, model: Model, auth: Auth
) -> None:
    for services in built(model_settings(database_url, model, agent_mcp_url="http://127.0.0.1:1/mcp")):
        with live_server(create_agent_app(services)) as agent:
            answer = httpx.post(f"{agent.base_url}/api/alice/chat", json=HI, headers=auth("bob"))
            anonymous = httpx.post(f"{agent.base_url}/api/alice/chat", json=HI)
    assert (answer.status_code, anonymous.status_code) == (403, 401)
    assert model[0].requests == []


def forwarding_api(services: Services) -> Any:
    app = create_app(services)
    forward.install(app, services.settings)
    return app


def test_api_forward_without_sidecar_503_problem(database_url: str, auth: Auth) -> None:
    settings = Settings(database_url=database_url, jwt_secret=JWT_SECRET, agent_app_id="tasktide-agent")
    for services in built(settings):
        with live_server(forwarding_api(services)) as api:
            answer = httpx.post(f"{api.base_url}/api/alice/chat", json=HI, headers=auth("alice"))
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/problem+json"


def test_api_forward_unreachable_sidecar_502_problem_not_dapr_error(database_url: str, auth: Auth) -> None:
    settings = Settings(
        database_url=database_url,
        jwt_secret=JWT_SECRET,
        agent_app_id="tasktide-agent",
        DAPR_HTTP_PORT=free_port(),
    )
    for services in built(settings):
        with live_server(forwarding_api(services)) as api:
            answer = httpx.post(f"{api.base_url}/api/alice/chat", json=HI, headers=auth("alice"))
            unauthenticated = httpx.post(f"{api.base_url}/api/alice/chat", json=HI)
    assert answer.status_code == 502
    assert "tasktide-agent" in answer.json()["detail"]
    assert unauthenticated.status_code == 401


def test_serve_command_agent_role_runs_the_agent_factory() -> None:
    argv = serve.command({"TASKTIDE_ROLE": "agent", "PORT": "8080", "TASKTIDE_HOST": "0.0.0.0"})
    assert argv[1:5] == ["-m", "uvicorn", "tasktide.entrypoints.serve:agent_app", "--factory"]
    assert argv[argv.index("--port") + 1] == "8080" and argv[argv.index("--host") + 1] == "0.0.0.0"
    assert serve.command({})[1:3] == ["-m", "tasktide.entrypoints.apiserver"]


def test_serve_agent_role_process_answers_health_and_chat_503_without_model(tmp_path: Path) -> None:
    port, secret = free_port(), "agent-serve-secret-0123456789abcdef"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TASKTIDE_", "DAPR_"))},
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "TASKTIDE_ROLE": "agent",
        "PORT": str(port),
        "TASKTIDE_JWT_SECRET": secret,
        "TASKTIDE_DATABASE_URL": f"sqlite:///{tmp_path / 'agent.db'}",
    }
    tasktide = str(Path(sys.executable).with_name("tasktide"))
    proc = subprocess.Popen([tasktide, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else "exited"
            try:
                health = httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the agent never answered"
                time.sleep(0.2)
        headers = {"Authorization": f"Bearer {encode_token('alice', secret)}"}
        turn = httpx.post(f"{base}/api/alice/chat", json=HI, headers=headers, timeout=10)
        tasks = httpx.get(f"{base}/api/alice/tasks", headers=headers, timeout=10)
    finally:
        proc.terminate()
        proc.wait(10)
    assert health.json() == {"status": "ok"}
    assert turn.status_code == 503 and "TASKTIDE_MODEL_NAME" in turn.json()["detail"]
    assert tasks.status_code == 404


def test_httpendpoint_manifest_is_the_agent_knative_url_for_the_api_only() -> None:
    (doc,) = selfhosted.load("httpendpoint-agent.yaml")
    knative = yaml.safe_load((REPO_ROOT / "knative" / "base" / "tasktide-agent.yaml").read_text())
    assert set(doc) == {"apiVersion", "kind", "metadata", "spec", "scopes"}
    assert (doc["apiVersion"], doc["kind"]) == ("dapr.io/v1alpha1", "HTTPEndpoint")
    assert doc["metadata"]["name"] == knative["metadata"]["name"] == "tasktide-agent"
    assert doc["spec"]["baseUrl"] == "http://tasktide-agent.tasktide.svc.cluster.local"
    assert doc["scopes"] == ["tasktide-api"]
    annotations = knative["spec"]["template"]["metadata"]["annotations"]
    assert annotations["dapr.io/app-id"] == "tasktide-agent"
    assert annotations["autoscaling.knative.dev/min-scale"] == "0"
    env = {e["name"]: e.get("value") for e in knative["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["TASKTIDE_ROLE"] == "agent"


def test_chat_through_real_daprd_sidecars_both_ways_task_exists(
    tmp_path: Path, database_url: str, model: Model, auth: Auth
) -> None:
    realdaprd.require_daprd()
    ports = {"tasktide-api": free_port(), "tasktide-agent": free_port()}
    api_http, agent_http = free_port(), free_port()
    agent_settings = model_settings(database_url, model, DAPR_HTTP_PORT=agent_http)
    api_settings = Settings(
        database_url=database_url,
        jwt_secret=JWT_SECRET,
        agent_app_id="tasktide-agent",
        DAPR_HTTP_PORT=api_http,  # the field's environment name (Settings reads no other)
    )
    resiliency = selfhosted.load("resiliency.yaml")
    for agent_services in built(agent_settings):
        for api_services in built(api_settings):
            with (
                live_server(create_agent_app(agent_services)) as agent,
                live_server(forwarding_api(api_services)) as api,
            ):
                (endpoint,) = selfhosted.load("httpendpoint-agent.yaml")
                endpoint["spec"]["baseUrl"] = agent.base_url  # the Knative URL on a cluster
                api_daprd = realdaprd.start(
                    tmp_path / "api",
                    "tasktide-api",
                    [endpoint, *resiliency],
                    internal_ports=ports,
                    app_port=port_of(api),
                    http_port=api_http,
                )
                agent_daprd = realdaprd.start(
                    tmp_path / "agent",
                    "tasktide-agent",
                    resiliency,
                    internal_ports=ports,
                    app_port=port_of(agent),
                    http_port=agent_http,
                )
                try:
                    answer = httpx.post(
                        f"{api.base_url}/api/alice/chat",
                        json={"message": ASK},
                        headers=auth("alice"),
                        timeout=90,
                    )
                    status = httpx.get(f"{api.base_url}/api/alice/chat", headers=auth("alice"), timeout=30)
                    tasks = httpx.get(f"{api.base_url}/api/alice/tasks", headers=auth("alice")).json()
                finally:
                    agent_daprd.stop()
                    api_daprd.stop()
    assert answer.status_code == 200, answer.text
    assert answer.json()["tool_calls"] == ["add_task"]
    assert status.json() == {"available": True, "model": "fake-model"}
    (task,) = tasks
    assert (task["title"], task["timezone"]) == ("Call mom", "Europe/Berlin")


def test_api_forward_two_turns_one_sidecar_connection_closed_at_shutdown(
    database_url: str, auth: Auth
) -> None:
    peers: list[tuple[str, int]] = []

    async def sidecar(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        peers.append(scope["client"])
        body = b'{"reply": "ok", "conversation_id": "c1"}'
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    with live_server(sidecar) as fake:
        settings = Settings(
            database_url=database_url,
            jwt_secret=JWT_SECRET,
            agent_app_id="tasktide-agent",
            DAPR_HTTP_PORT=port_of(fake),
        )
        for services in built(settings):
            app = forwarding_api(services)
            with live_server(app) as api:
                answers = [
                    httpx.post(f"{api.base_url}/api/alice/chat", json=HI, headers=auth("alice"))
                    for _ in range(2)
                ]
                client = app.state.agent_client[1]
    assert [a.status_code for a in answers] == [200, 200]
    assert len(peers) == 2 and peers[0] == peers[1]  # the second turn reused the first turn's connection
    assert client.is_closed and app.state.agent_client is None
