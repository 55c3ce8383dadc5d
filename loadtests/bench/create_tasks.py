"""Create-task throughput and latency through the real HTTP API, against raw-driver baselines.

Consumes: a `tasktide dev` subprocess (uvicorn, embedded events) on a fresh SQLite file and on a fresh
Postgres database (`TASKTIDE_BENCH_PG` server, database `tasktide_bench_create`).
Emits: requests/s and p50/p99 latency of `POST /api/{user}/tasks` from N concurrent httpx clients; the
same numbers for a raw driver loop (psycopg / stdlib sqlite3) of INSERT+COMMIT of an equivalent `tasks`
row, and of the full write set one create commits (task + tags + reminder + outbox rows); the ratios;
and the `## Create-task throughput` section of docs/benchmarks.md (with --write-doc).

    .venv/bin/python loadtests/bench/create_tasks.py [--requests 2000] [--concurrency 8] [--write-doc]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import benchlib
import httpx

SECTION = "Create-task throughput"
DATABASE = "tasktide_bench_create"
USER = "bench-user"
TAGS = ["bench", "load"]
REMINDERS = ["PT1H"]


@dataclass(frozen=True)
class Run:
    """One measured path: `count` operations in `wall_s` seconds, and their latency distribution."""

    path: str
    wall_s: float
    latency: benchlib.Summary
    server_cores: float | None = None  # server-process CPU seconds per wall second (API runs only)

    @property
    def per_second(self) -> float:
        return self.latency.count / self.wall_s


def payload(i: int, due: datetime) -> dict[str, Any]:
    return {
        "title": f"benchmark task {i}",
        "description": "created by loadtests/bench/create_tasks.py",
        "priority": "medium",
        "tags": TAGS,
        "due_at": due.isoformat().replace("+00:00", "Z"),
        "reminders": REMINDERS,
    }


def api_run(base: str, requests: int, concurrency: int, warmup: int = 50) -> Run:
    """`requests` POSTs split over `concurrency` threads, each with its own keep-alive httpx client."""
    headers = {"Authorization": f"Bearer {benchlib.token(USER)}"}
    url = f"{base}/api/{USER}/tasks"
    due = datetime.now(UTC) + timedelta(days=30)
    with httpx.Client(headers=headers, timeout=60) as client:
        for i in range(warmup):
            client.post(url, json=payload(i, due)).raise_for_status()
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(requests))
    start_gate = threading.Barrier(concurrency + 1)

    def worker() -> None:
        local: list[float] = []
        with httpx.Client(headers=headers, timeout=60) as client:
            start_gate.wait()
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    break
                t0 = time.perf_counter()
                response = client.post(url, json=payload(i, due))
                local.append(time.perf_counter() - t0)
                if response.status_code != 201:
                    errors.append(f"{response.status_code} {response.text[:200]}")
        with lock:
            latencies.extend(local)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    pid = benchlib.pid_of(base)
    start_gate.wait()
    t0, cpu0 = time.perf_counter(), benchlib.cpu_seconds(pid)
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - t0
    cores = (benchlib.cpu_seconds(pid) - cpu0) / wall
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests, first: {errors[0]}")
    return Run(f"API ({concurrency} clients)", wall, benchlib.Summary.of_seconds(latencies), cores)


# -- equivalent rows ------------------------------------------------------------------------------------
def task_values(now: datetime) -> dict[str, Any]:
    task_id = uuid.uuid4()
    return {
        "id": task_id,
        "user_id": USER,
        "title": "benchmark task",
        "description": "created by loadtests/bench/create_tasks.py",
        "priority": "medium",
        "priority_rank": 1,
        "tags": json.dumps(TAGS),
        "status": "pending",
        "due_at": now + timedelta(days=30),
        "timezone": "UTC",
        "recurrence": None,
        "recurrence_basis": "due",
        "reminders": json.dumps(REMINDERS),
        "series_id": task_id,
        "occurrence": 1,
        "version": 1,
        "created_at": now,
        "updated_at": now,
        "completed_at": None,
    }


def outbox_event(task: dict[str, Any]) -> str:
    """A structured CloudEvent about the size of the one the API writes for task.created."""
    data = {k: (str(v) if isinstance(v, uuid.UUID | datetime) else v) for k, v in task.items()}
    event = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/tasktide/api",
        "type": "com.tasktide.task.created",
        "subject": str(task["id"]),
        "time": datetime.now(UTC).isoformat(),
        "partitionkey": str(task["id"]),
        "datacontenttype": "application/json",
        "data": {"task": data, "changed": [], "actor": USER},
    }
    return json.dumps(event)


TASK_COLUMNS = tuple(task_values(datetime.now(UTC)))
OUTBOX_TOPICS = ("task-events", "task-updates")


def timed_loop(rows: int, body: Callable[[], None]) -> tuple[float, list[float]]:
    samples: list[float] = []
    t0 = time.perf_counter()
    for _ in range(rows):
        s = time.perf_counter()
        body()
        samples.append(time.perf_counter() - s)
    return time.perf_counter() - t0, samples


def postgres_baselines(libpq_url: str, rows: int) -> list[Run]:
    import psycopg

    cols = ", ".join(f'"{c}"' for c in TASK_COLUMNS)
    marks = ", ".join(f"%({c})s" for c in TASK_COLUMNS)
    insert_task = f"INSERT INTO tasks ({cols}) VALUES ({marks})"
    runs: list[Run] = []
    with psycopg.connect(libpq_url) as conn:

        def task_only() -> None:
            conn.execute(insert_task, task_values(datetime.now(UTC)))
            conn.commit()

        def write_set() -> None:
            now = datetime.now(UTC)
            task = task_values(now)
            with conn.cursor() as cur:
                cur.execute(insert_task, task)
                cur.executemany(
                    "INSERT INTO task_tags (task_id, tag, user_id) VALUES (%s, %s, %s)",
                    [(task["id"], t, USER) for t in TAGS],
                )
                cur.execute(
                    'INSERT INTO reminders (id, task_id, user_id, "offset", remind_at, due_at, fired_at) '
                    "VALUES (%s, %s, %s, %s, %s, %s, NULL)",
                    (
                        uuid.uuid4(),
                        task["id"],
                        USER,
                        REMINDERS[0],
                        task["due_at"] - timedelta(hours=1),
                        task["due_at"],
                    ),
                )
                event = outbox_event(task)
                cur.executemany(
                    "INSERT INTO outbox (event_id, topic, key, type, event, created_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s)",
                    [
                        (
                            json.loads(event)["id"],
                            topic,
                            str(task["id"]),
                            "com.tasktide.task.created",
                            event,
                            now,
                        )
                        for topic in OUTBOX_TOPICS
                    ],
                )
            conn.commit()

        for name, body in (("raw psycopg: task row", task_only), ("raw psycopg: full write set", write_set)):
            timed_loop(50, body)  # warm-up
            wall, samples = timed_loop(rows, body)
            runs.append(Run(name, wall, benchlib.Summary.of_seconds(samples)))
    return runs


def sqlite_baselines(path: Path, rows: int) -> list[Run]:
    """Same pragmas and BEGIN IMMEDIATE as tasktide.db.engine uses for SQLite."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for pragma in ("journal_mode=WAL", "foreign_keys=ON", "busy_timeout=30000", "synchronous=NORMAL"):
        conn.execute(f"PRAGMA {pragma}")
    cols = ", ".join(f'"{c}"' for c in TASK_COLUMNS)
    marks = ", ".join(f":{c}" for c in TASK_COLUMNS)
    insert_task = f"INSERT INTO tasks ({cols}) VALUES ({marks})"

    def sqlite_row(now: datetime) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in task_values(now).items():
            if isinstance(value, uuid.UUID):
                value = value.hex  # SQLAlchemy's Uuid on SQLite: 32 hex chars
            elif isinstance(value, datetime):
                value = value.astimezone(UTC).replace(tzinfo=None).isoformat(" ")
            out[key] = value
        return out

    def task_only() -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(insert_task, sqlite_row(datetime.now(UTC)))
        conn.execute("COMMIT")

    def write_set() -> None:
        now = datetime.now(UTC)
        task = sqlite_row(now)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(insert_task, task)
        conn.executemany(
            "INSERT INTO task_tags (task_id, tag, user_id) VALUES (?, ?, ?)",
            [(task["id"], t, USER) for t in TAGS],
        )
        conn.execute(
            'INSERT INTO reminders (id, task_id, user_id, "offset", remind_at, due_at, fired_at) '
            "VALUES (?, ?, ?, ?, ?, ?, NULL)",
            (uuid.uuid4().hex, task["id"], USER, REMINDERS[0], task["due_at"], task["due_at"]),
        )
        event = outbox_event(task)
        conn.executemany(
            "INSERT INTO outbox (event_id, topic, key, type, event, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    json.loads(event)["id"],
                    t,
                    task["id"],
                    "com.tasktide.task.created",
                    event,
                    task["created_at"],
                )
                for t in OUTBOX_TOPICS
            ],
        )
        conn.execute("COMMIT")

    runs: list[Run] = []
    try:
        for name, body in (("raw sqlite3: task row", task_only), ("raw sqlite3: full write set", write_set)):
            timed_loop(50, body)
            wall, samples = timed_loop(rows, body)
            runs.append(Run(name, wall, benchlib.Summary.of_seconds(samples)))
    finally:
        conn.close()
    return runs


