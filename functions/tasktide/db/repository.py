"""The task repository: one interface over SQLite and Postgres for tasks, tags, reminders and the outbox.

Every method runs inside the caller's transaction (a `Session` already begun), so a change, its
materialised reminders and its outbox events commit or roll back together.

Statements are SQLAlchemy Core on the mapped tables (no ORM unit of work): on Postgres a create (task,
tags, reminders and its events) is ONE statement of data-modifying CTEs, and every statement that writes
outbox rows queues the payload of a `NOTIFY tasktide_outbox` (the session's `PENDING_NOTIFIES`), which the
unit of work sends once it has committed, so a listening relay wakes at once (not inside the write: see
"NOTIFY after the commit" in `tasktide.db.outbox`). A savepoint that rolls back drops what it queued.

A unit of work may let its first Postgres write wait (`DEFERRABLE` in the session's info): if that
statement turns out to be the unit's only one (a create), the unit of work runs it alone in autocommit at
commit (`run_deferred`): one round trip instead of BEGIN, the statement, COMMIT, and as atomic, since one
statement is its own transaction. Anything else the session runs first begins the transaction, and the
deferred statement goes first in it (`_write_deferred_first`), so the order of writes is kept.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    Connection,
    Dialect,
    Engine,
    Row,
    Select,
    String,
    Table,
    and_,
    bindparam,
    delete,
    event,
    exists,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, SessionTransaction

from tasktide.app.ports import SORTS, ClaimedReminder, TaskQuery
from tasktide.db.models import ReminderRow, TaskRow, TaskTagRow
from tasktide.db.outbox import (
    HANDOFF_INFO,
    OUTBOX,
    PENDING_NOTIFIES,
    NotifyHandoff,
    notify_payload,
    rows_for,
    send_notifies,
)
from tasktide.domain.errors import Conflict
from tasktide.domain.reminders import reminder_times
from tasktide.domain.tasks import (
    PRIORITY_RANK,
    Priority,
    RecurrenceBasis,
    Status,
    Task,
    format_datetime,
    parse_datetime,
)
from tasktide.messaging.events import Envelope

TASKS: Table = TaskRow.__table__  # type: ignore[assignment]
TAGS: Table = TaskTagRow.__table__  # type: ignore[assignment]
REMINDERS: Table = ReminderRow.__table__  # type: ignore[assignment]


def _instants(values: list[str] | None) -> tuple[datetime, ...]:
    return tuple(parse_datetime(v) for v in values or ())


def _texts(values: tuple[datetime, ...]) -> list[str] | None:
    return [format_datetime(v) for v in values] if values else None


def _same(value: Any) -> Any:
    return value


# The row mapping, derived from the Task fields: a column per field (`id` the key), stored as it is but
# for these (enum values, JSON lists, the series start as local wall-time text, instants as RFC 3339).
_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Task))
_VALUES: tuple[str, ...] = tuple(name for name in _FIELDS if name != "id")
_TO_COLUMN: dict[str, Callable[[Any], Any]] = {
    "priority": str,
    "status": str,
    "recurrence_basis": str,
    "tags": list,
    "reminders": list,
    "series_start": lambda v: v.isoformat() if v is not None else None,
    "exdates": _texts,
    "rdates": _texts,
}
_FROM_COLUMN: dict[str, Callable[[Any], Any]] = {
    "priority": Priority,
    "status": Status,
    "recurrence_basis": RecurrenceBasis,
    "tags": tuple,
    "reminders": tuple,
    "series_start": lambda v: datetime.fromisoformat(v) if v else None,
    "exdates": _instants,
    "rdates": _instants,
}


# Where each Task field sits in a row of `select(TASKS)` (the table's column order), and its conversion:
# by position a row maps several times faster than by attribute name (a list page maps up to 100).
_ROW_PLAN: tuple[tuple[str, int, Callable[[Any], Any] | None], ...] = tuple(
    (name, [column.name for column in TASKS.columns].index(name), _FROM_COLUMN.get(name)) for name in _FIELDS
)


def _to_task(row: Row[Any]) -> Task:
    """The task in a row of `select(TASKS)`."""
    return Task(**{name: row[i] if convert is None else convert(row[i]) for name, i, convert in _ROW_PLAN})


def _columns(task: Task) -> dict[str, object]:
    """Every column but `id`, and `priority_rank` (what the priority sort orders by)."""
    columns = {name: _TO_COLUMN.get(name, _same)(getattr(task, name)) for name in _VALUES}
    columns["priority_rank"] = PRIORITY_RANK[task.priority]
    return columns


def _tag_rows(task: Task) -> list[dict[str, object]]:
    return [{"task_id": task.id, "tag": tag, "user_id": task.user_id} for tag in task.tags]


def _wanted_reminders(task: Task) -> dict[str, datetime]:
    if task.status == Status.PENDING and task.due_at is not None:
        return dict(reminder_times(task.due_at, task.reminders))
    return {}


def _reminder_row(task: Task, offset: str, remind_at: datetime) -> dict[str, object]:
    assert task.due_at is not None
    return {
        "id": uuid.uuid4(),
        "task_id": task.id,
        "user_id": task.user_id,
        "offset": offset,
        "remind_at": remind_at,
        "due_at": task.due_at,
        "fired_at": None,
    }


@dataclass(frozen=True)
class _Compiled:
    """One multi-table insert, compiled once: its SQL, its constant parameters, each bind's processor."""

    sql: str
    constants: dict[str, Any]
    processors: dict[str, Callable[[Any], Any]]

    def params(self, values: dict[str, Any]) -> dict[str, Any]:
        out = dict(self.constants)
        for name, value in values.items():
            process = self.processors.get(name)
            out[name] = value if process is None or value is None else process(value)
        return out


