"""Applies the Alembic migrations shipped inside the package (`tasktide migrate`, `tasktide dev`, API start).

On Postgres the upgrade holds an advisory lock, so API replicas starting together migrate once.

An upgrade to head then completes the rows an earlier release wrote on this schema
(`tasktide.db.repairs`).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from tasktide.db import repairs
from tasktide.db.engine import make_engine, normalise_url

MIGRATIONS = Path(__file__).with_name("migrations")
LOCK_ID = 0x7A5C_7D1E


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    config = alembic_config(url)
    complete = revision == "head"
    if not normalise_url(url).startswith("postgresql"):
        command.upgrade(config, revision)
        if complete:
            engine = make_engine(url)
            try:
                with engine.begin() as conn:
                    repairs.repair(conn)
            finally:
                engine.dispose()
        return
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": LOCK_ID})
            conn.commit()
            try:
                config.attributes["connection"] = conn
                command.upgrade(config, revision)
                conn.commit()
                if complete:
                    repairs.repair(conn)
                conn.commit()
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": LOCK_ID})
                conn.commit()
    finally:
        engine.dispose()
