"""Benchmark: commits a second of concurrent outbox writers, with the NOTIFY inside the write or after it.

Consumes: the durable Postgres cluster (`TASKTIDE_PG_DURABLE=1 bash .ci/postgres.sh start`: fsync and
synchronous_commit on, as a production server commits; started here if it is not running, and then
stopped again), `tasktide.db.outbox.NOTIFY_SQL`.
Emits: per disk and writer count, the commits a second of each way of writing, interleaved, each writer a
process with its own connection in autocommit, one listener draining the notifications (the relay); and the
`## NOTIFY and commit throughput` section of docs/benchmarks.md (with --write-doc).

Disks: `this disk` (its own flush, about 0.1 ms here) and `1 ms flush`, a network disk's (cloud volumes
flush in 1-2 ms), emulated by the writers' `commit_delay=1000, commit_siblings=0`: the backend that flushes
the WAL for a group of commits sleeps 1 ms first, so one flush costs at least 1 ms and commits that wait
for one another pay it one by one.

Ways of writing, each one single-row INSERT a commit carrying a payload the size of a task's hand-off:
- `no NOTIFY`: the baseline, the INSERT alone;
- `NOTIFY in the write`: `WITH w AS (INSERT ...) SELECT pg_notify(...)`, one statement, as tasktide wrote
  outbox rows before (the NOTIFY's cluster-wide lock is held through the write's WAL flush);
- `NOTIFY after the commit`: the INSERT, then `NOTIFY_SQL` (its own transaction, asynchronous commit), as
  `tasktide.db.unit_of_work` does now.

    .venv/bin/python loadtests/bench/notify_commits.py [--writers 8,32] [--seconds 3] [--write-doc]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import benchlib
import psycopg

from tasktide.db.outbox import NOTIFY_SQL, OUTBOX_CHANNEL

SECTION = "NOTIFY and commit throughput"
WAYS = ("no NOTIFY", "NOTIFY in the write", "NOTIFY after the commit")
DISKS = {"this disk": "", "1 ms flush": "-c commit_delay=1000 -c commit_siblings=0"}
PAYLOAD = "x" * 1500  # about a task.created hand-off: two rows of [topic, key, event]
TABLE = "bench_notify_writes"


@dataclass(frozen=True)
class Run:
    disk: str
    writers: int
    way: str
    commits_per_second: float
    notified: int


def durable_url() -> str:
    return durable("url").strip().replace("postgresql+psycopg:", "postgresql:", 1)


def durable(command: str) -> str:
    env = {**os.environ, "TASKTIDE_PG_DURABLE": "1"}
    script = str(benchlib.REPO_ROOT / ".ci" / "postgres.sh")
    done = subprocess.run(["bash", script, command], env=env, capture_output=True, text=True, check=False)
    return done.stdout


@contextmanager
def durable_server() -> Iterator[str]:
    """The durable cluster's libpq URL; started (and at the end stopped) here unless it already ran."""
    running = durable("status").startswith("postgres: running")
    if not running:
        durable("start")
    try:
        yield durable_url()
    finally:
        if not running:
            durable("stop")


def write(url: str, disk: str, way: str, seconds: float, start: Any, counts: Any) -> None:
    """One writer: commits for ``seconds`` after ``start`` is set, then puts its count on ``counts``."""
    insert = f"INSERT INTO {TABLE} (payload) VALUES (%s)"
    inline = f"WITH w AS ({insert}) SELECT pg_notify('{OUTBOX_CHANNEL}', %s)"
    with psycopg.connect(url, autocommit=True, options=DISKS[disk]) as conn:
        start.wait()
        done, end = 0, time.monotonic() + seconds
        while time.monotonic() < end:
            if way == "NOTIFY in the write":
                conn.execute(inline, (PAYLOAD, PAYLOAD))
            else:
                conn.execute(insert, (PAYLOAD,))
                if way == "NOTIFY after the commit":
                    conn.execute(NOTIFY_SQL, ([PAYLOAD],))
            done += 1
    counts.put(done)


