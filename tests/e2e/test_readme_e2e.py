"""The README as a new user runs it: `make run` (embedded) and the "real engines" command (Postgres +
Kafka), then the walk-through block exactly as written, with no TASKTIDE_JWT_SECRET anywhere.

Consumes: README.md's fenced blocks (the `make run ARGS=...` line of "To run on real engines" and the
bash block under "## Walk-through"), the `tasktide` console script, and in Kafka mode the real Postgres and
Kafka of `make test` (a fresh database and per-run consumer groups). The only edits to the README's text
are the addresses: the port (a free one instead of 8080), the Postgres/Kafka ports of this machine's
services, the database (a fresh one), and `.venv/bin/tasktide` (the running interpreter's).
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import make_url

from tasktide.api.auth import encode_token
from tasktide.settings import DEV_JWT_SECRET, REPO_ROOT

from .support import (
    VENV_BIN,
    child_env,
    free_port,
    fresh_database,
    start_process,
    wait_for,
    wait_until_serving,
)

pytestmark = pytest.mark.slow
README = (REPO_ROOT / "README.md").read_text()


def _block_after(heading: str) -> str:
    section = README[README.index(heading) :]
    match = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert match, f"no bash block after {heading!r}"
    return match.group(1)


def _real_engines_args() -> list[str]:
    """The ARGS of the README's `make run ARGS="..."` line for real engines."""
    block = _block_after("To run on real engines")
    [line] = [ln for ln in block.splitlines() if ln.startswith("make run ARGS=")]
    args: str = shlex.split(line)[2].removeprefix("ARGS=")
    return shlex.split(args)


@pytest.mark.parametrize(
    "mode", ["embedded", pytest.param("real-engines", marks=[pytest.mark.kafka, pytest.mark.postgres])]
)
def test_readme_walkthrough_as_written_creates_next_occurrence(
    mode: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    port = free_port()
    argv = [str(VENV_BIN / "tasktide"), "dev", "--port", str(port)]  # what `make run ARGS=...` execs
    if mode == "real-engines":
        bootstrap, eventing_dir = request.getfixturevalue("own_eventing")
        fresh = make_url(request.getfixturevalue("readme_database"))
        args = _real_engines_args()
        at = args.index("--database-url") + 1
        readme_db = make_url(args[at])
        assert (readme_db.host, readme_db.port, readme_db.database) == ("127.0.0.1", 55432, "tasktide")
        # the README's URL as written (plain postgresql://), on this machine's port and a fresh database
        args[at] = readme_db.set(port=fresh.port, database=fresh.database).render_as_string(
            hide_password=False
        )
        assert args[args.index("--kafka") + 1] == "127.0.0.1:9092"
        args[args.index("--kafka") + 1] = bootstrap
        argv += args
        extra = {"TASKTIDE_EVENTING_DIR": str(eventing_dir)}
    else:
        argv += ["--database-url", f"sqlite:///{tmp_path / 'tasktide.db'}"]
        extra = {}
    env = child_env(extra)  # no TASKTIDE_JWT_SECRET: the README sets none
    proc = start_process(f"readme-{mode}", argv, env, tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(proc, f"{base}/readyz", timeout=90.0, ok=lambda status: status == 200)
        script = _block_after("## Walk-through").replace("http://127.0.0.1:8080", base)
        script = script.replace(".venv/bin/tasktide", str(VENV_BIN / "tasktide"))
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr + proc.log_tail()
        assert "Water the plants" in done.stdout and '"completed":true' in done.stdout
        assert "development secret" in done.stderr  # `tasktide token` said which secret it used

        headers = {"Authorization": f"Bearer {encode_token('alice', DEV_JWT_SECRET)}"}

        def next_occurrence() -> list[str] | None:
            tasks = httpx.get(f"{base}/api/alice/tasks?sort=due_at", headers=headers, timeout=10).json()
            due = [t["due_at"] for t in tasks]
            return due if len(due) == 2 else None

        due = wait_for(next_occurrence, timeout=60.0, what="the recurring function's next occurrence")
        assert due[1].startswith("2030-01-14T08:00:00")  # Monday 09:00 Europe/Berlin
    finally:
        proc.stop()
    log = proc.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-4000:]
    assert "no KafkaSource reads topic" not in log  # task-updates is read by the API, not a warning


@pytest.fixture
def readme_database(postgres_url: str) -> Iterator[str]:
    with fresh_database(postgres_url, "readme") as url:
        yield url