@lru_cache(maxsize=256)
def _cte_statement(shape: tuple[tuple[str, int, tuple[str, ...]], ...], dialect: Dialect) -> _Compiled:
    """One statement inserting every (table, row count, columns) of `shape`, bound by name
    (`w<table>_<row>_<column>`), built and compiled once per shape. (SQLAlchemy does not cache the
    compilation of multi-row INSERTs in CTEs, and compiling one costs more than the rest of a create.)

    Postgres runs every data-modifying CTE even when nothing reads it; foreign keys are checked at the
    end of the statement, so the task and its children may go in any order."""
    tables = {t.name: t for t in (TASKS, TAGS, REMINDERS, OUTBOX)}
    processors: dict[str, Callable[[Any], Any]] = {}
    keys: set[str] = set()
    ctes = []
    for i, (name, count, columns) in enumerate(shape):
        table, rows = tables[name], []
        for j in range(count):
            row = {}
            for column in columns:
                key, type_ = f"w{i}_{j}_{column}", table.c[column].type
                row[column] = bindparam(key, type_=type_)
                keys.add(key)
                process = type_.dialect_impl(dialect).bind_processor(dialect)
                if process is not None:
                    processors[key] = process
            rows.append(row)
        ctes.append(insert(table).values(rows).cte(f"w{i}"))
    compiled = select(literal_column("1")).add_cte(*ctes).compile(dialect=dialect)
    constants = {k: v for k, v in compiled.params.items() if k not in keys}
    return _Compiled(str(compiled), constants, processors)


log = logging.getLogger(__name__)

# Session info keys: the first write may wait for the commit (set by a unit of work); that write, as
# (SQL, parameters), not sent yet.
DEFERRABLE = "tasktide.deferrable"
_DEFERRED = "tasktide.deferred"


@event.listens_for(Session, "after_begin")
def _write_deferred_first(session: Session, _transaction: SessionTransaction, connection: Connection) -> None:
    """The session began its transaction for another statement: no more deferring, and a write that waited
    goes first."""
    session.info.pop(DEFERRABLE, None)
    deferred = session.info.pop(_DEFERRED, None)
    if deferred is not None:
        connection.exec_driver_sql(*deferred)


