"""Create-task throughput (closed loop) and latency vs offered load (open loop), tasktide vs the plain
FastAPI + SQLAlchemy baseline, driven by k6 (Go, so the load generator does not compete for a GIL).

Consumes: the local Postgres (`TASKTIDE_BENCH_PG` server; fresh databases `tasktide_bench_api` and
`tasktide_bench_plain`), k6 from the venv, `loadtests/bench/create.js`, `read.js`, `plain_baseline.py`.
Emits: per subject, a closed-loop run of creates (8 clients back to back), open-loop runs of creates at
fixed arrival rates (k6 `constant-arrival-rate`) and, with `--read-rates`, open-loop runs of GET-one and
of the filtered, sorted list (the reader's own 200 tasks, seeded once; the reads on a freshly started
server, the same database): requests/s, p50/p90/p99/max,
dropped iterations, server CPU per request,
the 1-minute load average at the end of each run; and the `## Create-task latency vs offered load`
section of docs/benchmarks.md (with --write-doc).

Subjects (each started, measured and stopped in turn, in the same run):
- `plain-1w`: `plain_baseline.py` under `uvicorn` with 1 worker, default loop (the issue's baseline);
- `plain-2w`: the same app with `--workers 2 --loop uvloop --http httptools` (same CPU as tasktide);
- `tasktide`: `tasktide serve` (the container entrypoint: 2 uvloop workers, SO_REUSEPORT, no Kafka), with
  the env its Knative Service sets (`benchlib.manifest_env`): each commit NOTIFYs its outbox rows.

    .venv/bin/python loadtests/bench/api_load.py [--duration 15] [--rates 50,100,200,300]
        [--read-rates 100,300] [--write-doc]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import benchlib

SECTION = "Create-task latency vs offered load"
NAN = float("nan")
HERE = Path(__file__).resolve().parent
USER = "bench-user"
READER = "bench-reader"  # the reads' own user: read.js seeds its tasks, so a list sorts 200, not every create
READS = {"get": "GET one task", "list": "GET list (filter + sort)"}


@dataclass(frozen=True)
class Result:
    subject: str
    mode: str  # "closed, 8 clients" or "open, N req/s"
    requests: int
    per_second: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    failed: float
    dropped: int
    cpu_ms_per_request: float
    load1: float


def k6_binary() -> str:
    local = benchlib.VENV_BIN / "k6"
    return str(local) if local.exists() else "k6"


def tree_pids(pid: int) -> list[int]:
    """`pid` and every descendant (Linux /proc children lists)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
    return found


def tree_cpu(pid: int) -> float:
    total = 0.0
    for p in tree_pids(pid):
        try:
            total += benchlib.cpu_seconds(p)
        except (OSError, IndexError):
            continue
    return total


