"""`/api/{user}/chat`: one turn of the chat agent (OpenAI Agents SDK) over the task API's MCP tools.

Consumes: `POST {"message", "conversation_id"?}` with the user's bearer JWT (forwarded to the MCP tools, so
the agent can only touch that user's tasks); `GET` says whether a model provider is configured. The model is
any OpenAI-compatible Chat Completions provider: `TASKTIDE_MODEL_NAME`, `TASKTIDE_MODEL_BASE_URL` and the
`model-api-key` secret (or `TASKTIDE_MODEL_API_KEY`). MCP URL: `TASKTIDE_AGENT_MCP_URL`, else Dapr service
invocation of `tasktide-api` when a sidecar is configured, else this same server's `/mcp`.
Emits: `{"conversation_id", "reply", "tool_calls"}`; the conversation in the state store. Problems: 503
without a model provider (the detail says how to configure one), 404 unknown conversation, 409 concurrent
turn, 502 when the provider or the tools fail.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from tasktide.agent.conversations import Conversation, ConversationStore
from tasktide.api.auth import CurrentUser
from tasktide.api.deps import ServicesDep
from tasktide.api.problems import Problem
from tasktide.dapr import EtagMismatch
from tasktide.observability import metrics
from tasktide.services import Services, read_secret
from tasktide.settings import Settings

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/{user_id}", tags=["chat"])
HOW_TO_CONFIGURE = (
    "No model provider is configured for chat. Set TASKTIDE_MODEL_NAME (e.g. gpt-4.1-mini), "
    "TASKTIDE_MODEL_BASE_URL for any OpenAI-compatible server (e.g. http://127.0.0.1:11434/v1), and the "
    "model-api-key secret (or TASKTIDE_MODEL_API_KEY), then restart."
)
INSTRUCTIONS = (
    "You manage the user's tasks with the tasktide tools. Now is {now} (UTC). Create, list, complete, "
    "update or delete tasks as asked; for a repeating task give an RFC 5545 RRULE and the first due time "
    "(RFC 3339) with the user's IANA timezone; reminders are ISO 8601 durations before the due time. "
    "Answer briefly with what you did."
)


class ChatIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = Field(min_length=1, max_length=4000)
    conversation_id: Annotated[str | None, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = None


class ChatOut(BaseModel):
    conversation_id: str
    reply: str
    tool_calls: list[str]


class ChatStatus(BaseModel):
    available: bool
    model: str


@dataclass(frozen=True)
class ModelConfig:
    name: str
    base_url: str | None
    api_key: str


def model_config(services: Services) -> ModelConfig | None:
    settings = services.settings
    if not settings.model_name:
        return None
    key = read_secret(services.secrets, "model-api-key", settings.model_api_key)
    if not key and not settings.model_base_url:
        return None
    return ModelConfig(settings.model_name, settings.model_base_url, key or "not-needed")


def dapr_headers(settings: Settings) -> dict[str, str]:
    """The sidecar's API token (`dapr-api-token`), when the injector gave this app one."""
    token = settings.dapr_api_token
    return {"dapr-api-token": token} if token else {}


def mcp_url(services: Services, request: Request) -> str:
    """`TASKTIDE_AGENT_MCP_URL`; else the API's `/mcp` through this app's Dapr sidecar (service invocation of
    `TASKTIDE_AGENT_API_APP_ID`); else, in-process on the API, that same server's `/mcp`."""
    settings = services.settings
    if settings.agent_mcp_url:
        return settings.agent_mcp_url
    if settings.dapr_http_port:
        return (
            f"http://127.0.0.1:{settings.dapr_http_port}/v1.0/invoke/{settings.agent_api_app_id}/method/mcp"
        )
    if not getattr(request.app.state, "serves_mcp", True):
        detail = (
            "The chat agent has no way to the task tools: set TASKTIDE_AGENT_MCP_URL (e.g. "
            "http://127.0.0.1:8080/mcp) or run it beside a Dapr sidecar (DAPR_HTTP_PORT)."
        )
        raise Problem(503, detail)
    host, port = request.scope.get("server") or ("127.0.0.1", settings.port)
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{host}:{port}/mcp"


_SIDECAR_INVOKE = re.compile(r"^http://127\.0\.0\.1:\d+/v1\.0/invoke/")


def mcp_headers(settings: Settings, url: str, authorization: str) -> dict[str, str]:
    """The caller's JWT, plus the Dapr API token when the MCP URL is this pod's own sidecar (on a cluster
    every sidecar requires it: dapr.io/api-token-secret); never sent anywhere else."""
    headers = {"Authorization": authorization}
    if _SIDECAR_INVOKE.match(url):
        headers.update(dapr_headers(settings))
    return headers


