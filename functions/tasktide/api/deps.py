"""Annotated dependencies shared by the routes: the services container and the application's use cases,
each over the container's unit of work (`tasktide.app`). They are async (nothing in them blocks): FastAPI
runs a sync dependency on the thread pool, one thread round trip each per request.

The routes are async too and hand their use case to `DbCalls`: a call that blocks (a transaction, a lock
wait, a heavier query) runs on the thread pool, one round trip; a call that is one short statement with no
lock to wait for (a create, a get by key, a list page an index serves) runs on the event loop when the
database is Postgres and its pool has an idle connection, with no thread round trip at all. Without an idle
connection it goes to the thread pool too: a checkout that waits for a connection (or opens one) must not
hold the event loop, and with it every other request. (A sync route costs two: FastAPI validates its
return value on the pool too.)"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, ParamSpec, TypeVar

from fastapi import Depends, Request
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from tasktide.app.audit import Audit
from tasktide.app.notifications import Notifications
from tasktide.app.tasks import Tasks
from tasktide.db.engine import has_idle_connection
from tasktide.services import Services


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class DbCalls:
    """Where a route runs its use case: `one_statement` inline when there is an `engine` (Postgres) whose
    pool holds an idle connection now, else on the thread pool; `blocking` always on the thread pool.
    SQLite never runs inline (no `engine`): its writers wait for one another's lock."""

    engine: Engine | None

    @property
    def inline(self) -> bool:
        return self.engine is not None

    async def one_statement(self, call: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        # Inline calls run one at a time on the loop thread, so the idle connection seen here is the one
        # the call checks out, unless a pool thread takes it first (then the call waits, rarely and briefly)
        if self.engine is not None and has_idle_connection(self.engine):
            return call(*args, **kwargs)
        return await run_in_threadpool(call, *args, **kwargs)

    async def blocking(self, call: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        return await run_in_threadpool(call, *args, **kwargs)


_POOLED = DbCalls(engine=None)


async def get_db_calls(services: ServicesDep) -> DbCalls:
    engine = services.engine
    return DbCalls(engine) if engine.dialect.name == "postgresql" else _POOLED


DbCallsDep = Annotated[DbCalls, Depends(get_db_calls)]


async def get_tasks(services: ServicesDep) -> Tasks:
    return Tasks(services.unit_of_work)


async def get_notifications(services: ServicesDep) -> Notifications:
    return Notifications(services.unit_of_work)


async def get_audit(services: ServicesDep) -> Audit:
    return Audit(services.unit_of_work)


TasksDep = Annotated[Tasks, Depends(get_tasks)]
NotificationsDep = Annotated[Notifications, Depends(get_notifications)]
AuditDep = Annotated[Audit, Depends(get_audit)]
