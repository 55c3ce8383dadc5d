"""Secret and state ports, and the adapter choice: Dapr sidecar when ``DAPR_GRPC_PORT`` is set, else embedded.

Consumes: ``Settings`` fields ``dapr_grpc_port``, ``secret_store``, ``state_store``, ``local_secrets_file``;
a ``sqlalchemy.Engine`` for the embedded state store.
Emits: ``secret_store(settings)`` / ``state_store(settings, engine)`` and re-exports the ports and errors.
Adapter modules (and the Dapr SDK) are imported only when a store is built, never at import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasktide.dapr.ports import (
    EtagMismatch,
    SecretAccessDenied,
    SecretNotFound,
    SecretStore,
    SidecarUnavailable,
    StateItem,
    StateStore,
    StoreError,
)

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from tasktide.settings import Settings

__all__ = [
    "EtagMismatch",
    "SecretAccessDenied",
    "SecretNotFound",
    "SecretStore",
    "SidecarUnavailable",
    "StateItem",
    "StateStore",
    "StoreError",
    "secret_store",
    "state_store",
]


def secret_store(settings: Settings) -> SecretStore:
    """Dapr secret store ``settings.secret_store`` when a sidecar is configured, else file/env secrets."""
    if settings.dapr_grpc_port:
        from tasktide.dapr.sidecar import DaprSecretStore, dapr_client_factory

        return DaprSecretStore(settings.secret_store, dapr_client_factory(settings.dapr_grpc_port))
    from tasktide.dapr.embedded import EnvSecretStore

    return EnvSecretStore(settings.local_secrets_file)


def state_store(settings: Settings, engine: Engine) -> StateStore:
    """Dapr state store ``settings.state_store`` when a sidecar is configured, else SQL on ``engine``."""
    if settings.dapr_grpc_port:
        from tasktide.dapr.sidecar import DaprStateStore, dapr_client_factory

        return DaprStateStore(settings.state_store, dapr_client_factory(settings.dapr_grpc_port))
    from tasktide.dapr.embedded import SqlStateStore

    return SqlStateStore(engine)
