"""Embedded adapters (no sidecar): secrets from a Dapr ``secretstores.local.file`` JSON file or the
environment, state in a SQL table through the ``db.state`` repository (SQLite or Postgres).

Consumes: an optional secrets JSON file, env ``TASKTIDE_SECRET_<NAME>``, a ``sqlalchemy.Engine``.
Emits: ``EnvSecretStore`` (a ``SecretStore``) and ``SqlStateStore`` (a ``StateStore``) on the
``dapr_state`` table (created on construction with ``MetaData.create_all`` for that table only).
"""

from __future__ import annotations

import json
import os
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasktide.dapr.ports import EtagMismatch, SecretNotFound, StateItem, StoreError

if TYPE_CHECKING:  # SQLAlchemy only with the state store: reading a secret must not import it
    from sqlalchemy import Engine

ENV_PREFIX = "TASKTIDE_SECRET_"
DEFAULT_NESTED_SEPARATOR = ":"

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """Naive UTC now: the representation stored in the ``expires_at`` column on every dialect."""
    return datetime.now(UTC).replace(tzinfo=None)


def env_name(secret_name: str) -> str:
    """``db-password`` -> ``TASKTIDE_SECRET_DB_PASSWORD`` (anything not A-Z/0-9 becomes ``_``)."""
    return ENV_PREFIX + re.sub(r"[^A-Z0-9_]", "_", secret_name.upper())


def flatten_secrets(document: Mapping[str, Any], separator: str = DEFAULT_NESTED_SEPARATOR) -> dict[str, str]:
    """Flatten a ``secretstores.local.file`` document: nested keys join with ``separator`` (lists: index)."""
    flat: dict[str, str] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, Mapping):
            for key, child in node.items():
                walk(f"{prefix}{separator}{key}" if prefix else str(key), child)
        elif isinstance(node, list):
            for index, child in enumerate(node):
                walk(f"{prefix}{separator}{index}" if prefix else str(index), child)
        elif isinstance(node, str):
            flat[prefix] = node
        else:
            flat[prefix] = json.dumps(node)

    walk("", document)
    return flat


class EnvSecretStore:
    """Secrets from a local.file-format JSON file when ``secrets_file`` is given, else from env."""

    def __init__(
        self,
        secrets_file: Path | None = None,
        *,
        nested_separator: str = DEFAULT_NESTED_SEPARATOR,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._file = secrets_file
        self._separator = nested_separator
        self._environ = environ
        self._loaded: dict[str, str] | None = None
        self._lock = threading.Lock()

    def _file_secrets(self, path: Path) -> dict[str, str]:
        with self._lock:
            if self._loaded is None:
                try:
                    document = json.loads(path.read_text(encoding="utf-8"))
                except (OSError, ValueError) as exc:
                    raise StoreError(f"cannot read local secrets file {path}: {exc}") from exc
                if not isinstance(document, dict):
                    raise StoreError(f"local secrets file {path} must hold a JSON object")
                self._loaded = flatten_secrets(document, self._separator)
            return self._loaded

    def get_secret(self, name: str) -> str:
        if self._file is not None:
            secrets = self._file_secrets(self._file)
            if name in secrets:
                return secrets[name]
            raise SecretNotFound(name, f"not in {self._file}")
        environ = os.environ if self._environ is None else self._environ
        variable = env_name(name)
        value = environ.get(variable)
        if value is None:
            raise SecretNotFound(name, f"env {variable} is not set")
        return value


def _new_etag() -> str:
    return uuid.uuid4().hex


class SqlStateStore:
    """``StateStore`` on the ``dapr_state`` table (``db.state.StateRepository``). Expired rows read as
    absent and are overwritten atomically.

    First-write-wins is an INSERT that may fail on the primary key (never read-then-write); an expired
    row is then taken over with a single conditional UPDATE.
    """

    def __init__(self, engine: Engine, *, clock: Clock = utc_now, create_table: bool = True) -> None:
        from tasktide.db.state import StateRepository

        self._rows = StateRepository(engine, create_table=create_table)
        self._clock = clock

    def _expires_at(self, now: datetime, ttl_seconds: int | None) -> datetime | None:
        if ttl_seconds is None:
            return None
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        return now + timedelta(seconds=ttl_seconds)

    def get(self, key: str) -> StateItem | None:
        row = self._rows.get(key, self._clock())
        return None if row is None else StateItem(value=row.value, etag=row.etag)

    def put_if_absent(self, key: str, value: bytes, *, ttl_seconds: int | None = None) -> bool:
        now = self._clock()
        expires_at = self._expires_at(now, ttl_seconds)
        etag = _new_etag()
        for _ in range(2):  # second round only if an expired row vanished between INSERT and UPDATE
            if self._rows.insert(key, value, etag, expires_at):
                return True
            taken = self._rows.take_over_expired(key, value, etag, expires_at, now)
            if taken is not None:
                return taken
        return False

    def put(self, key: str, value: bytes, *, etag: str | None, ttl_seconds: int | None = None) -> str:
        now = self._clock()
        expires_at = self._expires_at(now, ttl_seconds)
        new_etag = _new_etag()
        if etag is not None:
            if not self._rows.update(key, value, new_etag, expires_at, if_etag=etag, now=now):
                raise EtagMismatch(key)
            return new_etag
        for _ in range(3):  # UPDATE, else INSERT; a concurrent INSERT sends us back to UPDATE
            if self._rows.update(key, value, new_etag, expires_at):
                return new_etag
            if self._rows.insert(key, value, new_etag, expires_at):
                return new_etag
        raise StoreError(f"could not write state key {key!r}: it kept being created and deleted concurrently")

    def delete(self, key: str, *, etag: str | None = None) -> None:
        if etag is None:
            self._rows.delete(key)
        elif self._rows.delete(key, if_etag=etag, now=self._clock()) != 1:
            raise EtagMismatch(key)

    def purge_expired(self) -> int:
        """Delete expired rows (housekeeping; correctness never depends on it). Returns rows removed."""
        return self._rows.purge_expired(self._clock())
