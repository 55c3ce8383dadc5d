"""The audit log on the DBAPI driver alone (`sqlite3`, or psycopg for Postgres): no SQLAlchemy imported.

Implements `tasktide.app.ports.AuditUnitOfWork` for a function container that only records audit entries,
so its cold start and memory stay near a bare function's (docs/benchmarks.md, "Cold start"). It reads and
writes the same `audit_log` and `tasks` tables as `tasktide.db.audit` and `tasktide.db.repository`, with
the encodings SQLAlchemy uses, so either adapter reads what the other wrote (pinned by the contract test in
`tests/app/test_audit.py`):

- datetimes: UTC; on SQLite a naive `YYYY-MM-DD HH:MM:SS.ffffff` string (SQLAlchemy's DATETIME format),
  on Postgres `timestamptz`;
- `changed`: a JSON array; task ids: on SQLite the UUID's 32 hex digits, on Postgres `uuid`.

Consumes `TASKTIDE_DATABASE_URL` in SQLAlchemy's form (`sqlite:///path`, `postgresql+psycopg://...`,
`postgres://...`). A connection is opened at the first unit of work, not at import, and kept in a small
pool (one per concurrent thread). On SQLite a unit of work is one transaction (`BEGIN IMMEDIATE`, as the
engine's writers do); on Postgres the connection is in autocommit, so recording an entry is one round trip
(its only write is one idempotent `INSERT ... ON CONFLICT DO NOTHING`; the existence check a `task.deleted`
entry needs reads committed rows before it).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from tasktide.app.ports import AuditEntry

SQLITE_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
_COLUMNS = ("event_id", "task_id", "user_id", "type", "time", "actor", "changed", "recorded_at")
# libpq options of every Postgres connection: give up a connect after 5 s, and find a connection whose
# server or network vanished without a FIN (failover, NAT or load balancer timeout) in about a minute:
# TCP keepalives after 30 s idle, and at most 30 s for sent data to be acknowledged. Without them a read
# on such a connection waits for the kernel's retransmissions, about 15 minutes.
PG_CONNECT_ARGS: dict[str, Any] = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}


def pg_connect_options(conninfo: str, defaults: Mapping[str, Any] = PG_CONNECT_ARGS) -> dict[str, Any]:
    """`defaults` less the options the libpq ``conninfo`` (URI or key=value) already sets: an operator's
    ``?connect_timeout=10`` in the database URL wins over ours."""
    from psycopg.conninfo import conninfo_to_dict

    given = conninfo_to_dict(conninfo)
    return {name: value for name, value in defaults.items() if name not in given}


SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=30000",
    "PRAGMA synchronous=NORMAL",
)


def sqlite_path(url: str) -> str | None:
    """The file of a `sqlite://` URL (`:memory:` for none), or None for another database."""
    if not url.startswith("sqlite"):
        return None
    _scheme, _, rest = url.partition("://")
    path = rest[1:] if rest.startswith("/") else rest  # sqlite:///rel, sqlite:////abs
    return path.split("?", 1)[0] or ":memory:"


def postgres_conninfo(url: str) -> str:
    """A libpq URI for a SQLAlchemy Postgres URL (the driver suffix dropped)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+", 1)[0] not in ("postgresql", "postgres"):
        raise ValueError(f"not a SQLite or Postgres URL: {scheme}://...")
    return f"postgresql://{rest}"


class _Dialect:
    """How one driver spells parameters and values."""

    def __init__(self, *, sqlite: bool) -> None:
        self.sqlite = sqlite
        self.mark = "?" if sqlite else "%s"

    def timestamp(self, value: datetime) -> Any:
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None).strftime(SQLITE_FORMAT) if self.sqlite else value

    def read_timestamp(self, value: Any) -> datetime:
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def task_id(self, value: uuid.UUID) -> Any:
        return value.hex if self.sqlite else value

    def read_json(self, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str | bytes) else value


