"""promtool validates the alert rules, runs their unit tests, and parses every dashboard query.

promtool comes from `.ci/prometheus.sh` (Debian's prometheus package). Without it these tests skip locally
and fail under CI (env CI=true).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from .promql import RULE_TESTS, RULES, dashboard_files, load_dashboard, prometheus_exprs

# Values Grafana substitutes before a query reaches Prometheus.
_GRAFANA_VARS = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "$function": "api",
}


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        message = "promtool not found on PATH (run .ci/prometheus.sh)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=cwd, check=False)


def test_promtool_check_rules_rule_file_valid(promtool: str) -> None:
    result = _run(promtool, "check", "rules", str(RULES))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_promtool_test_rules_unit_tests_pass(promtool: str) -> None:
    tests = sorted(RULE_TESTS.glob("*.yaml"))

    assert tests
    result = _run(promtool, "test", "rules", *map(str, tests))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules_broken_threshold_fails(promtool: str, tmp_path: Path) -> None:
    """The unit tests are not vacuous: loosening the error-ratio threshold makes them fail."""
    rules = RULES.read_text().replace(") > 0.01", ") > 0.5", 1)
    assert rules != RULES.read_text()
    (tmp_path / "tasktide-rules.yaml").write_text(rules)
    (tmp_path / "tests").mkdir()
    for path in RULE_TESTS.glob("*.yaml"):
        shutil.copy(path, tmp_path / "tests" / path.name)

    result = _run(promtool, "test", "rules", *map(str, sorted((tmp_path / "tests").glob("*.yaml"))))

    assert result.returncode != 0
    assert "TasktideHighErrorRatio" in result.stdout + result.stderr


def _substitute(expr: str) -> str:
    for name, value in _GRAFANA_VARS.items():
        expr = expr.replace(name, value)
    assert "$" not in re.sub(r'"[^"]*"', "", expr), f"unknown Grafana variable in {expr}"
    return expr


def test_promtool_dashboard_queries_parse_as_promql(promtool: str, tmp_path: Path) -> None:
    rules = [
        {"record": f"dashboard:{path.stem}:q{i}", "expr": _substitute(expr)}
        for path in dashboard_files()
        for i, (_, expr) in enumerate(prometheus_exprs(load_dashboard(path)))
    ]
    rule_file = tmp_path / "dashboard-queries.yaml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))

    result = _run(promtool, "check", "rules", str(rule_file))

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules)} rules found" in result.stdout + result.stderr
