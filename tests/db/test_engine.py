"""The database ping behind the readiness check: one round trip on a reachable database, the driver's
error on an unreachable one."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from tasktide.db.engine import make_engine, ping


def test_ping_reachable_database_returns(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        ping(engine)
    finally:
        engine.dispose()


def test_ping_unreachable_database_raises(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'missing-dir' / 'state.db'}")
    with pytest.raises(OperationalError):
        ping(engine)
