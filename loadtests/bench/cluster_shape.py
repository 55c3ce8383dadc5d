"""tasktide as a cluster runs it, each concern its own process on 127.0.0.1 (the cluster shape of
`event_latency.py`).

Consumes: a migrated Postgres database, a Kafka bootstrap, the project's `.venv`, the manifests of
`eventing/` + `knative/` (each function's `TASKTIDE_EVENT_AUDIENCE`, and the API's
`TASKTIDE_OUTBOX_NOTIFY_HANDOFF`, are what its Knative Service sets).
Emits (as a context manager, everything stopped on exit):
  api     `tasktide serve` (no FUNCTION_TARGET: uvicorn workers) with `TASKTIDE_KAFKA_BOOTSTRAP` set and the
          outbox relay NOT in process: each commit NOTIFYs `tasktide_outbox` with its outbox rows;
  relay   `tasktide serve` with FUNCTION_TARGET=relay (its own gunicorn): LISTENs from worker start, and on
          each NOTIFY produces the rows it carries (acks=all, no claim query) and marks them sent;
  router  `router_proc.py`: the KafkaSources, Broker and Triggers (`EventRuntime`) on the real Kafka,
          delivering to each started Service at its own URL with a token signed by the key the functions
          verify (`TASKTIDE_EVENT_SIGNING_KEY`, as Knative's OIDC sender authentication would);
  audit   `tasktide serve` with FUNCTION_TARGET=audit (its own gunicorn), verifying that token.
The other Services (recurring, notifier, reminders, agent) are not started; the router sends what it
would route to them to a stub answering 202 (no task.created event goes there).
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import benchlib

HERE = Path(__file__).resolve().parent
STARTED = ("tasktide-api", "tasktide-relay", "tasktide-audit")


@dataclass(frozen=True)
class Cluster:
    api: str  # base URL of each process
    relay: str
    audit: str
    router: str
    pids: dict[str, int]


@contextmanager
def process(
    name: str, argv: list[str], env: dict[str, str], port: int, log_dir: Path | None, health: str = "/healthz"
) -> Iterator[tuple[str, int]]:
    """Start one process; yields its base URL and pid once `health` answers 2xx."""
    log = open(log_dir / f"{name}.log" if log_dir else os.devnull, "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=benchlib.REPO_ROOT)
    try:
        base = f"http://127.0.0.1:{port}"
        benchlib.wait_http(f"{base}{health}", 120.0, proc)
        yield base, proc.pid
    finally:
        benchlib.stop(proc)
        log.close()


@contextmanager
def cluster(
    database_url: str, bootstrap: str, *, group_suffix: str = "-bench", log_dir: Path | None = None
) -> Iterator[Cluster]:
    """Start api, relay, audit and router (see the module docstring); the KafkaSource groups are
    `<manifest group><group_suffix>`, moved to the end of their topics first."""
    benchlib.reset_kafka_source_groups(bootstrap, group_suffix)
    key = secrets.token_urlsafe(32)
    common = {
        **os.environ,
        "TASKTIDE_JWT_SECRET": benchlib.JWT_SECRET,
        "TASKTIDE_DATABASE_URL": database_url,
        "TASKTIDE_KAFKA_BOOTSTRAP": bootstrap,
        "TASKTIDE_EVENT_SIGNING_KEY": key,
        "TASKTIDE_HOST": "127.0.0.1",
    }
    for name in ("FUNCTION_TARGET", "TASKTIDE_RELAY_IN_PROCESS", "TASKTIDE_ROLE", *benchlib.LOCAL_ENV):
        common.pop(name, None)
    tasktide = str(benchlib.VENV_BIN / "tasktide")
    ports = {name: benchlib.free_port() for name in ("api", "relay", "audit", "router")}
    pids: dict[str, int] = {}
    with ExitStack() as stack:

        def start(name: str, argv: list[str], env: dict[str, str]) -> str:
            base, pid = stack.enter_context(process(name, argv, env, ports[name], log_dir))
            pids[name] = pid
            return base

        api_env = {**common, **benchlib.manifest_env("tasktide-api"), "PORT": str(ports["api"])}
        api = start("api", [tasktide, "serve"], api_env)
        functions = {}
        for name in ("relay", "audit"):
            env = {
                **common,
                **benchlib.manifest_env(f"tasktide-{name}"),
                "FUNCTION_TARGET": name,
                "PORT": str(ports[name]),
            }
            functions[name] = start(name, [tasktide, "serve"], env)
        router_argv = [
            str(benchlib.VENV_BIN / "python"),
            str(HERE / "router_proc.py"),
            *("--port", str(ports["router"]), "--bootstrap", bootstrap, f"--group-suffix={group_suffix}"),
            *(f"--service=tasktide-{name}={url}" for name, url in functions.items()),
        ]
        router = start("router", router_argv, common)
        yield Cluster(api, functions["relay"], functions["audit"], router, pids)
