"""The function containers' gunicorn settings and hooks: the app is built before the fork, the relay starts
its outbox listener when a worker starts, the master's live gauges are dropped."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasktide.functions import _gunicorn_conf, _kit
from tasktide.observability import metrics


def _count_builds(monkeypatch: pytest.MonkeyPatch, *, fail: bool = False) -> list[str]:
    built: list[str] = []

    def services() -> object:
        built.append("services")
        if fail:
            raise ConnectionError("database not up yet")
        return object()

    monkeypatch.setattr(_kit, "services", services)
    return built


def test_post_worker_init_relay_target_builds_services_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUNCTION_TARGET", "relay")
    built = _count_builds(monkeypatch)
    _gunicorn_conf.post_worker_init(object())
    assert built == ["services"]


def test_post_worker_init_other_target_builds_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUNCTION_TARGET", "audit")
    built = _count_builds(monkeypatch)
    _gunicorn_conf.post_worker_init(object())
    assert built == []


def test_post_worker_init_database_down_logs_and_keeps_worker(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("FUNCTION_TARGET", "relay")
    _count_builds(monkeypatch, fail=True)
    _gunicorn_conf.post_worker_init(object())  # does not raise: the worker stays up
    assert "outbox listener not started yet" in caplog.text


@pytest.fixture(autouse=True)
def collector_restored() -> Iterator[None]:
    yield
    gc.unfreeze()
    gc.enable()


def test_gunicorn_conf_builds_the_app_in_the_master_before_forking() -> None:
    assert _gunicorn_conf.preload_app is True


def test_when_ready_freezes_the_built_app_and_turns_collection_back_on() -> None:
    gc.disable()  # as `tasktide serve` runs the build
    _gunicorn_conf.when_ready(object())
    assert gc.isenabled()
    assert gc.get_freeze_count() > 0


def test_when_ready_multiprocess_drops_the_masters_live_gauges(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    dropped: list[int] = []
    monkeypatch.setattr(metrics, "mark_process_dead", dropped.append)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    _gunicorn_conf.when_ready(object())
    assert dropped == [os.getpid()]


def test_when_ready_single_process_drops_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    dropped: list[int] = []
    monkeypatch.setattr(metrics, "mark_process_dead", dropped.append)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    _gunicorn_conf.when_ready(object())
    assert dropped == []
