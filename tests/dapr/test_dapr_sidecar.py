"""Dapr adapters against the fake sidecar: outages, deadlines, misconfiguration and client construction."""

from __future__ import annotations

import pytest

from tasktide.dapr.ports import (
    EtagMismatch,
    SecretAccessDenied,
    SecretNotFound,
    SidecarUnavailable,
    StoreError,
)
from tasktide.dapr.sidecar import (
    STALE_ETAG,
    DaprSecretStore,
    DaprStateStore,
    RetryConfig,
    dapr_client_factory,
    sidecar_address,
)
from tests.dapr.fake_sidecar import FAST_RETRY, CountingFactory, FakeSidecar, FakeStores


def test_state_sidecar_down_raises_sidecar_unavailable_after_bounded_retries_then_recovers(
    sidecar: FakeSidecar, client_factory: CountingFactory
) -> None:
    store = DaprStateStore("statestore", client_factory, retry=FAST_RETRY)
    assert store.put_if_absent("kept", b"before-outage") is True
    builds_before_outage = client_factory.calls

    sidecar.stop()
    with pytest.raises(SidecarUnavailable) as caught:
        store.get("kept")

    message = str(caught.value)
    assert "after 3 attempts" in message
    assert "statestore" in message
    # the first attempt used the live client; the two retries each tried to build a fresh one
    assert client_factory.calls - builds_before_outage == FAST_RETRY.attempts - 1

    sidecar.start()
    item = store.get("kept")
    assert item is not None and item.value == b"before-outage"
    assert store.put_if_absent("kept", b"after-outage") is False
    store.close()


def test_state_sidecar_never_started_fails_fast_with_health_check_message(
    sidecar: FakeSidecar, client_factory: CountingFactory
) -> None:
    sidecar.stop()
    store = DaprStateStore("statestore", client_factory, retry=FAST_RETRY)

    with pytest.raises(SidecarUnavailable) as caught:
        store.put_if_absent("k", b"v")

    assert client_factory.calls == FAST_RETRY.attempts
    assert "healthz" in str(caught.value)


def test_secret_sidecar_down_raises_sidecar_unavailable(
    sidecar: FakeSidecar, client_factory: CountingFactory
) -> None:
    store = DaprSecretStore("secretstore", client_factory, retry=FAST_RETRY)
    assert store.get_secret("db-password") == "s3cret"

    sidecar.stop()
    with pytest.raises(SidecarUnavailable, match="secretstore"):
        store.get_secret("db-password")

    sidecar.start()
    assert store.get_secret("db-password") == "s3cret"


def test_state_hung_sidecar_raises_sidecar_unavailable_on_deadline(
    sidecar: FakeSidecar, fake_stores: FakeStores
) -> None:
    factory = dapr_client_factory(sidecar.grpc_port, call_timeout=0.2, probe_timeout=0.5)
    store = DaprStateStore("statestore", factory, retry=FAST_RETRY)
    fake_stores.get_delay = 1.0

    with pytest.raises(SidecarUnavailable, match="did not answer in time"):
        store.get("k")

    assert fake_stores.calls.count("GetState") == 1  # a deadline is not blindly retried
    fake_stores.get_delay = 0.0
    assert store.get("k") is None


def test_state_unknown_store_name_raises_store_error_not_conflict(client_factory: CountingFactory) -> None:
    store = DaprStateStore("no-such-store", client_factory, retry=FAST_RETRY)

    with pytest.raises(StoreError, match="no-such-store"):
        store.put_if_absent("k", b"v")
    with pytest.raises(StoreError):
        store.get("k")


def test_secret_unknown_store_name_raises_store_error(client_factory: CountingFactory) -> None:
    store = DaprSecretStore("no-such-store", client_factory, retry=FAST_RETRY)

    with pytest.raises(StoreError, match="no-such-store"):
        store.get_secret("db-password")


def test_secret_missing_in_dapr_maps_internal_not_found_to_secret_not_found(
    client_factory: CountingFactory,
) -> None:
    store = DaprSecretStore("secretstore", client_factory, retry=FAST_RETRY)

    with pytest.raises(SecretNotFound) as caught:
        store.get_secret("nope")

    assert "secret store secretstore" in caught.value.detail


def test_state_ttl_is_sent_as_ttl_in_seconds_metadata(
    client_factory: CountingFactory, fake_stores: FakeStores
) -> None:
    store = DaprStateStore("statestore", client_factory, retry=FAST_RETRY)

    store.put_if_absent("k", b"v", ttl_seconds=90)

    entry = fake_stores.state["k"]
    assert entry.expires_at is not None
    assert (entry.expires_at - fake_stores.clock()).total_seconds() == 90


def test_state_put_when_value_replaced_before_read_back_returns_unmatchable_etag(
    client_factory: CountingFactory, fake_stores: FakeStores
) -> None:
    store = DaprStateStore("statestore", client_factory, retry=FAST_RETRY)
    original_get = store.get

    def get_after_concurrent_write(key: str) -> object:
        fake_stores.state[key].value = b"someone-else"  # another writer lands between save and read-back
        return original_get(key)

    store.get = get_after_concurrent_write  # type: ignore[method-assign,assignment]
    etag = store.put("k", b"mine", etag=None)
    store.get = original_get  # type: ignore[method-assign]

    assert etag == STALE_ETAG
    with pytest.raises(EtagMismatch):
        store.put("k", b"mine-again", etag=etag)


def test_sidecar_address_default_host_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAPR_RUNTIME_HOST", raising=False)
    assert sidecar_address(50001) == "127.0.0.1:50001"

    monkeypatch.setenv("DAPR_RUNTIME_HOST", "dapr.local")
    assert sidecar_address(50001) == "dapr.local:50001"
    assert sidecar_address(50001, "explicit") == "explicit:50001"


def test_retry_config_delay_grows_and_is_capped() -> None:
    retry = RetryConfig(attempts=5, base_delay=0.1, max_delay=0.3)

    assert [retry.delay(n) for n in range(4)] == [0.1, 0.2, 0.3, 0.3]


def test_secret_bundle_secret_key_wins_over_named_secret(
    sidecar: FakeSidecar, fake_stores: FakeStores, client_factory: CountingFactory
) -> None:
    fake_stores.bundles["tasktide-secrets"] = {"jwt-secret": "from-bundle", "database-url": "postgresql://x"}
    store = DaprSecretStore("secretstore", client_factory, retry=FAST_RETRY)
    assert store.get_secret("jwt-secret") == "from-bundle"
    assert store.get_secret("db-password") == "s3cret"  # not in the bundle: the secret of that name


def test_secret_out_of_scope_raises_secret_access_denied_naming_the_scope(
    sidecar: FakeSidecar, fake_stores: FakeStores, client_factory: CountingFactory
) -> None:
    fake_stores.allowed_secrets = {"tasktide-secrets"}
    store = DaprSecretStore("secretstore", client_factory, retry=FAST_RETRY)

    with pytest.raises(SecretAccessDenied, match=r"spec\.secrets\.scopes") as caught:
        store.get_secret("db-password")

    assert isinstance(caught.value, SecretNotFound) and caught.value.name == "db-password"
