"""Embedded adapters beyond the shared contract: local.file secrets, env naming, table ownership."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect

from tasktide.dapr.embedded import EnvSecretStore, SqlStateStore, env_name, flatten_secrets
from tasktide.dapr.ports import SecretNotFound, StoreError
from tests.dapr.fake_sidecar import FakeClock


def test_flatten_secrets_nested_document_joins_keys_with_separator() -> None:
    document = {"db": {"user": "app", "port": 5432, "tls": True}, "hosts": ["a", "b"], "plain": "x"}

    assert flatten_secrets(document) == {
        "db:user": "app",
        "db:port": "5432",
        "db:tls": "true",
        "hosts:0": "a",
        "hosts:1": "b",
        "plain": "x",
    }


def test_flatten_secrets_custom_separator_is_used() -> None:
    assert flatten_secrets({"a": {"b": "c"}}, separator=".") == {"a.b": "c"}


def test_env_name_dashes_and_case_become_env_style() -> None:
    assert env_name("jwt-secret") == "TASKTIDE_SECRET_JWT_SECRET"
    assert env_name("smtp:password") == "TASKTIDE_SECRET_SMTP_PASSWORD"


def test_env_secret_store_with_file_ignores_environment(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"only-in-file": "f"}), encoding="utf-8")
    store = EnvSecretStore(path, environ={"TASKTIDE_SECRET_ONLY_IN_ENV": "e"})

    assert store.get_secret("only-in-file") == "f"
    with pytest.raises(SecretNotFound, match="only-in-env"):
        store.get_secret("only-in-env")


def test_env_secret_store_without_file_reads_given_environ() -> None:
    store = EnvSecretStore(environ={"TASKTIDE_SECRET_WEBHOOK_SECRET": "whsec"})

    assert store.get_secret("webhook-secret") == "whsec"
    with pytest.raises(SecretNotFound, match="TASKTIDE_SECRET_OTHER"):
        store.get_secret("other")


def test_env_secret_store_unreadable_file_raises_store_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")

    with pytest.raises(StoreError, match=r"broken\.json"):
        EnvSecretStore(broken).get_secret("x")
    with pytest.raises(StoreError, match=r"missing\.json"):
        EnvSecretStore(tmp_path / "missing.json").get_secret("x")


def test_env_secret_store_non_object_file_raises_store_error(tmp_path: Path) -> None:
    path = tmp_path / "list.json"
    path.write_text("[1, 2]", encoding="utf-8")

    with pytest.raises(StoreError, match="JSON object"):
        EnvSecretStore(path).get_secret("x")


def test_sql_state_store_creates_only_its_own_table(sqlite_engine: Engine) -> None:
    SqlStateStore(sqlite_engine)

    assert inspect(sqlite_engine).get_table_names() == ["dapr_state"]
    columns = {column["name"] for column in inspect(sqlite_engine).get_columns("dapr_state")}
    assert columns == {"key", "value", "etag", "expires_at"}


def test_sql_state_store_construction_is_idempotent(sqlite_engine: Engine) -> None:
    SqlStateStore(sqlite_engine).put("k", b"v", etag=None)

    second = SqlStateStore(sqlite_engine)

    item = second.get("k")
    assert item is not None and item.value == b"v"


def test_sql_state_store_purge_expired_removes_only_expired_rows(sqlite_engine: Engine) -> None:
    clock = FakeClock()
    store = SqlStateStore(sqlite_engine, clock=clock)
    store.put("short", b"1", etag=None, ttl_seconds=5)
    store.put("long", b"2", etag=None, ttl_seconds=500)
    store.put("forever", b"3", etag=None)
    clock.advance(10)

    assert store.purge_expired() == 1
    assert store.get("long") is not None and store.get("forever") is not None


def test_sql_state_store_non_positive_ttl_raises_value_error(sqlite_engine: Engine) -> None:
    store = SqlStateStore(sqlite_engine)

    with pytest.raises(ValueError, match="ttl_seconds"):
        store.put_if_absent("k", b"v", ttl_seconds=0)
