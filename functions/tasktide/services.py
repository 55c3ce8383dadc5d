"""The process-wide services container: engine, sessions, secrets and the after-commit hooks."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from tasktide.db.engine import make_engine, session_factory
from tasktide.settings import DEV_JWT_SECRET, Settings

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    jwt_secret: str
    after_commit: list[Callable[[], None]] = field(default_factory=list)

    def committed(self) -> None:
        """Run the after-commit hooks (e.g. kick the outbox relay); never raises."""
        for hook in self.after_commit:
            try:
                hook()
            except Exception:  # a hook failing must not fail the request: the sweep catches up
                log.exception("after-commit hook failed")

    @classmethod
    def build(cls, settings: Settings, *, jwt_secret: str | None = None) -> Services:
        engine = make_engine(settings.database_url)
        return cls(
            settings=settings,
            engine=engine,
            sessions=session_factory(engine),
            jwt_secret=jwt_secret or resolve_jwt_secret(settings),
        )


def resolve_jwt_secret(settings: Settings) -> str:
    if settings.jwt_secret:
        return settings.jwt_secret
    if settings.embedded:
        log.warning("using the built-in development JWT secret (embedded default only)")
        return DEV_JWT_SECRET
    raise RuntimeError(
        "TASKTIDE_JWT_SECRET (or the jwt-secret secret) is required outside the embedded default"
    )
