"""End-to-end event latency over a real Kafka, against a raw kafka-python produce -> consume baseline.

Consumes: a Kafka broker (`--bootstrap`, default env TASKTIDE_TEST_KAFKA or 127.0.0.1:9092), the
benchmark Postgres server (`TASKTIDE_BENCH_PG`, database `tasktide_bench_events`, recreated per shape), and
tasktide in one or both shapes (`--shape`, default both, one after the other):
  dev      one `tasktide dev --kafka` subprocess (API, outbox relay, KafkaSources, Broker/Triggers,
           functions);
  cluster  one process per concern as on a cluster: API, relay function, router, audit function
           (`cluster_shape.py`, `router_proc.py`).
Emits: p50/p99 of these paths, measured one at a time (no concurrency):
  raw    kafka-python `send().get()` (acks=all) -> the record is consumed, on a fresh 1-partition topic;
  raw-http  a bare ASGI app under uvicorn (uvloop, httptools; it reads the body and answers 201): a POST's
         round trip, back to back and each IDLE_MS after the last answer (as the API sees its POSTs here);
  floor  `bare_pipeline.py`: the same hops with nothing else (commit + acks=all produce before the 201,
         consume, one HTTP hop, commit), one process per hop, a fresh topic and database
         `tasktide_bench_bare`;
  kafka  API `POST /api/{user}/tasks` sent -> its `com.tasktide.task.created` record consumed from
         `task-events` (outbox commit + relay + Kafka);
  audit  the same POST -> the audit function's row committed (+ KafkaSource -> Broker -> Trigger -> the
         `tasktide-audit` function over HTTP -> its database write), seen through a NOTIFY trigger;
a markdown table with the ratios to `raw`, and (with --write-doc) the `## Event latency` section of
docs/benchmarks.md. Before a shape starts, the KafkaSource consumer groups it consumes in are moved to the
end of their topics, so records left by earlier runs are not replayed.

    .venv/bin/python loadtests/bench/event_latency.py [--messages 500] [--tasks 200] [--shape both]
        [--log-dir DIR] [--write-doc]
"""

from __future__ import annotations

import argparse
import json
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import benchlib
import cluster_shape
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

SECTION = "Event latency"
DATABASE = "tasktide_bench_events"
BARE_DATABASE = "tasktide_bench_bare"
HERE = Path(__file__).resolve().parent
TOPIC = "task-events"
WARMUP = 10
WAIT_SECONDS = 30.0
AUDIT_CHANNEL = "bench_audit"
IDLE_MS = 20  # between raw-http POSTs: about the wait for one event's audit row, the API's idle time here
HELLO_ASGI = """async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 201, "headers": headers})
    await send({"type": "http.response.body", "body": b'{"id": "hello"}'})
"""


@dataclass(frozen=True)
class Measured:
    shape: str
    name: str
    description: str
    latency: benchlib.Summary


