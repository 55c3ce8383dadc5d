"""Idempotency keys of retried writes (``Idempotency-Key`` on POST and PATCH, draft-ietf-httpapi-idempotency-
key-header): one row per (user, key), the request's fingerprint and, once answered, the stored response.

States: ``in_flight`` (claimed by the request being processed, until ``locked_until``), ``committed`` (its
effect is committed: written by the effect's OWN transaction, see :func:`_mark_committed`, so a crash
between the commit and storing the response can never let a retry apply the effect twice), ``completed``
(status, headers and body stored: a retry gets them again). A row older than the retention is ignored and
deleted by :func:`purge` (the relay's retention sweep).

Consumes a session factory. Emits :class:`Claim` outcomes for :mod:`tasktide.api.idempotency`.
"""

from __future__ import annotations

import contextvars
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Integer, LargeBinary, String, Text, delete, event, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from tasktide.db.models import Base
from tasktide.db.types import UTCDateTime

IN_FLIGHT, COMMITTED, COMPLETED = "in_flight", "committed", "completed"
_MARKED = "tasktide_idempotency_marked"  # Session.info: the key this commit marks, until it succeeds
STORE_SESSION = "tasktide_idempotency_store"  # Session.info flag: the store's own sessions
BATCH = 1000


class IdempotencyKeyRow(Base):
    __tablename__ = "idempotency_keys"

    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    headers: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON list of [name, value]
    body: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    locked_until: Mapped[datetime] = mapped_column(UTCDateTime())


@dataclass(frozen=True)
class Claim:
    """What a request with a key may do: ``new`` (go ahead), ``replay`` (send the stored response),
    ``mismatch`` (the key was used for another request), ``in_flight`` (the first one is still running),
    ``committed`` (its effect is committed but its response was not recorded)."""

    outcome: Literal["new", "replay", "mismatch", "in_flight", "committed"]
    status: int | None = None
    headers: list[tuple[str, str]] | None = None
    body: bytes = b""


@dataclass
class Pending:
    """The key the current request claimed; a commit in this context marks it committed in that commit."""

    user_id: str
    key: str
    committed: bool = False


CURRENT: contextvars.ContextVar[Pending | None] = contextvars.ContextVar("tasktide_idempotency", default=None)


@event.listens_for(Session, "before_commit")
def _mark_committed(session: Session) -> None:
    """Same transaction as the effect: any write committed while a keyed request runs marks its key."""
    pending = CURRENT.get()
    if pending is None or session.info.get(STORE_SESSION):
        return
    session.execute(
        update(IdempotencyKeyRow)
        .where(IdempotencyKeyRow.user_id == pending.user_id, IdempotencyKeyRow.key == pending.key)
        .values(state=COMMITTED)
    )
    session.info[_MARKED] = pending  # committed only once the commit succeeds (`_marked_committed`)


@event.listens_for(Session, "after_commit")
def _marked_committed(session: Session) -> None:
    pending: Pending | None = session.info.pop(_MARKED, None)
    if pending is not None:
        pending.committed = True


@event.listens_for(Session, "after_rollback")
def _mark_undone(session: Session) -> None:
    """A commit that failed after `_mark_committed` rolls the mark back with the effect."""
    session.info.pop(_MARKED, None)


class IdempotencyStore:
    def __init__(self, sessions: sessionmaker[Session], retention: float, lock: float = 60.0) -> None:
        self.sessions, self.retention, self.lock = sessions, retention, lock

    def _session(self) -> Session:
        session = self.sessions()
        session.info[STORE_SESSION] = True
        return session

    def claim(self, user_id: str, key: str, fingerprint: str, now: datetime | None = None) -> Claim:
        """Claim ``key`` for a request with ``fingerprint`` (first writer wins), or say why not."""
        now = now or datetime.now(UTC)
        claimed = {  # a new row, or an expired or abandoned one taken over
            "fingerprint": fingerprint,
            "state": IN_FLIGHT,
            "created_at": now,
            "locked_until": now + timedelta(seconds=self.lock),
        }
        for _ in range(3):
            try:
                with self._session() as session, session.begin():
                    session.add(IdempotencyKeyRow(user_id=user_id, key=key, **claimed))
                return Claim("new")
            except IntegrityError:
                pass
            with self._session() as session, session.begin():
                row = session.get(IdempotencyKeyRow, (user_id, key))
                if row is None:
                    continue  # deleted meanwhile (released or purged): insert again
                expired = row.created_at < now - timedelta(seconds=self.retention)
                abandoned = row.state == IN_FLIGHT and row.locked_until < now
                if expired or abandoned:  # take the row over, unless another request just did
                    taken = session.execute(
                        update(IdempotencyKeyRow)
                        .where(
                            IdempotencyKeyRow.user_id == user_id,
                            IdempotencyKeyRow.key == key,
                            IdempotencyKeyRow.created_at == row.created_at,
                            IdempotencyKeyRow.state == row.state,
                        )
                        .values(**claimed, status=None, headers=None, body=None)
                    )
                    if int(getattr(taken, "rowcount", 0) or 0) == 1:
                        return Claim("new")
                    return Claim("in_flight")
                if row.fingerprint != fingerprint:
                    return Claim("mismatch")
                if row.state == COMPLETED:
                    headers = [(str(n), str(v)) for n, v in json.loads(row.headers or "[]")]
                    return Claim("replay", row.status, headers, row.body or b"")
                return Claim("in_flight" if row.state == IN_FLIGHT else "committed")
        return Claim("in_flight")

    def complete(
        self, user_id: str, key: str, status: int, headers: list[tuple[str, str]], body: bytes
    ) -> None:
        with self._session() as session, session.begin():
            session.execute(
                update(IdempotencyKeyRow)
                .where(IdempotencyKeyRow.user_id == user_id, IdempotencyKeyRow.key == key)
                .values(state=COMPLETED, status=status, headers=json.dumps(headers), body=body)
            )

    def release(self, user_id: str, key: str) -> None:
        """Forget a claim whose request changed nothing (it failed before any commit): a retry runs anew."""
        with self._session() as session, session.begin():
            session.execute(
                delete(IdempotencyKeyRow).where(
                    IdempotencyKeyRow.user_id == user_id,
                    IdempotencyKeyRow.key == key,
                    IdempotencyKeyRow.state == IN_FLIGHT,
                )
            )


def purge(session: Session, age: float, now: datetime) -> int:
    """Delete at most BATCH keys older than ``age`` seconds (in the caller's transaction)."""
    cutoff = now - timedelta(seconds=age)
    old = select(IdempotencyKeyRow.user_id, IdempotencyKeyRow.key).where(
        IdempotencyKeyRow.created_at < cutoff
    )
    rows: list[Any] = list(session.execute(old.limit(BATCH)))
    for user_id, key in rows:
        session.execute(
            delete(IdempotencyKeyRow).where(
                IdempotencyKeyRow.user_id == user_id, IdempotencyKeyRow.key == key
            )
        )
    return len(rows)
