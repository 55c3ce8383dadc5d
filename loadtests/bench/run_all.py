"""Regenerate docs/benchmarks.md: machine facts, then every benchmark script with `--write-doc`, in turn.

Consumes: the benchmark scripts next to this file, the local Postgres (`TASKTIDE_BENCH_PG`) and, for
`event_latency`, Kafka. Runs the scripts one after another (never concurrently: the machine is small and
every number is a ratio against a baseline measured in the same run).
Emits: the `## Machine` section and each script's own section of docs/benchmarks.md; sections it does
not generate (hand-written analysis) are kept, and sections are put in a stable order.

    .venv/bin/python loadtests/bench/run_all.py [--only create_tasks,reminder_scan] [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import benchlib

HERE = Path(__file__).resolve().parent
SCRIPTS: dict[str, tuple[list[str], list[str]]] = {
    # name: (`make bench` arguments, sized so the whole run takes about 10 minutes on 2 cores;
    #        --quick arguments for a smoke run)
    "api_load": (
        [
            *("--duration", "10", "--rates", "50,100,200,300", "--subjects", "plain-1w,tasktide"),
            *("--read-rates", "100,300"),
        ],
        ["--duration", "5", "--rates", "50,200", "--subjects", "plain-1w,tasktide"],
    ),
    "create_tasks": (
        ["--requests", "500", "--baseline-rows", "500", "--backends", "postgres"],
        ["--requests", "200", "--baseline-rows", "200", "--backends", "postgres"],
    ),
    "reminder_scan": (["--tasks", "100000", "--runs", "3"], ["--tasks", "20000", "--runs", "2"]),
    "cold_start": (["--runs", "3"], ["--runs", "2"]),
    "reminder_lateness": ([], ["--tasks", "50", "--spread", "5", "--lead", "8"]),
    "event_latency": (["--messages", "200", "--tasks", "200"], ["--messages", "50", "--tasks", "20"]),
    "dapr_state": (["--ops", "300", "--warmup", "30", "--starts", "2"], ["--ops", "100", "--starts", "1"]),
    "migration_writes": (["--tasks", "200000"], ["--tasks", "20000"]),
    "notify_commits": (
        ["--writers", "8,32", "--seconds", "4"],
        ["--writers", "8", "--seconds", "2", "--rounds", "1"],
    ),
}
ORDER = (
    "Machine",
    "Create-task latency vs offered load",
    "Create-task throughput",
    "Reminder scan",
    "Cold start",
    "Reminder lateness",
    "Event latency",
    "Dapr sidecar",
    "Migration and writes",
    "NOTIFY and commit throughput",
    "Where the time goes",
)
INTRO = """# Benchmarks

Every number below comes from a script in `loadtests/bench/` (the exact command heads each section) and
is compared with a baseline measured in the same run on the same machine, so read the ratios rather than
the absolute values. Regenerate everything with `.venv/bin/python loadtests/bench/run_all.py`
(Postgres from `bash .ci/postgres.sh start`, Kafka from `eventing/local/kafka.sh start`); each script
replaces only its own `## ` section.
"""


def write_intro(doc: Path = benchlib.DOC) -> None:
    text = doc.read_text() if doc.exists() else ""
    _head, sections = benchlib.split_sections(text)
    doc.write_text(INTRO + "\n" + "".join(sections[t].rstrip("\n") + "\n\n" for t in sections))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default=",".join(SCRIPTS), help="comma-separated script names")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not for the docs")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n not in SCRIPTS]
    if unknown:
        parser.error(f"unknown scripts {unknown}; choose from {list(SCRIPTS)}")
    write_intro()
    facts = benchlib.machine_facts()
    if "fsync=off" in facts:
        facts += (
            "\n\nThe local Postgres is a throwaway test cluster with `fsync=off`: commits cost no disk flush,"
            " on the measured path and on its baseline alike."
        )
    load1 = os.getloadavg()[0]
    facts += (
        f"\n\n1-minute load average when this run started: {load1:.1f}. Other work on the machine shares the"
        " two cores and mostly widens p99; the ratios compare paths measured back to back."
    )
    benchlib.write_section("Machine", facts)
    failed: list[str] = []
    for name in names:
        script = HERE / f"{name}.py"
        if not script.exists():
            print(f"skipping {name}: {script} does not exist", file=sys.stderr)
            continue
        full, quick = SCRIPTS[name]
        argv_ = [sys.executable, str(script), *(quick if args.quick else full), "--write-doc"]
        print(f"== {name}: {' '.join(argv_[1:])}", flush=True)
        if subprocess.run(argv_, cwd=benchlib.REPO_ROOT).returncode != 0:
            failed.append(name)
    benchlib.DOC.write_text(benchlib.reorder_sections(benchlib.DOC.read_text(), ORDER))
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