def tail_consumer(bootstrap: str, topic: str) -> KafkaConsumer:
    """A group-less consumer on every partition of `topic`, positioned at its current end."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=100
    )
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    if not partitions:
        raise RuntimeError(f"topic {topic} does not exist (bash eventing/local/kafka.sh topics)")
    consumer.assign(partitions)
    consumer.seek_to_end(*partitions)
    for tp in partitions:
        consumer.position(tp)
    return consumer


# -- (a) raw produce -> consume ------------------------------------------------------------------------
def raw_round_trip(bootstrap: str, messages: int) -> list[float]:
    topic = f"tasktide-bench-latency-{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1)])
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    samples: list[float] = []
    try:
        # Wait for the new topic's leader, then position a consumer at its end.
        producer.send(topic, b"warm").get(timeout=30)
        consumer = tail_consumer(bootstrap, topic)
        try:
            for i in range(WARMUP + messages):
                payload = f"{i}:{uuid.uuid4().hex}".encode()
                started = time.perf_counter()
                producer.send(topic, key=str(i).encode(), value=payload).get(timeout=30)
                arrived = _consume_until(consumer, lambda r, p=payload: r.value == p)
                if i >= WARMUP:
                    samples.append(arrived - started)
        finally:
            consumer.close()
    finally:
        producer.close()
        admin.delete_topics([topic])
        admin.close()
    return samples


def raw_http_round_trip(requests: int) -> tuple[list[float], list[float]]:
    """Seconds per POST to a bare ASGI app under uvicorn, one at a time: back to back, then each IDLE_MS
    after the previous answer (what an HTTP hop costs here when its processes idle between events)."""
    port = benchlib.free_port()
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "hello_asgi.py").write_text(HELLO_ASGI, encoding="utf-8")
        argv = [
            *(str(benchlib.VENV_BIN / "uvicorn"), "hello_asgi:app", "--app-dir", tmp),
            *("--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop", "--http", "httptools"),
            *("--log-level", "warning", "--no-access-log"),
        ]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        back_to_back: list[float] = []
        apart: list[float] = []
        try:
            benchlib.wait_http(f"http://127.0.0.1:{port}/", 30.0, proc)
            client = benchlib.Poster(f"http://127.0.0.1:{port}")
            try:
                for samples, idle in ((back_to_back, 0.0), (apart, IDLE_MS / 1000)):
                    for i in range(WARMUP + requests):
                        if idle:
                            time.sleep(idle)
                        started = time.perf_counter()
                        client.post("/", json_body={"title": f"latency {i}"})
                        if i >= WARMUP:
                            samples.append(time.perf_counter() - started)
            finally:
                client.close()
        finally:
            benchlib.stop(proc)
    return back_to_back, apart


def bare_pipeline_round_trip(bootstrap: str, messages: int) -> tuple[list[float], list[float]]:
    """Seconds per id through `bare_pipeline.py` (api -> Kafka -> forward -> sink, one process each), one at
    a time: POST sent -> 201 (commit + acks=all produce), and POST sent -> the sink's row committed."""
    topic = f"tasktide-bench-bare-{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1)])
    libpq_url = benchlib.recreate_database(BARE_DATABASE)
    import psycopg

    with psycopg.connect(libpq_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE bare_tasks (id text PRIMARY KEY)")
        conn.execute("CREATE TABLE bare_audit (id text PRIMARY KEY)")
    commits = AuditCommits(libpq_url, table="bare_audit", column="id")
    api_port, sink_port = benchlib.free_port(), benchlib.free_port()
    env = {
        **os.environ,
        **{"BARE_PG": libpq_url, "BARE_KAFKA": bootstrap, "BARE_TOPIC": topic},
        "BARE_SINK_URL": f"http://127.0.0.1:{sink_port}/",
    }
    procs: list[subprocess.Popen[bytes]] = []
    posted: list[float] = []
    done: list[float] = []
    try:
        for role, port in (("sink", sink_port), ("api", api_port)):
            argv = [
                *(str(benchlib.VENV_BIN / "uvicorn"), f"bare_pipeline:{role}", "--app-dir", str(HERE)),
                *("--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop", "--http", "httptools"),
                *("--log-level", "warning", "--no-access-log"),
            ]
            procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL))
            benchlib.wait_http(f"http://127.0.0.1:{port}/", 30.0, procs[-1])
        forwarder = subprocess.Popen(
            [sys.executable, str(HERE / "bare_pipeline.py"), "forward"], env=env, stdout=subprocess.PIPE
        )
        procs.append(forwarder)
        assert forwarder.stdout is not None
        if not select.select([forwarder.stdout], [], [], WAIT_SECONDS)[0] or not forwarder.stdout.readline():
            raise TimeoutError("bare_pipeline.py forward did not get ready")
        client = benchlib.Poster(f"http://127.0.0.1:{api_port}")
        try:
            for i in range(WARMUP + messages):
                key = uuid.uuid4().hex
                started = time.perf_counter()
                client.post("/", key.encode())
                answered = time.perf_counter()
                committed = commits.wait_for(key)
                if i >= WARMUP:
                    posted.append(answered - started)
                    done.append(committed - started)
        finally:
            client.close()
    finally:
        for proc in reversed(procs):
            benchlib.stop(proc)
        commits.stop()
        admin.delete_topics([topic])
        admin.close()
    return posted, done


def _consume_until(consumer: KafkaConsumer, match: Any) -> float:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=100).values():
            for record in batch:
                if match(record):
                    return time.perf_counter()
    raise TimeoutError("record not consumed in time")


