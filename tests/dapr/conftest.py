"""Backends for the Dapr port contract tests: embedded SQLite, embedded Postgres, and the Dapr adapters
talking gRPC to an in-process fake sidecar and to a real daprd v1.16 (state.postgresql on the test
Postgres, secretstores.local.file, the repo's Resiliency; one daprd per test module). Every contract test
runs against each of them."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from tasktide.dapr.daprd import Daprd
from tasktide.dapr.embedded import EnvSecretStore, SqlStateStore
from tasktide.dapr.ports import SecretStore, StateStore
from tasktide.dapr.sidecar import DaprSecretStore, DaprStateStore, dapr_client_factory
from tasktide.db.engine import make_engine
from tests.dapr import realdaprd
from tests.dapr.fake_sidecar import FAST_RETRY, CountingFactory, FakeClock, FakeSidecar, FakeStores

SECRETS = realdaprd.SECRETS
STATE_TABLE = "tasktide_dapr_state"  # dapr/statestore.yaml


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake_stores(clock: FakeClock) -> FakeStores:
    return FakeStores(clock=clock, secrets=dict(SECRETS))


@pytest.fixture(scope="module")
def real_daprd(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daprd]:
    """One real daprd per test module, with the components a function gets (dapr/ YAML, made local)."""
    workdir = tmp_path_factory.mktemp("daprd")
    secrets = realdaprd.selfhosted.write_secrets(workdir / "secrets.json", SECRETS, realdaprd.OUT_OF_SCOPE)
    daprd = realdaprd.start(workdir, realdaprd.APP_ID, realdaprd.state_docs(postgres_url, secrets))
    yield daprd
    daprd.stop()


@pytest.fixture
def real_daprd_env(real_daprd: Daprd, monkeypatch: pytest.MonkeyPatch) -> Daprd:
    """Env pointing the SDK's health probe at the real daprd; its state table emptied."""
    for name in ("DAPR_HTTP_ENDPOINT", "DAPR_GRPC_ENDPOINT", "DAPR_HEALTH_TIMEOUT", "DAPR_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in real_daprd.client_env().items():
        monkeypatch.setenv(name, value)
    return real_daprd


def _age_rows(engine: Engine) -> Callable[[float], None]:
    """FakeClock hook: move every expiry back, as if the Postgres clock had moved forward."""

    def age(seconds: float) -> None:
        with engine.begin() as conn:
            conn.execute(
                text(f"UPDATE {STATE_TABLE} SET expiredate = expiredate - make_interval(secs => :s)"),
                {"s": seconds},
            )

    return age


def _real_state_store(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[StateStore]:
    daprd: Daprd = request.getfixturevalue("real_daprd_env")
    engine = make_engine(request.getfixturevalue("postgres_url"))
    with engine.begin() as conn:
        conn.execute(text(f"DELETE FROM {STATE_TABLE}"))
    clock.on_advance.append(_age_rows(engine))
    factory = dapr_client_factory(daprd.grpc_port, call_timeout=5.0, probe_timeout=1.0)
    store = DaprStateStore("statestore", factory, retry=FAST_RETRY)
    yield store
    store.close()
    engine.dispose()


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
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        "dapr",
        pytest.param("daprd", marks=pytest.mark.postgres),
    ],
)
def state_store(request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path) -> Iterator[StateStore]:
    if request.param == "daprd":
        yield from _real_state_store(request, clock)
        return
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


@pytest.fixture(params=["env", "file", "dapr", pytest.param("daprd", marks=pytest.mark.postgres)])
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
    elif request.param == "daprd":
        daprd: Daprd = request.getfixturevalue("real_daprd_env")
        real = DaprSecretStore("secretstore", dapr_client_factory(daprd.grpc_port), retry=FAST_RETRY)
        yield real
        real.close()
    else:
        factory = request.getfixturevalue("client_factory")
        store = DaprSecretStore("secretstore", factory, retry=FAST_RETRY)
        yield store
        store.close()
