"""Every dashboard panel query works against a real Prometheus scraping a real `tasktide dev`.

Starts `tasktide dev` (temp SQLite, PingSources every second) and `prometheus` scraping its `/metrics` every
second as job `tasktide-api` (the job-per-Knative-Service convention of grafana/alerts/tasktide-rules.yaml;
in embedded mode every function runs in the API's process) with the alert rules loaded. Drives traffic that
produces every metric kind: task CRUD and filtered lists, completed recurring tasks (occurrences), a reminder
that fires (lateness, notification) and a reminder.due whose webhook is unreachable (5xx, retries, dead
letter). Then evaluates every Prometheus panel query through `/api/v1/query` and fails on query errors and
on panels without series, except the documented allowlist below.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import yaml

from tests.loadtests.devserver import DevServer, free_port, run_dev_server

from .promql import RULES, dashboard_files, load_dashboard, prometheus_exprs

pytestmark = pytest.mark.slow

JOB = "tasktide-api"
# Grafana variables -> concrete values. `$function` gets the dashboard's "All" value (allValue ".+").
RATE_WINDOW = "2m"  # the whole test fits in it, so rates and quantiles see all generated traffic
VARIABLES = {"$__rate_interval": RATE_WINDOW, "$__range": "5m", "$function": ".+"}

# Panels that legitimately return no series in embedded mode, by (dashboard file or "*", panel title).
NO_DATA_ALLOWED: dict[tuple[str, str], str] = {
    # Knative Serving's autoscaler exports these on a cluster; there are no pods locally.
    ("overview.json", "Active Knative pods per Service"): "Knative autoscaler metric",
    ("*", "Knative pods"): "Knative autoscaler metric",
    # Embedded mode has no Kafka: topics are in-process, so no consumer group has a lag to report.
    ("api.json", "Kafka lag on task-updates"): "no Kafka consumers in embedded mode",
    ("recurring.json", "Kafka lag on task-events"): "no Kafka consumers in embedded mode",
    ("audit.json", "Kafka lag on task-events"): "no Kafka consumers in embedded mode",
    ("notifier.json", "Kafka lag on reminders"): "no Kafka consumers in embedded mode",
    ("relay.json", "Kafka consumer lag by group and topic"): "no Kafka consumers in embedded mode",
    # The agent is its own Service with a model provider, neither of which `tasktide dev` has here; its
    # series are checked on the agent's /metrics by tests/agent/test_agent_service.py instead.
    **{
        ("agent.json", title): "the chat agent needs a model provider"
        for title in (
            "Requests by status code",
            "Error ratio",
            "Latency p50 / p95 / p99",
            "Chat turns by outcome",
            "Chat turn latency p50 / p95 / p99",
            "MCP tool calls by tool",
            "Chat turn failure ratio",
        )
    },
}
# Error-ratio panels of functions that answered no 5xx: the numerator series does not exist yet. For these
# the denominator (the function's request counter) must have data instead. notifier gets real 5xx here.
ERROR_RATIO_WITHOUT_ERRORS = {"api", "recurring", "reminders", "audit", "relay"}


@dataclass(frozen=True)
class Prometheus:
    url: str

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10.0)
        body: dict[str, Any] = response.json()
        if response.status_code != 200 or body.get("status") != "success":
            raise AssertionError(f"query failed ({response.status_code}): {expr}\n{body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("prometheus is not installed: `make services` runs .ci/prometheus.sh")
        pytest.skip("prometheus not installed (bash .ci/prometheus.sh)")
    return found


def wait_until(check: Callable[[], bool], what: str, timeout: float, on_fail: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}\n{on_fail()}")


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    with run_dev_server(tmp_path_factory.mktemp("scrape-dev")) as server:
        yield server


@pytest.fixture(scope="module")
def prometheus(dev_server: DevServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    binary = prometheus_binary()
    workdir = tmp_path_factory.mktemp("prometheus")
    target = dev_server.base_url.removeprefix("http://")
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": JOB, "metrics_path": "/metrics", "static_configs": [{"targets": [target]}]}
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log_path = workdir / "prometheus.log"
    argv = [
        binary,
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"prometheus exited {process.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            return httpx.get(f"{url}/-/ready", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, "prometheus to be ready", 30, lambda: log_path.read_text()[-4000:])
        yield Prometheus(url)
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def metric_value(server: DevServer, line_prefix: str) -> float:
    text = httpx.get(f"{server.base_url}/metrics", timeout=10.0).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_prefix))


def send_undeliverable_reminder(server: DevServer, client: httpx.Client) -> None:
    """A valid reminder.due for a user whose webhook is unreachable: the notifier answers 5xx every time,
    the Trigger retries (0.5 s .. 8 s backoff) and finally dead-letters it."""
    user = "scrape-dead-letter"
    settings = {"webhook_url": f"http://127.0.0.1:{free_port()}/hook"}  # nothing listens there
    response = client.put(f"/api/{user}/notification-settings", json=settings, headers=server.headers(user))
    assert response.status_code == 200, response.text
    now = datetime.now(UTC).replace(microsecond=0)
    # A real pending task: the notifier stays silent for reminders of tasks that are gone or done.
    task = client.post(
        f"/api/{user}/tasks",
        json={"title": "unreachable webhook", "due_at": (now + timedelta(minutes=5)).isoformat()},
        headers=server.headers(user),
    )
    assert task.status_code == 201, task.text
    event = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/tasktide/reminders",
        "type": "com.tasktide.reminder.due",
        "subject": task.json()["id"],
        "datacontenttype": "application/json",
        "data": {
            "reminder_id": str(uuid.uuid4()),
            "task_id": task.json()["id"],
            "user_id": user,
            "title": "unreachable webhook",
            "offset": "PT5M",
            "remind_at": now.isoformat(),
            "due_at": task.json()["due_at"],
            "fired_at": now.isoformat(),
        },
    }
    response = client.post(
        "/tasktide/default", json=event, headers={"content-type": "application/cloudevents+json"}
    )
    assert response.status_code == 202, response.text


def drive_task_traffic(server: DevServer, client: httpx.Client, wave: int) -> None:
    """CRUD, filtered lists and completed recurring tasks (each completion creates the next occurrence)."""
    user = "scrape-user"
    headers = server.headers(user)
    base = f"/api/{user}/tasks"
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    for i, priority in enumerate(("high", "medium", "low")):
        body = {
            "title": f"recurring {wave}.{i}",
            "priority": priority,
            "tags": ["scrape"],
            "due_at": due.isoformat(),
            "recurrence": "FREQ=DAILY",
        }
        created = client.post(base, json=body, headers=headers)
        assert created.status_code == 201, f"{created.text}\n{server.log_tail()}"
        task_id = created.json()["id"]
        edited = client.patch(f"{base}/{task_id}", json={"description": "edited"}, headers=headers)
        assert edited.status_code == 200, edited.text
        assert client.patch(f"{base}/{task_id}/complete", headers=headers).status_code == 200
    filters: list[dict[str, str]] = [
        {"status": "pending"},
        {"priority": "high"},
        {"tag": "scrape"},
        {"q": "recurring", "sort": "-due_at"},
    ]
    for params in filters:
        assert client.get(base, params=params, headers=headers).status_code == 200
    assert client.get(f"{base}/{uuid.uuid4()}", headers=headers).status_code == 404


def create_reminder_task(server: DevServer, client: httpx.Client) -> str:
    """A task due in 8 s with a reminder 5 s before: it fires at the first PingSource tick after 3 s."""
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=8)
    body = {"title": "reminded", "due_at": due.isoformat(), "reminders": ["PT5S"]}
    created = client.post("/api/scrape-user/tasks", json=body, headers=server.headers("scrape-user"))
    assert created.status_code == 201, f"{created.text}\n{server.log_tail()}"
    return str(created.json()["id"])


def wait_for_scrape(prometheus: Prometheus, server: DevServer, after: float) -> None:
    """Wait until Prometheus holds a scrape of the dev server taken after the Unix time ``after``."""
    wait_until(
        lambda: bool(prometheus.query(f'timestamp(up{{job="{JOB}"}}) > {after}')),
        "a Prometheus scrape",
        15,
        server.log_tail,
    )


@pytest.fixture(scope="module")
def traffic(dev_server: DevServer, prometheus: Prometheus) -> None:
    """Two waves of traffic with a scrape in between: the first creates the labelled series, the second
    moves them, so rates, increases and quantiles over the window have something to show."""
    wait_for_scrape(prometheus, dev_server, time.time())  # baseline: unlabelled counters at 0
    with httpx.Client(base_url=dev_server.base_url, timeout=30.0) as client:
        send_undeliverable_reminder(dev_server, client)  # first: its retries take ~16 s
        reminder_task_id = create_reminder_task(dev_server, client)
        drive_task_traffic(dev_server, client, wave=1)
        # Wave 1's events are handled asynchronously (outbox -> broker -> recurring, audit): wait for them
        # (3 occurrences; audit saw 3 x created/updated/completed + 3 occurrences), then for a scrape.
        wait_until(
            lambda: (
                metric_value(dev_server, "tasktide_recurring_occurrences_created_total") >= 3
                and metric_value(dev_server, 'tasktide_events_consumed_total{function="audit"') >= 12
            ),
            "wave 1's events",
            30,
            dev_server.log_tail,
        )
        wait_for_scrape(prometheus, dev_server, time.time())
        drive_task_traffic(dev_server, client, wave=2)

        def reminder_notified() -> bool:
            notes = client.get("/api/scrape-user/notifications", headers=dev_server.headers("scrape-user"))
            return any(n["task_id"] == reminder_task_id for n in notes.json())

        wait_until(reminder_notified, "the reminder's notification", 30, dev_server.log_tail)
        # Seconds after the first: the two dead letters land in different scrapes, so `increase` sees one.
        send_undeliverable_reminder(dev_server, client)
    wait_until(
        lambda: metric_value(dev_server, "tasktide_recurring_occurrences_created_total") >= 6,
        "six recurring occurrences",
        30,
        dev_server.log_tail,
    )
    wait_until(
        lambda: metric_value(dev_server, 'tasktide_dead_letters_total{trigger="notifier"}') >= 2,
        "two dead letters",
        45,
        dev_server.log_tail,
    )
    # Two more scrapes of the final state.
    wait_for_scrape(prometheus, dev_server, time.time() + 1)


def substitute(expr: str) -> str:
    for variable, value in sorted(VARIABLES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unsubstituted Grafana variable in {expr}"
    return expr


def panel_queries() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, expr) of every Prometheus target of every dashboard."""
    return [
        (path.name, title, expr)
        for path in dashboard_files()
        for title, expr in prometheus_exprs(load_dashboard(path))
    ]


