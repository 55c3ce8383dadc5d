"""Reminder scan at scale: the real claim query over 1,000,000 tasks and their materialised reminders.

Consumes: the `TASKTIDE_BENCH_PG` Postgres server; creates database `tasktide_bench_reminders`, applies
the real schema with `tasktide migrate`, then loads `tasks`, `task_tags` and `reminders` server-side
(multi-row `INSERT ... SELECT FROM generate_series`, sent by psycopg): per task one tag and one reminder,
about 60% far in the future, about 40% already fired, and exactly `--due` (1,000) due now and unfired.
Emits: the median time of `TaskRepository.claim_due_reminders(now)` (each repetition in its own
transaction, rolled back), the same with index scans disabled, a sequential `count(*)` of `reminders`,
the `EXPLAIN (ANALYZE, BUFFERS)` plans, and the `## Reminder scan` section of docs/benchmarks.md.

    .venv/bin/python loadtests/bench/reminder_scan.py [--tasks 1000000] [--due 1000] [--runs 7] [--write-doc]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import benchlib
from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.orm import Session

from tasktide.db.engine import make_engine
from tasktide.db.repository import TaskRepository

SECTION = "Reminder scan"
DATABASE = "tasktide_bench_reminders"
INDEX = "ix_reminders_due_unfired"
NO_INDEX = ("SET LOCAL enable_indexscan = off", "SET LOCAL enable_bitmapscan = off")
NO_INDEX_AT_ALL = (*NO_INDEX, "SET LOCAL enable_indexonlyscan = off")

LOAD_TASKS = """
INSERT INTO tasks (id, user_id, title, description, priority, priority_rank, tags, status, due_at, timezone,
                   recurrence, recurrence_basis, reminders, series_id, occurrence, version, created_at,
                   updated_at, completed_at)
SELECT md5('task' || i)::uuid, 'user-' || (i %% 10000), 'task ' || i, '', 'medium', 1, '["bench"]'::json,
       CASE WHEN kind = 'fired' THEN 'completed' ELSE 'pending' END,
       due, 'UTC', NULL, 'due', '["PT1H"]'::json, md5('task' || i)::uuid, 1, 1,
       %(now)s - interval '30 days', %(now)s - interval '30 days',
       CASE WHEN kind = 'fired' THEN due ELSE NULL END