# -- orchestration --------------------------------------------------------------------------------------
def bench_sqlite(requests: int, concurrency: int, rows: int, workdir: Path) -> list[Run]:
    db = workdir / "create_tasks.db"
    url = f"sqlite:///{db}"
    with benchlib.dev_server(url, log_path=workdir / "dev-sqlite.log") as base:
        api = api_run(base, requests, concurrency)
    return [api, *sqlite_baselines(db, rows)]


def bench_postgres(requests: int, concurrency: int, rows: int, workdir: Path) -> list[Run]:
    libpq = benchlib.recreate_database(DATABASE)
    with benchlib.dev_server(benchlib.sqlalchemy_url(libpq), log_path=workdir / "dev-postgres.log") as base:
        api = api_run(base, requests, concurrency)
    return [api, *postgres_baselines(libpq, rows)]


def render(results: dict[str, list[Run]], argv: list[str], requests: int, concurrency: int) -> str:
    rows: list[list[object]] = []
    for backend, runs in results.items():
        raw = next(r for r in runs if r.path.endswith("task row"))
        for run in runs:
            rows.append(
                [
                    backend,
                    run.path,
                    run.latency.count,
                    f"{run.per_second:,.0f}",
                    f"{run.latency.p50_ms:.2f}",
                    f"{run.latency.p99_ms:.2f}",
                    f"{raw.per_second / run.per_second:.1f}x" if run is not raw else "1.0x (baseline)",
                ]
            )
    table = benchlib.table(
        ["backend", "path", "ops", "ops/s", "p50 ms", "p99 ms", "slowdown vs raw task row (ops/s)"], rows
    )
    ratios = []
    for backend, runs in results.items():
        api, raw, full = runs[0], runs[1], runs[2]
        ratios.append(
            f"- {backend}: API/raw throughput = {api.per_second / raw.per_second:.3f} "
            f"({raw.per_second / api.per_second:.1f}x slower); API p50 / raw p50 = "
            f"{api.latency.p50_ms / raw.latency.p50_ms:.0f}x; "
            f"full write set alone costs {full.latency.p50_ms / raw.latency.p50_ms:.1f}x a task row."
        )
    return (
        f"Command: `{benchlib.command_line('create_tasks.py', argv)}`\n\n"
        f"`POST /api/{{user}}/tasks` (title, description, priority, 2 tags, a due date and one "
        "`PT1H` reminder) "
        f"sent {requests} times by {concurrency} threads, each with its own keep-alive `httpx.Client`, to a "
        "`tasktide dev` subprocess (uvicorn, embedded events: the relay, audit and router run in the same "
        "process), after 50 warm-up requests. Baselines, same run, same database: a single-connection "
        "driver loop of INSERT+COMMIT of an equivalent `tasks` row, and of the whole write set one create "
        "commits (task row, 2 `task_tags`, 1 `reminders`, 2 `outbox` rows with a ~1 KB CloudEvent).\n\n"
        f"{table}\n\n" + "\n".join(ratios) + "\n\n" + interpretation(results) + "\n"
    )


