"""Cold start: process start to first served request, for a function and for the API, against baselines.

Consumes: the project's `.venv` (`tasktide`, `functions-framework`), a scratch SQLite file (or the database
of `--database-url`, e.g. Postgres as on a cluster) migrated once by `tasktide migrate` (a restart, not
a first deploy).
Emits: medians over `--runs` of the time from `Popen` to
- `FUNCTION_TARGET=audit tasktide serve` (gunicorn in-process) answering a structured
  `com.tasktide.task.created` CloudEvent with 2xx (the audit row is really written);
- `tasktide serve` (the API: uvicorn factory, runs migrations) answering `GET /healthz` with 2xx;
- baselines: `python -c pass` exiting, and a minimal functions-framework hello CloudEvent function
  answering 2xx;
plus `python -X importtime -c "import tasktide.functions.audit"` (sum of self times, heaviest packages)
and the `## Cold start` section of docs/benchmarks.md (with --write-doc).

    .venv/bin/python loadtests/bench/cold_start.py [--runs 5] [--write-doc | --database-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import benchlib
import httpx

SECTION = "Cold start"
POLL_S = 0.005
HELLO = '''"""Minimal CloudEvents function: the functions-framework cold-start baseline."""

import functions_framework


@functions_framework.cloud_event
def hello(event):
    return None
'''
# The hello again, doing what any function on the brief's fixed stack must on its first event: read its
# settings with pydantic-settings, validate the event's data with a pydantic model, count it with
# prometheus_client and make one round trip to its database with the driver (sqlite3, or psycopg on
# Postgres). Not a tasktide function: the floor a tasktide function cannot go below on this stack.
HELLO_STACK = '''"""functions-framework hello + the fixed stack's first-event work: the cold-start floor."""

import functions_framework
import prometheus_client
from pydantic import BaseModel
from pydantic_settings import BaseSettings, SettingsConfigDict

EVENTS = prometheus_client.Counter("stack_events", "events", ["type"])


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STACK_")
    database: str = ""


class Data(BaseModel):
    title: str = ""


@functions_framework.cloud_event
def hello(event):
    settings = Settings()
    Data.model_validate(event.data or {})
    if settings.database.startswith("postgresql"):
        import psycopg

        with psycopg.connect(settings.database) as conn:
            conn.execute("SELECT 1")
    else:
        import sqlite3

        conn = sqlite3.connect(settings.database)
        conn.execute("SELECT 1")
        conn.close()
    EVENTS.labels(event["type"]).inc()
