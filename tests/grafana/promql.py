"""Helpers shared by the grafana tests: read dashboards/rules and extract metric names from PromQL."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.metrics import MetricWrapperBase

from tasktide.observability import metrics

GRAFANA = Path(__file__).resolve().parents[2] / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
RULES = GRAFANA / "alerts" / "tasktide-rules.yaml"
RULE_TESTS = GRAFANA / "alerts" / "tests"

# Metrics that dashboards and alerts may use although tasktide.observability.metrics does not define them:
# they are
# exported by the platform. Keep each entry documented; test_platform_allowlist_every_entry_used fails on
# stale entries.
PLATFORM_METRICS: dict[str, str] = {
    "autoscaler_actual_pods": "Knative Serving autoscaler: pods allocated to a revision "
    "(labels namespace_name, configuration_name, revision_name, service_name)",
    "autoscaler_desired_pods": "Knative Serving autoscaler: pods the autoscaler wants for a revision",
    "up": "Prometheus: 1 when the last scrape of a target succeeded, 0 when it failed",
}

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
    "summary": ("", "_sum", "_count", "_created"),
}
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "by", "without", "on", "ignoring", "group_left", "group_right", "offset"}
    | {"inf", "nan", "Inf", "NaN", "start", "end"}
)
_STRING = re.compile(r""""(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`""")
_IDENT = re.compile(r"(?<![\w.:$])([A-Za-z_:][\w:]*)(\s*\()?")


def exported_series() -> dict[str, str]:
    """Series name -> family for every metric tasktide.observability.metrics defines (e.g. *_total ->
    counter family).
    """
    out: dict[str, str] = {}
    for value in vars(metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        for family in value.describe():
            for suffix in _SUFFIXES[family.type]:
                out[family.name + suffix] = family.name
    return out


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (functions, keywords, labels and durations stripped)."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\boffset\s+-?[\w$]+", " ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)  # Grafana variables
    return {m.group(1) for m in _IDENT.finditer(text) if m.group(2) is None and m.group(1) not in _KEYWORDS}


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def load_dashboard(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def iter_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels", []))


def _datasource_type(target: dict[str, Any], panel: dict[str, Any]) -> str:
    source = target.get("datasource") or panel.get("datasource") or {}
    return str(source.get("type", "prometheus")) if isinstance(source, dict) else "prometheus"


def prometheus_exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) for every Prometheus target of a dashboard (Loki targets are LogQL, skipped)."""
    out = []
    for panel in iter_panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if _datasource_type(target, panel) == "prometheus" and target.get("expr"):
                out.append((str(panel.get("title", "")), str(target["expr"])))
    return out


def rule_exprs() -> list[tuple[str, str]]:
    """(alert or record name, expr) for every rule in the rule file."""
    doc = yaml.safe_load(RULES.read_text())
    return [
        (str(rule.get("alert") or rule.get("record")), str(rule["expr"]))
        for group in doc["groups"]
        for rule in group["rules"]
    ]
