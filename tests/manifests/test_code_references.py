"""The code and the manifests agree: every secret the code reads is declared, every env var a Service sets is
one the code reads, and every env var a Service needs on a cluster is set."""

from __future__ import annotations

import ast
import json

import pytest
import yaml

from tasktide.settings import Settings

from .corpus import REPO_ROOT, Manifest, from_origin, of_kind

PACKAGE = REPO_ROOT / "functions" / "tasktide"
SERVICES = of_kind(from_origin("knative/base"), "Service", "serving.knative.dev")
PLATFORM_ENV = {
    "FUNCTION_TARGET",
    "FUNCTION_SOURCE",
    "PORT",
    "PROMETHEUS_MULTIPROC_DIR",
    "DAPR_HEALTH_TIMEOUT",
}


def secrets_read_by_code() -> set[str]:
    """String literals passed as the secret name to `read_secret(store, NAME, ...)` or `get_secret(NAME)`."""
    names: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            position = {"read_secret": 1, "get_secret": 0}.get(func)
            if position is None or len(node.args) <= position:
                continue
            arg = node.args[position]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names.add(arg.value)
    return names


def settings_env() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names.add(alias if isinstance(alias, str) else f"TASKTIDE_{name.upper()}")
    return names


def env_of(service: Manifest) -> dict[str, str]:
    container = service.doc["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: str(e.get("value", "")) for e in container.get("env", [])}


def test_code_secrets_found_by_the_scan() -> None:
    assert secrets_read_by_code() >= {"database-url", "jwt-secret", "webhook-signing-secret", "smtp-password"}


def test_code_secrets_declared_in_cluster_secret_and_local_file() -> None:
    example = yaml.safe_load((REPO_ROOT / "dapr" / "secret.example.yaml").read_text())
    local = json.loads((REPO_ROOT / "dapr" / "local" / "secrets.json").read_text())
    missing_cluster = secrets_read_by_code() - set(example["stringData"])
    missing_local = secrets_read_by_code() - set(local)
    assert not missing_cluster, f"add to dapr/secret.example.yaml: {sorted(missing_cluster)}"
    assert not missing_local, f"add to dapr/local/secrets.json: {sorted(missing_local)}"


@pytest.mark.parametrize("service", SERVICES, ids=[s.name for s in SERVICES])
def test_service_env_names_are_read_by_the_code(service: Manifest) -> None:
    unknown = set(env_of(service)) - settings_env() - PLATFORM_ENV
    assert not unknown, f"{service.name} sets env the code never reads: {sorted(unknown)}"


@pytest.mark.parametrize("service", SERVICES, ids=[s.name for s in SERVICES])
def test_service_env_needed_on_a_cluster_is_set(service: Manifest) -> None:
    env = env_of(service)
    target = env.get("FUNCTION_TARGET")
    needed = {"TASKTIDE_SECRET_STORE"}
    if target != "audit" and env.get("TASKTIDE_ROLE") != "agent":  # the agent writes through the API
        needed.add("TASKTIDE_KAFKA_BOOTSTRAP")  # publishes its outbox right after each commit
    if target == "notifier":
        needed |= {"TASKTIDE_SMTP_HOST", "TASKTIDE_SMTP_PORT", "TASKTIDE_SMTP_FROM"}
    if target is not None:
        assert (PACKAGE / "functions" / f"{target}.py").exists()
    assert needed <= set(env), f"{service.name} misses {sorted(needed - set(env))}"


def test_settings_env_prefix_matches_documented_names() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    for name in ("TASKTIDE_HOST", "TASKTIDE_PORT", "TASKTIDE_DATABASE_URL", "TASKTIDE_KAFKA_BOOTSTRAP"):
        assert name in settings_env() and name in readme
