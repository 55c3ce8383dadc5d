"""Shared plumbing of the benchmark scripts in `loadtests/bench/`.

Consumes: env `TASKTIDE_BENCH_PG` (libpq URL of a Postgres server whose role may create databases;
default the local `.ci/postgres.sh` server), the project's `.venv` (`tasktide` console script).
Emits: started/stopped `tasktide` subprocesses, fresh benchmark databases, statistics and the
`## ` sections of `docs/benchmarks.md` (a section is replaced in place, others are left untouched).
Nothing here runs at import time.
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
DOC = REPO_ROOT / "docs" / "benchmarks.md"
DEFAULT_PG = "postgresql://tasktide:tasktide@127.0.0.1:{port}/tasktide"
JWT_SECRET = "tasktide-benchmark-secret-0123456789abcdef"
TITLE = "# Benchmarks"


def pg_server_url() -> str:
    """libpq URL of the server the benchmarks use (any database on it; we create our own)."""
    default = DEFAULT_PG.format(port=os.environ.get("TASKTIDE_PG_PORT", "55432"))
    return os.environ.get("TASKTIDE_BENCH_PG", default)


def pg_database_url(database: str) -> str:
    """The libpq URL of `database` on the benchmark server."""
    base = pg_server_url().rsplit("/", 1)[0]
    return f"{base}/{database}"


def sqlalchemy_url(libpq_url: str) -> str:
    return "postgresql+psycopg://" + libpq_url.split("://", 1)[1]


def recreate_database(database: str) -> str:
    """Drop (if present) and create `database`; returns its libpq URL."""
    import psycopg
    from psycopg import sql

    if not re.fullmatch(r"[a-z_][a-z0-9_]*", database):
        raise ValueError(f"unsafe database name {database!r}")
    with psycopg.connect(pg_server_url(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    return pg_database_url(database)


def tasktide(*args: str, env: Mapping[str, str] | None = None) -> str:
    """Run the `tasktide` CLI to completion; returns stdout."""
    merged = {**os.environ, "TASKTIDE_JWT_SECRET": JWT_SECRET, **(env or {})}
    done = subprocess.run(
        [str(VENV_BIN / "tasktide"), *args], env=merged, capture_output=True, text=True, check=True
    )
    return done.stdout


def migrate(database_url: str) -> None:
    tasktide("migrate", "--database-url", database_url)


def token(user_id: str) -> str:
    return tasktide("token", user_id).strip()


class Poster:
    """One keep-alive HTTP/1.1 connection (stdlib `http.client`) for a benchmark's timed POSTs: its own CPU
    is part of every sample it times, and it spends about a quarter of what `httpx.Client` does (0.07 vs
    0.26 ms a POST back to back here), so the samples are the server's time, not the client library's."""

    def __init__(self, base: str, headers: Mapping[str, str] | None = None, timeout: float = 30.0) -> None:
        parts = urlsplit(base)
        self.conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
        self.headers = dict(headers or {})

    def post(self, path: str, body: bytes | None = None, *, json_body: Any = None) -> tuple[int, bytes]:
        """POST and read the whole answer; raises for a non-2xx status."""
        headers = dict(self.headers)
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        self.conn.request("POST", path, body=body or b"", headers=headers)
        response = self.conn.getresponse()
        content = response.read()
        if not 200 <= response.status < 300:
            raise RuntimeError(f"POST {path} answered {response.status}: {content[:200]!r}")
        return response.status, content

    def close(self) -> None:
        self.conn.close()


# What a Knative Service's env sets that changes how tasktide behaves on one machine (the rest names
# cluster things: the secret store, the agent's app id, the sidecar).
LOCAL_ENV = ("TASKTIDE_EVENT_AUDIENCE", "TASKTIDE_EVENT_SUBJECTS", "TASKTIDE_OUTBOX_NOTIFY_HANDOFF")


def manifest_env(service: str) -> dict[str, str]:
    """The environment the Knative Service `service` sets that matters locally (`LOCAL_ENV`)."""
    from tasktide.router.manifests import load_manifests

    settings_dirs = (REPO_ROOT / "eventing", REPO_ROOT / "knative")
    for s in load_manifests(*settings_dirs).services:
        if s.name == service:
            return {k: v for k, v in s.env.items() if k in LOCAL_ENV}
    raise LookupError(f"no Knative Service {service} in eventing/ + knative/")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll `url` until it answers 2xx; raise if `proc` exits or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=2.0).is_success:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate one process we started (by its pid) and reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


_SERVER_PIDS: dict[str, int] = {}


def pid_of(base: str) -> int:
    """The pid of the `dev_server` serving `base` (while it runs)."""
    return _SERVER_PIDS[base]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def dev_server(database_url: str, *extra: str, log_path: Path | None = None) -> Iterator[str]:
    """`tasktide dev` on a free port; yields its base URL once /healthz answers."""
    port = free_port()
    env = {**os.environ, "TASKTIDE_JWT_SECRET": JWT_SECRET}
    log = open(log_path or os.devnull, "wb")  # noqa: SIM115 - closed in finally
    argv = [str(VENV_BIN / "tasktide"), "dev", "--port", str(port), "--database-url", database_url, *extra]
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz", 120.0, proc)
        _SERVER_PIDS[base] = proc.pid
        yield base
    finally:
        _SERVER_PIDS.pop(f"http://127.0.0.1:{port}", None)
        stop(proc)
        log.close()


# -- Kafka ------------------------------------------------------------------------------------------
def reset_kafka_source_groups(bootstrap: str, suffix: str = "") -> None:
    """Commit the end offsets for the group `<consumerGroup><suffix>` of each KafkaSource of
    eventing/kafka-sources.yaml, so a router consuming in it starts at the topic ends (records left by
    earlier runs are not replayed)."""
    import yaml
    from kafka import KafkaConsumer, TopicPartition

    manifest = REPO_ROOT / "eventing" / "kafka-sources.yaml"
    for doc in yaml.safe_load_all(manifest.read_text()):
        if not doc or doc.get("kind") != "KafkaSource":
            continue
        group = doc["spec"]["consumerGroup"] + suffix
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        try:
            partitions = [
                TopicPartition(topic, p)
                for topic in doc["spec"]["topics"]
                for p in sorted(consumer.partitions_for_topic(topic) or ())
            ]
            consumer.assign(partitions)
            consumer.seek_to_end(*partitions)
            consumer.commit({tp: _offset(consumer.position(tp)) for tp in partitions})
        except Exception as exc:  # e.g. another `tasktide dev --kafka` is a live member of the group
            print(
                f"warning: {group} not moved to the end ({exc}); old records may be replayed", file=sys.stderr
            )
        finally:
            consumer.close(autocommit=False)


def _offset(position: int) -> object:
    from kafka.structs import OffsetAndMetadata

    try:
        return OffsetAndMetadata(position, "", -1)
    except TypeError:  # kafka-python 2.x: (offset, metadata)
        return OffsetAndMetadata(position, "")


# -- statistics --------------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside 0..100")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Summary:
    """Latency distribution of one measured path, in milliseconds."""

    count: int
    p50_ms: float
    p99_ms: float
    mean_ms: float

    @classmethod
    def of_seconds(cls, samples: Sequence[float]) -> Summary:
        ms = [s * 1000 for s in samples]
        return cls(len(ms), percentile(ms, 50), percentile(ms, 99), statistics.fmean(ms))


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


# -- the document -------------------------------------------------------------------------------------
def replace_section(document: str, title: str, body: str) -> str:
    """Replace the `## title` section (heading to the next `## ` heading) or append it at the end."""
    block = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}[ \t]*\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    if pattern.search(document):
        return pattern.sub(lambda _: block + "\n", document, count=1).rstrip("\n") + "\n"
    return document.rstrip("\n") + "\n\n" + block


def split_sections(document: str) -> tuple[str, dict[str, str]]:
    """The text before the first `## ` heading, and each section's full text keyed by its title."""
    parts = re.split(r"^(?=## )", document, flags=re.MULTILINE)
    head = "" if parts[0].startswith("## ") else parts.pop(0)
    return head, {part.splitlines()[0][3:].strip(): part for part in parts}


