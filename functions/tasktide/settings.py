"""Settings read from the environment (prefix ``TASKTIDE_``), lazily, never at import."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "tasktide-dev-secret-do-not-use-in-production"
REPO_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    """Every knob of the system; each field maps to ``TASKTIDE_<NAME>``.

    The container's gunicorn sizing (``TASKTIDE_WORKERS``, ``TASKTIDE_THREADS``) is read by ``tasktide serve``
    before any Python app exists, so it lives in ``serve.py``."""

    model_config = SettingsConfigDict(env_prefix="TASKTIDE_", extra="ignore")

    database_url: str = "sqlite:///./tasktide.db"
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str | None = None
    jwt_secret: str | None = None
    kafka_bootstrap: str | None = None
    namespace: str = "default"
    broker: str = "default"
    eventing_dir: Path = REPO_ROOT / "eventing"
    knative_dir: Path = REPO_ROOT / "knative"
    ping_every: float | None = None
    dapr_http_port: int | None = Field(default=None, validation_alias="DAPR_HTTP_PORT")
    dapr_grpc_port: int | None = Field(default=None, validation_alias="DAPR_GRPC_PORT")
    secret_store: str = "secretstore"
    state_store: str = "statestore"
    local_secrets_file: Path | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_from: str = "tasktide@localhost"
    webhook_secret: str | None = None
    log_level: str = "INFO"
    max_body_bytes: int = 64 * 1024

    @property
    def embedded(self) -> bool:
        """The one-process default: SQLite and no Dapr sidecar (dev secrets allowed only here)."""
        return self.database_url.startswith("sqlite") and self.dapr_grpc_port is None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
