"""Writes while migrations 0004+0005 run on Postgres: what the running release waits for.

Consumes: the local Postgres (`TASKTIDE_BENCH_PG`); a fresh database per variant, migrated to 0003 and
filled with `--tasks` tasks of 50 users and two tag rows each. A writer thread (autocommit) updates one
task and inserts one tag row every 5 ms while the migration runs. Two variants, back to back:
- `before`: what 0004+0005 emitted until session 10, replayed by hand: one transaction, plain
  `CREATE/DROP INDEX`, one backfill UPDATE;
- `now`: `tasktide.db.migrate.upgrade` (`tasktide.db.ddl`: concurrent index builds, a committed batch of
  `repairs.BATCH` rows at a time).
Emits: migration time, the writer's p50/p99/max latency and operation count per variant, and the
`## Migration and writes` section of docs/benchmarks.md (with --write-doc).

    .venv/bin/python loadtests/bench/migration_writes.py [--tasks 200000] [--write-doc]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid

import benchlib
from sqlalchemy import Engine, create_engine, text

from tasktide.db.migrate import upgrade

SECTION = "Migration and writes"
FILL = """INSERT INTO tasks (id, user_id, title, description, priority, priority_rank, tags, status, due_at,
  timezone, recurrence, recurrence_basis, reminders, series_id, occurrence, version, created_at, updated_at)
  SELECT md5(i::text)::uuid, 'u' || (i % 50), 't', '', 'none', 3, '[]', 'pending', now(), 'UTC', NULL, 'due',
  '[]', md5(i::text)::uuid, 1, 1, now(), now() FROM generate_series(1, :n) i"""
BEFORE = (  # 0004 and 0005 as they were, in alembic's one transaction
    "ALTER TABLE task_tags ADD COLUMN user_id VARCHAR(128)",
    "UPDATE task_tags SET user_id = (SELECT tasks.user_id FROM tasks WHERE tasks.id = task_tags.task_id)",
    "DROP INDEX ix_task_tags_tag",
    "CREATE INDEX ix_task_tags_user_tag ON task_tags (user_id, tag, task_id)",
    "CREATE INDEX ix_tasks_user_due ON tasks (user_id, due_at)",
    "UPDATE alembic_version SET version_num = '0005'",
)


def prepared(variant: str, tasks: int) -> str:
    url = benchlib.sqlalchemy_url(benchlib.recreate_database(f"tasktide_bench_migration_{variant}"))
    upgrade(url, "0003")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(FILL), {"n": tasks})
        conn.execute(text("INSERT INTO task_tags (task_id, tag) SELECT id, 'a' FROM tasks"))
        conn.execute(text("INSERT INTO task_tags (task_id, tag) SELECT id, 'b' FROM tasks"))
        conn.execute(text("ANALYZE"))
    engine.dispose()
    return url


def _write(engine: Engine, done: threading.Event, samples: list[float]) -> None:
    with engine.connect() as conn:
        while not done.is_set():
            started = time.perf_counter()
            conn.execute(text("UPDATE tasks SET version = version + 1 WHERE id = md5('7')::uuid"))
            conn.execute(
                text("INSERT INTO task_tags (task_id, tag) VALUES (md5('7')::uuid, :tag)"),
                {"tag": uuid.uuid4().hex[:20]},
            )
            samples.append(time.perf_counter() - started)
            time.sleep(0.005)


def measure(variant: str, tasks: int) -> tuple[float, list[float]]:
    """Migration seconds and the writer's latencies (s) while it ran."""
    url = prepared(variant, tasks)
    writer_engine = create_engine(url, isolation_level="AUTOCOMMIT")
    done, samples = threading.Event(), list[float]()
    writer = threading.Thread(target=_write, args=(writer_engine, done, samples))
    writer.start()
    time.sleep(1.0)  # the writer is steady before the migration starts
    samples.clear()
    started = time.perf_counter()
    if variant == "now":
        upgrade(url)
    else:
        engine = create_engine(url)
        with engine.begin() as conn:
            for statement in BEFORE:
                conn.execute(text(statement))
        engine.dispose()
    took = time.perf_counter() - started
    done.set()
    writer.join()
    writer_engine.dispose()
    benchlib.recreate_database(f"tasktide_bench_migration_{variant}")  # leave an empty one behind
    return took, samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=200_000)
    parser.add_argument("--write-doc", action="store_true", help=f"replace '## {SECTION}' in docs")
    args = parser.parse_args(argv)
    raw_argv = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--write-doc"]
    rows = []
    for variant in ("before", "now"):
        took, samples = measure(variant, args.tasks)
        ms = [s * 1000 for s in samples]
        rows.append(
            (
                variant,
                f"{took:.1f} s",
                f"{benchlib.percentile(ms, 50):.1f} ms",
                f"{benchlib.percentile(ms, 99):.1f} ms",
                f"{max(ms):.0f} ms",
                len(ms),
            )
        )
        print(rows[-1], flush=True)
    body = f"""Command: `{benchlib.command_line("migration_writes.py", raw_argv)}`

{args.tasks:,} tasks and {2 * args.tasks:,} tag rows at revision 0003; a writer (one UPDATE of a task, one
tag INSERT, every 5 ms) runs while 0004+0005 migrate. `before` replays what those migrations emitted until
session 10 (one transaction, plain index DDL, one backfill UPDATE); `now` is `tasktide migrate`
(`tasktide.db.ddl`: indexes built and dropped concurrently, the backfill committed in batches).

{benchlib.table(["variant", "migration", "write p50", "write p99", "write max", "writes during it"], rows)}

The writer's longest wait is what the running release's writes wait for while a rollout migrates."""
    if args.write_doc:
        benchlib.write_section(SECTION, body)
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
