"""Applies the Alembic migrations shipped inside the package (`tasktide migrate`, `tasktide dev`, API start).

On Postgres the upgrade holds an advisory lock, so API replicas starting together migrate once.

An upgrade to head then completes the rows an earlier release wrote on this schema
(`tasktide.db.repairs`).

A database a later release has already migrated (its revision is not among this release's scripts, as after
a traffic rollback) is left as it is, with a warning: every migration keeps the schema usable by the release
before it (docs/operations.md), so this release starts and serves on it instead of failing to start.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, text

from tasktide.db import repairs
from tasktide.db.engine import make_engine, normalise_url

MIGRATIONS = Path(__file__).with_name("migrations")
LOCK_ID = 0x7A5C_7D1E

log = logging.getLogger(__name__)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return config


def _ahead(conn: Connection, config: Config) -> bool:
    """Whether the database is at a revision this release has no script for (a later release migrated
    it); warns when so."""
    scripts = ScriptDirectory.from_config(config)
    unknown = []
    for current in MigrationContext.configure(conn).get_current_heads():
        try:
            scripts.get_revision(current)
        except CommandError:
            unknown.append(current)
    conn.commit()
    if unknown:
        log.warning(
            "database schema is at revision %s, newer than this release's %s: not migrating",
            ", ".join(unknown),
            ", ".join(scripts.get_heads()),
        )
    return bool(unknown)


def upgrade(url: str, revision: str = "head") -> None:
    config = alembic_config(url)
    complete = revision == "head"
    engine = make_engine(url)
    try:
        if engine.dialect.name != "postgresql":
            with engine.connect() as conn:
                if _ahead(conn, config):
                    return
            command.upgrade(config, revision)
            if complete:
                with engine.connect() as conn:
                    repairs.repair_all(conn)
            return
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": LOCK_ID})
            conn.commit()
            try:
                if _ahead(conn, config):
                    return
                config.attributes["connection"] = conn
                command.upgrade(config, revision)
                conn.commit()
                if complete:
                    repairs.repair_all(conn)
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": LOCK_ID})
                conn.commit()
    finally:
        engine.dispose()
