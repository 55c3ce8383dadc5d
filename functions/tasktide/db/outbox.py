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

**Hand-off by NOTIFY** (Postgres, a process without a relay of its own: the API on a cluster). Its sessions
carry a :class:`NotifyHandoff`: the rows are written claimed by :data:`NOTIFY_TOKEN`, and the NOTIFY sent
after their commit carries them (:func:`notify_payload`), so the listening relay publishes them with no
claim query (`RelayWorker.notified`). Rows whose payload would pass Postgres' 8000-byte limit are written
unclaimed with an empty payload (the relay claims them as before); rows no relay took are swept when their
lease lapses.

**NOTIFY after the commit, in a transaction of its own** (:func:`send_notifies`). A transaction that
NOTIFYs takes one lock for the whole Postgres cluster at commit and holds it through its WAL flush, so
writes that NOTIFY commit one at a time, one flush each, however many API pods write: with a network
disk's 1 ms flush (emulated), 8 or 32 writers commit about 700 NOTIFYing writes a second in all, and about
3,000-3,600 with the NOTIFY sent after the commit (`loadtests/bench/notify_commits.py`; on this machine's
0.1 ms disk both are CPU-bound at about the same rate). So a write only queues its payload (the
session's :data:`PENDING_NOTIFIES`), and once the unit of work has committed, every payload it queued goes
in one `pg_notify` statement with `synchronous_commit` off: that transaction writes nothing worth a flush
(a notification is not durable anyway), so it holds the lock for microseconds. A payload from a rolled-back
transaction or savepoint is never sent. A process that dies between the commit and its NOTIFY leaves rows
the sweep publishes once their lease lapses, as a relay that is not listening does. Delivery order is the
order NOTIFYs are sent: two writers of the same task commit in turn (its row lock), but their NOTIFYs may
cross, so consumers see reordered events, as they may anyway (every consumer is idempotent and orders by
version or time).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Connection, Table, and_, bindparam, func, or_, select, update
from sqlalchemy.orm import Session, SessionTransaction

from tasktide.db.models import OutboxRow
from tasktide.messaging.events import Envelope, topics_for

OUTBOX: Table = OutboxRow.__table__  # type: ignore[assignment]
OUTBOX_CHANNEL = "tasktide_outbox"  # NOTIFYed after every commit that wrote outbox rows (Postgres)
HANDOFF_INFO = "tasktide.outbox.handoff"  # Session.info key of the session's HandoffSink
NOTIFY_TOKEN = "notify"  # the claim of rows handed to the listening relay by their NOTIFY payload
NOTIFY_PAYLOAD_MAX = 7999  # bytes: Postgres refuses a NOTIFY payload of 8000 or more
PENDING_NOTIFIES = "tasktide.outbox.pending_notifies"  # Session.info key: payloads to NOTIFY after commit
# One statement, one transaction, every payload (identical ones are delivered once); asynchronous commit, so
# the cluster-wide NOTIFY lock is not held through a WAL flush (see the module docstring).
NOTIFY_SQL = (
    "SELECT set_config('synchronous_commit', 'off', true), pg_notify('"
    + OUTBOX_CHANNEL
    + "', payload) FROM unnest(%s::text[]) AS payload"
)


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


@dataclass(frozen=True)
class NotifyHandoff:
    """The `HandoffSink` of a process whose relay is another process, LISTENing (see the module docstring):
    rows are claimed by :data:`NOTIFY_TOKEN` for `lease`, and travel in their statement's NOTIFY."""

    lease: timedelta = timedelta(seconds=10)
    token: str = NOTIFY_TOKEN

    def written(self, session: Session, records: Sequence[OutboxRecord], within: object) -> None:
        """Nothing to do in this process: the statement's NOTIFY carries the rows."""


def notify_payload(rows: Sequence[dict[str, object]]) -> str | None:
    """The NOTIFY payload carrying outbox `rows` ([topic, key, event] each), or None past the limit."""
    payload = json.dumps([[r["topic"], r["key"], r["event"]] for r in rows], separators=(",", ":"))
    return payload if len(payload.encode()) <= NOTIFY_PAYLOAD_MAX else None


def send_notifies(connection: Connection, payloads: Sequence[str]) -> None:
    """NOTIFY :data:`OUTBOX_CHANNEL` with ``payloads`` on ``connection`` (autocommit, Postgres), after the
    rows they announce have committed."""
    if payloads:
        connection.exec_driver_sql(NOTIFY_SQL, (list(payloads),))


def records_of(payload: str) -> list[OutboxRecord]:
    """The records a :func:`notify_payload` carries; ValueError for anything else."""
    try:
        items = json.loads(payload)
        records = [OutboxRecord(None, str(topic), key, dict(event)) for topic, key, event in items]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not an outbox NOTIFY payload: {exc}") from None
    if not all(r.event_id for r in records):
        raise ValueError("not an outbox NOTIFY payload: an event without an id")
    return records


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


def _claim_statement(skip_locked: bool) -> Any:
    c = OUTBOX.c
    candidates = (
        select(c.id)
        .where(c.sent_at.is_(None), or_(c.claimed_until.is_(None), c.claimed_until < bindparam("now")))
        .order_by(c.id)
        .limit(bindparam("batch"))
    )
    if skip_locked:
        candidates = candidates.with_for_update(skip_locked=True)
    return (
        update(OUTBOX)
        .where(c.id.in_(candidates.scalar_subquery()))
        .values(claim_token=bindparam("token"), claimed_until=bindparam("until"))
        .returning(c.id, c.topic, c.key, c.event)
    )


# The relay's statements, built once: Core statements on the table with bound parameters (no ORM bulk
# update, no statement built per call), so each costs little more than its round trip. Rows are matched
# by id (claimed rows) or by event id (handed-off rows, see `_matching`), narrowed to the claim's token.
_CLAIM = {True: _claim_statement(skip_locked=True), False: _claim_statement(skip_locked=False)}
_MATCHING = and_(
    or_(
        OUTBOX.c.id.in_(bindparam("ids", expanding=True)),
        OUTBOX.c.event_id.in_(bindparam("event_ids", expanding=True)),
    ),
    OUTBOX.c.claim_token == bindparam("token"),
)
_MARK_SENT = update(OUTBOX).where(_MATCHING).values(sent_at=bindparam("sent_at"), claimed_until=None)
_RELEASE = (
    update(OUTBOX).where(_MATCHING, OUTBOX.c.sent_at.is_(None)).values(claimed_until=None, claim_token=None)
)
_BACKLOG = select(func.count(OUTBOX.c.id), func.min(OUTBOX.c.created_at)).where(OUTBOX.c.sent_at.is_(None))


class OutboxRepository:
    """The relay's statements; each method is its own transaction on `session` (begun here)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def claim(self, token: str, *, batch: int, lease: timedelta) -> list[OutboxRecord]:
        """Claim up to `batch` unsent rows whose lease (if any) lapsed, oldest first, for `token`."""
        now = datetime.now(UTC)
        statement = _CLAIM[self.session.get_bind().dialect.name == "postgresql"]
        params = {"now": now, "batch": batch, "token": token, "until": now + lease}
        with self.session.begin():
            rows = self.session.execute(statement, params).all()
        return sorted((OutboxRecord(*row) for row in rows), key=lambda r: r.id or 0)

    def mark_sent(self, records: Sequence[OutboxRecord], token: str) -> None:
        """Mark `records` sent, if `token` still holds them (a lapsed, re-claimed row is not touched)."""
        with self.session.begin():
            self.session.execute(
                _MARK_SENT, {**_matching(records), "token": token, "sent_at": datetime.now(UTC)}
            )

    def release(self, records: Sequence[OutboxRecord], token: str) -> None:
        """Give `records` back (unsent, unclaimed), if `token` still holds them."""
        with self.session.begin():
            self.session.execute(_RELEASE, {**_matching(records), "token": token})

    def backlog(self) -> tuple[int, datetime | None]:
        """Unsent rows and the creation time of the oldest."""
        count, oldest = self.session.execute(_BACKLOG).one()
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        return int(count), oldest


def _matching(records: Sequence[OutboxRecord]) -> dict[str, list[Any]]:
    """Claimed rows by id; handed-off records (no id) by event id (an event's rows, one per topic, are
    written and handed off together, and the claim token narrows it to this hand-off's)."""
    return {
        "ids": [r.id for r in records if r.id is not None],
        "event_ids": sorted({r.event_id for r in records if r.id is None}),
    }
