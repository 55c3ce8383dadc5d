"""Settings read from the environment (prefix ``TASKTIDE_``) by pydantic-settings, lazily, never at import.

pydantic-settings costs a function's cold start some milliseconds of imports (measured in
docs/benchmarks.md); we keep the library rather than a hand-written environment reader.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "tasktide-dev-secret-do-not-use-in-production"
REPO_ROOT = Path(__file__).resolve().parents[2]
_DURATION = re.compile(r"^(?P<n>\d+(?:\.\d+)?)(?P<unit>ms|[smhd])?$")
_UNIT_SECONDS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class ConfigurationError(RuntimeError):
    """A setting or secret is missing or wrong; ``str(exc)`` tells the operator what to set."""


def parse_seconds(text: str) -> float:
    """``"1s"``, ``"500ms"``, ``"15m"``, ``"2h"``, ``"1d"`` or a plain number of seconds, as seconds."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 1s, 500ms, 15m, 24h or a number of seconds")
    return float(match["n"]) * _UNIT_SECONDS[match["unit"]]


class Settings(BaseSettings):
    """Every knob of the system; each field maps to ``TASKTIDE_<NAME>``.

    The container's gunicorn sizing (``TASKTIDE_WORKERS``, ``TASKTIDE_THREADS``) is read by ``tasktide serve``
    before any Python app exists, so it lives in ``serve.py``."""

    model_config = SettingsConfigDict(env_prefix="TASKTIDE_", extra="ignore")

    database_url: str = "sqlite:///./tasktide.db"
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str | None = None
    jwt_secret: str | None = None  # "current[,retired,...]": the first signs, all verify (rotation)
    jwt_audience: str = "tasktide-api"
    jwt_issuer: str = "tasktide"
    jwt_max_ttl: int = 7 * 24 * 3600  # seconds: tokens expiring later than this from now are refused
    kafka_bootstrap: str | None = None
    namespace: str = "default"
    broker: str = "default"
    eventing_dir: Path = REPO_ROOT / "eventing"
    knative_dir: Path = REPO_ROOT / "knative"
    ping_every: float | None = None
    dev_mode: bool = False
    # Postgres, no relay in this process: outbox rows travel to the listening relay in their NOTIFY
    # (tasktide.db.outbox, "Hand-off by NOTIFY"); the API's Knative Service sets it
    outbox_notify_handoff: bool = False
    dapr_http_port: int | None = Field(default=None, validation_alias="DAPR_HTTP_PORT")
    dapr_grpc_port: int | None = Field(default=None, validation_alias="DAPR_GRPC_PORT")
    # the sidecar's API token (dapr.io/api-token-secret); the Dapr SDK reads it itself, httpx calls send it
    dapr_api_token: str | None = Field(default=None, validation_alias="DAPR_API_TOKEN", repr=False)
    secret_store: str = "secretstore"
    state_store: str = "statestore"
    local_secrets_file: Path | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_from: str = "tasktide@localhost"
    webhook_secret: str | None = None
    # http:// and loopback webhook receivers: for `tasktide dev` and tests on one machine only
    webhook_allow_local: bool = False
    webhook_timeout: float = 10.0
    # Sender authentication on the event path (tasktide.edges.senderauth): a function server verifies the
    # bearer token of every POST when event_audience is set; keys are HS256 secrets (the local router's,
    # comma-separated, the first signs) and/or the cluster issuer's JWKS URL. `tasktide dev` turns it on for
    # every function unless event_auth is false, with a per-process key when event_signing_key is unset.
    event_audience: str | None = None
    event_signing_key: str | None = None
    event_jwks_url: str | None = None
    event_issuer: str | None = None
    event_subjects: str | None = None
    event_auth: bool = True
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "text"] = "auto"
    outbox_retention: float = 7 * 24 * 3600  # seconds a sent outbox row is kept (its event id dedupes)
    state_retention: float = 24 * 3600  # seconds an expired state row is kept before it is deleted
    idempotency_retention: float = 24 * 3600  # seconds an Idempotency-Key is remembered (then purged)
    max_body_bytes: int = 64 * 1024
    body_read_timeout: float = 10.0  # seconds for a whole request body (slow clients get 408)
    max_json_depth: int = 32  # deeper request bodies are answered 400
    # The API process publishes its own outbox rows right after commit only when asked (`tasktide dev`, the
    # one-process mode, always does); otherwise the `tasktide-relay` Service publishes them.
    relay_in_process: bool = False
    # Chat agent (tasktide.agent): any OpenAI-compatible provider; the key is the `model-api-key` secret.
    model_name: str | None = None
    model_base_url: str | None = None
    model_api_key: str | None = None
    agent_mcp_url: str | None = None
    agent_api_app_id: str = "tasktide-api"
    agent_max_turns: int = 8
    # Set on the API of a cluster (`tasktide-agent`): `/api/{user}/chat` is forwarded to that Dapr app id
    # through the API's sidecar instead of being answered in-process (tasktide.agent.forward).
    agent_app_id: str | None = None
    # What `tasktide serve` runs (read from the environment by tasktide.entrypoints.serve.command): the task
    # API, or the chat agent alone (the `tasktide-agent` Service).
    role: Literal["api", "agent"] = "api"
    agent_timeout: float = 150.0  # seconds one forwarded chat turn may take

    @field_validator("ping_every", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        """``TASKTIDE_PING_EVERY=1s`` (the README's value) as well as ``1`` or ``0.5``."""
        return parse_seconds(value) if isinstance(value, str) and value.strip() else value

    @property
    def embedded(self) -> bool:
        """Development secrets are allowed: ``tasktide dev`` (``TASKTIDE_DEV_MODE``, set by the command, on
        any database), or the one-process default (SQLite and no Dapr sidecar)."""
        if self.dev_mode:
            return True
        return self.database_url.startswith("sqlite") and self.dapr_grpc_port is None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
