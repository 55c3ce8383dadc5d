"""Applies the Alembic migrations shipped inside the package (`tasktide migrate`, `tasktide dev`, API start).

On Postgres the upgrade holds an advisory lock, so API replicas starting together migrate once. Each of its
statements waits at most `LOCK_TIMEOUT_S` for a lock (`lock_timeout`): a DDL statement queued behind a long
transaction would otherwise make every write to its table wait behind it. One that gives up is retried,
from the revision it stopped at, after a backoff, `LOCK_ATTEMPTS` times; then `MigrationLocked` is raised
(the API does not start, and Kubernetes restarts it later). The release before keeps serving meanwhile.

An upgrade to head then completes the rows an earlier release wrote on this schema
(`tasktide.db.repairs`).

A database a later release has already migrated (its revision is not among this release's scripts, as after
a traffic rollback) is left as it is, with a warning: every migration keeps the schema usable by the release
before it (docs/operations.md), so this release starts and serves on it instead of failing to start.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from tasktide.db import repairs
from tasktide.db.engine import make_engine, normalise_url

MIGRATIONS = Path(__file__).with_name("migrations")
LOCK_ID = 0x7A5C_7D1E
LOCK_TIMEOUT_S = 5.0  # a migration statement's longest wait for a table or row lock
LOCK_ATTEMPTS = 5
LOCK_BACKOFF_S = 2.0  # before retry n: LOCK_BACKOFF_S * 2^(n-1)
LOCK_NOT_AVAILABLE = "55P03"  # SQLSTATE of a wait that lock_timeout ended

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


class MigrationLocked(RuntimeError):
    """The migration gave way to other transactions' locks at every attempt."""


def _lock_wait_ended(exc: DBAPIError) -> bool:
    return getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE


def _upgrade_giving_way(
    conn: Connection,
    config: Config,
    revision: str,
    *,
    repair: bool,
    attempts: int,
    backoff: float,
    lock_timeout: float,
) -> None:
    """`command.upgrade` (then, with `repair`, the repairs) on `conn`, each migration statement waiting at
    most `lock_timeout` for a lock (not the concurrent index builds and backfills of `tasktide.db.ddl`); a
    wait that ends is retried from the revision reached, up to `attempts` times."""
    conn.execute(text(f"SET lock_timeout = '{max(1, round(lock_timeout * 1000))}ms'"))
    conn.commit()
    for attempt in range(1, attempts + 1):
        try:
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
            conn.commit()
            if repair:  # row updates in batches, no table lock: they wait as writes do
                conn.execute(text("SET lock_timeout = 0"))
                conn.commit()
                repairs.repair_all(conn)
            return
        except DBAPIError as exc:
            if not _lock_wait_ended(exc):
                raise
            conn.rollback()
            if attempt == attempts:
                raise MigrationLocked(
                    f"the migration waited {lock_timeout:g} s for a lock {attempts} times and gave way each "
                    "time: a long transaction holds a lock on a table it changes (pg_locks, "
                    "pg_stat_activity; docs/operations.md)"
                ) from exc
            delay = backoff * 2 ** (attempt - 1)
            log.warning(
                "migration gave way to a lock held by another transaction (attempt %d/%d), retrying in %g s",
                attempt,
                attempts,
                delay,
            )
            time.sleep(delay)


def upgrade(
    url: str,
    revision: str = "head",
    *,
    lock_timeout: float = LOCK_TIMEOUT_S,
    attempts: int = LOCK_ATTEMPTS,
    backoff: float = LOCK_BACKOFF_S,
) -> None:
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
                _upgrade_giving_way(
                    conn,
                    config,
                    revision,
                    repair=complete,
                    attempts=attempts,
                    backoff=backoff,
                    lock_timeout=lock_timeout,
                )
            finally:
                conn.rollback()  # a failed statement leaves the transaction aborted
                conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": LOCK_ID})
                conn.commit()
    finally:
        engine.dispose()
