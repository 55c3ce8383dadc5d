"""House rules for the Knative Services and secrets: hardening, probes, scaling, metrics, env, overlays.

Consumes the built kustomizations (base, dev and prod overlays), the Dapr files and
``dapr/local/secrets.json``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from .corpus import REPO_ROOT, Manifest, built, from_origin, of_kind, raw

SERVICES = of_kind(built(), "Service", "serving.knative.dev")
IMAGE = "ghcr.io/tasktide/tasktide"
SECRET_NAMES = {"database-url", "jwt-secret", "webhook-signing-secret", "smtp-password", "model-api-key"}


def _ids(manifests: list[Manifest]) -> list[str]:
    return [m.label for m in manifests]


def _template(service: Manifest) -> dict[str, Any]:
    template: dict[str, Any] = service.doc["spec"]["template"]
    return template


def _container(service: Manifest) -> dict[str, Any]:
    (container,) = _template(service)["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def _env(service: Manifest) -> dict[str, Any]:
    return {item["name"]: item for item in _container(service).get("env", [])}


def _annotation(service: Manifest, key: str) -> str:
    return str(_template(service)["metadata"]["annotations"][key])


def _service(origin: str, name: str) -> Manifest:
    (service,) = [m for m in of_kind(from_origin(origin), "Service", "serving.knative.dev") if m.name == name]
    return service


def _is_api(service: Manifest) -> bool:
    return service.name == "tasktide-api"


@pytest.mark.parametrize("service", SERVICES, ids=_ids(SERVICES))
def test_service_security_context_hardened(service: Manifest) -> None:
    context = _container(service)["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"]["drop"] == ["ALL"]
    assert context["seccompProfile"]["type"] == "RuntimeDefault"


@pytest.mark.parametrize("service", SERVICES, ids=_ids(SERVICES))
def test_service_read_only_root_has_tmp_empty_dir(service: Manifest) -> None:
    volumes = {v["name"]: v for v in _template(service)["spec"]["volumes"]}
    (mount,) = [m for m in _container(service)["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert "emptyDir" in volumes[mount["name"]]


@pytest.mark.parametrize("service", SERVICES, ids=_ids(SERVICES))
def test_service_probes_use_health_endpoints(service: Manifest) -> None:
    container = _container(service)
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == ("/readyz" if _is_api(service) else "/healthz")
    assert container["ports"] == [{"name": "http1", "containerPort": 8080}]


@pytest.mark.parametrize("service", SERVICES, ids=_ids(SERVICES))
def test_service_resources_requests_within_limits(service: Manifest) -> None:
    resources = _container(service)["resources"]
    assert set(resources) == {"requests", "limits"}
    assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}


@pytest.mark.parametrize("service", SERVICES, ids=_ids(SERVICES))
def test_service_autoscaling_and_concurrency_set(service: Manifest) -> None:
    spec = _template(service)["spec"]
    target = int(_annotation(service, "autoscaling.knative.dev/target"))
    assert 0 < target <= spec["containerConcurrency"]
    assert int(_annotation(service, "autoscaling.knative.dev/min-scale")) <= int(
        _annotation(service, "autoscaling.knative.dev/max-scale")
    )
    assert 0 < spec["timeoutSeconds"] <= 600


@pytest.mark.parametrize("service", SERVICES, ids=_ids(SERVICES))
def test_service_prometheus_scrape_annotations_point_at_metrics(service: Manifest) -> None:
    assert _annotation(service, "prometheus.io/scrape") == "true"
    assert _annotation(service, "prometheus.io/port") == "8080"
    assert _annotation(service, "prometheus.io/path") == "/metrics"


@pytest.mark.parametrize("service", SERVICES, ids=_ids(SERVICES))
def test_service_env_secrets_never_inline(service: Manifest) -> None:
    env = _env(service)
    assert env["TASKTIDE_SECRET_STORE"]["value"] == "secretstore"
    assert "TASKTIDE_LOG_LEVEL" in env
    forbidden = {
        "TASKTIDE_DATABASE_URL",
        "TASKTIDE_JWT_SECRET",
        "TASKTIDE_SMTP_PASSWORD",
        "TASKTIDE_WEBHOOK_SECRET",
    }
    assert not forbidden & set(env)
    assert all("valueFrom" not in item for item in env.values())


@pytest.mark.parametrize("service", SERVICES, ids=_ids(SERVICES))
def test_service_function_target_and_kafka_env_match_role(service: Manifest) -> None:
    env = _env(service)
    if _is_api(service):
        assert "FUNCTION_TARGET" not in env
        assert "command" not in _container(service)  # the image entrypoint `tasktide serve` picks uvicorn
    elif service.name == "tasktide-agent":
        assert "FUNCTION_TARGET" not in env and env["TASKTIDE_ROLE"]["value"] == "agent"
        assert "command" not in _container(service)  # `tasktide serve` runs the agent app for the role
        assert _annotation(service, "autoscaling.knative.dev/min-scale") == "0"
        assert service.doc["metadata"]["labels"]["networking.knative.dev/visibility"] == "cluster-local"
    else:
        assert env["FUNCTION_TARGET"]["value"] == service.name.removeprefix("tasktide-")
        # Functions scale to zero; prod keeps one relay warm (it publishes on NOTIFY, not only per sweep).
        warm = service.name == "tasktide-relay" and service.origin == "knative/overlays/prod"
        assert _annotation(service, "autoscaling.knative.dev/min-scale") == ("1" if warm else "0")
        assert service.doc["metadata"]["labels"]["networking.knative.dev/visibility"] == "cluster-local"
    # Every Service that writes outbox events publishes right after its commit; audit only reads events,
    # the agent writes through the API's tools.
    needs_kafka = service.name not in ("tasktide-audit", "tasktide-agent")
    assert ("TASKTIDE_KAFKA_BOOTSTRAP" in env) is needs_kafka


@pytest.mark.parametrize(
    ("origin", "tag", "api_min_scale", "log_level"),
    [
        ("knative/base", "latest", "0", "INFO"),
        ("knative/overlays/dev", "dev", "0", "DEBUG"),
        ("knative/overlays/prod", "0.1.0", "1", "INFO"),
    ],
)
def test_overlay_built_sets_tag_scale_and_log_level(
    origin: str, tag: str, api_min_scale: str, log_level: str
) -> None:
    services = of_kind(from_origin(origin), "Service", "serving.knative.dev")
    assert len(services) == 7
    assert {_container(s)["image"] for s in services} == {f"{IMAGE}:{tag}"}
    assert _annotation(_service(origin, "tasktide-api"), "autoscaling.knative.dev/min-scale") == api_min_scale
    assert {_env(s)["TASKTIDE_LOG_LEVEL"]["value"] for s in services} == {log_level}


def test_overlay_prod_resources_exceed_dev() -> None:
    def memory_mi(origin: str, name: str) -> int:
        return int(_container(_service(origin, name))["resources"]["limits"]["memory"].removesuffix("Mi"))

    for name in ("tasktide-api", "tasktide-relay"):
        assert memory_mi("knative/overlays/prod", name) > memory_mi("knative/overlays/dev", name)


def test_overlay_patch_keeps_base_container_fields() -> None:
    base, prod = (
        _service("knative/base", "tasktide-notifier"),
        _service("knative/overlays/prod", "tasktide-notifier"),
    )
    for field in ("securityContext", "readinessProbe", "livenessProbe", "volumeMounts", "env"):
        assert _container(prod)[field] == _container(base)[field]


def test_secret_example_has_placeholders_for_every_app_secret() -> None:
    secrets = {m.name: m for m in of_kind(raw(), "Secret")}
    assert set(secrets) == {"tasktide-secrets", "tasktide-dapr-api-token"}  # the second: test_security.py
    secret = secrets["tasktide-secrets"]
    assert secret.origin == "dapr/secret.example.yaml"
    assert secret.name == "tasktide-secrets"
    assert set(secret.doc["stringData"]) >= SECRET_NAMES
    assert all("CHANGE-ME" in value for value in secret.doc["stringData"].values())


def test_local_secrets_file_flat_dev_placeholders() -> None:
    secrets = json.loads((REPO_ROOT / "dapr" / "local" / "secrets.json").read_text(encoding="utf-8"))
    assert set(secrets) == SECRET_NAMES
    assert all(isinstance(value, str) and value for value in secrets.values())
    (store,) = [m for m in raw() if m.origin == "dapr/local/secretstore.yaml"]
    metadata = {item["name"]: item["value"] for item in store.doc["spec"]["metadata"]}
    assert store.doc["spec"]["type"] == "secretstores.local.file"
    assert (REPO_ROOT / metadata["secretsFile"]).is_file()


def test_dapr_configuration_mtls_tracing_metrics_enabled() -> None:
    (config,) = of_kind(from_origin("dapr"), "Configuration", "dapr.io")
    spec = config.doc["spec"]
    assert config.name == "tasktide"
    assert spec["mtls"]["enabled"] is True
    assert 0 < float(spec["tracing"]["samplingRate"]) <= 1
    assert spec["metrics"]["enabled"] is True


def test_dapr_cluster_components_types_and_names() -> None:
    components = {m.name: m.doc["spec"]["type"] for m in of_kind(from_origin("dapr"), "Component", "dapr.io")}
    assert components == {"statestore": "state.postgresql", "secretstore": "secretstores.kubernetes"}
