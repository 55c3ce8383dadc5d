"""Adapter selection: Dapr when DAPR_GRPC_PORT is configured, embedded otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tasktide.dapr import secret_store, state_store
from tasktide.dapr.embedded import EnvSecretStore, SqlStateStore
from tasktide.dapr.sidecar import DaprSecretStore, DaprStateStore
from tasktide.settings import Settings
from tests.dapr.fake_sidecar import FakeSidecar


@pytest.fixture
def no_dapr_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DAPR_GRPC_PORT", "DAPR_HTTP_PORT"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_dapr_env")
def test_select_without_dapr_port_returns_embedded_stores(tmp_path: Path, sqlite_engine: Engine) -> None:
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"jwt-secret": "from-file"}), encoding="utf-8")
    settings = Settings(local_secrets_file=secrets)

    secrets_store = secret_store(settings)
    states = state_store(settings, sqlite_engine)

    assert isinstance(secrets_store, EnvSecretStore)
    assert secrets_store.get_secret("jwt-secret") == "from-file"
    assert isinstance(states, SqlStateStore)
    assert states.put_if_absent("k", b"v") is True


def test_select_with_dapr_port_returns_dapr_stores_wired_to_sidecar(
    sidecar: FakeSidecar, sqlite_engine: Engine
) -> None:
    settings = Settings()  # DAPR_GRPC_PORT / DAPR_HTTP_PORT come from env, as injected by Dapr
    assert settings.dapr_grpc_port == sidecar.grpc_port

    secrets_store = secret_store(settings)
    states = state_store(settings, sqlite_engine)

    assert isinstance(secrets_store, DaprSecretStore)
    assert secrets_store.get_secret("db-password") == "s3cret"
    assert isinstance(states, DaprStateStore)
    assert states.put_if_absent("k", b"v") is True
    assert sidecar.stores.state["k"].value == b"v"


def test_select_with_custom_store_names_uses_them(
    sidecar: FakeSidecar, sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    sidecar.stores.state_store_name = "tasktide-state"
    monkeypatch.setenv("TASKTIDE_STATE_STORE", "tasktide-state")

    states = state_store(Settings(), sqlite_engine)

    assert states.put_if_absent("k", b"v") is True
    assert "k" in sidecar.stores.state