'''


@dataclass(frozen=True)
class Measured:
    path: str
    samples_ms: tuple[float, ...]
    rss_mib: tuple[float, ...] = ()  # the serving worker's resident set after its first answer
    pss_mib: tuple[float, ...] = ()  # the container's memory then: PSS summed over the server's processes

    @property
    def median_ms(self) -> float:
        return benchlib.median(self.samples_ms)

    @property
    def median_rss_mib(self) -> float | None:
        return benchlib.median(self.rss_mib) if self.rss_mib else None

    @property
    def median_pss_mib(self) -> float | None:
        return benchlib.median(self.pss_mib) if self.pss_mib else None


def rss_mib(pid: int) -> float:
    """VmRSS of `pid` (Linux /proc), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def _children(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in children.read_text().split()] if children.exists() else []


def worker_rss_mib(pid: int) -> float:
    """The resident set of the process that served: the largest child (a gunicorn or uvicorn worker), or
    `pid` itself when it has no children."""
    return max((rss_mib(p) for p in _children(pid)), default=rss_mib(pid))


def tree_pss_mib(pid: int) -> float:
    """The proportional set size (Linux smaps_rollup) of `pid` and its children, summed: each page shared
    between a gunicorn master and its worker counted once, as the node counts the container's memory."""

    def pss(p: int) -> float:
        for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no Pss for {p}")

    return pss(pid) + sum(pss(p) for p in _children(pid))


@dataclass(frozen=True)
class ImportProfile:
    total_ms: float
    modules: int
    heaviest: tuple[tuple[str, float], ...]  # top-level package -> sum of its modules' self ms


def task_created_event() -> bytes:
    """A valid structured task.created CloudEvent, built by the project's own event catalogue."""
    from tasktide.domain.tasks import new_task
    from tasktide.messaging import events

    task = new_task("cold-start", {"title": "cold start probe"}, now=datetime.now(UTC))
    return json.dumps(events.task_envelope(events.TASK_CREATED, task).to_json()).encode()


def hello_event() -> bytes:
    event = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "type": "dev.bench.hello",
        "source": "/bench",
        "data": {},
    }
    return json.dumps(event).encode()


Served = tuple[float, float, float]  # seconds to the first 2xx, worker RSS MiB, container PSS MiB


def until_served(
    argv: list[str], env: dict[str, str], request: Callable[[httpx.Client, str], httpx.Response], port: int
) -> Served:
    """Seconds from Popen until `request` answers 2xx (retrying refused connections every 5 ms), and the
    serving worker's RSS and the whole server's PSS (MiB) right after that answer."""
    base = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(timeout=30) as client:
            deadline = t0 + 120
            while time.perf_counter() < deadline:
                if proc.poll() is not None:
                    raise RuntimeError(f"{argv} exited with {proc.returncode} before serving")
                try:
                    response = request(client, base)
                except httpx.TransportError:
                    time.sleep(POLL_S)
                    continue
                if response.is_success:
                    return time.perf_counter() - t0, worker_rss_mib(proc.pid), tree_pss_mib(proc.pid)
                raise RuntimeError(f"{argv}: first answer was {response.status_code} {response.text[:300]}")
            raise TimeoutError(f"{argv} did not serve within 120 s")
    finally:
        benchlib.stop(proc)


def post_event(
    body: Callable[[], bytes], token: str | None = None
) -> Callable[[httpx.Client, str], httpx.Response]:
    headers = {"content-type": "application/cloudevents+json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return lambda client, base: client.post(base + "/", content=body(), headers=headers)


AUDIT_AUDIENCE = "serving.knative.dev/service/tasktide/tasktide-audit"  # knative/base/tasktide-audit.yaml
SENDER_KEY = "cold-start-sender-key-0123456789abcdef"


def sender_token() -> str:
    """The token the local router sends the audit function (HS256; on a cluster Knative's OIDC token)."""
    from tasktide.edges.senderauth import sign

    return sign(SENDER_KEY, AUDIT_AUDIENCE)


def healthz(client: httpx.Client, base: str) -> httpx.Response:
    return client.get(base + "/healthz")


def import_profile(module: str) -> ImportProfile:
    """Parse `-X importtime` into the sum of self times, overall and per top-level package."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
    )
    total_us = 0
    modules = 0
    per_package: dict[str, float] = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _cumulative_us, name = (part.strip() for part in line[len("import time:") :].split("|"))
        total_us += int(self_us)
        modules += 1
        package = name.split(".")[0]
        per_package[package] = per_package.get(package, 0.0) + int(self_us) / 1000
    heaviest = tuple(sorted(per_package.items(), key=lambda kv: -kv[1])[:8])
    return ImportProfile(total_us / 1000, modules, heaviest)


Once = Callable[[], float | Served]


def measure(paths: list[tuple[str, Once]], runs: int) -> list[Measured]:
    """Each path once unrecorded (page cache, `.pyc` files), then `runs` rounds of every path in turn, so
    that a burst of other work on the shared machine hits the paths alike, not one path's block of runs."""
    for _, once in paths:
        once()
    results: dict[str, list[float | Served]] = {name: [] for name, _ in paths}
    for _ in range(runs):
        for name, once in paths:
            results[name].append(once())
    measured = []
    for name, _ in paths:
        samples = tuple((r[0] if isinstance(r, tuple) else r) * 1000 for r in results[name])
        rss = tuple(r[1] for r in results[name] if isinstance(r, tuple))
        pss = tuple(r[2] for r in results[name] if isinstance(r, tuple))
        memory = f"  RSS {benchlib.median(rss):.1f} MiB  PSS {benchlib.median(pss):.1f} MiB" if rss else ""
        print(f"{name:70} median {benchlib.median(samples):8.1f} ms  {[round(s) for s in samples]}{memory}")
        measured.append(Measured(name, samples, rss, pss))
    return measured


def run_all(
    runs: int, workdir: Path, database_url: str | None = None
) -> tuple[list[Measured], ImportProfile, ImportProfile]:
    python = sys.executable
    venv_bin = str(benchlib.VENV_BIN)
    db_url = database_url or f"sqlite:///{workdir / 'cold.db'}"
    db_name = "SQLite" if db_url.startswith("sqlite") else db_url.split(":", 1)[0]
    benchlib.migrate(db_url)
    hello = workdir / "hello.py"
    hello.write_text(HELLO)
    hello_stack = workdir / "hello_stack.py"
    hello_stack.write_text(HELLO_STACK)
    # As the image does (Dockerfile: `compileall` at build, PYTHONDONTWRITEBYTECODE at run time): every
    # path starts from bytecode, not by compiling its sources (an editable install in a shell that sets
    # PYTHONDONTWRITEBYTECODE would otherwise recompile all of tasktide at every start, and the hello's
    # site-packages come compiled by pip).
    package = benchlib.REPO_ROOT / "functions" / "tasktide"
    subprocess.run([python, "-m", "compileall", "-q", str(package), str(hello), str(hello_stack)], check=True)
    libpq = "postgresql://" + db_url.split("://", 1)[1] if "postgresql" in db_url else None
    stack_database = libpq or db_url.removeprefix("sqlite:///")
    base_env = {
        **os.environ,
        "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
        "TASKTIDE_DATABASE_URL": db_url,
        "TASKTIDE_JWT_SECRET": benchlib.JWT_SECRET,
        "TASKTIDE_HOST": "127.0.0.1",  # `tasktide serve` binds loopback here (the image sets 0.0.0.0)
    }
    base_env.pop("FUNCTION_TARGET", None)

    def python_pass() -> float:
        t0 = time.perf_counter()
        subprocess.run([python, "-c", "pass"], check=True)
        return time.perf_counter() - t0

    def python_import_audit() -> float:
        t0 = time.perf_counter()
        subprocess.run([python, "-c", "import tasktide.functions.audit"], check=True, env=base_env)
        return time.perf_counter() - t0

    def ff_hello() -> Served:
        port = benchlib.free_port()
        argv = [
            f"{venv_bin}/functions-framework",
            *("--target", "hello", "--source", str(hello), "--signature-type", "cloudevent"),
            *("--host", "127.0.0.1", "--port", str(port)),
        ]
        return until_served(argv, base_env, post_event(hello_event), port)

    def ff_hello_stack() -> Served:
        port = benchlib.free_port()
        argv = [
            f"{venv_bin}/functions-framework",
            *("--target", "hello", "--source", str(hello_stack), "--signature-type", "cloudevent"),
            *("--host", "127.0.0.1", "--port", str(port)),
        ]
        env = {**base_env, "STACK_DATABASE": stack_database}
        return until_served(argv, env, post_event(hello_event), port)

    def audit() -> Served:
        port = benchlib.free_port()
        env = {**base_env, "FUNCTION_TARGET": "audit", "PORT": str(port)}
        return until_served([f"{venv_bin}/tasktide", "serve"], env, post_event(task_created_event), port)

    def audit_verifying() -> Served:
        port = benchlib.free_port()
        env = {
            **base_env,
            **{"FUNCTION_TARGET": "audit", "PORT": str(port), "TASKTIDE_EVENT_AUDIENCE": AUDIT_AUDIENCE},
            "TASKTIDE_EVENT_SIGNING_KEY": SENDER_KEY,
        }
        request = post_event(task_created_event, sender_token())
        return until_served([f"{venv_bin}/tasktide", "serve"], env, request, port)

    def api() -> Served:
        port = benchlib.free_port()
        env = {**base_env, "PORT": str(port)}
        return until_served([f"{venv_bin}/tasktide", "serve"], env, healthz, port)

    results = measure(
        [
            ("baseline: `python -c pass` (start + exit)", python_pass),
            ("baseline: functions-framework hello, first CloudEvent 2xx", ff_hello),
            (
                f"floor: the hello + pydantic-settings, pydantic, prometheus, one {db_name} query",
                ff_hello_stack,
            ),
            ("`python -c 'import tasktide.functions.audit'` (start + import + exit)", python_import_audit),
            ("`FUNCTION_TARGET=audit tasktide serve`, first CloudEvent 2xx", audit),
            ("the same, verifying the sender's token (as on a cluster: OIDC)", audit_verifying),
            (f"`tasktide serve` (API, {db_name}), first `/healthz` 2xx", api),
        ],
        runs,
    )
    return results, import_profile("tasktide.functions.audit"), import_profile("tasktide.entrypoints.serve")


def render(
    argv: list[str], runs: int, results: list[Measured], audit: ImportProfile, api: ImportProfile
) -> str:
    py, hello, floor, imp, fn, verifying, app = results

    def mib(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    def ratio(value: float | None, base: float | None) -> str:
        return "-" if value is None or base is None else f"{value / base:.2f}x"

    rows = [
        [
            m.path,
            f"{m.median_ms:.0f}",
            f"{min(m.samples_ms):.0f}",
            f"{max(m.samples_ms):.0f}",
            f"{m.median_ms / py.median_ms:.1f}x",
            f"{m.median_ms / hello.median_ms:.2f}x",
            mib(m.median_rss_mib),
            ratio(m.median_rss_mib, hello.median_rss_mib),
            mib(m.median_pss_mib),
            ratio(m.median_pss_mib, hello.median_pss_mib),
        ]
        for m in results
    ]
    heavy = ", ".join(f"`{name}` {ms:.0f} ms" for name, ms in audit.heaviest)
    load = os.getloadavg()[0]
    headers = [
        "path",
        "median ms",
        "min ms",
        "max ms",
        "vs python -c pass",
        "vs ff hello",
        "worker RSS MiB",
        "RSS vs ff hello",
        "container PSS MiB",
        "PSS vs ff hello",
    ]
    fn_rss, hello_rss = fn.median_rss_mib or 0.0, hello.median_rss_mib or 1.0
    floor_rss = floor.median_rss_mib or 1.0
    verifying_rss = verifying.median_rss_mib or 0.0
    fn_pss, hello_pss = fn.median_pss_mib or 0.0, hello.median_pss_mib or 1.0
    floor_pss, verifying_pss = floor.median_pss_mib or 0.0, verifying.median_pss_mib or 0.0
    return f"""Command: `{benchlib.command_line("cold_start.py", argv)}`

Time from `subprocess.Popen` to the first 2xx answer (requests retried every {POLL_S * 1000:.0f} ms while
the port refuses connections), median of {runs} rounds (each round runs every path once, in turn, so load
bursts hit all paths alike) after one unrecorded warm-up run of each (page cache warm; every source,
tasktide's and the hellos', compiled to `.pyc` first with `compileall`, as the image's build does), and
the resident set (VmRSS) of the process that answered (the gunicorn or uvicorn worker) right after
that answer, beside the container's memory then (PSS, which counts a page shared by the gunicorn master and
its worker once, summed over the server's processes: what the node charges the pod, page cache aside).
Functions run exactly as a Knative Service runs them (`tasktide serve`
runs `gunicorn 'tasktide.functions._server:asgi_app_from_env()'` with uvicorn workers on the asyncio loop:
functions-framework's app plus `/healthz` and `/metrics`, built in gunicorn's master with cyclic garbage
collection off, then frozen, before the worker forks), with `TASKTIDE_DATABASE_URL` a
SQLite file migrated beforehand; the first CloudEvent is a real `com.tasktide.task.created`, so the
measured path includes reading the settings, opening the database and writing the audit row.
The hello baseline is `functions-framework --target hello` (its own gunicorn, one worker). The API path
runs the uvicorn factory, which applies (already applied) migrations before listening (its workers build
the app with the collector off, and import the MCP SDK, about a third of the API's imports, only at the
first `/mcp` request). 1-minute load
average at the end of the run: {load:.1f} ({os.cpu_count()} CPUs).

{benchlib.table(headers, rows)}

`python -X importtime -c "import tasktide.functions.audit"`: {audit.modules} modules, sum of self times
{audit.total_ms:.0f} ms; heaviest packages (sum of their modules' self times): {heavy}.
`import tasktide.entrypoints.serve` alone: {api.modules} modules, {api.total_ms:.0f} ms.

Interpretation: the audit function serves its first event {fn.median_ms / hello.median_ms:.1f}x as late
as a bare functions-framework hello function ({fn.median_ms - hello.median_ms:+.0f} ms) with
{fn_rss / hello_rss:.2f}x its worker's memory. The floor row is that hello doing only what the brief's
fixed stack makes every function do at its first event (pydantic-settings, a pydantic model, a
prometheus counter, one query with the driver): it alone takes {floor.median_ms / hello.median_ms:.2f}x
the hello's time and {floor_rss / hello_rss:.2f}x its memory, so the audit function is
{fn.median_ms / floor.median_ms:.2f}x the floor's time and {fn_rss / floor_rss:.2f}x its memory. Verifying
the sender's token, as every function on a cluster does (Knative's OIDC token; here the local router's
HS256 one), imports PyJWT, which imports `cryptography` for the cluster's RS256 keys: that row is
{verifying.median_ms / hello.median_ms:.2f}x the hello's time and {verifying_rss / hello_rss:.2f}x its
memory. The API answers `/healthz`
{app.median_ms / py.median_ms:.0f}x as late as a bare interpreter starts. Importing the audit module
alone costs {imp.median_ms - py.median_ms:.0f} ms over a bare interpreter
({imp.median_ms / hello.median_ms:.2f}x the whole hello path), without SQLAlchemy: the function server and
the handler module import the services container, SQLAlchemy and kafka-python only when an event first
needs them, and the audit handler never does: it records its row through the DBAPI driver alone
(`tasktide.db.dbapi`, sqlite3 here), and it never loads the recurrence rule engine (dateutil,
`tasktide.domain.recurrence`: imported by the operations on series only). `tasktide serve` sets
`PYDANTIC_DISABLE_PLUGINS=__all__` (tasktide uses no pydantic plugin; the entry-point scan pydantic runs at
its first model is about 20 ms here). That import includes functions-framework's own (Flask, werkzeug,
jinja2), which the hello path pays too, so most of the gap to hello is pydantic at import; the rest is
uvicorn's worker and the body guard, tasktide's modules, reading the settings (pydantic-settings, as the
house style asks, read at the first event), and the first event itself: the first connection and the
first INSERT. Building the app with the collector off (`tasktide serve`; gunicorn's `when_ready` hook
then freezes what was built and turns it back on) saves the full collections the growing heap triggers
during the imports: about 30 ms of this path (2026-12-03, medians of 10 starts, 456 -> 428 ms).

Memory: the hello's functions-framework builds its app in gunicorn's master and forks the worker, and so
does `tasktide serve` (`preload_app`), so each worker's RSS is the anonymous memory it inherits plus the
code pages it touches itself. smaps of the audit worker against the floor's, after the first event
(2026-12-03): anonymous and heap +2.4 MiB (the Python objects of uvicorn's server, about 1.1 MiB, whose
event loop reads bodies with a deadline for the body guard, `tasktide.edges.bodyguard`, and of tasktide's
own modules, about 1.1 MiB), `_pydantic_core` code +0.45 (the settings model's validators), libpython
+0.25, httptools +0.16. Measured one change after another (same probe): 47.7 MiB as the last run found it;
45.2 with the app built before the fork (the worker no longer touches the code that only importing runs);
43.1 on the standard asyncio loop instead of uvloop (1.4 MiB of code; a function serves one event at a
time, and back to back or idle its answer took as long on either). No effect: `malloc_trim(0)` in the
worker or before the fork, `gc.freeze()` before the fork (it keeps pages shared, it does not make fewer),
`MALLOC_ARENA_MAX=1`, one WSGI thread, gunicorn 27's own ASGI worker instead of uvicorn's (43.9 MiB). The
floor alone is {floor_rss / hello_rss:.2f}x the hello's memory, so 1.5x leaves
{1.5 * hello_rss - floor_rss:.1f} MiB for the body guard's event loop and tasktide itself. Verifying the
token adds PyJWT and `cryptography` (OpenSSL's bindings, which RS256 needs):
{verifying_rss - fn_rss:+.1f} MiB. Counted as the node counts a pod (PSS over gunicorn's master and its
worker), the audit container is {fn_pss / hello_pss:.2f}x the hello's ({fn_pss:.1f} against
{hello_pss:.1f} MiB; the floor {floor_pss / hello_pss:.2f}x, verifying the token
{verifying_pss / hello_pss:.2f}x); the goal is stated on the worker's RSS, the column before.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--write-doc", action="store_true", help=f"replace '## {SECTION}' in docs")
    parser.add_argument(
        "--database-url",
        help="SQLAlchemy URL of a database to migrate and use instead of a scratch SQLite file "
        "(e.g. postgresql+psycopg://..., as on a cluster)",
    )
    args = parser.parse_args(argv)
    raw_argv = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--write-doc"]
    if args.database_url and args.write_doc:
        parser.error("--write-doc records the SQLite run only")
    with tempfile.TemporaryDirectory(prefix="tasktide-cold-") as tmp:
        results, audit, api = run_all(args.runs, Path(tmp), args.database_url)
    print(f"import tasktide.functions.audit: {audit.total_ms:.0f} ms self-time total, {audit.heaviest}")
    body = render(raw_argv, args.runs, results, audit, api)
    if args.write_doc:
        benchlib.write_section(SECTION, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
