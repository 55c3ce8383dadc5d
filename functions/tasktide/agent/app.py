"""The `tasktide-agent` Service's own app: the chat route, health and metrics, and nothing of the task API.

Consumes: `POST|GET /api/{user}/chat` (from the API's Dapr sidecar, which forwards the board's chat: see
`tasktide.agent.forward`), authenticated with the user's JWT exactly as on the API; the task tools at the
API's `/mcp` through this pod's Dapr sidecar (`/v1.0/invoke/tasktide-api/method/mcp`) or
`TASKTIDE_AGENT_MCP_URL`. Emits: the chat answers; conversations in the state store (so a revision scaled to
zero resumes them); RED metrics as `function="agent"` plus `tasktide_chat_*` at `/metrics`.
Serves `GET /healthz` and `GET /readyz` (no database: the agent holds none of its own).
"""

from __future__ import annotations

from fastapi import FastAPI, Response
from starlette.types import Scope

from tasktide.agent import chat
from tasktide.api import problems
from tasktide.edges.bodyguard import BufferedBody
from tasktide.observability import metrics
from tasktide.observability.red import RedMetrics
from tasktide.services import Services

FUNCTION = "agent"


def _is_chat(scope: Scope) -> bool:
    return str(scope.get("path", "")).endswith("/chat")


def create_agent_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="tasktide-agent",
        version="0.1.0",
        docs_url=None,
        redoc_url=None,
        redirect_slashes=False,
    )
    app.state.services = services
    app.state.serves_mcp = False  # the tools live on the API: reach them by Dapr or TASKTIDE_AGENT_MCP_URL
    problems.install(app)
    app.include_router(chat.router)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> dict[str, str]:
        return {"status": "ready"}

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        payload, content_type = metrics.render()
        return Response(payload, media_type=content_type)

    settings = services.settings
    app.add_middleware(
        BufferedBody,
        timeout=settings.body_read_timeout,
        max_bytes=settings.max_body_bytes,
        max_depth=settings.max_json_depth,
    )
    app.add_middleware(RedMetrics, function=FUNCTION, counted=_is_chat)
    return app
