"""DbCalls: which use cases run on the event loop and which on the thread pool, per database."""

from __future__ import annotations

import asyncio
import threading

from tasktide.api.deps import DbCalls, get_db_calls
from tasktide.services import Services


def test_db_calls_database_postgres_inline_else_pooled(services: Services) -> None:
    calls = asyncio.run(get_db_calls(services))
    assert calls.inline is (services.engine.dialect.name == "postgresql")


def test_db_calls_one_statement_inline_runs_on_the_loop_thread() -> None:
    async def where() -> tuple[int, int, int]:
        loop_thread = threading.get_ident()
        inline = await DbCalls(inline=True).one_statement(threading.get_ident)
        pooled = await DbCalls(inline=False).one_statement(threading.get_ident)
        return loop_thread, inline, pooled

    loop_thread, inline, pooled = asyncio.run(where())
    assert inline == loop_thread
    assert pooled != loop_thread


def test_db_calls_blocking_inline_still_runs_on_the_pool() -> None:
    async def where() -> tuple[int, int]:
        return threading.get_ident(), await DbCalls(inline=True).blocking(threading.get_ident)

    loop_thread, blocking = asyncio.run(where())
    assert blocking != loop_thread
