"""The function containers' gunicorn hooks: the relay starts its outbox listener when a worker starts."""

from __future__ import annotations

import pytest

from tasktide.functions import _gunicorn_conf, _kit


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
