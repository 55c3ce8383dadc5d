"""Annotated dependencies shared by the routes: the services container and the application's use cases,
each over the container's unit of work (`tasktide.app`). They are async (nothing in them blocks): FastAPI
runs a sync dependency on the thread pool, one thread round trip each per request."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from tasktide.app.audit import Audit
from tasktide.app.notifications import Notifications
from tasktide.app.tasks import Tasks
from tasktide.services import Services


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_tasks(services: ServicesDep) -> Tasks:
    return Tasks(services.unit_of_work)


async def get_notifications(services: ServicesDep) -> Notifications:
    return Notifications(services.unit_of_work)


async def get_audit(services: ServicesDep) -> Audit:
    return Audit(services.unit_of_work)


TasksDep = Annotated[Tasks, Depends(get_tasks)]
NotificationsDep = Annotated[Notifications, Depends(get_notifications)]
AuditDep = Annotated[Audit, Depends(get_audit)]