FROM (
  SELECT i,
         CASE WHEN i <= %(due)s THEN 'due' WHEN i %% 10 < 4 THEN 'fired' ELSE 'future' END AS kind,
         CASE WHEN i <= %(due)s THEN %(now)s + interval '1 hour'
              WHEN i %% 10 < 4 THEN %(now)s - (i %% 28 + 1) * interval '1 day'
              ELSE %(now)s + (i %% 365 + 1) * interval '1 day' + (i %% 1440) * interval '1 minute'
         END AS due
  FROM generate_series(%(first)s, %(last)s) AS i
) AS s
"""
LOAD_TAGS = """
INSERT INTO task_tags (task_id, tag, user_id)
SELECT md5('task' || i)::uuid, 'tag-' || (i %% 50), 'user-' || (i %% 10000)
FROM generate_series(%(first)s, %(last)s) AS i
"""


@dataclass(frozen=True)
class Timing:
    path: str
    median_ms: float
    min_ms: float
    max_ms: float
    rows: int


def load(libpq_url: str, tasks: int, due: int, now: datetime, batch: int = 250_000) -> dict[str, float]:
    """Fill the migrated schema; returns seconds per step."""
    import psycopg

    steps: dict[str, float] = {}
    with psycopg.connect(libpq_url, autocommit=True) as conn:
        t0 = time.perf_counter()
        for first in range(1, tasks + 1, batch):
            last = min(first + batch - 1, tasks)
            params = {"now": now, "due": due, "first": first, "last": last}
            conn.execute(LOAD_TASKS, params)
            conn.execute(LOAD_TAGS, params)
        steps["tasks + task_tags"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        # Due-now reminders fire a second or so before `now`, so exactly `due` rows are claimable.
        conn.execute(
            """
            INSERT INTO reminders (id, task_id, user_id, "offset", remind_at, due_at, fired_at)
            SELECT md5('reminder' || t.id::text)::uuid, t.id, t.user_id, 'PT1H',
                   CASE WHEN t.due_at = %(now)s + interval '1 hour'
                        THEN %(now)s - (row_number() OVER (ORDER BY t.id)) * interval '1 millisecond'
                        ELSE t.due_at - interval '1 hour' END,
                   t.due_at,
                   CASE WHEN t.status = 'completed' THEN t.due_at - interval '1 hour' ELSE NULL END
            FROM tasks AS t
            """,
            {"now": now},
        )
        steps["reminders"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        conn.execute("VACUUM ANALYZE tasks")
        conn.execute("VACUUM ANALYZE task_tags")
        conn.execute("VACUUM ANALYZE reminders")
        steps["VACUUM ANALYZE"] = time.perf_counter() - t0
    return steps


def counts(engine: Engine, now: datetime) -> dict[str, int]:
    with engine.connect() as conn:
        out = {
            name: int(conn.execute(text(sql), {"now": now}).scalar_one())
            for name, sql in (
                ("tasks", "SELECT count(*) FROM tasks"),
                ("task_tags", "SELECT count(*) FROM task_tags"),
                ("reminders", "SELECT count(*) FROM reminders"),
                ("reminders fired", "SELECT count(*) FROM reminders WHERE fired_at IS NOT NULL"),
                ("reminders unfired", "SELECT count(*) FROM reminders WHERE fired_at IS NULL"),
                ("due now", "SELECT count(*) FROM reminders WHERE fired_at IS NULL AND remind_at <= :now"),
            )
        }
        out["reminders MB"] = int(
            conn.execute(text("SELECT pg_total_relation_size('reminders') / 1048576")).scalar_one()
        )
        out[f"{INDEX} kB"] = int(
            conn.execute(text(f"SELECT pg_relation_size('{INDEX}') / 1024")).scalar_one()
        )
    return out


@contextmanager
def capture_sql(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """Record every statement (and its parameters) the engine sends to the driver."""
    seen: list[tuple[str, Any]] = []

    def listener(_c: Connection, _cur: Any, statement: str, parameters: Any, _ctx: Any, _many: bool) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", listener)


def repeat(
    path: str, engine: Engine, runs: int, setup: tuple[str, ...], body: Callable[[Session], int]
) -> Timing:
    """Time `body` in a fresh transaction per run (after one warm-up); every run is rolled back."""
    samples: list[float] = []
    rows = 0
    for i in range(runs + 1):
        with Session(engine) as session, session.begin():
            for statement in setup:
                session.execute(text(statement))
            t0 = time.perf_counter()
            rows = body(session)
            elapsed = time.perf_counter() - t0
            session.rollback()
        if i:
            samples.append(elapsed * 1000)
    return Timing(path, benchlib.median(samples), min(samples), max(samples), rows)


def explain(engine: Engine, statement: str, parameters: Any, setup: tuple[str, ...] = ()) -> str:
    with engine.connect() as conn, conn.begin() as tx:
        for line in setup:
            conn.exec_driver_sql(line)
        result = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
        plan = "\n".join(str(row[0]) for row in result)
        tx.rollback()
    return plan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--due", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument(
        "--reuse", action="store_true", help="skip the load if the database is already filled"
    )
    parser.add_argument("--write-doc", action="store_true", help=f"replace '## {SECTION}' in docs")
    args = parser.parse_args(argv)
    raw_argv = [a for a in (sys.argv[1:] if argv is None else argv) if a not in ("--write-doc", "--reuse")]

    now = datetime.now(UTC).replace(microsecond=0)
    libpq = benchlib.pg_database_url(DATABASE)
    engine = make_engine(benchlib.sqlalchemy_url(libpq))
    steps: dict[str, float] = {}
    filled = False
    if args.reuse:
        try:
            with engine.connect() as conn:
                filled = conn.execute(text("SELECT count(*) FROM tasks")).scalar_one() == args.tasks
                # the load's `now`: due-now reminders are the only ones not exactly 1 hour before due_at
                loaded_now = conn.execute(
                    text(
                        "SELECT max(due_at) - interval '1 hour' FROM reminders "
                        "WHERE remind_at <> due_at - interval '1 hour'"
                    )
                ).scalar_one()
                now = loaded_now.astimezone(UTC) if loaded_now else now
        except Exception:
            filled = False
    if not filled:
        engine.dispose()
        benchlib.recreate_database(DATABASE)
        engine = make_engine(benchlib.sqlalchemy_url(libpq))
        t0 = time.perf_counter()
        benchlib.migrate(benchlib.sqlalchemy_url(libpq))
        steps["tasktide migrate"] = time.perf_counter() - t0
        steps.update(load(libpq, args.tasks, args.due, now))
        for step, seconds in steps.items():
            print(f"load: {step:20} {seconds:6.1f} s")
    facts = counts(engine, now)
    print(facts)
    if facts["due now"] != args.due:
        raise SystemExit(f"expected {args.due} due reminders, found {facts['due now']}")

    def claim(limit: int) -> Callable[[Session], int]:
        return lambda session: len(TaskRepository(session).claim_due_reminders(now, limit=limit))

    def seq_count(session: Session) -> int:
        return int(session.execute(text("SELECT count(*) FROM reminders")).scalar_one())

    timings = [
        repeat(
            "claim_due_reminders(now) (default limit 500), partial index", engine, args.runs, (), claim(500)
        ),
        repeat(
            f"claim_due_reminders(now, limit={args.due}), partial index",
            engine,
            args.runs,
            (),
            claim(args.due),
        ),
        repeat("same claim (limit 500), index scans disabled", engine, args.runs, NO_INDEX, claim(500)),
        repeat(
            "baseline: SELECT count(*) FROM reminders (sequential scan)",
            engine,
            args.runs,
            NO_INDEX_AT_ALL,
            seq_count,
        ),
    ]
    for t in timings:
        print(f"{t.path:70} median {t.median_ms:9.2f} ms  rows {t.rows}")

    with capture_sql(engine) as seen, Session(engine) as session, session.begin():
        TaskRepository(session).claim_due_reminders(now)
        session.rollback()
    statement, parameters = seen[-1]
    plan = explain(engine, statement, parameters)
    plan_no_index = explain(engine, statement, parameters, NO_INDEX)
    plan_count = explain(engine, "SELECT count(*) FROM reminders", {}, NO_INDEX_AT_ALL)
    print(plan)
    if INDEX not in plan:
        raise SystemExit(f"the claim did not use {INDEX}")
    body = render(raw_argv, args, steps, facts, timings, statement, plan, plan_no_index, plan_count)
    if args.write_doc:
        benchlib.write_section(SECTION, body)
    engine.dispose()
    return 0


def render(
    argv: list[str],
    args: argparse.Namespace,
    steps: dict[str, float],
    facts: dict[str, int],
    timings: list[Timing],
    statement: str,
    plan: str,
    plan_no_index: str,
    plan_count: str,
) -> str:
    claim, claim_all, no_index, seq = timings
    rows = [
        [
            t.path,
            t.rows,
            f"{t.median_ms:.2f}",
            f"{t.min_ms:.2f}",
            f"{t.max_ms:.2f}",
            f"{t.median_ms / claim.median_ms:.1f}x",
        ]
        for t in timings
    ]
    load_rows = [[step, f"{seconds:.1f}"] for step, seconds in steps.items()]
    fact_rows = [[name, f"{value:,}"] for name, value in facts.items()]
    return f"""Command: `{benchlib.command_line("reminder_scan.py", argv)}`

