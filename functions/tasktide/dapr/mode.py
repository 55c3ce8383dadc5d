"""Local "Dapr mode": each tasktide app in its own process with its own real daprd sidecar, on Postgres and
Kafka, wired by the YAML under ``dapr/`` (``tasktide dapr-run``; also the end-to-end Dapr tests).

Consumes: a Postgres URL, a Kafka bootstrap, the daprd binary, ``dapr/*.yaml`` + ``dapr/eventing/*.yaml``
and the dev secrets of ``dapr/local/secrets.json``.
Emits: ``DaprMode`` (start / stop of every app + sidecar, by PID) and ``APPS``.

Every app and sidecar binds 127.0.0.1 on ports picked at start. Events flow as on a cluster in Dapr
wiring: the relay (reached by the ``outbox-sweep`` cron binding and after every API commit) writes
structured CloudEvents to Kafka, ``pubsub.kafka`` Subscriptions deliver them to recurring, audit and
notifier, the ``reminders-tick`` cron binding drives the reminder scan, and each app reads its database
URL and secrets through its sidecar's secret store and keeps state through its ``statestore``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tasktide.dapr import selfhosted
from tasktide.dapr.daprd import (
    LOOPBACK,
    Daprd,
    DaprdError,
    answers_2xx,
    daprd_binary,
    free_port,
    stop_process,
)
from tasktide.settings import REPO_ROOT

# app id -> FUNCTION_TARGET (None: the task API)
APPS: Mapping[str, str | None] = {
    "tasktide-api": None,
    "tasktide-recurring": "recurring",
    "tasktide-reminders": "reminders",
    "tasktide-notifier": "notifier",
    "tasktide-audit": "audit",
    "tasktide-relay": "relay",
}
LOCAL_SECRETS = REPO_ROOT / "dapr" / "local" / "secrets.json"
# The fixed ports of dapr.yaml (the Dapr CLI's multi-app run file): app id -> (app, daprd internal gRPC).
CLI_PORTS: Mapping[str, tuple[int, int]] = {
    app_id: (8081 + index, 50021 + index) for index, app_id in enumerate(APPS)
}


@dataclass
class App:
    """One app process (gunicorn function server or uvicorn API) on 127.0.0.1:``port``."""

    app_id: str
    target: str | None
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        bind = f"{LOOPBACK}:{self.port}"
        if self.target is None:
            return [
                *(sys.executable, "-m", "uvicorn", "tasktide.entrypoints.serve:api_app", "--factory"),
                *("--host", LOOPBACK, "--port", str(self.port), "--no-access-log"),
            ]
        # As the container (`tasktide serve`): the ASGI app behind the body guard (deadline, size, depth)
        # under uvicorn workers, so a slow client cannot hold one of the function's threads.
        return [
            *(sys.executable, "-m", "gunicorn", "tasktide.functions._server:asgi_app_from_env()"),
            *("--config", "python:tasktide.functions._gunicorn_conf", "--bind", bind),
            *("--worker-class", "tasktide.functions._worker.FunctionWorker"),
            *("--workers", "1", "--threads", "4", "--timeout", "0"),
        ]

    def healthy(self) -> bool:
        return answers_2xx(f"http://{LOOPBACK}:{self.port}/healthz")


@dataclass
class DaprMode:
    """Start ``apps`` (ids of ``APPS``), each beside its own daprd; ``stop()`` ends them all by PID."""

    workdir: Path
    database_url: str
    kafka: str
    apps: Sequence[str] = tuple(APPS)
    cron_schedule: str | None = None  # override dapr/eventing/cron.yaml, e.g. "@every 1s"
    binary: Path | None = None
    log_level: str = "info"
    env: Mapping[str, str] = field(default_factory=dict)
    running: dict[str, tuple[App, Daprd]] = field(default_factory=dict)

    def secrets(self) -> dict[str, str]:
        bundle: dict[str, str] = json.loads(LOCAL_SECRETS.read_text(encoding="utf-8"))
        bundle["database-url"] = self.database_url
        return bundle

    def documents(self) -> list[selfhosted.Doc]:
        secrets_file = selfhosted.write_secrets(self.workdir / "secrets.json", self.secrets())
        cron = selfhosted.load("eventing/cron.yaml")
        if self.cron_schedule is not None:
            for doc in cron:
                selfhosted.set_metadata(doc, "schedule", self.cron_schedule)
        return [
            selfhosted.statestore(self.database_url),
            selfhosted.secretstore(secrets_file),
            *selfhosted.load("resiliency.yaml"),
            selfhosted.pubsub(self.kafka),
            *selfhosted.load("eventing/subscriptions.yaml"),
            *cron,
        ]

    def render(self, internal_ports: Mapping[str, int]) -> selfhosted.Resources:
        """Write the resources and Configuration every sidecar of this run loads (``dapr.yaml`` too)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = selfhosted.configuration(internal_ports)
        return selfhosted.write(self.workdir, config, self.documents())

    def start(self, timeout: float = 60.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        binary = self.binary or daprd_binary(build=True)
        internal = {app_id: free_port() for app_id in self.apps}
        resources = self.render(internal)
        try:
            for app_id in self.apps:
                self._start_one(app_id, binary, resources, internal[app_id], timeout)
        except Exception:
            self.stop()
            raise

    def _start_one(
        self, app_id: str, binary: Path, resources: selfhosted.Resources, internal_port: int, timeout: float
    ) -> None:
        app = App(app_id, APPS[app_id])
        sidecar = Daprd(
            app_id,
            resources.path,
            resources.config,
            binary,
            app_port=app.port,
            internal_grpc_port=internal_port,
            log_level=self.log_level,
            log_file=self.workdir / f"{app_id}.daprd.log",
        )
        environment = {
            **os.environ,
            **self.env,
            **sidecar.client_env(),
            "TASKTIDE_KAFKA_BOOTSTRAP": self.kafka,
            "TASKTIDE_SECRET_STORE": "secretstore",
            "TASKTIDE_STATE_STORE": "statestore",
        }
        environment.pop("TASKTIDE_DATABASE_URL", None)  # read through the sidecar's secret store
        if app.target is not None:
            environment["FUNCTION_TARGET"] = app.target
        else:
            environment.pop("FUNCTION_TARGET", None)
        # daprd first: the app's first secret read goes through it; daprd waits for the app's port.
        deadline = time.monotonic() + timeout
        self.running[app_id] = (app, sidecar)
        sidecar.start_process()
        with (self.workdir / f"{app_id}.log").open("ab") as app_log:
            app.process = subprocess.Popen(
                app.argv(), stdout=app_log, stderr=subprocess.STDOUT, env=environment, start_new_session=True
            )
        while time.monotonic() < deadline:
            if app.process.poll() is not None:
                raise DaprdError(f"{app_id} exited with {app.process.returncode}: see {self.workdir}")
            if app.healthy():
                break
            time.sleep(0.1)
        else:
            raise DaprdError(f"{app_id} not healthy after {timeout} s: see {self.workdir}")
        sidecar.wait_healthy(max(1.0, deadline - time.monotonic()))

    def daprd(self, app_id: str) -> Daprd:
        return self.running[app_id][1]

    def app(self, app_id: str) -> App:
        return self.running[app_id][0]

    def stop(self) -> None:
        for app, sidecar in reversed(list(self.running.values())):
            sidecar.stop()
            stop_process(app.process)
        self.running.clear()

    def __enter__(self) -> DaprMode:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
