"""`tasktide dev`'s log noise: the router's own successful deliveries leave no uvicorn access line."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tasktide.entrypoints.dev import quiet_internal_deliveries


def _access(path: str, status: int) -> logging.LogRecord:
    args = ("127.0.0.1:5000", "POST", path, "1.1", status)
    message = '%s - "%s %s HTTP/%s" %d'
    return logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, message, args, None)


@pytest.mark.parametrize(
    ("path", "status", "kept"),
    [
        ("/services/tasktide-reminders", 200, False),
        ("/services/tasktide-relay", 204, False),
        ("/services/tasktide-audit", 500, True),
        ("/api/alice/tasks", 201, True),
        ("/tasktide/default", 202, True),
    ],
)
def test_quiet_internal_deliveries_only_successful_function_calls_dropped(
    path: str, status: int, kept: bool
) -> None:
    assert quiet_internal_deliveries(_access(path, status)) is kept


def test_cli_dev_without_kustomize_one_line_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from tasktide.entrypoints.cli import main

    monkeypatch.setenv("TASKTIDE_DEV_MODE", "1")  # restored afterwards (cmd_dev sets it by default)
    monkeypatch.setenv("TASKTIDE_KUSTOMIZE", str(tmp_path / "no-kustomize"))
    assert main(["dev"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bash .ci/kustomize.sh" in err and "Traceback" not in err