SDK_MODULES = ("openai", "agents", "agents.mcp")
_sdk_imported = False


def import_sdk() -> None:
    for name in SDK_MODULES:
        importlib.import_module(name)


async def load_sdk() -> None:
    """The agents SDK, imported off the event loop the first time (about 1.5 s here): an import on the
    loop would stall every request of this worker meanwhile, `/healthz` included."""
    global _sdk_imported
    if not _sdk_imported:
        await asyncio.to_thread(import_sdk)
        _sdk_imported = True


async def run_turn(
    config: ModelConfig, url: str, headers: dict[str, str], items: list[Any], max_turns: int
) -> tuple[str, list[Any], list[str]]:
    """One agent run: (final text, the whole conversation as input items, the tools it called)."""
    from agents import Agent, OpenAIChatCompletionsModel, Runner, set_tracing_disabled
    from agents.mcp import MCPServerStreamableHttp
    from openai import AsyncOpenAI

    set_tracing_disabled(True)  # nothing leaves for a tracing backend
    client = AsyncOpenAI(base_url=config.base_url, api_key=config.api_key, max_retries=1, timeout=120)
    params = {"url": url, "headers": headers, "timeout": 30}
    async with MCPServerStreamableHttp(params=params, name="tasktide", cache_tools_list=True) as tools:  # type: ignore[arg-type]
        agent = Agent(
            name="tasktide",
            instructions=INSTRUCTIONS.format(now=datetime.now(UTC).isoformat(timespec="minutes")),
            model=OpenAIChatCompletionsModel(model=config.name, openai_client=client),
            mcp_servers=[tools],
        )
        result = await Runner.run(agent, items, max_turns=max_turns)
    called = [
        str(getattr(item.raw_item, "name", ""))
        for item in result.new_items
        if getattr(item, "type", "") == "tool_call_item"
    ]
    return str(result.final_output or ""), result.to_input_list(), called


@router.get("/chat")
def chat_status(user_id: CurrentUser, services: ServicesDep) -> ChatStatus:
    config = model_config(services)
    if config is None:
        raise Problem(503, HOW_TO_CONFIGURE)
    return ChatStatus(available=True, model=config.name)


@router.post("/chat")
async def chat(user_id: CurrentUser, body: ChatIn, request: Request, services: ServicesDep) -> ChatOut:
    try:
        answer = await _turn(user_id, body, request, services)
    except Problem as problem:
        outcomes = {503: "no_model", 404: "not_found", 409: "conflict"}
        metrics.CHAT_TURNS.labels(outcomes.get(problem.status, "failed")).inc()
        raise
    metrics.CHAT_TURNS.labels("ok").inc()
    for tool in answer.tool_calls:
        metrics.CHAT_TOOL_CALLS.labels(tool).inc()
    return answer


async def _turn(user_id: str, body: ChatIn, request: Request, services: Services) -> ChatOut:
    # the model key may come from the Dapr sidecar, and the first turn opens the state store (a table on
    # the embedded backend): both can wait, so off the event loop
    config = await asyncio.to_thread(model_config, services)
    if config is None:
        raise Problem(503, HOW_TO_CONFIGURE)
    url = mcp_url(services, request)
    store = ConversationStore(await asyncio.to_thread(lambda: services.state))
    conversation: Conversation | None
    if body.conversation_id is None:
        conversation = store.new(user_id)
    else:
        conversation = await asyncio.to_thread(store.load, user_id, body.conversation_id)
        if conversation is None:
            detail = f"Conversation {body.conversation_id} does not exist; omit the id to start one."
            raise Problem(404, detail)
    items = [*conversation.items, {"role": "user", "content": body.message}]
    await load_sdk()
    start = time.perf_counter()
    try:
        reply, conversation.items, called = await run_turn(
            config,
            url,
            mcp_headers(services.settings, url, request.headers.get("authorization", "")),
            items,
            services.settings.agent_max_turns,
        )
    except Exception as exc:  # the provider, the tools or the turn budget failed: say which, keep nothing
        log.warning("chat turn failed: %s", type(exc).__name__, exc_info=True)
        raise Problem(502, f"The chat agent could not answer: {type(exc).__name__}: {exc}"[:500]) from None
    finally:
        metrics.CHAT_TURN_DURATION.observe(time.perf_counter() - start)
    try:
        await asyncio.to_thread(store.save, conversation)
    except EtagMismatch:
        raise Problem(409, "Another turn of this conversation finished first; reload it and retry.") from None
    return ChatOut(conversation_id=conversation.id, reply=reply, tool_calls=called)