Data set (fresh database `{DATABASE}`, schema by `tasktide migrate`, loaded server-side with multi-row
`INSERT ... SELECT FROM generate_series` sent through psycopg): {args.tasks:,} tasks with one tag and one
materialised `PT1H` reminder each; about 40% of reminders already fired, about 60% unfired and 1 day to
1 year in the future, exactly {args.due:,} unfired and due now. Each timed run is one transaction
(`TaskRepository.claim_due_reminders(now)` through SQLAlchemy, then ROLLBACK), {args.runs} runs after one
warm-up; the table shows median/min/max.

{benchlib.table(["load step", "seconds"], load_rows) if load_rows else "(data reused from an earlier load)"}

{benchlib.table(["table fact", "value"], fact_rows)}

{benchlib.table(["path", "rows", "median ms", "min ms", "max ms", "vs claim"], rows)}

Ratios: the real claim (limit 500) takes {claim.median_ms:.2f} ms,
{seq.median_ms / claim.median_ms:.1f}x faster than one sequential `count(*)` over the
{facts["reminders"]:,} reminders ({seq.median_ms:.1f} ms) and
{no_index.median_ms / claim.median_ms:.1f}x faster than the same claim with index scans disabled
({no_index.median_ms:.1f} ms).

Interpretation: the claim's cost follows the number of rows it claims, not the size of the table.
In the plan below the partial-index walk that finds the {claim.rows} due rows is a small part of the
execution; the rest is updating {claim.rows} rows (new tuple versions, primary-key and index
maintenance: setting `fired_at` takes the row out of the partial index, so the update is never HOT),
which is why `limit={claim_all.rows}` costs {claim_all.median_ms / claim.median_ms:.1f}x the default.
Without the index the scanner must read and sort every unfired reminder on every tick: that baseline
grows linearly with the table, while the indexed claim stays flat as long as the due backlog is small.
The partial index stays small ({facts[f"{INDEX} kB"]:,} kB against {facts["reminders MB"]:,} MB for the
table with its indexes) because fired rows leave it.

The statement SQLAlchemy sends (captured from the engine):

```sql
{statement.strip()}
```

`EXPLAIN (ANALYZE, BUFFERS)` of that statement (same parameters, rolled back): the subquery walks the
partial index `{INDEX}` (only unfired rows, ordered by `remind_at`), stops after the limit, and the outer
UPDATE finds each row by primary key:

```
{plan}
```

Same statement with `SET enable_indexscan = off; SET enable_bitmapscan = off` (the baseline):

```
{plan_no_index}
```

Baseline `SELECT count(*) FROM reminders` (index and index-only scans off):

```
{plan_count}
```
"""


if __name__ == "__main__":
    raise SystemExit(main())