class DbapiAuditLog:
    """`AuditStore` over one DBAPI cursor (the unit of work's transaction)."""

    def __init__(self, cursor: Any, dialect: _Dialect) -> None:
        self.cursor, self.dialect = cursor, dialect

    def record(self, entry: AuditEntry) -> bool:
        d = self.dialect
        values = (
            *(entry.event_id, entry.task_id, entry.user_id, entry.type, d.timestamp(entry.time)),
            *(entry.actor, json.dumps(list(entry.changed)), d.timestamp(entry.recorded_at)),
        )
        marks = ", ".join([d.mark] * len(_COLUMNS))
        self.cursor.execute(
            f"INSERT INTO audit_log ({', '.join(_COLUMNS)}) VALUES ({marks})"
            " ON CONFLICT (event_id) DO NOTHING RETURNING id",
            values,
        )
        return self.cursor.fetchone() is not None

    def history(self, user_id: str, task_id: uuid.UUID) -> list[AuditEntry]:
        d = self.dialect
        self.cursor.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM audit_log WHERE user_id = {d.mark} AND task_id = {d.mark}"
            " ORDER BY time, id",
            (user_id, str(task_id)),
        )
        rows = self.cursor.fetchall()
        return [
            AuditEntry(
                *(event_id, task_id_, user_id_, type_, d.read_timestamp(time), actor),
                changed=tuple(d.read_json(changed)),
                recorded_at=d.read_timestamp(recorded_at),
            )
            for event_id, task_id_, user_id_, type_, time, actor, changed, recorded_at in rows
        ]


class DbapiTaskLookup:
    """`TaskLookup` over the same cursor."""

    def __init__(self, cursor: Any, dialect: _Dialect) -> None:
        self.cursor, self.dialect = cursor, dialect

    def exists(self, user_id: str, task_id: uuid.UUID) -> bool:
        mark = self.dialect.mark
        self.cursor.execute(
            f"SELECT 1 FROM tasks WHERE id = {mark} AND user_id = {mark}",
            (self.dialect.task_id(task_id), user_id),
        )
        return self.cursor.fetchone() is not None


class DbapiUnitOfWork:
    """A pooled connection for one block: on SQLite one transaction, committed when the block ends without
    an error, else rolled back; on Postgres each statement commits by itself (autocommit)."""

    tasks: DbapiTaskLookup
    audit: DbapiAuditLog

    def __init__(self, database: DbapiDatabase, *, read_only: bool = False) -> None:
        self.database, self.read_only = database, read_only

    def __enter__(self) -> DbapiUnitOfWork:
        self.connection = self.database.checkout()
        try:
            if self.database.dialect.sqlite:
                self.connection.execute("BEGIN" if self.read_only else "BEGIN IMMEDIATE")
            self.cursor = self.connection.cursor()
        except BaseException:
            self.database.discard(self.connection)
            raise
        self.tasks = DbapiTaskLookup(self.cursor, self.database.dialect)
        self.audit = DbapiAuditLog(self.cursor, self.database.dialect)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.cursor.close()
            if kind is None and not self.read_only:
                self.connection.commit()
            else:
                self.connection.rollback()
        except BaseException:
            self.database.discard(self.connection)
            raise
        if kind is not None and not self.database.usable(self.connection):
            self.database.discard(self.connection)
        else:
            self.database.checkin(self.connection)


class DbapiDatabase:
    """The database of a SQLAlchemy URL, reached with its DBAPI driver; call it for a unit of work
    (`tasktide.app.ports.AuditUnitOfWorkFactory`)."""

    def __init__(self, url: str, *, connect_timeout: int = 5) -> None:
        self.path = sqlite_path(url)
        self.conninfo = None if self.path is not None else postgres_conninfo(url)
        self.dialect = _Dialect(sqlite=self.path is not None)
        self.connect_timeout = connect_timeout
        self._idle: list[Any] = []
        self._lock = threading.Lock()

    def __call__(self, *, read_only: bool = False) -> DbapiUnitOfWork:
        return DbapiUnitOfWork(self, read_only=read_only)

    def connect(self) -> Any:
        if self.path is not None:
            connection = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
            for pragma in SQLITE_PRAGMAS:
                connection.execute(pragma)
            return connection
        import psycopg  # only a Postgres-backed function pays for the driver

        conninfo = self.conninfo or ""
        options = pg_connect_options(conninfo, {**PG_CONNECT_ARGS, "connect_timeout": self.connect_timeout})
        return psycopg.connect(conninfo, autocommit=True, **options)

    def checkout(self) -> Any:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self.connect()

    def checkin(self, connection: Any) -> None:
        with self._lock:
            self._idle.append(connection)

    def discard(self, connection: Any) -> None:
        with contextlib.suppress(Exception):  # already broken: nothing to release
            connection.close()

    def usable(self, connection: Any) -> bool:
        """False for a Postgres connection the server dropped (the next unit of work reconnects)."""
        return self.path is not None or (not connection.closed and not connection.broken)

    def dispose(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            self.discard(connection)
