"""Helpers every test module may import (`from testenv import ...`): the test JWT secret, the rule for
services a test needs (skip locally, fail under CI), and resetting the shared Postgres test database."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

from tasktide.db.engine import make_engine
from tasktide.db.models import Base

JWT_SECRET = "test-secret-0123456789abcdef0123456789"


def require_env(name: str) -> str:
    """A service the suite needs: skip locally when absent, but fail under CI."""
    value = os.environ.get(name)
    if not value:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not set: `make test` provisions it")
        pytest.skip(f"{name} not set (run `make test` to provision it)")
    return value


def truncate_all(url: str) -> None:
    engine = make_engine(url)
    names = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        conn.execute(text("DROP TABLE IF EXISTS dapr_state"))
    engine.dispose()


@contextmanager
def fresh_database(postgres_url: str, label: str) -> Iterator[str]:
    """A new, empty Postgres database next to `postgres_url`'s, dropped afterwards."""
    admin_url = make_url(postgres_url)
    name = f"{admin_url.database}_{label}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def blank_database(request: pytest.FixtureRequest, tmp_path: Path, label: str) -> Iterator[str]:
    """An empty database of one test's own: a SQLite file when ``request.param`` is "sqlite", else a
    `fresh_database` next to the session's Postgres one."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / f'{label}.db'}"
        return
    with fresh_database(request.getfixturevalue("postgres_url"), label) as url:
        yield url
