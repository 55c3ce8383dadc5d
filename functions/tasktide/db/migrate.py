"""Applies the Alembic migrations shipped inside the package (`tasktide migrate`, `tasktide dev`)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from tasktide.db.engine import normalise_url

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)
