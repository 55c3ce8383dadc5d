"""Dashboards, alert rules and log shipping reference only metrics and fields tasktide really exports."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from .promql import (
    DASHBOARDS,
    GRAFANA,
    PLATFORM_METRICS,
    RULE_TESTS,
    dashboard_files,
    exported_series,
    iter_panels,
    load_dashboard,
    metric_names,
    prometheus_exprs,
    rule_exprs,
)

EXPECTED_DASHBOARDS = {
    "overview.json",
    "api.json",
    "agent.json",
    "recurring.json",
    "reminders.json",
    "notifier.json",
    "audit.json",
    "relay.json",
}


def _unknown(exprs: list[tuple[str, str]]) -> list[str]:
    known = exported_series().keys() | PLATFORM_METRICS.keys()
    return [f"{where}: {name}" for where, expr in exprs for name in sorted(metric_names(expr) - known)]


def test_metric_names_complex_expression_extracts_only_metrics() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (function, le) (rate(tasktide_request_duration_seconds_bucket"
        '{function=~"$function", code!="5xx"}[$__rate_interval]))) / on (function) group_left (code) '
        'label_replace(up{job="a"}, "service", "$1", "job", "(.+)") > 1e-9 '
        "unless tasktide_dead_letters_total offset 10m and bool count_over_time(foo:bar[5m:1m])"
    )

    assert metric_names(expr) == {
        "tasktide_request_duration_seconds_bucket",
        "up",
        "tasktide_dead_letters_total",
        "foo:bar",
    }


def test_exported_series_counter_and_histogram_map_to_suffixed_names() -> None:
    series = exported_series()

    assert series["tasktide_requests_total"] == "tasktide_requests"
    assert series["tasktide_request_duration_seconds_bucket"] == "tasktide_request_duration_seconds"
    assert series["tasktide_outbox_backlog"] == "tasktide_outbox_backlog"
    assert "tasktide_requests" not in series  # a counter's bare family name selects nothing


def test_dashboards_directory_contains_overview_and_one_per_function() -> None:
    assert {path.name for path in dashboard_files()} == EXPECTED_DASHBOARDS


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_dashboard_every_prometheus_target_uses_exported_metric(path: Path) -> None:
    exprs = prometheus_exprs(load_dashboard(path))

    assert exprs, f"{path.name} has no Prometheus queries"
    assert _unknown(exprs) == []


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_dashboard_structure_unique_ids_and_provisioned_datasources(path: Path) -> None:
    dashboard = load_dashboard(path)
    panels = list(iter_panels(dashboard["panels"]))
    ids = [panel["id"] for panel in panels]
    sources: set[str] = set()
    for panel in panels:
        for target in panel.get("targets", []):
            sources.add(target["datasource"]["uid"])

    assert dashboard["uid"].startswith("tasktide-")
    assert len(ids) == len(set(ids))
    assert sources <= {"${datasource}", "${loki}"}
    variables = {var["name"]: var for var in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["loki"]["query"] == "loki"


@pytest.mark.parametrize("path", sorted(set(dashboard_files()) - {DASHBOARDS / "overview.json"}), ids=str)
def test_function_dashboard_has_logs_panel_filtered_by_its_function(path: Path) -> None:
    function = path.stem
    logs = [panel for panel in iter_panels(load_dashboard(path)["panels"]) if panel["type"] == "logs"]

    assert len(logs) == 1
    assert f'function="{function}"' in logs[0]["targets"][0]["expr"]


def test_overview_dashboard_covers_required_signals() -> None:
    queries = prometheus_exprs(load_dashboard(DASHBOARDS / "overview.json"))
    names = {name for _, expr in queries for name in metric_names(expr)}
    exprs = " ".join(expr for _, expr in queries)

    assert names >= {
        "tasktide_requests_total",
        "tasktide_request_errors_total",
        "tasktide_request_duration_seconds_bucket",
        "tasktide_events_consumed_total",
        "tasktide_events_emitted_total",
        "tasktide_outbox_oldest_age_seconds",
        "tasktide_dead_letters_total",
        "tasktide_reminder_lateness_seconds_bucket",
        "autoscaler_actual_pods",
    }
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, sum by (function, le)" in exprs


def test_alert_rules_every_expr_uses_exported_metric() -> None:
    exprs = rule_exprs()

    assert exprs
    assert _unknown(exprs) == []


def test_platform_allowlist_every_entry_used_and_documented() -> None:
    used = {
        name
        for path in dashboard_files()
        for _, expr in prometheus_exprs(load_dashboard(path))
        for name in metric_names(expr)
    } | {name for _, expr in rule_exprs() for name in metric_names(expr)}

    assert PLATFORM_METRICS.keys() <= used
    assert all(description.strip() for description in PLATFORM_METRICS.values())


def test_alert_rule_tests_every_alert_has_firing_and_quiet_case() -> None:
    alerts = {name for name, _ in rule_exprs()}
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS.glob("*.yaml"):
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else quiet).add(case["alertname"])

    assert alerts
    assert firing == alerts
    assert quiet == alerts


def _load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("generate_dashboards", GRAFANA / "generate_dashboards.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generate_dashboards_check_committed_files_up_to_date() -> None:
    assert _load_generator().main(["--check"]) == 0


def test_provisioning_datasources_match_dashboard_variables() -> None:
    doc = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "datasources.yaml").read_text())
    by_type = {source["type"]: source for source in doc["datasources"]}

    assert by_type["prometheus"]["uid"] == "prometheus"
    assert by_type["loki"]["uid"] == "loki"
    dashboards = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "dashboards.yaml").read_text())
    assert dashboards["providers"][0]["type"] == "file"


def _alloy_block(text: str, name: str) -> str:
    """The body of the first ``name {`` block of an Alloy file (braces balanced; no Alloy parser here)."""
    start = text.index(name + " {") + len(name) + 2
    depth, end = 1, start
    while depth:
        depth += {"{": 1, "}": -1}.get(text[end], 0)
        end += 1
    return text[start : end - 1]


def _alloy_keys(block: str) -> set[str]:
    return set(re.findall(r"^\s*(\w+)\s*=", block, re.MULTILINE))


def test_alloy_pipeline_extracts_log_fields_tasktide_emits() -> None:
    text = (GRAFANA / "loki" / "config.alloy").read_text()
    process = _alloy_block(text, 'loki.process "tasktide"')

    assert {"level", "function", "trace_id"} <= _alloy_keys(_alloy_block(process, "expressions ="))
    assert _alloy_keys(_alloy_block(_alloy_block(process, "stage.labels"), "values =")) == {
        "level",
        "function",
    }
    assert "trace_id" in _alloy_keys(
        _alloy_block(_alloy_block(process, "stage.structured_metadata"), "values =")
    )
    assert 'source            = "ts"' in _alloy_block(process, "stage.timestamp")
    assert "forward_to = [loki.process.tasktide.receiver]" in text  # the source feeds this pipeline
    assert "listen" not in text.lower().replace("listenport", "")  # the chart owns the port
