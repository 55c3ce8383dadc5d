"""The database ping behind the readiness check: one round trip on a reachable database, the driver's
error on an unreachable one."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

from tasktide.db.engine import has_idle_connection, make_engine, ping


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


def test_has_idle_connection_after_a_lost_connection_false_until_a_connect_succeeds(
    postgres_url: str,
) -> None:
    """A lost connection makes the pool's idle connections stale: no inline call until a reconnect."""
    engine = make_engine(postgres_url)
    try:
        with engine.connect() as spare, engine.connect() as doomed:
            spare.execute(text("SELECT 1"))
            with pytest.raises(OperationalError):  # the server ends this session: a disconnect
                doomed.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
        assert engine.pool.checkedin() >= 1  # the spare is idle, but stale after the invalidation
        assert not has_idle_connection(engine)
        with engine.connect() as fresh:  # reconnects (a new connection): the server answers again
            fresh.execute(text("SELECT 1"))
        assert has_idle_connection(engine)
    finally:
        engine.dispose()


@pytest.mark.parametrize("quarantine", [30.0, 0.0])
def test_has_idle_connection_after_a_failed_connect_false_until_a_connect_succeeds_or_time_passes(
    postgres_url: str, quarantine: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    from tasktide.db import engine as engine_module

    monkeypatch.setattr(engine_module, "QUARANTINE_S", quarantine)
    engine = make_engine(postgres_url, pool_size=1, max_overflow=1)

    def refuse(*_: object, **__: object) -> None:
        raise psycopg.OperationalError("connection refused (simulated)")

    try:
        with engine.connect() as conn:  # one idle connection
            conn.execute(text("SELECT 1"))
        held = engine.connect()  # in use: the next checkout must connect
        event.listen(engine, "do_connect", refuse)
        try:
            with pytest.raises(OperationalError):
                engine.connect()
        finally:
            event.remove(engine, "do_connect", refuse)
        held.close()
        assert engine.pool.checkedin() == 1
        assert has_idle_connection(engine) is (quarantine == 0.0)
        with engine.connect(), engine.connect() as extra:  # the second one connects, and succeeds
            extra.execute(text("SELECT 1"))
        assert has_idle_connection(engine)
    finally:
        engine.dispose()


def connection_parameters(url: str) -> list[dict[str, str]]:
    """The libpq parameters of a connection from `make_engine(url)` and of one from the DBAPI store."""
    from tasktide.db.dbapi import DbapiDatabase

    engine = make_engine(url)
    raw = engine.raw_connection()
    direct = DbapiDatabase(url).connect()
    try:
        return [c.info.get_parameters() for c in (raw.driver_connection, direct)]  # type: ignore[union-attr]
    finally:
        raw.close()
        direct.close()
        engine.dispose()


def test_postgres_connections_keepalive_and_user_timeout_set(postgres_url: str) -> None:
    """A vanished server (no FIN) is found in about a minute on every Postgres connection we open."""
    from tasktide.db.dbapi import PG_CONNECT_ARGS

    expected = {name: str(value) for name, value in PG_CONNECT_ARGS.items() if name != "connect_timeout"}
    for parameters in connection_parameters(postgres_url):
        assert {name: parameters.get(name) for name in expected} == expected


def test_postgres_connections_options_in_the_url_win(postgres_url: str) -> None:
    url = f"{postgres_url}{'&' if '?' in postgres_url else '?'}keepalives_idle=60&tcp_user_timeout=9000"
    for parameters in connection_parameters(url):
        assert (parameters["keepalives_idle"], parameters["tcp_user_timeout"]) == ("60", "9000")
        assert parameters["keepalives_count"] == "3"  # what the URL leaves out is still ours
