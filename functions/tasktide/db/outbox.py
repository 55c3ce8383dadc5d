"""The outbox repository: the rows a state change writes, and the relay's claim / mark / release / backlog.

Every statement on the `outbox` table lives here (the task repository writes its rows through
:func:`rows_for`). Rows are claimed with a lease: `claim_token` names the claimer, `claimed_until` ends the
claim; a claim whose lease lapsed is free again, so a relay that died mid-batch delays its rows, never loses
them. On Postgres the claim skips rows another relay holds (`FOR UPDATE SKIP LOCKED`); SQLite serialises
writers at `BEGIN IMMEDIATE`.

**Hand-off.** A session whose `info` carries a :class:`HandoffSink` (see
:func:`tasktide.messaging.outbox.enable_handoff`) writes its outbox rows already claimed by that sink's
token, and tells the sink which records it wrote, in write order. After the commit the sink publishes them
straight away and marks them sent, with no claim query; if the transaction rolls back (or a savepoint
holding some of them does) those records are dropped. A process that dies between commit and publish
leaves rows whose lease lapses, and a sweep publishes them then.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Table, func, or_, select, update
from sqlalchemy.orm import Session, SessionTransaction

from tasktide.db.models import OutboxRow
from tasktide.messaging.events import Envelope, topics_for

OUTBOX: Table = OutboxRow.__table__  # type: ignore[assignment]
OUTBOX_CHANNEL = "tasktide_outbox"  # every statement writing outbox rows NOTIFYs it (Postgres)
HANDOFF_INFO = "tasktide.outbox.handoff"  # Session.info key of the session's HandoffSink


@dataclass(frozen=True)
class OutboxRecord:
    """One row to publish: `id` is None for a handed-off row (its id was never read back)."""

    id: int | None
    topic: str
    key: str | None
    event: dict[str, Any]

    @property
    def event_id(self) -> str:
        return str(self.event.get("id", ""))


class HandoffSink(Protocol):
    """Takes the outbox records a session writes (see the module docstring)."""

    token: str
    lease: timedelta

    def written(self, session: Session, records: Sequence[OutboxRecord], within: object) -> None:
        """`records` were just inserted by `session`, inside transaction `within`."""


def rows_for(session: Session, event: Envelope) -> list[dict[str, object]]:
    """The outbox rows of `event` (one per topic), to insert in `session`'s transaction; claimed by the
    session's hand-off sink, if it has one, which is told about them."""
    document = event.to_json()
    rows: list[dict[str, object]] = [
        {
            "event_id": event.id,
            "topic": topic,
            "key": event.subject,
            "type": event.type,
            "event": document,
            "created_at": event.time,
        }
        for topic in topics_for(event.type)
    ]
    sink: HandoffSink | None = session.info.get(HANDOFF_INFO)
    if sink is not None and rows:
        until = datetime.now(UTC) + sink.lease
        for row in rows:
            row["claim_token"], row["claimed_until"] = sink.token, until
        within: SessionTransaction | None = session.get_nested_transaction() or session.get_transaction()
        records = [OutboxRecord(None, str(r["topic"]), event.subject, document) for r in rows]
        sink.written(session, records, within)
    return rows


class OutboxRepository:
    """The relay's statements; each method is its own transaction on `session` (begun here)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def claim(self, token: str, *, batch: int, lease: timedelta) -> list[OutboxRecord]:
        """Claim up to `batch` unsent rows whose lease (if any) lapsed, oldest first, for `token`."""
        now = datetime.now(UTC)
        candidates = (
            select(OutboxRow.id)
            .where(
                OutboxRow.sent_at.is_(None),
                or_(OutboxRow.claimed_until.is_(None), OutboxRow.claimed_until < now),
            )
            .order_by(OutboxRow.id)
            .limit(batch)
        )
        if self.session.get_bind().dialect.name == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True)
        with self.session.begin():
            rows = self.session.execute(
                update(OutboxRow)
                .where(OutboxRow.id.in_(candidates.scalar_subquery()))
                .values(claim_token=token, claimed_until=now + lease)
                .returning(OutboxRow.id, OutboxRow.topic, OutboxRow.key, OutboxRow.event)
                .execution_options(synchronize_session=False)
            ).all()
        return sorted((OutboxRecord(*row) for row in rows), key=lambda r: r.id or 0)

    def mark_sent(self, records: Sequence[OutboxRecord], token: str) -> None:
        """Mark `records` sent, if `token` still holds them (a lapsed, re-claimed row is not touched)."""
        with self.session.begin():
            self.session.execute(
                update(OutboxRow)
                .where(_matching(records), OutboxRow.claim_token == token)
                .values(sent_at=datetime.now(UTC), claimed_until=None)
                .execution_options(synchronize_session=False)
            )

    def release(self, records: Sequence[OutboxRecord], token: str) -> None:
        """Give `records` back (unsent, unclaimed), if `token` still holds them."""
        with self.session.begin():
            self.session.execute(
                update(OutboxRow)
                .where(_matching(records), OutboxRow.sent_at.is_(None), OutboxRow.claim_token == token)
                .values(claimed_until=None, claim_token=None)
                .execution_options(synchronize_session=False)
            )

    def backlog(self) -> tuple[int, datetime | None]:
        """Unsent rows and the creation time of the oldest."""
        stmt = select(func.count(OutboxRow.id), func.min(OutboxRow.created_at))
        count, oldest = self.session.execute(stmt.where(OutboxRow.sent_at.is_(None))).one()
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        return int(count), oldest


def _matching(records: Sequence[OutboxRecord]) -> Any:
    """Claimed rows by id; handed-off records (no id) by event id (an event's rows, one per topic, are
    written and handed off together, and the claim token narrows it to this hand-off's)."""
    ids = [r.id for r in records if r.id is not None]
    event_ids = sorted({r.event_id for r in records if r.id is None})
    clauses = []
    if ids:
        clauses.append(OutboxRow.id.in_(ids))
    if event_ids:
        clauses.append(OutboxRow.event_id.in_(event_ids))
    return or_(*clauses) if clauses else OutboxRow.id.is_(None)
