"""Every port a tasktide pod uses is distinct: the app container's, Knative's queue-proxy's and the Dapr
sidecar's (from its dapr.io/* annotations, daprd's defaults otherwise).

Consumes the built Knative Services (base and overlays). daprd's default metrics port, 9090, is the
queue-proxy's autoscaler metrics port, so every Service must move it with `dapr.io/metrics-port`.
"""

from __future__ import annotations

from typing import Any

import pytest

from .corpus import Manifest, built, of_kind

# knative.dev/serving pkg/apis/networking: queue-proxy ports the user container may not take.
QUEUE_PROXY_PORTS = {
    "queue-proxy http": 8012,
    "queue-proxy https": 8112,
    "queue-proxy admin": 8022,
    "queue-proxy autoscaler metrics": 9090,
    "queue-proxy user metrics": 9091,
    "queue-proxy profiling": 8008,
}
# daprd sidecar ports as the Dapr injector sets them, annotation -> default.
DAPR_PORTS = {
    "dapr.io/http-port": 3500,
    "dapr.io/grpc-port": 50001,
    "dapr.io/internal-grpc-port": 50002,
    "dapr.io/public-port": 3501,
    "dapr.io/metrics-port": 9090,
}
DAPR_PROFILE_PORT = 7777  # only with dapr.io/enable-profiling

SERVICES = of_kind(built(), "Service", "serving.knative.dev")


def pod_ports(service: Manifest) -> dict[str, int]:
    template: dict[str, Any] = service.doc["spec"]["template"]
    annotations: dict[str, str] = template.get("metadata", {}).get("annotations", {})
    ports = dict(QUEUE_PROXY_PORTS)
    for container in template["spec"]["containers"]:
        for port in container.get("ports", []):
            ports[f"{container['name']} {port.get('name', '')}"] = int(port["containerPort"])
    if annotations.get("dapr.io/enabled") == "true":
        for annotation, default in DAPR_PORTS.items():
            ports[annotation] = int(annotations.get(annotation, default))
        if annotations.get("dapr.io/enable-profiling") == "true":
            ports["dapr.io/enable-profiling"] = DAPR_PROFILE_PORT
        ports["dapr.io/app-port"] = int(annotations["dapr.io/app-port"])
    return ports


@pytest.mark.parametrize("service", SERVICES, ids=[m.label for m in SERVICES])
def test_pod_ports_app_queue_proxy_and_daprd_all_distinct(service: Manifest) -> None:
    ports = pod_ports(service)
    app_port = ports.pop("dapr.io/app-port", None)
    by_port: dict[int, list[str]] = {}
    for owner, port in ports.items():
        by_port.setdefault(port, []).append(owner)

    assert {port: owners for port, owners in by_port.items() if len(owners) > 1} == {}
    if app_port is not None:  # daprd calls the app on the container's own port
        assert app_port in {p for owner, p in ports.items() if owner.startswith("tasktide ")}


@pytest.mark.parametrize("service", SERVICES, ids=[m.label for m in SERVICES])
def test_pod_ports_dapr_metrics_port_set_explicitly(service: Manifest) -> None:
    annotations = service.doc["spec"]["template"]["metadata"]["annotations"]
    assert annotations.get("dapr.io/enabled") == "true"
    assert "dapr.io/metrics-port" in annotations
