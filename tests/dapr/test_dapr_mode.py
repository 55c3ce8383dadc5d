"""Dapr mode's rendering (tasktide.dapr.selfhosted / tasktide.dapr.mode), without starting anything:
the self-hosted Configuration drops only the cluster-only parts, name resolution is loopback, and the
Dapr CLI's dapr.yaml agrees with the ports the resolver is rendered for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tasktide.dapr import selfhosted
from tasktide.dapr.mode import APPS, CLI_PORTS, DaprMode
from tasktide.settings import REPO_ROOT


def test_selfhosted_configuration_drops_mtls_tracing_keeps_scopes_and_metrics() -> None:
    config = selfhosted.configuration({"tasktide-api": 50021})
    spec = config["spec"]

    assert "mtls" not in spec and "tracing" not in spec
    assert "accessControl" not in spec  # identities come from mTLS: without Sentry every caller is anonymous
    assert spec["api"] == selfhosted.load_one("configuration.yaml")["spec"]["api"]
    assert spec["secrets"] == selfhosted.load_one("configuration.yaml")["spec"]["secrets"]
    assert spec["metrics"]["enabled"] is True
    assert spec["nameResolution"]["component"] == "kubernetes"  # never mDNS


def test_selfhosted_resolver_template_maps_each_app_to_its_loopback_port() -> None:
    template = selfhosted.resolver_template({"a": 1001, "b": 1002})

    assert template == (
        '{{if eq .ID "a"}}127.0.0.1:1001{{else if eq .ID "b"}}127.0.0.1:1002{{else}}127.0.0.1:1{{end}}'
    )


def test_selfhosted_statestore_uses_literal_pgx_dsn_not_secret_ref() -> None:
    doc = selfhosted.statestore("postgresql+psycopg://u:p@127.0.0.1:5/db")
    metadata = {item["name"]: item for item in doc["spec"]["metadata"]}

    assert metadata["connectionString"] == {
        "name": "connectionString",
        "value": "postgres://u:p@127.0.0.1:5/db",
    }
    assert metadata["tableName"]["value"] == "tasktide_dapr_state"


def test_dapr_mode_render_writes_every_resource_with_cron_override(tmp_path: Path) -> None:
    mode = DaprMode(
        tmp_path,
        database_url="postgresql://u:p@127.0.0.1:5/db",
        kafka="127.0.0.1:9",
        cron_schedule="@every 1s",
    )

    resources = mode.render({app: ports[1] for app, ports in CLI_PORTS.items()})

    docs = [yaml.safe_load(path.read_text()) for path in sorted(resources.path.iterdir())]
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert {
        ("Component", n) for n in ("statestore", "secretstore", "pubsub", "reminders-tick", "outbox-sweep")
    } <= kinds
    assert {("Subscription", n) for n in ("recurring", "audit", "notifier")} <= kinds
    crons = [d for d in docs if d["spec"].get("type") == "bindings.cron"]
    assert {item["value"] for d in crons for item in d["spec"]["metadata"] if item["name"] == "schedule"} == {
        "@every 1s"
    }
    pubsub = next(d for d in docs if d["metadata"]["name"] == "pubsub")
    assert {"name": "brokers", "value": "127.0.0.1:9"} in pubsub["spec"]["metadata"]


def test_dapr_cli_run_file_matches_cli_ports_and_targets() -> None:
    run = yaml.safe_load((REPO_ROOT / "dapr.yaml").read_text())

    apps = {app["appID"]: app for app in run["apps"]}
    assert set(apps) == set(APPS)
    for app_id, (app_port, internal) in CLI_PORTS.items():
        assert apps[app_id]["appPort"] == app_port
        assert apps[app_id]["daprInternalGRPCPort"] == internal
        assert apps[app_id].get("env", {}).get("FUNCTION_TARGET") == APPS[app_id]
        command = " ".join(apps[app_id]["command"])
        assert f"127.0.0.1:{app_port}" in command or f"127.0.0.1 --port {app_port}" in command
        if APPS[app_id] is not None:  # functions: the body-guarded ASGI app, as `tasktide serve` runs it
            assert "asgi_app_from_env()" in command and "FunctionWorker" in command
    assert run["common"]["configFilePath"] == ".local/dapr-run/config.yaml"


def _eventing(name: str) -> list[Any]:
    return [d for d in yaml.safe_load_all((REPO_ROOT / "eventing" / name).read_text()) if d]


def test_dapr_cron_bindings_mirror_ping_sources_name_and_target() -> None:
    pings = {p["metadata"]["name"]: p["spec"]["sink"]["ref"]["name"] for p in _eventing("ping-sources.yaml")}
    crons = {c["metadata"]["name"]: c["scopes"] for c in selfhosted.load("eventing/cron.yaml")}

    assert crons == {name: [target] for name, target in pings.items()}


def test_dapr_subscriptions_mirror_triggers_subscribers() -> None:
    triggers = {t["spec"]["subscriber"]["ref"]["name"] for t in _eventing("triggers.yaml")}
    subscriptions = selfhosted.load("eventing/subscriptions.yaml")
    pubsub = selfhosted.load_one("eventing/pubsub.yaml")

    assert {s["scopes"][0] for s in subscriptions} == triggers
    assert all(s["spec"]["pubsubname"] == pubsub["metadata"]["name"] for s in subscriptions)
    assert {s["scopes"][0] for s in subscriptions} <= set(pubsub["scopes"])


def test_dapr_mode_function_runs_the_containers_guarded_asgi_server() -> None:
    """Dapr mode serves a function as `tasktide serve` does: the body-guarded ASGI app on uvicorn workers."""
    from tasktide.dapr.mode import App
    from tasktide.entrypoints.serve import command

    argv = App("tasktide-audit", "audit").argv()
    served = command({"FUNCTION_TARGET": "audit"})
    assert "tasktide.functions._server:asgi_app_from_env()" in argv
    assert "tasktide.functions._server:app_from_env()" not in argv
    worker = served[served.index("--worker-class") + 1]
    assert argv[argv.index("--worker-class") + 1] == worker
    assert argv[argv.index("--config") + 1] == served[served.index("--config") + 1]
