"""E2E crash test: the recurring function dies between its commit and its HTTP reply; redelivery is safe.

Runs the API and the recurring function as their own processes exactly as Knative Services would
(`tasktide serve`, the latter with `FUNCTION_TARGET=recurring`), on one database: SQLite (embedded) or a
fresh Postgres database. Neither process has an outbox relay, so no event flows except the ones the test
POSTs. The crash uses the documented test hook `TASKTIDE_CRASH_AFTER_COMMIT=1` (tasktide.functions._kit).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.testenv import blank_database

from .support import (
    JWT_SECRET,
    TASKTIDE,
    Proc,
    UserApi,
    child_env,
    completed_binary,
    free_port,
    start_process,
    unique_user,
    wait_until_serving,
)

pytestmark = pytest.mark.slow
DATABASES = [
    pytest.param("sqlite", id="embedded"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with blank_database(request, tmp_path, "crash") as url:
        yield url


def serve(name: str, database_url: str, workdir: Path, **extra: str) -> tuple[Proc, str]:
    """`tasktide serve` on a free port with the given extra env; waits until it answers HTTP."""
    port = free_port()
    env = child_env(
        {"PORT": str(port), "TASKTIDE_DATABASE_URL": database_url, "TASKTIDE_JWT_SECRET": JWT_SECRET, **extra}
    )
    proc = start_process(name, [TASKTIDE, "serve"], env, workdir)
    url = f"http://127.0.0.1:{port}"
    if "FUNCTION_TARGET" in extra:
        wait_until_serving(proc, url, timeout=60.0, ok=lambda status: status > 0)
    else:
        wait_until_serving(proc, f"{url}/readyz", timeout=60.0, ok=lambda status: status == 200)
    return proc, url


def test_recurring_crash_between_commit_and_reply_redelivery_creates_one_occurrence(
    database_url: str, tmp_path: Path
) -> None:
    api_proc, api_url = serve("tasktide-api", database_url, tmp_path)
    procs = [api_proc]
    try:
        user = unique_user("crash")
        api = UserApi(api_url, user, JWT_SECRET)
        task = api.create_task(
            title="water the plants",
            due_at="2031-06-02T07:00:00Z",
            timezone="Europe/Berlin",
            recurrence="FREQ=WEEKLY;BYDAY=MO",
        )
        completed = api.complete(task["id"])
        headers, body = completed_binary(str(uuid.uuid4()), completed, user)

        crashing, crashing_url = serve(
            "tasktide-recurring-crashing",
            database_url,
            tmp_path,
            FUNCTION_TARGET="recurring",
            TASKTIDE_CRASH_AFTER_COMMIT="1",
        )
        procs.append(crashing)
        with pytest.raises(httpx.TransportError):
            httpx.post(crashing_url, content=body, headers=headers, timeout=30.0)
        # functions-framework runs gunicorn: the worker died by the hook (the master would respawn it).
        assert "exiting between commit and reply" in crashing.log_tail()
        crashing.stop()
        # The commit landed before the crash: the occurrence exists although the sender saw a failure.
        assert [t["occurrence"] for t in api.occurrences(task["series_id"], 2)] == [2]

        healthy, healthy_url = serve(
            "tasktide-recurring", database_url, tmp_path, FUNCTION_TARGET="recurring"
        )
        procs.append(healthy)
        redelivered = httpx.post(healthy_url, content=body, headers=headers, timeout=30.0)
        assert 200 <= redelivered.status_code < 300, redelivered.text
        assert healthy.popen.poll() is None

        series = [t for t in api.tasks() if t["series_id"] == task["series_id"]]
        assert sorted(t["occurrence"] for t in series) == [1, 2]
        [nxt] = [t for t in series if t["occurrence"] == 2]
        assert nxt["due_at"] == "2031-06-09T07:00:00Z"
        assert nxt["status"] == "pending"
        api.close()
    finally:
        for proc in reversed(procs):
            proc.stop()