@contextmanager
def server(argv: list[str], env: dict[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    log = tempfile.NamedTemporaryFile(prefix="bench-server-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=benchlib.REPO_ROOT)
    try:
        benchlib.wait_http(f"http://127.0.0.1:{port}/healthz", 120.0, proc)
        yield proc
    finally:
        benchlib.stop(proc)
        log.close()
        os.unlink(log.name)


def k6(
    base: str,
    token: str,
    mode: str,
    duration: int,
    *,
    rate: int = 0,
    vus: int = 8,
    script: str = "create.js",
    extra: dict[str, str] | None = None,
) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / "summary.json"
        env = {
            **os.environ,
            "BASE_URL": base,
            "USER_ID": USER,
            "TOKEN": token,
            "MODE": mode,
            "DURATION": f"{duration}s",
            "RATE": str(rate),
            "VUS": str(vus),
            "SUMMARY": str(summary),
            "K6_NO_USAGE_REPORT": "true",
            **(extra or {}),
        }
        argv = [k6_binary(), "run", "--quiet", "--no-color", str(HERE / script)]
        subprocess.run(argv, env=env, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        data: dict[str, object] = json.loads(summary.read_text())
        return data


def reads_only(metrics: dict[str, Any]) -> dict[str, Any]:
    """read.js tags its measured requests `phase:read` (setup()'s seeding creates are not): those
    sub-metrics stand in for the whole ones. Other summaries are returned as they are."""
    suffix = "{phase:read}"
    chosen = {k: v for k, v in metrics.items() if "{" not in k}
    chosen.update({k.removesuffix(suffix): v for k, v in metrics.items() if k.endswith(suffix)})
    return chosen


def measure(
    subject: str,
    proc: subprocess.Popen[bytes],
    base: str,
    token: str,
    duration: int,
    rates: Sequence[int],
    read_rates: Sequence[int] = (),
    reader_token: str = "",
) -> list[Result]:
    results = []
    runs: list[tuple[str, Callable[[], dict[str, object]]]] = []
    if rates:
        runs.append(("closed, 8 clients", lambda: k6(base, token, "closed", duration, vus=8)))
    for rate in rates:
        runs.append((f"open, {rate} req/s", lambda rate=rate: k6(base, token, "open", duration, rate=rate)))
    tags = "1" if subject == "tasktide" else "0"
    for op, name in READS.items():
        for rate in read_rates:
            env = {"OP": op, "USER_ID": READER, "TAGS": tags}
            read = functools.partial(k6, base, reader_token, "open", duration, rate=rate, script="read.js")
            runs.append((f"{name}, {rate} req/s", functools.partial(read, extra=env)))
    k6(base, token, "closed", 3, vus=4)  # warm-up: pools, caches, JIT-free but still first-touch costs
    if read_rates:  # seeds the reader's tasks now, so no timed run's CPU includes setup()'s creates
        k6(base, reader_token, "open", 1, rate=10, script="read.js", extra={"USER_ID": READER, "TAGS": tags})
    for mode, run in runs:
        cpu0, t0 = tree_cpu(proc.pid), time.perf_counter()
        data = run()
        cpu = tree_cpu(proc.pid) - cpu0
        _ = time.perf_counter() - t0
        metrics = data["metrics"]
        assert isinstance(metrics, dict)
        metrics = reads_only(metrics)
        nothing = {"med": NAN, "p(90)": NAN, "p(99)": NAN, "max": NAN}
        duration_ms = metrics.get("http_req_duration", {"values": nothing})["values"]
        reqs = metrics.get("http_reqs", {"values": {"count": 0, "rate": 0.0}})["values"]
        dropped = metrics.get("dropped_iterations", {"values": {"count": 0}})["values"]["count"]
        failed = metrics.get("http_req_failed", {"values": {"rate": 1.0}})["values"]["rate"]
        count = int(reqs["count"])
        results.append(
            Result(
                subject,
                mode,
                count,
                float(reqs["rate"]),
                float(duration_ms["med"]),
                float(duration_ms["p(90)"]),
                float(duration_ms["p(99)"]),
                float(duration_ms["max"]),
                float(failed),
                int(dropped),
                1000 * cpu / max(1, count),
                os.getloadavg()[0],
            )
        )
        print(results[-1], flush=True)
    return results


def run_all(
    duration: int,
    rates: list[int],
    subjects: list[str],
    read_rates: Sequence[int] = (),
) -> list[Result]:
    results: list[Result] = []
    venv = benchlib.VENV_BIN
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKTIDE_", "PROMETHEUS_"))}
    base_env["PATH"] = f"{venv}{os.pathsep}{os.environ.get('PATH', '')}"
    if "plain-1w" in subjects or "plain-2w" in subjects:
        plain_url = benchlib.sqlalchemy_url(benchlib.recreate_database("tasktide_bench_plain"))
        for subject, extra in (
            ("plain-1w", ["--workers", "1"]),
            ("plain-2w", ["--workers", "2", "--loop", "uvloop", "--http", "httptools"]),
        ):
            if subject not in subjects:
                continue
            port = benchlib.free_port()
            argv = [str(venv / "uvicorn"), "--app-dir", str(HERE), "plain_baseline:app"]
            argv += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log", *extra]
            # the reads on a server of their own: an overloaded create run can leave one wedged
            for creates, reads in ((rates, ()), ((), read_rates)):
                if not (creates or reads):
                    continue
                with server(argv, {**base_env, "PLAIN_DATABASE_URL": plain_url}, port) as proc:
                    base = f"http://127.0.0.1:{port}"
                    results += measure(subject, proc, base, "", duration, creates, reads)
    if "tasktide" in subjects:
        url = benchlib.sqlalchemy_url(benchlib.recreate_database("tasktide_bench_api"))
        port = benchlib.free_port()
        env = {
            **base_env,
            "PORT": str(port),
            "TASKTIDE_HOST": "127.0.0.1",
            "TASKTIDE_DATABASE_URL": url,
            "TASKTIDE_JWT_SECRET": benchlib.JWT_SECRET,
            "TASKTIDE_LOG_LEVEL": "WARNING",
            **benchlib.manifest_env("tasktide-api"),  # as deployed: each commit NOTIFYs its outbox rows
        }
        token = benchlib.token(USER)
        reader = benchlib.token(READER)
        for creates, reads in ((rates, ()), ((), read_rates)):
            if not (creates or reads):
                continue
            with server([str(venv / "tasktide"), "serve"], env, port) as proc:
                base = f"http://127.0.0.1:{port}"
                results += measure("tasktide", proc, base, token, duration, creates, reads, reader)
    return results


def render(results: list[Result], argv: list[str], load_start: float) -> str:
    rows = [
        [
            r.subject,
            r.mode,
            r.requests,
            f"{r.per_second:,.0f}",
            f"{r.p50_ms:.1f}",
            f"{r.p90_ms:.1f}",
            f"{r.p99_ms:.1f}",
            f"{r.max_ms:.0f}",
            f"{100 * r.failed:.1f}%",
            r.dropped,
            f"{r.cpu_ms_per_request:.2f}",
            f"{r.load1:.1f}",
        ]
        for r in results
    ]
    closed = {r.subject: r for r in results if r.mode.startswith("closed")}
    lines = []
    for subject in ("tasktide", "plain-2w"):
        for base in ("plain-1w", "plain-2w"):
            if subject in closed and base in closed and subject != base:
                ratio = closed[subject].per_second / closed[base].per_second
                cpu = closed[subject].cpu_ms_per_request / closed[base].cpu_ms_per_request
                lines.append(
                    f"- closed loop: {subject} / {base} = **{ratio:.2f}x** the requests/s"
                    f" ({closed[subject].per_second:,.0f} vs {closed[base].per_second:,.0f});"
                    f" CPU per request {cpu:.2f}x"
                )
    header = [
        "subject",
        "load",
        "requests",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "failed",
        "dropped",
        "server CPU ms/req",
        "load avg (1 min)",
    ]
    command = benchlib.command_line("api_load.py", argv)
    return f"""Command: `{command}` (load average at start: {load_start:.1f})

`POST /api/{{user}}/tasks` (title, description, priority, 2 tags, a due date, one `PT1H` reminder) from k6
(`loadtests/bench/create.js`): a closed loop of 8 clients back to back, then an open loop at each fixed
arrival rate (`constant-arrival-rate`, so a slow server cannot slow the offered load down: latency
includes the queueing; a request unanswered after 10 s counts as failed, an arrival k6 had no free
client for as dropped). Every run lasts the same time, after a 3 s warm-up, each subject on a fresh
database of the same Postgres. tasktide writes the task, its 2 tags, its reminder and 2 outbox rows in
one transaction and checks a JWT; the plain baseline (`plain_baseline.py`) writes one row, no auth.
The reads (`loadtests/bench/read.js`) run as another user with 200 tasks of its own (half of them
`medium`): `GET .../tasks/{{id}}` of a random one, and `GET .../tasks?priority=medium&sort=due_at&limit=20`
(tasktide also filters `&tag=bench` through its tags table; the plain baseline has no tag filter), on a
freshly started server of the same subject (an overloaded create run can leave the plain one wedged).
Subjects: `plain-1w` is the issue's baseline (uvicorn, 1 worker, default loop); `plain-2w` is the same app
given tasktide's process model (2 workers, uvloop, httptools); `tasktide` is `tasktide serve` (2 uvloop
workers on SO_REUSEPORT sockets, no Kafka: the relay is the `tasktide-relay` Service's job), with the env
its Knative Service sets, so each commit hands its outbox rows to the relay in its NOTIFY as deployed (no
relay listens here; the sweep of a relay would publish them).
"Server CPU" is user+system CPU of the server's process tree per request; the last column is the
1-minute load average when the run ended (2 cores shared with other work).

{benchlib.table(header, rows)}

{chr(10).join(lines)}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=15, help="seconds per run")
    parser.add_argument("--rates", default="50,100,200,300,400")
    parser.add_argument("--subjects", default="plain-1w,plain-2w,tasktide")
    parser.add_argument(
        "--read-rates", default="", help="open-loop rates of GET-one and list runs after the creates"
    )
    parser.add_argument("--write-doc", action="store_true")
    args = parser.parse_args(argv)
    load_start = os.getloadavg()[0]
    rates = [int(r) for r in args.rates.split(",") if r]
    read_rates = [int(r) for r in args.read_rates.split(",") if r]
    results = run_all(args.duration, rates, args.subjects.split(","), read_rates)
    shown = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--write-doc"]
    text = render(results, shown, load_start)
    print(text)
    if args.write_doc:
        benchlib.write_section(SECTION, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