# -- (b) API -> Kafka, API -> audit ----------------------------------------------------------------------
class Arrivals:
    """A consumer thread recording when each record key first shows up on a topic."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = tail_consumer(bootstrap, topic)
        self.seen: dict[bytes, float] = {}
        self.cond = threading.Condition()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.is_set():
            batches = self.consumer.poll(timeout_ms=100)
            now = time.perf_counter()
            with self.cond:
                for batch in batches.values():
                    for record in batch:
                        if record.key is not None:
                            self.seen.setdefault(record.key, now)
                self.cond.notify_all()

    def wait_for(self, key: bytes) -> float:
        with self.cond:
            if not self.cond.wait_for(lambda: key in self.seen, WAIT_SECONDS):
                raise TimeoutError(f"{key!r} never reached the topic")
            return self.seen[key]

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        self.consumer.close()


class AuditCommits:
    """When each task's first audit row commits, from a Postgres trigger's NOTIFY (installed in the
    benchmark's own database only): the benchmark blocks on its LISTEN socket instead of polling the
    server over HTTP, so measuring costs the measured process nothing."""

    def __init__(self, libpq_url: str, table: str = "audit_log", column: str = "task_id") -> None:
        import psycopg

        with psycopg.connect(libpq_url, autocommit=True) as conn:
            conn.execute(
                "CREATE OR REPLACE FUNCTION bench_audit_notify() RETURNS trigger LANGUAGE plpgsql AS $$ "
                f"BEGIN PERFORM pg_notify('{AUDIT_CHANNEL}', NEW.{column}); RETURN NEW; END $$"
            )
            conn.execute(
                f"CREATE TRIGGER bench_audit_notify AFTER INSERT ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION bench_audit_notify()"
            )
        self.conn = psycopg.connect(libpq_url, autocommit=True)
        self.conn.execute(f"LISTEN {AUDIT_CHANNEL}")
        self.seen: dict[str, float] = {}
        self.cond = threading.Condition()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.is_set():
            for notice in self.conn.notifies(timeout=0.5):
                now = time.perf_counter()
                with self.cond:
                    self.seen.setdefault(notice.payload, now)
                    self.cond.notify_all()

    def wait_for(self, task_id: str) -> float:
        with self.cond:
            if not self.cond.wait_for(lambda: task_id in self.seen, WAIT_SECONDS):
                raise TimeoutError(f"{task_id} was never audited (is the audit Trigger delivering?)")
            return self.seen[task_id]

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        self.conn.close()


@contextmanager
def serving(shape: str, url: str, bootstrap: str, log_dir: Path | None) -> Iterator[str]:
    """The API base URL of `shape`: `dev` one `tasktide dev --kafka` process, `cluster` one process per
    concern (`cluster_shape.cluster`)."""
    if shape == "dev":
        benchlib.reset_kafka_source_groups(bootstrap)
        log_path = log_dir / "dev.log" if log_dir else None
        with benchlib.dev_server(url, "--kafka", bootstrap, log_path=log_path) as base:
            yield base
    else:
        with cluster_shape.cluster(url, bootstrap, log_dir=log_dir) as running:
            yield running.api


def fresh_database(database: str = DATABASE) -> tuple[str, str]:
    """Recreate and migrate `database`; its libpq and SQLAlchemy URLs."""
    libpq_url = benchlib.recreate_database(database)
    url = benchlib.sqlalchemy_url(libpq_url)
    benchlib.migrate(url)
    return libpq_url, url


def measure(base: str, bootstrap: str, audits: AuditCommits, tasks: int, warmup: int = WARMUP) -> Samples:
    """Create `warmup + tasks` tasks one at a time through the API at `base`; the three timestamps of each
    one after the warm-up."""
    user = f"latency-{uuid.uuid4().hex[:8]}"
    headers = {"Authorization": f"Bearer {benchlib.token(user)}"}
    samples = Samples()
    arrivals = Arrivals(bootstrap, TOPIC)
    arrivals.start()
    client = benchlib.Poster(base, headers)
    try:
        for i in range(warmup + tasks):
            started = time.perf_counter()
            _, body = client.post(f"/api/{user}/tasks", json_body={"title": f"latency {i}"})
            posted = time.perf_counter()
            task_id = json.loads(body)["id"]
            on_kafka = arrivals.wait_for(task_id.encode())
            audited = audits.wait_for(task_id)
            if i >= warmup:
                samples.post.append(posted - started)
                samples.kafka.append(on_kafka - started)
                samples.audit.append(audited - started)
    finally:
        client.close()
        arrivals.stop()
    return samples


def api_paths(bootstrap: str, tasks: int, shape: str, log_dir: Path | None = None) -> Samples:
    """`measure` against a fresh database and a freshly started `shape`."""
    libpq_url, url = fresh_database()
    audits = AuditCommits(libpq_url)
    try:
        with serving(shape, url, bootstrap, log_dir) as base:
            return measure(base, bootstrap, audits, tasks)
    finally:
        audits.stop()


@dataclass
class Samples:
    """Seconds from each POST sent to: its 201, its record on `task-events`, its audit row committed."""

    post: list[float] = field(default_factory=list)
    kafka: list[float] = field(default_factory=list)
    audit: list[float] = field(default_factory=list)

    def measured(self, shape: str) -> list[Measured]:
        def of(values: list[float]) -> benchlib.Summary:
            return benchlib.Summary.of_seconds(values)

        relay = [k - p for k, p in zip(self.kafka, self.post, strict=True)]
        delivery = [a - k for a, k in zip(self.audit, self.kafka, strict=True)]
        return [
            Measured(shape, "api-post", "POST sent -> 201 received", of(self.post)),
            Measured(shape, "kafka", "POST sent -> record on task-events", of(self.kafka)),
            Measured(shape, "audit", "POST sent -> audit function committed", of(self.audit)),
            Measured(shape, "seg: relay", "201 received -> record on task-events (relay + Kafka)", of(relay)),
            Measured(
                shape,
                "seg: delivery",
                "record on task-events -> audit committed (KafkaSource, Broker, Trigger, function)",
                of(delivery),
            ),
        ]


# -- report -------------------------------------------------------------------------------------------------
SHAPES = {
    "dev": "`tasktide dev --kafka`: API, outbox relay (hand-off at commit, no claim query), KafkaSources, "
    "Broker/Triggers and functions in ONE process (functions at `/services/<name>`)",
    "cluster": "one process per concern, as on a cluster: the API (`tasktide serve`, relay not in process: "
    "each commit NOTIFYs its outbox rows), the `tasktide-relay` function (`tasktide serve`, "
    "FUNCTION_TARGET=relay: LISTEN, produce the rows each NOTIFY carries, mark sent), a router process "
    "(`loadtests/bench/router_proc.py`: the KafkaSources, "
    "Broker and Triggers of the manifests on the real Kafka, each delivery signed for its Service's "
    "audience) and the `tasktide-audit` function (`tasktide serve`, FUNCTION_TARGET=audit, verifying the "
    "token), all on 127.0.0.1 (`loadtests/bench/cluster_shape.py`)",
}


def render(paths: list[Measured], argv: list[str], load: tuple[float, float]) -> str:
    raw = paths[0].latency
    rows = [
        (
            p.shape,
            p.name,
            p.description,
            p.latency.count,
            f"{p.latency.p50_ms:.1f}",
            f"{p.latency.p99_ms:.1f}",
            f"{p.latency.mean_ms:.1f}",
            f"{p.latency.p50_ms / raw.p50_ms:.1f}x",
            f"{p.latency.p99_ms / raw.p99_ms:.1f}x",
        )
        for p in paths
    ]
    table = benchlib.table(
        ["shape", "path", "from -> to", "n", "p50 ms", "p99 ms", "mean ms", "p50 / raw p50", "p99 / raw p99"],
        rows,
    )
    shapes = sorted({p.shape for p in paths if p.shape in SHAPES}, key=list(SHAPES).index)
    described = "".join(f"\n- `{shape}`: {SHAPES[shape]}." for shape in shapes)
    return (
        f"Command: `{benchlib.command_line('event_latency.py', argv)}`\n\n"
        "One message or task at a time (no concurrency), after "
        f"{WARMUP} warm-up rounds each; every POST goes over one keep-alive stdlib `http.client` "
        "connection (`benchlib.Poster`), whose own CPU is inside each sample. `raw`: kafka-python "
        "`send().get()` with acks=all, then a group-less "
        "consumer sees the record, on a fresh 1-partition topic of the local broker. `raw-http`: a bare ASGI "
        f"app under uvicorn (uvloop, httptools) answering 201, one POST {IDLE_MS} ms after the last answer "
        "(about how long the API idles between two POSTs here), and back to back: one HTTP hop, between "
        "processes that idle between events and between busy ones (the difference is the time this "
        "machine's idle CPUs take to wake, paid at every hop of the event path). The other rows drive "
        "tasktide on Postgres, in each shape below: `POST /api/{user}/tasks` (outbox row committed with "
        "the task; KafkaPublisher acks=all) until a group-less kafka-python consumer in the benchmark sees "
        "the `task.created` record on `task-events`, and until the audit function's row for it commits "
        "(KafkaSource -> Broker `default` -> Trigger `audit` -> the `tasktide-audit` function over HTTP -> "
        "database; seen through a benchmark-only `AFTER INSERT` trigger's NOTIFY, so nothing polls the "
        "server). The `seg:` rows split each sample into its parts (per-sample differences). "
        "`floor`: the same hops with nothing else (`loadtests/bench/bare_pipeline.py`, three processes): a "
        "bare ASGI app commits the id to Postgres (psycopg, autocommit) and produces it (acks=all, waiting "
        "for the ack) before its 201; a group-less consumer POSTs each record to a second bare ASGI app, "
        "which commits it; no outbox, relay, Broker, CloudEvents, auth or ORM. It is this machine's floor "
        "for `audit`, the path the 10 ms goal is about. "
        f"{os.cpu_count()} CPUs, shared by every process of a shape; 1-minute load average "
        f"{load[0]:.1f} before and {load[1]:.1f} after the run (other work on the machine widens p99).\n"
        f"{described}\n\n{table}\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    local = f"127.0.0.1:{os.environ.get('TASKTIDE_KAFKA_PORT', '9092')}"  # eventing/local/kafka.sh's port
    parser.add_argument("--bootstrap", default=os.environ.get("TASKTIDE_TEST_KAFKA", local))
    parser.add_argument("--messages", type=int, default=500, help="raw round trips")
    parser.add_argument("--tasks", type=int, default=200, help="tasks created through the API, per shape")
    parser.add_argument("--shape", choices=("dev", "cluster", "both"), default="both")
    parser.add_argument("--write-doc", action="store_true", help=f"replace '## {SECTION}' in docs")
    parser.add_argument("--log-dir", type=Path, default=None, help="each server's output, one file each")
    args = parser.parse_args(argv)
    raw_argv = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--write-doc"]
    if args.log_dir:
        args.log_dir.mkdir(parents=True, exist_ok=True)

    load_before = os.getloadavg()[0]
    of = benchlib.Summary.of_seconds
    raw = raw_round_trip(args.bootstrap, args.messages)
    paths = [Measured("-", "raw", "kafka-python produce -> consume", of(raw))]
    back_to_back, apart = raw_http_round_trip(args.messages)
    for samples, how in ((apart, f"{IDLE_MS} ms apart"), (back_to_back, "back to back")):
        http = benchlib.Summary.of_seconds(samples)
        paths.append(Measured("-", "raw-http", f"bare uvicorn app: POST -> 201, {how}", http))
    bare_post, bare_done = bare_pipeline_round_trip(args.bootstrap, args.messages)
    paths += [
        Measured("-", "floor", "bare pipeline: POST -> 201 (commit + acks=all produce)", of(bare_post)),
        Measured(
            "-", "floor", "bare pipeline: POST -> sink committed (+ consume, HTTP hop, commit)", of(bare_done)
        ),
    ]
    for shape in ("dev", "cluster") if args.shape == "both" else (args.shape,):
        paths += api_paths(args.bootstrap, args.tasks, shape, args.log_dir).measured(shape)
    body = render(paths, raw_argv, (load_before, os.getloadavg()[0]))
    print(body)
    if args.write_doc:
        benchlib.write_section(SECTION, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