def test_scrape_target_job_label_matches_alert_convention(prometheus: Prometheus, traffic: None) -> None:
    up = prometheus.query(f'up{{job="{JOB}"}}')

    assert [sample["value"][1] for sample in up] == ["1"]


def test_scrape_alert_rules_evaluate_without_errors(prometheus: Prometheus, traffic: None) -> None:
    groups = httpx.get(f"{prometheus.url}/api/v1/rules", timeout=10.0).json()["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]

    assert rules, "no alert rules loaded"
    assert [(r["name"], r.get("lastError")) for r in rules if r.get("health") != "ok"] == []


def test_scrape_every_dashboard_panel_query_returns_series(prometheus: Prometheus, traffic: None) -> None:
    queries = panel_queries()
    assert len(queries) > 30, "dashboards not found"
    values: dict[tuple[str, str], list[float]] = {}
    errors = []
    for dashboard, title, expr in queries:
        try:
            result = prometheus.query(substitute(expr))
        except AssertionError as exc:
            errors.append(f"{dashboard} / {title}: {exc}")
            continue
        values.setdefault((dashboard, title), []).extend(float(sample["value"][1]) for sample in result)

    empty, all_nan = [], []
    for (dashboard, title), found in values.items():
        if (dashboard, title) in NO_DATA_ALLOWED or ("*", title) in NO_DATA_ALLOWED:
            continue
        function = dashboard.removesuffix(".json")
        if not found and title == "Error ratio" and function in ERROR_RATIO_WITHOUT_ERRORS:
            requests = f'sum(rate(tasktide_requests_total{{function="{function}"}}[{RATE_WINDOW}])) > 0'
            if prometheus.query(requests):
                continue
        if not found:
            empty.append(f"{dashboard} / {title}")
        elif all(math.isnan(v) for v in found):  # e.g. a quantile over a window without observations
            all_nan.append(f"{dashboard} / {title}")

    assert errors == []
    assert empty == []
    assert all_nan == []


def test_scrape_allowlisted_panels_still_exist() -> None:
    titles = {(dashboard, title) for dashboard, title, _ in panel_queries()}
    all_titles = {title for _, title in titles}

    stale = [
        key
        for key in NO_DATA_ALLOWED
        if (key[0] == "*" and key[1] not in all_titles) or (key[0] != "*" and key not in titles)
    ]
    assert stale == []


def test_scrape_dead_letter_counted_per_trigger_and_outcome(prometheus: Prometheus, traffic: None) -> None:
    dead = prometheus.query('tasktide_dead_letters_total{trigger="notifier"}')
    outcomes = prometheus.query(
        'tasktide_events_consumed_total{function="notifier", type="com.tasktide.reminder.due"}'
    )
    pool = prometheus.query("tasktide_db_pool_connections")

    increase = prometheus.query(f"sum(increase(tasktide_dead_letters_total[{RATE_WINDOW}]))")

    assert [float(s["value"][1]) for s in dead] == [2.0]
    assert float(increase[0]["value"][1]) > 0
    by_outcome = {s["metric"]["outcome"]: float(s["value"][1]) for s in outcomes}
    assert by_outcome.get("dead_lettered") == 2.0
    assert by_outcome.get("retried") == 12.0  # per event: 1 attempt + 5 retries, each answered 5xx
    assert {s["metric"]["state"] for s in pool} == {"in_use", "idle", "overflow"}
