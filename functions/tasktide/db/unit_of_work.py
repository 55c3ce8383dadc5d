"""The unit of work over SQLAlchemy sessions (implements `tasktide.app.ports.UnitOfWork`).

One session, one transaction: the task, audit and notification repositories it opens share it, so state
rows and outbox rows commit or roll back together. After a commit that wrote outbox rows the `after_commit`
hook runs (the services container's: kick the relay); a read-only unit of work never begins a transaction
of its own (on Postgres its sessions are autocommit: one round trip a read) and never commits.

On Postgres a unit of work whose only statement is one write (a create: task, tags, reminders and outbox
rows in one statement) sends it alone in autocommit at commit: one round trip, no BEGIN or COMMIT, and as
atomic (see `tasktide.db.repository`); any other unit of work runs in one transaction as before. Either
way the outbox NOTIFY its writes queued is sent after the commit, in a transaction of its own (see
"NOTIFY after the commit" in `tasktide.db.outbox`), and dropped if the unit rolls back.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from sqlalchemy.orm import Session, sessionmaker

from tasktide.db.audit import AuditRepository
from tasktide.db.idempotency import CURRENT
from tasktide.db.notifications import NotificationRepository
from tasktide.db.repository import DEFERRABLE, TaskRepository, forget_notifies, notify_committed, run_deferred


class SqlUnitOfWork:
    tasks: TaskRepository
    audit: AuditRepository
    notifications: NotificationRepository

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        after_commit: Callable[[], None] | None = None,
        read_only: bool = False,
    ) -> None:
        self.sessions, self.after_commit, self.read_only = sessions, after_commit, read_only
        bind = sessions.kw.get("bind")
        self._postgres = bind is not None and bind.dialect.name == "postgresql"

    def __enter__(self) -> SqlUnitOfWork:
        self.session = self.sessions()
        if not self.read_only:
            self.session.begin()
            if self._postgres and CURRENT.get() is None:  # a keyed request marks its key in this commit
                self.session.info[DEFERRABLE] = True
        self.tasks = TaskRepository(self.session)
        self.audit = AuditRepository(self.session)
        self.notifications = NotificationRepository(self.session)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        committed = False
        try:
            if kind is None and not self.read_only:
                run_deferred(self.session)  # the only statement, if one waited: one round trip (+ NOTIFY)
                self.session.commit()
                committed = True
                notify_committed(self.session)  # what the transaction wrote, announced once it is durable
            elif not self.read_only:  # a read-only one has nothing to undo: `close` releases it alone
                forget_notifies(self.session)
                self.session.rollback()
        finally:
            self.session.close()
        if committed and self.tasks.events_written and self.after_commit is not None:
            self.after_commit()