def interpretation(results: dict[str, list[Run]]) -> str:
    api = {backend: runs[0] for backend, runs in results.items()}
    full = {backend: runs[2] for backend, runs in results.items()}
    worst = max(api.values(), key=lambda r: r.latency.p50_ms)
    parts = ", ".join(f"{b} {r.per_second:,.0f}/s" for b, r in api.items())
    cores = ", ".join(f"{b} {r.server_cores or 0:.2f}" for b, r in api.items())
    db_ms = ", ".join(f"{b} {full[b].latency.p50_ms:.2f} ms" for b in full)
    return (
        f"Interpretation: the API sustains {parts}. The database work of one create, replayed with the raw "
        f"driver, takes {db_ms} at p50, a small fraction of the API's p50 ({worst.latency.p50_ms:.0f} ms "
        "at worst), so the gap to the raw insert is not the database: it is Python work in one GIL-bound "
        f"server process (its CPU use during the run, in cores: {cores}; one process cannot exceed about "
        "1.0 of Python work). Each create "
        "runs request parsing, validation and JWT checking, one transaction (on Postgres BEGIN, one "
        "statement of CTEs writing the task, tags, reminder and outbox rows, COMMIT), and then, in the same "
        "process, the outbox relay publishes the two events it was handed at commit (no claim query) and "
        "the router delivers `task.created` over loopback HTTP to "
        "the audit function (Flask via a2wsgi), which writes its own row. Latency under 8 concurrent "
        "clients is mostly queueing behind that single core; "
        "SQLite additionally serialises every writer at `BEGIN IMMEDIATE`. See 'Where the time goes'."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--baseline-rows", type=int, default=2000)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--write-doc", action="store_true", help=f"replace '## {SECTION}' in docs")
    args = parser.parse_args(argv)
    raw_argv = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--write-doc"]
    results: dict[str, list[Run]] = {}
    with tempfile.TemporaryDirectory(prefix="tasktide-bench-") as tmp:
        for backend in args.backends.split(","):
            bench = {"sqlite": bench_sqlite, "postgres": bench_postgres}[backend]
            results[backend] = bench(args.requests, args.concurrency, args.baseline_rows, Path(tmp))
            for run in results[backend]:
                print(
                    f"{backend:9} {run.path:32} {run.per_second:9.0f} ops/s  "
                    f"p50 {run.latency.p50_ms:7.2f} ms  p99 {run.latency.p99_ms:7.2f} ms"
                )
    body = render(results, raw_argv, args.requests, args.concurrency)
    if args.write_doc:
        benchlib.write_section(SECTION, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
