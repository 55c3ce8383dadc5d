"""Tests for tasktide.observability.metrics: names, the observe helpers, and single- vs multi-process
rendering.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

import tasktide
from tasktide.observability import metrics

EXPECTED_FAMILIES = {
    "tasktide_requests",
    "tasktide_request_errors",
    "tasktide_retention_deleted",
    "tasktide_reminders_skipped",
    "tasktide_request_duration_seconds",
    "tasktide_events_consumed",
    "tasktide_events_emitted",
    "tasktide_outbox_backlog",
    "tasktide_outbox_oldest_age_seconds",
    "tasktide_relay_publish_seconds",
    "tasktide_reminder_lateness_seconds",
    "tasktide_reminders_fired",
    "tasktide_recurring_occurrences_created",
    "tasktide_notifications",
    "tasktide_dead_letters",
    "tasktide_dead_letter_failures",
    "tasktide_db_pool_connections",
    "tasktide_kafka_consumer_lag",
    "tasktide_chat_turns",
    "tasktide_chat_turn_duration_seconds",
    "tasktide_chat_tool_calls",
}


def _sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def _samples(payload: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(payload.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_family_names_defined_module_matches_contract() -> None:
    assert metrics.family_names() == EXPECTED_FAMILIES


def test_render_single_process_includes_every_metric_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    # labelled metrics only appear once a child exists
    metrics.REQUESTS.labels(function="render-test", code="200").inc()
    metrics.REQUEST_ERRORS.labels(function="render-test").inc(0)
    metrics.REQUEST_DURATION.labels(function="render-test").observe(0.01)
    metrics.EVENTS_CONSUMED.labels(function="render-test", type="t", outcome="ok").inc()
    metrics.EVENTS_EMITTED.labels(type="t", topic="task-events").inc()
    metrics.NOTIFICATIONS.labels(channel="in_app", outcome="sent").inc()
    metrics.DEAD_LETTERS.labels(trigger="render-test").inc(0)
    metrics.DB_POOL.labels(state="idle").set(1)
    metrics.KAFKA_CONSUMER_LAG.labels(group="g", topic="task-events").set(0)

    payload, content_type = metrics.render()

    assert content_type.startswith("text/plain")
    families = {family.name for family in text_string_to_metric_families(payload.decode())}
    assert families >= EXPECTED_FAMILIES
    samples = _samples(payload)
    assert samples[("tasktide_requests_total", (("code", "200"), ("function", "render-test")))] >= 1


def test_observe_block_succeeds_counts_200_and_duration() -> None:
    before = _sample("tasktide_requests_total", {"function": "obs-ok", "code": "200"})
    before_count = _sample("tasktide_request_duration_seconds_count", {"function": "obs-ok"})

    with metrics.observe("obs-ok"):
        pass

    assert _sample("tasktide_requests_total", {"function": "obs-ok", "code": "200"}) == before + 1
    assert _sample("tasktide_request_duration_seconds_count", {"function": "obs-ok"}) == before_count + 1
    assert _sample("tasktide_request_errors_total", {"function": "obs-ok"}) == 0


def test_observe_block_raises_counts_500_error_and_reraises() -> None:
    with pytest.raises(RuntimeError, match="boom"), metrics.observe("obs-fail"):
        raise RuntimeError("boom")

    assert _sample("tasktide_requests_total", {"function": "obs-fail", "code": "500"}) == 1
    assert _sample("tasktide_requests_total", {"function": "obs-fail", "code": "200"}) == 0
    assert _sample("tasktide_request_errors_total", {"function": "obs-fail"}) == 1
    assert _sample("tasktide_request_duration_seconds_count", {"function": "obs-fail"}) == 1


def test_observe_request_caller_sets_code_counts_that_code() -> None:
    with metrics.observe_request("obs-code") as outcome:
        outcome.code = "404"

    assert _sample("tasktide_requests_total", {"function": "obs-code", "code": "404"}) == 1
    assert _sample("tasktide_request_errors_total", {"function": "obs-code"}) == 0


def test_observe_request_caller_sets_503_counts_error() -> None:
    with metrics.observe_request("obs-503") as outcome:
        outcome.code = "503"

    assert _sample("tasktide_requests_total", {"function": "obs-503", "code": "503"}) == 1
    assert _sample("tasktide_request_errors_total", {"function": "obs-503"}) == 1


def test_observe_request_raises_after_code_set_keeps_caller_code() -> None:
    with pytest.raises(ValueError), metrics.observe_request("obs-422") as outcome:
        outcome.code = "422"
        raise ValueError("bad input")

    assert _sample("tasktide_requests_total", {"function": "obs-422", "code": "422"}) == 1
    assert _sample("tasktide_requests_total", {"function": "obs-422", "code": "500"}) == 0


_CHILD = textwrap.dedent(
    """
    import sys
    from tasktide.observability import metrics

    metrics.REMINDERS_FIRED.inc()
    with metrics.observe("mp"):
        pass
    metrics.OUTBOX_BACKLOG.set(float(sys.argv[1]))
    metrics.DB_POOL.labels(state="in_use").set(float(sys.argv[1]))
    """
)

_RENDER = textwrap.dedent(
    """
    import sys
    from tasktide.observability import metrics

    payload, _ = metrics.render()
    sys.stdout.buffer.write(payload)
    """
)


def _run(code: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, check=True, timeout=120
    )


def test_render_multiprocess_two_writers_sums_counters(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)
    package_root = str(Path(tasktide.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)

    _run(_CHILD, env, "3")
    _run(_CHILD, env, "7")
    rendered = _run(_RENDER, env).stdout

    samples = _samples(rendered)
    assert samples[("tasktide_reminders_fired_total", ())] == 2
    assert samples[("tasktide_requests_total", (("code", "200"), ("function", "mp")))] == 2
    assert samples[("tasktide_request_duration_seconds_count", (("function", "mp"),))] == 2
    # livemax: the larger of the two writers; livesum: their sum
    assert samples[("tasktide_outbox_backlog", ())] == 7
    assert samples[("tasktide_db_pool_connections", (("state", "in_use"),))] == 10
    assert any(p.suffix == ".db" for p in tmp_path.iterdir())
