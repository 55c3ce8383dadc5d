"""Helpers every test module may import (`from testenv import ...`): the test JWT secret, the rule for
services a test needs (skip locally, fail under CI), and resetting the shared Postgres test database."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import text

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