def reorder_sections(document: str, order: Sequence[str]) -> str:
    """Put the named sections first, in `order`; any other section keeps its relative place after them."""
    head, sections = split_sections(document)
    titles = [t for t in order if t in sections] + [t for t in sections if t not in order]
    body = "".join(sections[t].rstrip("\n") + "\n\n" for t in titles)
    return (head.rstrip("\n") + "\n\n" + body).rstrip("\n") + "\n"


def write_section(title: str, body: str, doc: Path = DOC) -> None:
    """Replace one section of docs/benchmarks.md in place (creating the file if needed)."""
    text = doc.read_text() if doc.exists() else f"{TITLE}\n"
    doc.write_text(replace_section(text, title, body))


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def command_line(script: str, argv: Sequence[str]) -> str:
    return " ".join([".venv/bin/python", f"loadtests/bench/{script}", *argv])


# -- machine facts ------------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def postgres_facts() -> str:
    try:
        import psycopg

        with psycopg.connect(pg_server_url(), connect_timeout=3) as conn:
            version = conn.execute("SHOW server_version").fetchone()
            settings = conn.execute(
                "SELECT string_agg(name || '=' || setting || coalesce(unit, ''), ', ' ORDER BY name) "
                "FROM pg_settings WHERE name IN "
                "('shared_buffers', 'fsync', 'synchronous_commit', 'work_mem', 'max_connections')"
            ).fetchone()
        return f"{version[0] if version else '?'} ({settings[0] if settings else ''})"
    except Exception as exc:
        return f"unavailable ({type(exc).__name__})"


def kafka_version() -> str:
    libs = REPO_ROOT / ".local" / "kafka" / "libs"
    for jar in sorted(libs.glob("kafka_*.jar")) if libs.is_dir() else []:
        match = re.fullmatch(r"kafka_([\d.]+)-([\d.]+)\.jar", jar.name)
        if match:
            return f"{match[2]} (Scala {match[1]}, from {jar.relative_to(REPO_ROOT)})"
    return "not found under .local/kafka"


def machine_facts() -> str:
    import sqlite3

    rows = [
        ("nproc", str(os.cpu_count())),
        ("CPU", cpu_model()),
        ("memory", _memory()),
        ("kernel", platform.release()),
        ("Python", platform.python_version()),
        ("SQLite", sqlite3.sqlite_version),
        ("PostgreSQL", postgres_facts()),
        ("Kafka", kafka_version()),
    ]
    return table(["fact", "value"], rows)


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"
