"""The Dapr adapters, the fake sidecar and dapr/resiliency.yaml against a real daprd v1.16 (one for the
module): state.postgresql on the test Postgres, secretstores.local.file, the repo's Resiliency and a
Configuration rendered from dapr/configuration.yaml (tasktide.dapr.selfhosted)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from dapr.clients import DaprClient
from dapr.clients.grpc._state import Concurrency, StateOptions
from sqlalchemy import text

from tasktide.dapr.daprd import Daprd
from tasktide.dapr.ports import EtagMismatch, SecretAccessDenied, SecretNotFound
from tasktide.dapr.sidecar import DaprSecretStore, DaprStateStore, dapr_client_factory
from tasktide.db.engine import make_engine
from tests.dapr import realdaprd
from tests.dapr.fake_sidecar import FAST_RETRY, FakeClock, FakeSidecar, FakeStores

pytestmark = pytest.mark.postgres

FIRST_WRITE = StateOptions(concurrency=Concurrency.first_write)
STALE = "4242424"  # an etag neither store has handed out


@pytest.fixture
def daprd(real_daprd_env: Daprd, postgres_url: str) -> Daprd:
    engine = make_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM tasktide_dapr_state"))
    engine.dispose()
    return real_daprd_env


@pytest.fixture
def state(daprd: Daprd) -> Iterator[DaprStateStore]:
    store = DaprStateStore("statestore", dapr_client_factory(daprd.grpc_port), retry=FAST_RETRY)
    yield store
    store.close()


def test_daprd_self_hosted_listens_on_loopback_only_and_uses_no_udp(daprd: Daprd) -> None:
    assert daprd.process is not None
    bound = realdaprd.sockets(daprd.process.pid)

    listening = {(ip, port) for proto, ip, port, st in bound if proto.startswith("tcp") and st == "0A"}
    assert {ip for ip, _ in listening} == {"127.0.0.1"}
    assert {daprd.http_port, daprd.grpc_port, daprd.internal_grpc_port} <= {port for _, port in listening}
    assert 9090 not in {port for _, port in listening}  # metrics off: never queue-proxy's port
    assert [s for s in bound if s[0].startswith("udp")] == []  # no mDNS (0.0.0.0:5353) or any UDP


def test_state_put_if_absent_lost_first_write_on_real_daprd_returns_false(state: DaprStateStore) -> None:
    assert state.put_if_absent("claim", b"first") is True

    assert state.put_if_absent("claim", b"duplicate delivery") is False
    item = state.get("claim")
    assert item is not None and item.value == b"first"


def test_resiliency_conflicts_in_a_row_not_retried_and_breaker_stays_closed(
    daprd: Daprd, state: DaprStateStore
) -> None:
    state.put_if_absent("claim", b"first")
    current = state.put("versioned", b"v1", etag=None)
    for _ in range(8):  # the old policy retried each lost first write 5 times and tripped after 5
        assert state.put_if_absent("claim", b"again") is False
        with pytest.raises(EtagMismatch):
            state.put("versioned", b"lost update", etag="1")

    assert state.put("versioned", b"v2", etag=current)  # the breaker is closed: writes still work
    assert state.put_if_absent("fresh", b"x") is True
    log = daprd.log_tail(400)
    assert "Retrying" not in log
    assert "Circuit breaker" not in log


def test_secret_outside_configuration_scope_on_real_daprd_raises_secret_access_denied(daprd: Daprd) -> None:
    store = DaprSecretStore(
        "secretstore", dapr_client_factory(daprd.grpc_port), retry=FAST_RETRY, bundle=None
    )

    with pytest.raises(SecretAccessDenied) as caught:
        store.get_secret("outside-scope")  # in the file, but dapr/configuration.yaml allows only the bundle

    assert isinstance(caught.value, SecretNotFound)
    assert "spec.secrets.scopes" in str(caught.value)
    assert "outside-scope" in str(caught.value)
    store.close()


def test_secret_in_bundle_on_real_daprd_is_served_despite_default_deny(daprd: Daprd) -> None:
    store = DaprSecretStore("secretstore", dapr_client_factory(daprd.grpc_port), retry=FAST_RETRY)

    assert store.get_secret("db-password") == realdaprd.SECRETS["db-password"]
    with pytest.raises(SecretAccessDenied):
        store.get_secret("not-anywhere")
    store.close()


# --- the fake answers what the real one answers -------------------------------------------------------

Call = Callable[[DaprClient], Any]


def _save(key: str, etag: str | None = None, options: StateOptions | None = FIRST_WRITE) -> Call:
    return lambda c: c.save_state("statestore", key, b"v", etag=etag, options=options)


def _delete(key: str, etag: str) -> Call:
    return lambda c: c.delete_state("statestore", key, etag=etag, options=FIRST_WRITE)


def _secret(name: str) -> Call:
    return lambda c: c.get_secret("secretstore", name)


# (what, set-up calls, the call, expected gRPC code, a phrase of daprd's message)
ANSWERS: list[tuple[str, list[Call], Call, grpc.StatusCode, str]] = [
    ("lost first write", [_save("k")], _save("k"), grpc.StatusCode.INTERNAL, "no item was updated"),
    ("stale etag", [_save("k")], _save("k", etag=STALE), grpc.StatusCode.ABORTED, "etag mismatch"),
    ("etag on missing key", [], _save("absent", etag=STALE), grpc.StatusCode.ABORTED, "etag mismatch"),
    ("malformed etag", [_save("k")], _save("k", etag="x"), grpc.StatusCode.INVALID_ARGUMENT, "etag"),
    ("stale etag delete", [_save("k")], _delete("k", etag=STALE), grpc.StatusCode.ABORTED, "etag mismatch"),
    ("unknown store", [], lambda c: c.get_state("nope", "k"), grpc.StatusCode.INVALID_ARGUMENT, "nope"),
    ("secret out of scope", [], _secret("outside-scope"), grpc.StatusCode.PERMISSION_DENIED, "denied"),
]


def _answer(client: DaprClient, setup: list[Call], call: Call) -> tuple[grpc.StatusCode, str]:
    for step in setup:
        step(client)
    with pytest.raises(grpc.RpcError) as caught:
        call(client)
    return caught.value.code(), str(caught.value.details())


@pytest.fixture
def fake_like_real(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSidecar]:
    """The fake configured as the real one is here: the bundle in scope, everything else denied."""
    stores = FakeStores(
        clock=FakeClock(),
        bundles={realdaprd.selfhosted.SECRET_BUNDLE: dict(realdaprd.SECRETS)},
        secrets=dict(realdaprd.OUT_OF_SCOPE),
        allowed_secrets={realdaprd.selfhosted.SECRET_BUNDLE},
    )
    fake = FakeSidecar(stores)
    fake.start()
    yield fake
    fake.stop()


@pytest.mark.parametrize(("what", "setup", "call", "code", "phrase"), ANSWERS, ids=[a[0] for a in ANSWERS])
def test_fake_sidecar_error_answer_matches_real_daprd(
    daprd: Daprd,
    fake_like_real: FakeSidecar,
    monkeypatch: pytest.MonkeyPatch,
    what: str,
    setup: list[Call],
    call: Call,
    code: grpc.StatusCode,
    phrase: str,
) -> None:
    with DaprClient(f"127.0.0.1:{daprd.grpc_port}") as real:
        real_answer = _answer(real, setup, call)
    monkeypatch.setenv("DAPR_HTTP_PORT", str(fake_like_real.http_port))
    with DaprClient(f"127.0.0.1:{fake_like_real.grpc_port}") as fake:
        fake_answer = _answer(fake, setup, call)

    assert real_answer[0] == fake_answer[0] == code, (real_answer, fake_answer)
    assert phrase in real_answer[1].lower() and phrase in fake_answer[1].lower(), (real_answer, fake_answer)