def listen(url: str, stop: threading.Event, seen: list[int]) -> None:
    """The relay's part: LISTEN and drain every notification until ``stop``."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"LISTEN {OUTBOX_CHANNEL}")
        while not stop.is_set():
            seen[0] += sum(1 for _ in conn.notifies(timeout=0.2))


def measure(url: str, disk: str, writers: int, way: str, seconds: float) -> Run:
    context = multiprocessing.get_context("spawn")
    start, counts = context.Event(), context.Queue()
    args = (url, disk, way, seconds, start, counts)
    procs = [context.Process(target=write, args=args) for _ in range(writers)]
    stop, seen = threading.Event(), [0]
    listener = threading.Thread(target=listen, args=(url, stop, seen), daemon=True)
    listener.start()
    for proc in procs:
        proc.start()
    time.sleep(1.0)  # every writer connected: the timed part starts for all at once
    start.set()
    total = sum(counts.get(timeout=seconds + 60) for _ in procs)
    for proc in procs:
        proc.join(timeout=30)
    time.sleep(0.5)  # let the listener drain what was sent
    stop.set()
    listener.join(timeout=5)
    return Run(disk, writers, way, total / seconds, seen[0])


def run_all(writer_counts: Sequence[int], seconds: float, rounds: int) -> tuple[list[Run], dict[str, str]]:
    with durable_server() as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
            conn.execute(f"CREATE TABLE {TABLE} (id bigserial PRIMARY KEY, payload text NOT NULL)")
            names = ("fsync", "synchronous_commit", "wal_sync_method", "server_version")
            facts = {name: str(conn.execute(f"SHOW {name}").fetchone()[0]) for name in names}  # type: ignore[index]
        runs = [
            measure(url, disk, writers, way, seconds)
            for _ in range(rounds)
            for disk in DISKS
            for writers in writer_counts
            for way in WAYS
        ]
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE {TABLE}")
    return runs, facts


def render(runs: Sequence[Run], facts: dict[str, str], argv: Sequence[str], load: float) -> str:
    rows = []
    for disk in DISKS:
        for writers in sorted({r.writers for r in runs}):
            same = [r for r in runs if r.disk == disk and r.writers == writers]
            base = benchlib.median([r.commits_per_second for r in same if r.way == WAYS[0]])
            for way in WAYS:
                mine = [r for r in same if r.way == way]
                rates = [r.commits_per_second for r in mine]
                median = benchlib.median(rates)
                rows.append(
                    (
                        disk,
                        writers,
                        way,
                        " / ".join(f"{x:,.0f}" for x in rates),
                        f"{median:,.0f}",
                        f"{median / base:.2f}x",
                        "-" if way == WAYS[0] else f"{sum(r.notified for r in mine):,}",
                    )
                )
    header = (
        "disk",
        "writers",
        "way",
        "commits/s, each round",
        "median",
        "vs no NOTIFY",
        "notifications received",
    )
    settings = ", ".join(f"{k}={v}" for k, v in facts.items())
    return f"""## {SECTION}

Command: `{benchlib.command_line("notify_commits.py", argv)}` (load average at start: {load:.1f})

The durable cluster (`TASKTIDE_PG_DURABLE=1 bash .ci/postgres.sh start`: {settings}), unlike the test
cluster the other sections use, so a commit waits for its WAL flush as on a production server. Each writer
is a process with its own connection in autocommit, committing single-row INSERTs with a 1,500-byte payload
back to back; one listener drains the notifications, as the relay would; the ways take turns, round after
round. `1 ms flush` emulates a network disk (`commit_delay=1000, commit_siblings=0` on the writers'
connections: whoever flushes the WAL for a group of commits first sleeps 1 ms). A transaction that NOTIFYs
takes one lock for the whole cluster at commit and keeps it through its flush, so with the NOTIFY in the
write those commits go one at a time, one flush each, whatever the number of writers: at most one per flush
time. Sent after the commit in a transaction of its own with asynchronous commit (what
`tasktide.db.unit_of_work` does), the writes group-commit like the baseline and the NOTIFY waits for no
flush; it costs a second statement per write, so where the flush is fast (this disk) and the writers, the
listener and Postgres share 2 cores, both ways are CPU-bound at about the same rate.

{benchlib.table(header, rows)}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--writers", default="8,32", help="comma-separated writer counts")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of every way and writer count")
    parser.add_argument("--write-doc", action="store_true")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    writer_counts = [int(w) for w in args.writers.split(",") if w]
    runs, facts = run_all(writer_counts, args.seconds, args.rounds)
    shown = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--write-doc"]
    text = render(runs, facts, shown, load)
    print(text)
    if args.write_doc:
        benchlib.write_section(SECTION, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