@lru_cache(maxsize=8)
def _autocommit(engine: Engine) -> Engine:
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def run_deferred(session: Session) -> bool:
    """Run the write `session` deferred, if any, alone in autocommit (the unit of work's only statement, so
    atomic by itself), then its NOTIFY on the same connection; True if there was one. Call before
    committing the session (which then has no connection, so its commit sends nothing, but its
    after-commit hooks run)."""
    deferred = session.info.pop(_DEFERRED, None)
    session.info.pop(DEFERRABLE, None)
    if deferred is None:
        return False
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    with _autocommit(engine).connect() as connection:
        connection.exec_driver_sql(*deferred)
        notify_committed(session, connection)
    return True


def notify_committed(session: Session, connection: Connection | None = None) -> None:
    """Send the NOTIFYs `session` queued, now that what they announce has committed (on ``connection``,
    else an autocommit connection of the session's engine: the session holds none after its commit).
    Never raises: the rows are committed, and the relay's sweep publishes what no NOTIFY announced."""
    payloads = session.info.pop(PENDING_NOTIFIES, None)
    if not payloads:
        return
    try:
        if connection is not None:
            send_notifies(connection, payloads)
            return
        engine = session.get_bind()
        assert isinstance(engine, Engine)
        with _autocommit(engine).connect() as own:
            send_notifies(own, payloads)
    except Exception as exc:  # after the commit: nothing to undo, and the sweep catches up
        log.warning("outbox NOTIFY after commit failed (the relay's sweep publishes the rows): %r", exc)


def forget_notifies(session: Session) -> None:
    """Drop what `session` queued: its transaction rolled back."""
    session.info.pop(PENDING_NOTIFIES, None)


