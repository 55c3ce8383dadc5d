"""DbCalls: which use cases run on the event loop and which on the thread pool, per database and pool."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import QueuePool

from tasktide.api.deps import DbCalls, get_db_calls
from tasktide.services import Services


@pytest.fixture
def one_connection() -> Iterator[Engine]:
    """An engine whose QueuePool holds exactly one connection, already opened and idle."""
    engine = create_engine("sqlite://", poolclass=QueuePool, pool_size=1, max_overflow=0, pool_timeout=5)
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    yield engine
    engine.dispose()


def where(calls: DbCalls, run: str = "one_statement") -> tuple[int, int]:
    """The loop's thread, and the thread the call ran on."""

    async def both() -> tuple[int, int]:
        return threading.get_ident(), await getattr(calls, run)(threading.get_ident)

    return asyncio.run(both())


def test_db_calls_database_postgres_inline_else_pooled(services: Services) -> None:
    calls = asyncio.run(get_db_calls(services))
    assert calls.inline is (services.engine.dialect.name == "postgresql")


def test_db_calls_one_statement_idle_connection_runs_on_the_loop_thread(one_connection: Engine) -> None:
    loop_thread, ran_on = where(DbCalls(one_connection))
    assert ran_on == loop_thread


def test_db_calls_one_statement_pool_exhausted_leaves_the_loop_to_other_requests(
    one_connection: Engine,
) -> None:
    held = one_connection.connect()  # the only connection: a checkout waits until it is returned
    loop_ran = threading.Event()
    released_after_loop_ran: list[bool] = []

    def release_once_the_loop_runs() -> None:
        released_after_loop_ran.append(loop_ran.wait(5))
        held.close()

    def query() -> object:
        with one_connection.connect() as conn:
            return conn.execute(text("SELECT 1")).scalar()

    async def scenario() -> object:
        async def other_request() -> None:
            loop_ran.set()

        other = asyncio.create_task(other_request())
        result = await DbCalls(one_connection).one_statement(query)
        await other
        return result

    releaser = threading.Thread(target=release_once_the_loop_runs)
    releaser.start()
    try:
        assert asyncio.run(scenario()) == 1
    finally:
        releaser.join()
    assert released_after_loop_ran == [True]  # the loop served another request while the call waited


def test_db_calls_one_statement_nothing_connected_yet_runs_on_a_pool_thread() -> None:
    engine = create_engine("sqlite://", poolclass=QueuePool, pool_size=1)  # a checkout would connect
    loop_thread, ran_on = where(DbCalls(engine))
    assert ran_on != loop_thread


def test_db_calls_one_statement_no_engine_runs_on_a_pool_thread() -> None:
    loop_thread, ran_on = where(DbCalls(None))
    assert ran_on != loop_thread


def test_db_calls_blocking_idle_connection_still_runs_on_a_pool_thread(one_connection: Engine) -> None:
    loop_thread, ran_on = where(DbCalls(one_connection), "blocking")
    assert ran_on != loop_thread
