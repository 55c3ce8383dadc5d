"""The key/value state repository: the ``dapr_state`` table and every statement run on it.

Consumes: a ``sqlalchemy.Engine`` (SQLite or Postgres). Emits: ``StateRepository``, the single-statement
reads and writes the embedded Dapr state store (``dapr.embedded.SqlStateStore``) composes into the
``StateStore`` port, and ``purge`` for retention. Instants are naive UTC (the stored representation on
every dialect); a row whose ``expires_at`` has passed reads as absent. Each method is one transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import (
    Column,
    ColumnElement,
    DateTime,
    Engine,
    LargeBinary,
    MetaData,
    Table,
    Text,
    and_,
    delete,
    insert,
    inspect,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

BATCH = 1000

metadata = MetaData()

state_table = Table(
    "dapr_state",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", LargeBinary, nullable=False),
    Column("etag", Text, nullable=False),
    Column("expires_at", DateTime(timezone=False), nullable=True),
)


class StateRow(NamedTuple):
    value: bytes
    etag: str


def _live(now: datetime) -> ColumnElement[bool]:
    return or_(state_table.c.expires_at.is_(None), state_table.c.expires_at > now)


def _expired(now: datetime) -> ColumnElement[bool]:
    return and_(state_table.c.expires_at.is_not(None), state_table.c.expires_at <= now)


def _matching(key: str, if_etag: str | None, now: datetime | None) -> ColumnElement[bool]:
    """``key``'s row; with ``if_etag``, only while it is live (at ``now``) and carries that etag."""
    if if_etag is None:
        return state_table.c.key == key
    if now is None:
        raise ValueError("a conditional write needs now, to tell live rows from expired ones")
    return and_(state_table.c.key == key, state_table.c.etag == if_etag, _live(now))


class StateRepository:
    """The ``dapr_state`` table on ``engine`` (created on construction unless ``create_table`` is False)."""

    def __init__(self, engine: Engine, *, create_table: bool = True) -> None:
        self._engine = engine
        if create_table:
            metadata.create_all(engine, tables=[state_table])

    def get(self, key: str, now: datetime) -> StateRow | None:
        """The live row of ``key``, or None."""
        query = select(state_table.c.value, state_table.c.etag).where(state_table.c.key == key, _live(now))
        with self._engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else StateRow(bytes(row.value), str(row.etag))

    def insert(self, key: str, value: bytes, etag: str, expires_at: datetime | None) -> bool:
        """Insert a new row; False when ``key`` has a row already (live or expired)."""
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    insert(state_table).values(key=key, value=value, etag=etag, expires_at=expires_at)
                )
        except IntegrityError:
            return False
        return True

    def take_over_expired(
        self, key: str, value: bytes, etag: str, expires_at: datetime | None, now: datetime
    ) -> bool | None:
        """Overwrite ``key``'s row if it has expired: True if taken over, False if a live row holds the key,
        None if there is no row at all (it vanished: the caller may insert again)."""
        takeover = (
            update(state_table)
            .where(state_table.c.key == key, _expired(now))
            .values(value=value, etag=etag, expires_at=expires_at)
        )
        with self._engine.begin() as conn:
            if conn.execute(takeover).rowcount == 1:
                return True
            still_there = conn.execute(select(state_table.c.key).where(state_table.c.key == key)).first()
        return False if still_there is not None else None

    def update(
        self,
        key: str,
        value: bytes,
        etag: str,
        expires_at: datetime | None,
        *,
        if_etag: str | None = None,
        now: datetime | None = None,
    ) -> bool:
        """Overwrite ``key``'s row (only a live one carrying ``if_etag`` when given); False if none did."""
        condition = _matching(key, if_etag, now)
        statement = update(state_table).where(condition).values(value=value, etag=etag, expires_at=expires_at)
        with self._engine.begin() as conn:
            return bool(conn.execute(statement).rowcount == 1)

    def delete(self, key: str, *, if_etag: str | None = None, now: datetime | None = None) -> int:
        """Delete ``key``'s row (only a live one carrying ``if_etag`` when given); the rows deleted."""
        condition = _matching(key, if_etag, now)
        with self._engine.begin() as conn:
            return int(conn.execute(delete(state_table).where(condition)).rowcount)

    def purge_expired(self, now: datetime) -> int:
        """Delete every expired row; the rows removed."""
        with self._engine.begin() as conn:
            return int(conn.execute(delete(state_table).where(_expired(now))).rowcount)


def purge(session: Session, age: float, now: datetime) -> int:
    """Delete at most BATCH rows expired more than ``age`` seconds before ``now`` (in the caller's
    transaction); 0 when the table does not exist (a sidecar state store never creates it)."""
    if not inspect(session.connection()).has_table(state_table.name):
        return 0
    expired = (now - timedelta(seconds=age)).replace(tzinfo=None)  # stored naive UTC
    keys = select(state_table.c.key).where(
        state_table.c.expires_at.is_not(None), state_table.c.expires_at < expired
    )
    result = session.execute(
        delete(state_table).where(state_table.c.key.in_(keys.limit(BATCH).scalar_subquery()))
    )
    return int(getattr(result, "rowcount", 0) or 0)