class TaskRepository:
    def __init__(self, session: Session) -> None:
        self.session = session
        self._postgres = session.get_bind().dialect.name == "postgresql"
        self.events_written = 0  # outbox rows this repository wrote (the unit of work kicks the relay)

    # -- tasks -----------------------------------------------------------------------------------
    def add(self, task: Task, *events: Envelope) -> None:
        """Insert a new task, its tags, its materialised reminders and `events` into the outbox.

        Postgres: one statement of data-modifying CTEs (its NOTIFY after the commit); SQLite: one a table."""
        writes: list[tuple[Table, list[dict[str, object]]]] = [(TASKS, [{"id": task.id, **_columns(task)}])]
        writes.append((TAGS, _tag_rows(task)))
        reminders = [_reminder_row(task, o, at) for o, at in _wanted_reminders(task).items()]
        writes.append((REMINDERS, reminders))
        writes.append((OUTBOX, [row for event in events for row in rows_for(self.session, event)]))
        self._write(writes)

    def _write(self, writes: Sequence[tuple[Table, list[dict[str, object]]]]) -> None:
        """Insert every (table, rows) pair in order: one statement on Postgres, executemany on SQLite."""
        writes = [(table, rows) for table, rows in writes if rows]
        if not writes:
            return
        self.events_written += sum(len(rows) for table, rows in writes if table is OUTBOX)
        if not self._postgres:
            for table, rows in writes:
                self.session.execute(insert(table), rows)
            return
        sink = self.session.info.get(HANDOFF_INFO)
        if any(table is OUTBOX for table, _ in writes) and (sink is None or isinstance(sink, NotifyHandoff)):
            # (a process relaying its own rows publishes them itself: no other relay needs waking)
            self.session.info.setdefault(PENDING_NOTIFIES, []).append(self._notify_payload(writes))
        shape = tuple((table.name, len(rows), tuple(rows[0])) for table, rows in writes)
        params = {
            f"w{i}_{j}_{column}": value
            for i, (_, rows) in enumerate(writes)
            for j, row in enumerate(rows)
            for column, value in row.items()
        }
        info = self.session.info
        if info.pop(DEFERRABLE, None) and self.session.get_nested_transaction() is None:
            compiled = _cte_statement(shape, self.session.get_bind().dialect)
            info[_DEFERRED] = (compiled.sql, compiled.params(params))  # see the module docstring
            return
        connection = self.session.connection()
        compiled = _cte_statement(shape, connection.dialect)
        connection.exec_driver_sql(compiled.sql, compiled.params(params))

    def _notify_payload(self, writes: Sequence[tuple[Table, list[dict[str, object]]]]) -> str:
        """The NOTIFY payload of the outbox rows in `writes` for a `NotifyHandoff` session, else "". Rows
        too big to travel in it are unclaimed here, so the relay's claim finds them at once."""
        outbox = [row for table, rows in writes if table is OUTBOX for row in rows]
        if not outbox or not isinstance(self.session.info.get(HANDOFF_INFO), NotifyHandoff):
            return ""
        payload = notify_payload(outbox)
        if payload is None:
            for row in outbox:
                row.pop("claim_token", None)
                row.pop("claimed_until", None)
            return ""
        return payload

    def add_occurrence(self, task: Task) -> bool:
        """Insert the next occurrence; False when `(series_id, occurrence)` already exists."""
        return self._once(lambda: self.add(task))

    def _once(self, write: Callable[[], None]) -> bool:
        """Run `write` in a savepoint; False (and nothing of it kept) when it breaks a unique constraint."""
        written = self.events_written
        info = self.session.info
        info.pop(DEFERRABLE, None)  # the savepoint must see the write's error
        queued = len(info.get(PENDING_NOTIFIES, ()))
        try:
            with self.session.begin_nested():
                write()
        except IntegrityError:
            self.events_written = written
            del info.get(PENDING_NOTIFIES, [])[queued:]  # rolled back with the savepoint: never announced
            return False
        return True

    def exists(self, user_id: str, task_id: uuid.UUID) -> bool:
        stmt = select(TASKS.c.id).where(TASKS.c.id == task_id, TASKS.c.user_id == user_id)
        return self.session.execute(stmt).first() is not None

    def get(self, user_id: str, task_id: uuid.UUID, *, for_update: bool = False) -> Task | None:
        params = {"task_id": task_id, "user_id": user_id}
        row = self.session.execute(_get_statement(for_update), params).one_or_none()
        return None if row is None else _to_task(row)

    def save(self, task: Task, *, expected_version: int) -> None:
        """Write a revised task; `Conflict` if someone else changed it since `expected_version`."""
        result = self.session.execute(
            update(TASKS)
            .where(TASKS.c.id == task.id, TASKS.c.version == expected_version)
            .values(**_columns(task))
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise Conflict(f"task {task.id} was changed concurrently; retry with the latest version")
        self._sync_tags(task)
        self._sync_reminders(task)

    def delete(self, task: Task) -> None:
        self.session.execute(delete(REMINDERS).where(REMINDERS.c.task_id == task.id))
        self.session.execute(delete(TAGS).where(TAGS.c.task_id == task.id))
        self.session.execute(delete(TASKS).where(TASKS.c.id == task.id))

    def search(self, user_id: str, query: TaskQuery, *, now: datetime) -> list[Task]:
        stmt, params = _search_statement(_SearchShape.of(query)), _search_params(user_id, query, now)
        return [_to_task(row) for row in self.session.execute(stmt, params).all()]

    def series_has_occurrence(self, series_id: uuid.UUID, occurrence: int) -> bool:
        stmt = select(TaskRow.id).where(TaskRow.series_id == series_id, TaskRow.occurrence == occurrence)
        return self.session.scalars(stmt).first() is not None

    # -- outbox ----------------------------------------------------------------------------------
    def add_event(self, event: Envelope) -> None:
        self._write([(OUTBOX, rows_for(self.session, event))])

    def add_event_once(self, event: Envelope) -> bool:
        """`add_event`; False (and nothing written) when the event id is in the outbox already."""
        return self._once(lambda: self.add_event(event))

    # -- reminders -------------------------------------------------------------------------------
    def claim_due_reminders(self, now: datetime, limit: int = 500) -> list[ClaimedReminder]:
        """Atomically mark at most `limit` due reminders fired and return them; concurrent scanners never
        share one. On Postgres the locked candidates are a materialised CTE the UPDATE joins: as an
        `IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)` the planner's semi-join re-ran the subquery for
        each row and claimed every due reminder, whatever the limit."""
        due = select(REMINDERS.c.id).where(REMINDERS.c.fired_at.is_(None), REMINDERS.c.remind_at <= now)
        due = due.order_by(REMINDERS.c.remind_at).limit(limit)
        stmt = update(REMINDERS).where(REMINDERS.c.fired_at.is_(None))
        if self._postgres:
            locked = due.with_for_update(skip_locked=True).cte("due").prefix_with("MATERIALIZED")
            stmt = stmt.where(REMINDERS.c.id == locked.c.id)
        else:  # SQLite: writers serialise at BEGIN IMMEDIATE
            stmt = stmt.where(REMINDERS.c.id.in_(due.scalar_subquery()))
        stmt = stmt.values(fired_at=now).returning(
            REMINDERS.c.id,
            REMINDERS.c.task_id,
            REMINDERS.c.user_id,
            REMINDERS.c.offset,
            REMINDERS.c.remind_at,
            REMINDERS.c.due_at,
        )
        return [ClaimedReminder(*row) for row in self.session.execute(stmt).all()]

    def pending_reminders(self, task_id: uuid.UUID) -> list[tuple[str, datetime]]:
        stmt = select(ReminderRow.offset, ReminderRow.remind_at).where(
            ReminderRow.task_id == task_id, ReminderRow.fired_at.is_(None)
        )
        return [(o, r) for o, r in self.session.execute(stmt.order_by(ReminderRow.remind_at)).all()]

    # -- internals -------------------------------------------------------------------------------
    def _sync_tags(self, task: Task) -> None:
        self.session.execute(delete(TAGS).where(TAGS.c.task_id == task.id))
        self._write([(TAGS, _tag_rows(task))])

    def _sync_reminders(self, task: Task) -> None:
        """Materialise one row per (task, offset). A row whose time did not move is kept (fired or not);
        one whose time moved is replaced by a new row with a new id, so its next firing is a new event."""
        stmt = select(REMINDERS.c.id, REMINDERS.c.offset, REMINDERS.c.remind_at, REMINDERS.c.due_at)
        rows = {r.offset: r for r in self.session.execute(stmt.where(REMINDERS.c.task_id == task.id))}
        wanted = _wanted_reminders(task)
        kept = {o for o, r in rows.items() if wanted.get(o) == r.remind_at and r.due_at == task.due_at}
        stale = [r.id for o, r in rows.items() if o not in kept]
        if stale:  # deletes before the inserts that reuse their (task_id, offset)
            self.session.execute(delete(REMINDERS).where(REMINDERS.c.id.in_(stale)))
        fresh = [_reminder_row(task, o, at) for o, at in wanted.items() if o not in kept]
        self._write([(REMINDERS, fresh)])


@lru_cache(maxsize=2)
def _get_statement(for_update: bool) -> Select[Any]:
    stmt = select(TASKS).where(TASKS.c.id == bindparam("task_id"), TASKS.c.user_id == bindparam("user_id"))
    return stmt.with_for_update() if for_update else stmt


@dataclass(frozen=True)
class _SearchShape:
    """Which filters a list uses, and its sort: one statement per shape, built once (building one cost more
    than running its cached compilation); the filters' values are its bound parameters."""

    status: bool
    priorities: bool
    tags: int
    text: bool
    due_from: bool
    due_to: bool
    overdue: bool
    sort: str

    @classmethod
    def of(cls, query: TaskQuery) -> _SearchShape:
        return cls(
            status=query.status != "all",
            priorities=bool(query.priorities),
            tags=len(query.tags),
            text=bool(query.q),
            due_from=query.due_from is not None,
            due_to=query.due_to is not None,
            overdue=query.overdue,
            sort=query.sort,
        )


def _search_params(user_id: str, query: TaskQuery, now: datetime) -> dict[str, Any]:
    """The bound values of `_search_statement(_SearchShape.of(query))`."""
    params: dict[str, Any] = {"user_id": user_id, "limit": query.limit, "offset": query.offset}
    if query.status != "all":
        params["status"] = query.status
    if query.priorities:
        params["priorities"] = list(query.priorities)
    params.update({f"tag_{i}": tag for i, tag in enumerate(query.tags)})
    if query.q:
        escaped = query.q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        params["pattern"] = f"%{escaped}%"
    if query.due_from is not None:
        params["due_from"] = query.due_from
    if query.due_to is not None:
        params["due_to"] = query.due_to
    if query.overdue:
        params.update(pending=str(Status.PENDING), now=now)
    return params


@lru_cache(maxsize=256)
def _search_statement(shape: _SearchShape) -> Select[Any]:
    stmt = select(TASKS).where(TASKS.c.user_id == bindparam("user_id"))
    if shape.status:
        stmt = stmt.where(TASKS.c.status == bindparam("status"))
    if shape.priorities:
        stmt = stmt.where(TASKS.c.priority.in_(bindparam("priorities", expanding=True)))
    for i in range(shape.tags):
        tagged = (
            TAGS.c.user_id == TASKS.c.user_id,
            TAGS.c.tag == bindparam(f"tag_{i}"),
            TAGS.c.task_id == TASKS.c.id,
        )
        stmt = stmt.where(exists().where(*tagged))
    if shape.text:
        pattern = bindparam("pattern", type_=String())
        stmt = stmt.where(
            or_(
                func.lower(TASKS.c.title).like(pattern, escape="\\"),
                func.lower(TASKS.c.description).like(pattern, escape="\\"),
            )
        )
    if shape.due_from:
        stmt = stmt.where(TASKS.c.due_at >= bindparam("due_from"))
    if shape.due_to:
        stmt = stmt.where(TASKS.c.due_at <= bindparam("due_to"))
    if shape.overdue:
        stmt = stmt.where(and_(TASKS.c.status == bindparam("pending"), TASKS.c.due_at < bindparam("now")))
    return _sorted(stmt, shape.sort).limit(bindparam("limit")).offset(bindparam("offset"))


def _sorted(stmt: Select[Any], sort: str) -> Select[Any]:
    descending = sort.startswith("-")
    key = sort.lstrip("-")
    column = {
        "due_at": TASKS.c.due_at,
        "priority": TASKS.c.priority_rank,
        "title": TASKS.c.title,
        "created_at": TASKS.c.created_at,
        "updated_at": TASKS.c.updated_at,
    }[key]
    # Priorities order high > medium > low > none (rank 0 is high): "-priority" (descending) puts high
    # first, "priority" low first. Tasks without a due date always come last.
    if key == "priority":
        descending = not descending
    # As `NULLS LAST` (not a leading `due_at IS NULL` key) an index on (user_id[, status], due_at) gives the
    # ascending order, so such a page of a user with thousands of tasks reads a page of rows, not all of
    # them; `-due_at` (DESC NULLS LAST, not the indexes' backward order) still sorts the user's rows.
    order = column.desc() if descending else column.asc()
    if key == "due_at":
        order = order.nulls_last()
    return stmt.order_by(order, TASKS.c.created_at.asc(), TASKS.c.id.asc())


__all__: Sequence[str] = ("SORTS", "ClaimedReminder", "TaskQuery", "TaskRepository")
