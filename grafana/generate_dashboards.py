"""Generate the tasktide Grafana dashboards (grafana/dashboards/*.json) from one description.

Consumes: nothing but this file (metric names come from functions/tasktide/observability/metrics.py and are
checked by
tests/grafana/test_dashboards.py). Emits: overview.json and one dashboard per function.

    python grafana/generate_dashboards.py           # rewrite grafana/dashboards/*.json
    python grafana/generate_dashboards.py --check   # exit 1 if a committed file differs from the output
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

OUT_DIR = Path(__file__).resolve().parent / "dashboards"
PROM: dict[str, str] = {"type": "prometheus", "uid": "${datasource}"}
LOKI: dict[str, str] = {"type": "loki", "uid": "${loki}"}
RATE = "$__rate_interval"
FUNCTIONS = ("api", "agent", "recurring", "reminders", "notifier", "audit", "relay")

Panel = dict[str, Any]


class _Layout:
    """Places panels left to right, two per row (or full width), and numbers them."""

    def __init__(self) -> None:
        self.x = 0
        self.y = 0
        self.next_id = 1

    def place(self, panel: Panel, width: int = 12, height: int = 8) -> Panel:
        if self.x + width > 24:
            self.x, self.y = 0, self.y + height
        panel["gridPos"] = {"h": height, "w": width, "x": self.x, "y": self.y}
        panel["id"] = self.next_id
        self.next_id += 1
        self.x += width
        if self.x >= 24:
            self.x, self.y = 0, self.y + height
        return panel

    def row(self, title: str) -> Panel:
        if self.x:
            self.x, self.y = 0, self.y + 8
        panel: Panel = {
            "type": "row",
            "title": title,
            "collapsed": False,
            "panels": [],
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
            "id": self.next_id,
        }
        self.next_id += 1
        self.y += 1
        return panel


def _targets(queries: list[tuple[str, str]]) -> list[dict[str, Any]]:
    return [
        {"refId": chr(ord("A") + i), "datasource": PROM, "expr": expr, "legendFormat": legend, "range": True}
        for i, (expr, legend) in enumerate(queries)
    ]


def timeseries(title: str, queries: list[tuple[str, str]], unit: str, description: str = "") -> Panel:
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": PROM,
        "targets": _targets(queries),
        "fieldConfig": {
            "defaults": {"unit": unit, "min": 0, "custom": {"drawStyle": "line", "fillOpacity": 10}},
            "overrides": [],
        },
        "options": {
            "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]}
        },
    }


def stat(title: str, expr: str, unit: str, thresholds: list[tuple[float | None, str]]) -> Panel:
    return {
        "type": "stat",
        "title": title,
        "datasource": PROM,
        "targets": _targets([(expr, "")]),
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "thresholds": {
                    "mode": "absolute",
                    "steps": [{"value": value, "color": color} for value, color in thresholds],
                },
            },
            "overrides": [],
        },
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
    }


def logs(title: str, expr: str) -> Panel:
    return {
        "type": "logs",
        "title": title,
        "datasource": LOKI,
        "targets": [{"refId": "A", "datasource": LOKI, "expr": expr, "queryType": "range"}],
        "options": {
            "showTime": True,
            "wrapLogMessage": True,
            "prettifyLogMessage": False,
            "enableLogDetails": True,
        },
    }


def _quantiles(metric: str, by: str, selector: str, legend_prefix: str) -> list[tuple[str, str]]:
    group = f"{by}, le" if by else "le"
    return [
        (
            f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{selector}[{RATE}])))",
            f"{legend_prefix}p{round(q * 100)}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


def _variables(with_function_filter: bool) -> list[dict[str, Any]]:
    variables: list[dict[str, Any]] = [
        {
            "name": "datasource",
            "label": "Prometheus",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
        },
        {"name": "loki", "label": "Loki", "type": "datasource", "query": "loki", "current": {}},
    ]
    if with_function_filter:
        variables.append(
            {
                "name": "function",
                "label": "Function",
                "type": "custom",
                "query": ",".join(FUNCTIONS),
                "multi": True,
                "includeAll": True,
                "allValue": ".+",
                "current": {"text": "All", "value": "$__all"},
            }
        )
    return variables


def dashboard(uid: str, title: str, panels: list[Panel], *, function_filter: bool = False) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "tags": ["tasktide"],
        "timezone": "utc",
        "editable": False,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": _variables(function_filter)},
        "annotations": {"list": []},
        "links": [
            {
                "type": "dashboards",
                "title": "tasktide",
                "tags": ["tasktide"],
                "asDropdown": True,
                "icon": "external link",
            }
        ],
        "panels": panels,
    }


def overview() -> dict[str, Any]:
    layout = _Layout()
    sel = '{function=~"$function"}'
    panels: list[Panel] = [
        layout.place(
            stat(
                "Requests/s", f"sum(rate(tasktide_requests_total{sel}[{RATE}]))", "reqps", [(None, "green")]
            ),
            width=6,
            height=4,
        ),
        layout.place(
            stat(
                "Error ratio",
                f"sum(rate(tasktide_request_errors_total{sel}[{RATE}]))"
                f" / sum(rate(tasktide_requests_total{sel}[{RATE}]))",
                "percentunit",
                [(None, "green"), (0.01, "red")],
            ),
            width=6,
            height=4,
        ),
        layout.place(
            stat(
                "Outbox oldest event",
                "max(tasktide_outbox_oldest_age_seconds)",
                "s",
                [(None, "green"), (30, "orange"), (60, "red")],
            ),
            width=6,
            height=4,
        ),
        layout.place(
            stat(
                "Dead letters (range)",
                "sum(increase(tasktide_dead_letters_total[$__range]))",
                "short",
                [(None, "green"), (1, "red")],
            ),
            width=6,
            height=4,
        ),
        layout.row("Requests"),
        layout.place(
            timeseries(
                "Request rate per function",
                [(f"sum by (function) (rate(tasktide_requests_total{sel}[{RATE}]))", "{{function}}")],
                "reqps",
            )
        ),
        layout.place(
            timeseries(
                "Error ratio per function",
                [
                    (
                        f"sum by (function) (rate(tasktide_request_errors_total{sel}[{RATE}]))"
                        f" / sum by (function) (rate(tasktide_requests_total{sel}[{RATE}]))",
                        "{{function}}",
                    )
                ],
                "percentunit",
                "5xx responses and unhandled exceptions over requests; alert TasktideHighErrorRatio at 1%.",
            )
        ),
        layout.place(
            timeseries(
                "Latency p50 / p95 / p99 per function",
                _quantiles("tasktide_request_duration_seconds", "function", sel, "{{function}} "),
                "s",
                "Alert TasktideHighLatencyP99 at 500ms.",
            ),
            width=24,
        ),
        layout.row("Events"),
        layout.place(
            timeseries(
                "Events consumed per type and outcome",
                [
                    (
                        f"sum by (type, outcome) (rate(tasktide_events_consumed_total{sel}[{RATE}]))",
                        "{{type}} {{outcome}}",
                    )
                ],
                "ops",
            )
        ),
        layout.place(
            timeseries(
                "Events emitted per type",
                [(f"sum by (type) (rate(tasktide_events_emitted_total[{RATE}]))", "{{type}}")],
                "ops",
            )
        ),
        layout.place(
            timeseries(
                "Outbox oldest unpublished event",
                [
                    ("max(tasktide_outbox_oldest_age_seconds)", "oldest age"),
                ],
                "s",
                "Alert TasktideOutboxStale at 60s.",
            )
        ),
        layout.place(
            timeseries(
                "Dead letters per trigger",
                [(f"sum by (trigger) (increase(tasktide_dead_letters_total[{RATE}]))", "{{trigger}}")],
                "short",
            )
        ),
        layout.place(
            timeseries(
                "Reminder lateness p99",
                [
                    (
                        "histogram_quantile(0.99, sum by (le)"
                        f" (rate(tasktide_reminder_lateness_seconds_bucket[{RATE}])))",
                        "p99",
                    )
                ],
                "s",
                "Alert TasktideReminderLate at 90s.",
            )
        ),
        layout.place(
            timeseries(
                "Active Knative pods per Service",
                [
                    (
                        'sum by (service_name) (autoscaler_actual_pods{service_name=~"tasktide-.+"})',
                        "{{service_name}}",
                    )
                ],
                "short",
                "Knative autoscaler metric (platform allowlist in tests/grafana/test_dashboards.py).",
            )
        ),
    ]
    return dashboard("tasktide-overview", "tasktide / Overview", panels, function_filter=True)


def _function_common(layout: _Layout, function: str) -> list[Panel]:
    sel = f'{{function="{function}"}}'
    return [
        layout.row("Requests"),
        layout.place(
            timeseries(
                "Requests by status code",
                [(f"sum by (code) (rate(tasktide_requests_total{sel}[{RATE}]))", "{{code}}")],
                "reqps",
            )
        ),
        layout.place(
            timeseries(
                "Error ratio",
                [
                    (
                        f"sum(rate(tasktide_request_errors_total{sel}[{RATE}]))"
                        f" / sum(rate(tasktide_requests_total{sel}[{RATE}]))",
                        "errors",
                    )
                ],
                "percentunit",
            )
        ),
        layout.place(
            timeseries(
                "Latency p50 / p95 / p99", _quantiles("tasktide_request_duration_seconds", "", sel, ""), "s"
            )
        ),
        layout.place(
            timeseries(
                "Knative pods",
                [
                    (f'sum(autoscaler_actual_pods{{service_name="tasktide-{function}"}})', "actual"),
                    (f'sum(autoscaler_desired_pods{{service_name="tasktide-{function}"}})', "desired"),
                ],
                "short",
            )
        ),
    ]


def _events_consumed(layout: _Layout, function: str) -> Panel:
    return layout.place(
        timeseries(
            "Events consumed by type and outcome",
            [
                (
                    "sum by (type, outcome)"
                    f' (rate(tasktide_events_consumed_total{{function="{function}"}}[{RATE}]))',
                    "{{type}} {{outcome}}",
                )
            ],
            "ops",
        )
    )


def _lag(layout: _Layout, topic: str) -> Panel:
    return layout.place(
        timeseries(
            f"Kafka lag on {topic}",
            [(f'sum by (group) (tasktide_kafka_consumer_lag{{topic="{topic}"}})', "{{group}}")],
            "short",
        )
    )


def _logs(layout: _Layout, function: str) -> Panel:
    return layout.place(
        logs(
            "Logs",
            f'{{namespace="tasktide", function="{function}"}} | json | level=~"WARNING|ERROR|CRITICAL"',
        ),
        width=24,
        height=10,
    )


def function_dashboard(function: str) -> dict[str, Any]:
    layout = _Layout()
    panels = _function_common(layout, function)
    panels.append(layout.row(function.capitalize()))
    if function == "api":
        panels += [
            layout.place(
                timeseries(
                    "DB pool connections by state",
                    [("sum by (state) (tasktide_db_pool_connections)", "{{state}}")],
                    "short",
                )
            ),
            _lag(layout, "task-updates"),
        ]
    elif function == "agent":
        panels += [
            layout.place(
                timeseries(
                    "Chat turns by outcome",
                    [(f"sum by (outcome) (rate(tasktide_chat_turns_total[{RATE}]))", "{{outcome}}")],
                    "ops",
                    "no_model: no provider configured (503); failed: the provider or the tools failed (502).",
                )
            ),
            layout.place(
                timeseries(
                    "Chat turn latency p50 / p95 / p99",
                    _quantiles("tasktide_chat_turn_duration_seconds", "", "", ""),
                    "s",
                    "One turn: the model's requests and the MCP tool calls it made.",
                )
            ),
            layout.place(
                timeseries(
                    "MCP tool calls by tool",
                    [(f"sum by (tool) (rate(tasktide_chat_tool_calls_total[{RATE}]))", "{{tool}}")],
                    "ops",
                )
            ),
            layout.place(
                timeseries(
                    "Chat turn failure ratio",
                    [
                        (
                            f'sum(rate(tasktide_chat_turns_total{{outcome="failed"}}[{RATE}]))'
                            f" / sum(rate(tasktide_chat_turns_total[{RATE}]))",
                            "failed",
                        )
                    ],
                    "percentunit",
                )
            ),
        ]
    elif function == "recurring":
        panels += [
            _events_consumed(layout, function),
            layout.place(
                timeseries(
                    "Occurrences created",
                    [(f"sum(rate(tasktide_recurring_occurrences_created_total[{RATE}]))", "occurrences/s")],
                    "ops",
                )
            ),
            _lag(layout, "task-events"),
        ]
    elif function == "reminders":
        panels += [
            layout.place(
                timeseries(
                    "Reminders fired",
                    [(f"sum(rate(tasktide_reminders_fired_total[{RATE}]))", "fired/s")],
                    "ops",
                )
            ),
            layout.place(
                timeseries(
                    "Reminder lateness p50 / p95 / p99",
                    _quantiles("tasktide_reminder_lateness_seconds", "", "", ""),
                    "s",
                    "Delay between due time and firing; alert TasktideReminderLate: p99 > 90s.",
                )
            ),
            _events_consumed(layout, function),
        ]
    elif function == "notifier":
        panels += [
            layout.place(
                timeseries(
                    "Notifications by channel and outcome",
                    [
                        (
                            f"sum by (channel, outcome) (rate(tasktide_notifications_total[{RATE}]))",
                            "{{channel}} {{outcome}}",
                        )
                    ],
                    "ops",
                )
            ),
            layout.place(
                timeseries(
                    "Notification failure ratio by channel",
                    [
                        (
                            "sum by (channel)"
                            f' (rate(tasktide_notifications_total{{outcome="failed"}}[{RATE}]))'
                            f" / sum by (channel) (rate(tasktide_notifications_total[{RATE}]))",
                            "{{channel}}",
                        )
                    ],
                    "percentunit",
                )
            ),
            _events_consumed(layout, function),
            _lag(layout, "reminders"),
        ]
    elif function == "audit":
        panels += [
            _events_consumed(layout, function),
            layout.place(
                timeseries(
                    "Dead letters per trigger",
                    [(f"sum by (trigger) (increase(tasktide_dead_letters_total[{RATE}]))", "{{trigger}}")],
                    "short",
                )
            ),
            _lag(layout, "task-events"),
        ]
    elif function == "relay":
        panels += [
            layout.place(
                timeseries(
                    "Outbox backlog and oldest event",
                    [
                        ("max(tasktide_outbox_backlog)", "backlog (rows)"),
                        ("max(tasktide_outbox_oldest_age_seconds)", "oldest age (s)"),
                    ],
                    "short",
                )
            ),
            layout.place(
                timeseries(
                    "Publish latency p50 / p95 / p99",
                    _quantiles("tasktide_relay_publish_seconds", "", "", ""),
                    "s",
                )
            ),
            layout.place(
                timeseries(
                    "Events emitted by type and topic",
                    [
                        (
                            f"sum by (type, topic) (rate(tasktide_events_emitted_total[{RATE}]))",
                            "{{type}} -> {{topic}}",
                        )
                    ],
                    "ops",
                )
            ),
            layout.place(
                timeseries(
                    "Kafka consumer lag by group and topic",
                    [("sum by (group, topic) (tasktide_kafka_consumer_lag)", "{{group}} {{topic}}")],
                    "short",
                )
            ),
        ]
    panels.append(_logs(layout, function))
    return dashboard(f"tasktide-{function}", f"tasktide / {function}", panels)


def build() -> dict[str, dict[str, Any]]:
    """File name -> dashboard model."""
    out = {"overview.json": overview()}
    out.update({f"{function}.json": function_dashboard(function) for function in FUNCTIONS})
    return out


def render(model: dict[str, Any]) -> str:
    return json.dumps(model, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail if committed dashboards are stale")
    args = parser.parse_args(argv)
    stale = []
    for name, model in build().items():
        path = OUT_DIR / name
        text = render(model)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(
            f"stale dashboards (run python grafana/generate_dashboards.py): {', '.join(stale)}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
