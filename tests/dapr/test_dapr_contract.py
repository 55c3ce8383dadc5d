"""Contract of the ``StateStore`` and ``SecretStore`` ports, run against every backend (see conftest)."""

from __future__ import annotations

import threading

import pytest

from tasktide.dapr.ports import EtagMismatch, SecretNotFound, SecretStore, StateItem, StateStore
from tests.dapr.fake_sidecar import FakeClock

BINARY = b"\x00\xffnot-utf8\x80"


def test_state_get_missing_key_returns_none(state_store: StateStore) -> None:
    assert state_store.get("nothing-here") is None


def test_state_put_if_absent_new_key_returns_true_and_stores_value(state_store: StateStore) -> None:
    assert state_store.put_if_absent("k", BINARY) is True

    item = state_store.get("k")
    assert item is not None
    assert item.value == BINARY
    assert item.etag


def test_state_put_if_absent_existing_key_returns_false_and_keeps_first_value(
    state_store: StateStore,
) -> None:
    assert state_store.put_if_absent("k", b"first") is True

    assert state_store.put_if_absent("k", b"second") is False
    item = state_store.get("k")
    assert item is not None and item.value == b"first"


def test_state_put_if_absent_concurrent_writers_exactly_one_wins(state_store: StateStore) -> None:
    results: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(6)

    def writer(n: int) -> None:
        barrier.wait()
        won = state_store.put_if_absent("race", f"writer-{n}".encode())
        with lock:
            results.append(won)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == [False] * 5 + [True]
    item = state_store.get("race")
    assert item is not None and item.value.startswith(b"writer-")


def test_state_put_without_etag_overwrites_and_returns_current_etag(state_store: StateStore) -> None:
    state_store.put_if_absent("k", b"v1")
    before = state_store.get("k")

    etag = state_store.put("k", b"v2", etag=None)

    assert before is not None and etag != before.etag
    assert state_store.get("k") == StateItem(value=b"v2", etag=etag)


def test_state_put_without_etag_creates_missing_key(state_store: StateStore) -> None:
    etag = state_store.put("fresh", b"v", etag=None)

    assert state_store.get("fresh") == StateItem(value=b"v", etag=etag)


def test_state_put_with_current_etag_succeeds_and_chains(state_store: StateStore) -> None:
    first = state_store.put("k", b"v1", etag=None)

    second = state_store.put("k", b"v2", etag=first)
    third = state_store.put("k", b"v3", etag=second)

    assert len({first, second, third}) == 3
    assert state_store.get("k") == StateItem(value=b"v3", etag=third)


def test_state_put_with_stale_etag_raises_etag_mismatch_and_keeps_value(state_store: StateStore) -> None:
    stale = state_store.put("k", b"v1", etag=None)
    state_store.put("k", b"v2", etag=stale)

    with pytest.raises(EtagMismatch):
        state_store.put("k", b"lost-update", etag=stale)
    item = state_store.get("k")
    assert item is not None and item.value == b"v2"


def test_state_put_with_etag_on_missing_key_raises_etag_mismatch(state_store: StateStore) -> None:
    with pytest.raises(EtagMismatch):
        state_store.put("absent", b"v", etag="12345")
    assert state_store.get("absent") is None


def test_state_put_with_malformed_etag_raises_etag_mismatch(state_store: StateStore) -> None:
    state_store.put("k", b"v1", etag=None)

    with pytest.raises(EtagMismatch):
        state_store.put("k", b"v2", etag="not-an-etag-at-all")


def test_state_ttl_before_expiry_item_is_returned(state_store: StateStore, clock: FakeClock) -> None:
    state_store.put_if_absent("k", b"v", ttl_seconds=60)
    clock.advance(59)

    item = state_store.get("k")
    assert item is not None and item.value == b"v"


def test_state_ttl_after_expiry_item_reads_as_absent(state_store: StateStore, clock: FakeClock) -> None:
    state_store.put("k", b"v", etag=None, ttl_seconds=60)
    clock.advance(61)

    assert state_store.get("k") is None


def test_state_put_if_absent_after_ttl_expiry_takes_over_key(
    state_store: StateStore, clock: FakeClock
) -> None:
    assert state_store.put_if_absent("lease", b"old-owner", ttl_seconds=30) is True
    assert state_store.put_if_absent("lease", b"contender", ttl_seconds=30) is False
    clock.advance(31)

    assert state_store.put_if_absent("lease", b"new-owner", ttl_seconds=30) is True
    item = state_store.get("lease")
    assert item is not None and item.value == b"new-owner"


def test_state_put_with_etag_of_expired_item_raises_etag_mismatch(
    state_store: StateStore, clock: FakeClock
) -> None:
    etag = state_store.put("k", b"v", etag=None, ttl_seconds=10)
    clock.advance(11)

    with pytest.raises(EtagMismatch):
        state_store.put("k", b"v2", etag=etag)


def test_state_put_without_ttl_clears_previous_ttl(state_store: StateStore, clock: FakeClock) -> None:
    state_store.put("k", b"v1", etag=None, ttl_seconds=10)
    state_store.put("k", b"v2", etag=None)
    clock.advance(3600)

    item = state_store.get("k")
    assert item is not None and item.value == b"v2"


def test_state_delete_existing_key_removes_it(state_store: StateStore) -> None:
    state_store.put("k", b"v", etag=None)

    state_store.delete("k")

    assert state_store.get("k") is None
    assert state_store.put_if_absent("k", b"again") is True


def test_state_delete_missing_key_is_noop(state_store: StateStore) -> None:
    state_store.delete("never-existed")

    assert state_store.get("never-existed") is None


def test_state_delete_with_current_etag_removes_it(state_store: StateStore) -> None:
    etag = state_store.put("k", b"v", etag=None)

    state_store.delete("k", etag=etag)

    assert state_store.get("k") is None


def test_state_delete_with_stale_etag_raises_and_keeps_item(state_store: StateStore) -> None:
    stale = state_store.put("k", b"v1", etag=None)
    current = state_store.put("k", b"v2", etag=stale)

    with pytest.raises(EtagMismatch):
        state_store.delete("k", etag=stale)
    assert state_store.get("k") == StateItem(value=b"v2", etag=current)


def test_secret_existing_name_returns_value(secret_store: SecretStore) -> None:
    assert secret_store.get_secret("db-password") == "s3cret"


def test_secret_nested_or_separator_name_returns_value(secret_store: SecretStore) -> None:
    assert secret_store.get_secret("smtp:user") == "mailer"


def test_secret_missing_name_raises_secret_not_found(secret_store: SecretStore) -> None:
    with pytest.raises(SecretNotFound) as caught:
        secret_store.get_secret("missing")

    assert caught.value.name == "missing"
    assert "missing" in str(caught.value)
