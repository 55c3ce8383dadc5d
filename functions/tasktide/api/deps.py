"""Annotated dependencies shared by the routes: the services container and a unit of work."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from tasktide.services import Services


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_session(services: ServicesDep) -> Iterator[Session]:
    """One transaction per request; committed when the route returns, rolled back on error."""
    with services.sessions() as session, session.begin():
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
