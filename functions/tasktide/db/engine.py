"""Engines and sessions for SQLite (embedded default) and Postgres (psycopg 3).

Emits (via :func:`track_pool`) the ``tasktide_db_pool_connections{state}`` gauge, updated on every pool
checkout and checkin.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

from sqlalchemy import Engine, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import Insert
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import Pool, QueuePool

from tasktide.db.dbapi import SQLITE_PRAGMAS, pg_connect_options, postgres_conninfo
from tasktide.observability import metrics


def normalise_url(url: str) -> str:
    """Accept plain `postgresql://` / `postgres://` URLs and route them to psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    # A plain QueuePool, no pre-ping (it costs a round trip per checkout): a connection the server dropped
    # fails its statement, SQLAlchemy recognises the disconnect and invalidates the whole pool, so the next
    # checkout reconnects. LIFO keeps the few hot connections warm; idle ones older than 30 min are renewed.
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    kwargs.setdefault("pool_timeout", 10)  # an exhausted pool answers 503 instead of hanging
    kwargs.setdefault("connect_args", pg_connect_options(postgres_conninfo(url)))  # unreachable, vanished
    kwargs.setdefault("pool_use_lifo", True)
    kwargs.setdefault("pool_recycle", 1800)
    engine = create_engine(url, **kwargs)
    _watch_connectivity(engine)
    return engine


class _Connectivity:
    """Until when ``engine``'s last bad news from the server keeps calls off the event loop: a lost
    connection (the pool then invalidates every connection, so the next checkouts reconnect) or a failed
    connect. A connect that succeeds clears it; so does time (`QUARANTINE_S`), since a failed extra
    connection (say, at the server's max_connections) says nothing about the idle ones."""

    lost_until = 0.0


QUARANTINE_S = 30.0
_CONNECTIVITY: weakref.WeakKeyDictionary[Engine, _Connectivity] = weakref.WeakKeyDictionary()


def _watch_connectivity(engine: Engine) -> None:
    state = _CONNECTIVITY.setdefault(engine, _Connectivity())

    def errored(context: ExceptionContext) -> None:
        if context.is_disconnect or context.connection is None:  # None: the connect itself failed
            state.lost_until = time.monotonic() + QUARANTINE_S

    def connected(*_: Any) -> None:
        state.lost_until = 0.0

    event.listen(engine, "handle_error", errored)
    event.listen(engine, "connect", connected)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # let SQLAlchemy's "begin" hook issue BEGIN IMMEDIATE
    cursor = dbapi_connection.cursor()
    for pragma in SQLITE_PRAGMAS:  # the same as the DBAPI-only store's connections
        cursor.execute(pragma)
    cursor.close()


def _sqlite_begin_immediate(connection: Any) -> None:
    """Writers serialise at BEGIN, so read-then-write claims on SQLite are safe."""
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def has_idle_connection(engine: Engine) -> bool:
    """Whether a checkout from ``engine``'s pool would get an idle, live connection now, without waiting
    for one or opening one (only a ``QueuePool`` says). Not since a connection was lost or a connect
    failed, until a connect succeeds again or `QUARANTINE_S` pass: the pool's idle connections may be
    stale then, and a checkout would reconnect (up to ``connect_timeout`` while the server is down). A
    connection past ``pool_recycle`` still reconnects at its checkout: one connect per connection per 30
    minutes. So may an idle connection made stale by a lost one, after the first reconnect (quickly: the
    server answers again by then)."""
    pool = engine.pool
    state = _CONNECTIVITY.get(engine)
    if state is not None and state.lost_until and time.monotonic() < state.lost_until:
        return False
    return isinstance(pool, QueuePool) and pool.checkedin() > 0


def pool_connections(pool: Pool, returning: int = 0) -> dict[metrics.PoolState, int]:
    """Connections of a ``QueuePool`` by state (``{}`` for other pools).

    ``returning`` connections are being checked in right now: the ``checkin`` event fires before the pool
    takes them back, into the idle queue if it has room, else closing them (an overflow connection).
    """
    if not isinstance(pool, QueuePool):
        return {}
    idle, size = pool.checkedin(), pool.size()
    in_use = max(0, pool.checkedout() - returning)
    overflow = max(0, pool.overflow())
    if size == 0 or idle + returning <= size:
        idle += returning
    else:
        overflow = max(0, overflow - returning)
    return {"in_use": in_use, "idle": idle, "overflow": overflow}


def track_pool(engine: Engine) -> None:
    """Keep ``metrics.DB_POOL`` current with ``engine``'s pool (once per process, for its main engine)."""

    def update(returning: int) -> None:
        for state, count in pool_connections(engine.pool, returning).items():
            metrics.DB_POOL.labels(state).set(count)

    event.listen(engine, "checkout", lambda *_: update(0))
    event.listen(engine, "checkin", lambda *_: update(1))
    update(0)


def dialect_insert(session: Session, table: Table) -> Insert:
    """An INSERT of the session's dialect (Postgres or SQLite), so `on_conflict_do_nothing` /
    `on_conflict_do_update` are at hand: one statement where a SELECT-then-INSERT would take two."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)  # type: ignore[return-value]  # the same on_conflict_* methods


def ping(engine: Engine) -> None:
    """One ``SELECT 1`` round trip; raises whatever the driver raises when the database is unreachable."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
