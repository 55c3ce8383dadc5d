"""Backends for the Dapr port contract tests: embedded SQLite, embedded Postgres, and the Dapr adapters
talking gRPC to an in-process fake sidecar. Every contract test runs against each of them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_sidecar import FAST_RETRY, CountingFactory, FakeClock, FakeSidecar, FakeStores
from sqlalchemy import Engine, text

from tasktide.dapr.embedded import EnvSecretStore, SqlStateStore
from tasktide.dapr.ports import SecretStore, StateStore
from tasktide.dapr.sidecar import DaprSecretStore, DaprStateStore, dapr_client_factory
from tasktide.db.engine import make_engine

SECRETS = {"db-password": "s3cret", "smtp:user": "mailer"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake_stores(clock: FakeClock) -> FakeStores:
    return FakeStores(clock=clock, secrets=dict(SECRETS))


@pytest.fixture
def sidecar(fake_stores: FakeStores, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSidecar]:
    """A running fake sidecar; env points the SDK's health probe at it (as daprd's injector would)."""
    fake = FakeSidecar(fake_stores)
    fake.start()
    for name in ("DAPR_HTTP_ENDPOINT", "DAPR_GRPC_ENDPOINT", "DAPR_HEALTH_TIMEOUT", "DAPR_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DAPR_RUNTIME_HOST", "127.0.0.1")
    monkeypatch.setenv("DAPR_HTTP_PORT", str(fake.http_port))
    monkeypatch.setenv("DAPR_GRPC_PORT", str(fake.grpc_port))
    yield fake
    fake.stop()


@pytest.fixture
def client_factory(sidecar: FakeSidecar) -> CountingFactory:
    return CountingFactory(dapr_client_factory(sidecar.grpc_port, call_timeout=2.0, probe_timeout=0.5))


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    yield engine
    engine.dispose()


def _postgres_engine(request: pytest.FixtureRequest) -> Engine:
    url: str = request.getfixturevalue("postgres_url")  # root conftest: skips locally, fails under CI
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS dapr_state"))
    return engine


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "dapr"],
)
def state_store(request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path) -> Iterator[StateStore]:
    if request.param == "dapr":
        factory: CountingFactory = request.getfixturevalue("client_factory")
        store = DaprStateStore("statestore", factory, retry=FAST_RETRY)
        yield store
        store.close()
        return
    if request.param == "sqlite":
        engine = request.getfixturevalue("sqlite_engine")
        yield SqlStateStore(engine, clock=clock)
        return
    engine = _postgres_engine(request)
    yield SqlStateStore(engine, clock=clock)
    engine.dispose()


@pytest.fixture(params=["env", "file", "dapr"])
def secret_store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SecretStore]:
    if request.param == "env":
        monkeypatch.setenv("TASKTIDE_SECRET_DB_PASSWORD", SECRETS["db-password"])
        monkeypatch.setenv("TASKTIDE_SECRET_SMTP_USER", SECRETS["smtp:user"])
        monkeypatch.delenv("TASKTIDE_SECRET_MISSING", raising=False)
        yield EnvSecretStore()
    elif request.param == "file":
        path = tmp_path / "secrets.json"
        path.write_text(json.dumps({"db-password": "s3cret", "smtp": {"user": "mailer"}}), encoding="utf-8")
        yield EnvSecretStore(path)
    else:
        factory = request.getfixturevalue("client_factory")
        store = DaprSecretStore("secretstore", factory, retry=FAST_RETRY)
        yield store
        store.close()
