"""Sender authentication, network isolation, Dapr access and pod security in the cluster manifests.

Consumes the built kustomizations (``knative/base`` and overlays, ``eventing``, ``dapr``). EventPolicy and
NetworkPolicy structure is checked here field by field: the shared CRD schemas have no EventPolicy file and
NetworkPolicy is a core kind whose schema says nothing about what a policy allows.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from .corpus import Manifest, from_origin, of_kind, raw

NAMESPACE = "tasktide"
OVERLAYS = ("knative/base", "knative/overlays/dev", "knative/overlays/prod")
# Where the event path's data plane runs: the only namespaces that may open a connection to a function.
EVENTING_PLANE = {"knative-eventing", "knative-serving", "kourier-system"}
METRICS_NAMESPACE = "monitoring"
PRIVATE_V4 = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "127.0.0.0/8",
    "100.64.0.0/10",
)
EVENT_POLICY_KEYS = {"to", "from", "filters"}
REF_TO_KEYS = {"apiVersion", "kind", "name"}
REF_FROM_KEYS = {"apiVersion", "kind", "name", "namespace"}


def _services(origin: str = "knative/base") -> list[Manifest]:
    return of_kind(from_origin(origin), "Service", "serving.knative.dev")


def _functions() -> list[Manifest]:
    return [
        s for s in _services() if s.doc["metadata"]["labels"]["app.kubernetes.io/component"] == "function"
    ]


def _pod_labels(service: Manifest) -> dict[str, str]:
    labels: dict[str, str] = service.doc["spec"]["template"]["metadata"]["labels"]
    return labels


def _annotations(service: Manifest) -> dict[str, str]:
    annotations: dict[str, str] = service.doc["spec"]["template"]["metadata"]["annotations"]
    return annotations


def _network_policies(origin: str = "knative/base") -> list[Manifest]:
    return of_kind(from_origin(origin), "NetworkPolicy", "networking.k8s.io")


def _event_policies() -> list[Manifest]:
    return of_kind(from_origin("eventing"), "EventPolicy", "eventing.knative.dev")


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels and matchExpressions, ANDed; {} selects all)."""
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def _policies_for(labels: dict[str, str], policy_type: str) -> list[dict[str, Any]]:
    return [
        p.doc["spec"]
        for p in _network_policies()
        if policy_type in p.doc["spec"]["policyTypes"] and selects(p.doc["spec"]["podSelector"], labels)
    ]


def _rules(labels: dict[str, str], policy_type: str) -> list[dict[str, Any]]:
    """Every ingress (or egress) rule of the policies that select pods with ``labels``."""
    key = policy_type.lower()
    return [rule for spec in _policies_for(labels, policy_type) for rule in spec.get(key, [])]


def _peer_namespace(peer: dict[str, Any]) -> str | None:
    """The namespace a peer names (kubernetes.io/metadata.name), None for a same-namespace pod selector."""
    if "namespaceSelector" not in peer:
        return None
    name = (peer["namespaceSelector"].get("matchLabels") or {}).get("kubernetes.io/metadata.name")
    assert name, f"namespaceSelector must name one namespace: {peer}"
    return str(name)


def _subscriber_of(doc: dict[str, Any]) -> dict[str, Any]:
    spec = doc["spec"]
    destination: dict[str, Any] = spec["subscriber"] if doc["kind"] == "Trigger" else spec["sink"]
    return destination


def _senders_of(service_name: str) -> list[Manifest]:
    """Triggers and PingSources whose subscriber/sink is the Knative Service ``service_name``."""
    return [
        m
        for m in from_origin("eventing")
        if m.kind in ("Trigger", "PingSource")
        and _subscriber_of(m.doc).get("ref", {}).get("kind") == "Service"
        and _subscriber_of(m.doc)["ref"]["name"] == service_name
    ]


def _policy_to(service_kind: str, name: str) -> Manifest:
    (policy,) = [
        p
        for p in _event_policies()
        if any(
            t.get("ref", {}).get("kind") == service_kind and t["ref"]["name"] == name
            for t in p.doc["spec"]["to"]
        )
    ]
    return policy


def _from_refs(policy: Manifest) -> set[tuple[str, str]]:
    return {(f["ref"]["kind"], f["ref"]["name"]) for f in policy.doc["spec"]["from"] if "ref" in f}


@pytest.mark.parametrize("function", _functions(), ids=lambda m: m.name)
def test_policies_every_function_has_event_policy(function: Manifest) -> None:
    senders = _senders_of(function.name)
    assert senders, f"nothing sends events to {function.name}"
    policy = _policy_to("Service", function.name)
    assert policy.doc["spec"]["to"] == [
        {"ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": function.name}}
    ]
    assert _from_refs(policy) == {(m.kind, m.name) for m in senders}
    assert all("sub" not in f for f in policy.doc["spec"]["from"])  # no wildcard subjects


@pytest.mark.parametrize("function", _functions(), ids=lambda m: m.name)
def test_policies_every_sender_sets_the_function_audience(function: Manifest) -> None:
    for sender in _senders_of(function.name):
        expected = f"serving.knative.dev/service/{NAMESPACE}/{function.name}"
        assert _subscriber_of(sender.doc)["audience"] == expected, sender.label


def test_policies_broker_accepts_only_the_kafka_sources() -> None:
    policy = _policy_to("Broker", "default")
    sources = {("KafkaSource", m.name) for m in of_kind(from_origin("eventing"), "KafkaSource")}
    assert sources == {("KafkaSource", "task-events"), ("KafkaSource", "reminders")}
    assert _from_refs(policy) == sources
    assert all(set(f) == {"ref"} for f in policy.doc["spec"]["from"])


def test_policies_dead_letter_sink_accepts_every_resource_dead_lettering_to_it() -> None:
    policy = _policy_to("KafkaSink", "tasktide-dead-letter")
    dead_letterers = {
        (m.kind, m.name)
        for m in from_origin("eventing")
        if m.kind in ("Trigger", "KafkaSource")
        and m.doc["spec"]["delivery"]["deadLetterSink"]["ref"]["name"] == "tasktide-dead-letter"
    }
    assert len(dead_letterers) == 5
    assert _from_refs(policy) == dead_letterers


@pytest.mark.parametrize("policy", _event_policies(), ids=lambda m: m.name)
def test_policies_event_policy_fields_are_the_crd_fields(policy: Manifest) -> None:
    """The fields of eventing.knative.dev/v1alpha1 EventPolicy (knative/eventing eventpolicy CRD)."""
    assert policy.api_version == "eventing.knative.dev/v1alpha1"
    assert policy.doc["metadata"].get("namespace") == NAMESPACE
    spec = policy.doc["spec"]
    assert set(spec) <= EVENT_POLICY_KEYS and spec["to"] and spec["from"]
    for target in spec["to"]:
        assert set(target) == {"ref"} and set(target["ref"]) == REF_TO_KEYS
    for sender in spec["from"]:
        assert set(sender) in ({"ref"}, {"sub"})
        if "ref" in sender:
            assert set(sender["ref"]) <= REF_FROM_KEYS and {"apiVersion", "kind", "name"} <= set(
                sender["ref"]
            )
    # Every ref names a resource these manifests define, with its apiVersion.
    defined = {(m.api_version, m.kind, m.name) for m in from_origin("eventing") + _services()}
    for entry in spec["to"] + spec["from"]:
        ref = entry["ref"]
        assert (ref["apiVersion"], ref["kind"], ref["name"]) in defined, ref


def test_network_policy_default_deny_exists() -> None:
    for origin in OVERLAYS:
        denies = [p.doc for p in _network_policies(origin) if p.doc["spec"]["podSelector"] == {}]
        (deny,) = [d for d in denies if set(d["spec"]) == {"podSelector", "policyTypes"}]
        assert sorted(deny["spec"]["policyTypes"]) == ["Egress", "Ingress"]
        assert deny["metadata"].get("namespace") == (None if origin == "knative/base" else NAMESPACE)


@pytest.mark.parametrize("policy", _network_policies(), ids=lambda m: m.name)
def test_network_policy_structure_is_explicit(policy: Manifest) -> None:
    spec = policy.doc["spec"]
    assert set(spec) <= {"podSelector", "policyTypes", "ingress", "egress"}
    assert set(spec["policyTypes"]) <= {"Ingress", "Egress"}
    assert ("ingress" in spec) <= ("Ingress" in spec["policyTypes"])
    assert ("egress" in spec) <= ("Egress" in spec["policyTypes"])
    for rule in spec.get("ingress", []):
        assert rule.get("from"), "an ingress rule without `from` admits every source"
        for peer in rule["from"]:
            assert "ipBlock" not in peer
            _peer_namespace(peer)
    for rule in spec.get("egress", []):
        for peer in rule.get("to", []):
            if "ipBlock" not in peer:
                _peer_namespace(peer)
        if not rule.get("to"):
            assert rule.get("ports"), "an egress rule without `to` nor `ports` allows everything"


@pytest.mark.parametrize("function", _functions(), ids=lambda m: m.name)
def test_network_policy_functions_reachable_only_from_the_eventing_plane(function: Manifest) -> None:
    rules = [
        rule for spec in _policies_for(_pod_labels(function), "Ingress") for rule in spec.get("ingress", [])
    ]
    namespaces = {_peer_namespace(peer) for rule in rules for peer in rule["from"]}
    assert namespaces == EVENTING_PLANE | {METRICS_NAMESPACE}
    for rule in rules:
        if {_peer_namespace(peer) for peer in rule["from"]} == {METRICS_NAMESPACE}:
            assert {p["port"] for p in rule["ports"]} == {8080, 9095}  # app and daprd metrics only


@pytest.mark.parametrize("service", _services(), ids=lambda m: m.name)
def test_network_policy_every_pod_has_dns_and_platform_egress(service: Manifest) -> None:
    rules = [
        rule for spec in _policies_for(_pod_labels(service), "Egress") for rule in spec.get("egress", [])
    ]
    dns = [r for r in rules if {p["port"] for p in r.get("ports", [])} == {53}]
    assert dns and {_peer_namespace(peer) for peer in dns[0]["to"]} == {"kube-system"}
    namespaces = {_peer_namespace(peer) for r in rules for peer in r.get("to", []) if "ipBlock" not in peer}
    assert {"dapr-system", "observability", None} <= namespaces  # None: Postgres in this namespace


@pytest.mark.parametrize("service", _services(), ids=lambda m: m.name)
def test_network_policy_kafka_egress_only_where_kafka_is_configured(service: Manifest) -> None:
    env = {e["name"] for e in service.doc["spec"]["template"]["spec"]["containers"][0]["env"]}
    rules = [
        rule for spec in _policies_for(_pod_labels(service), "Egress") for rule in spec.get("egress", [])
    ]
    kafka = any(_peer_namespace(peer) == "kafka" for r in rules for peer in r.get("to", []))
    assert kafka is ("TASKTIDE_KAFKA_BOOTSTRAP" in env)


@pytest.mark.parametrize("service", _services(), ids=lambda m: m.name)
def test_network_policy_internet_egress_only_notifier_and_agent_public_addresses(service: Manifest) -> None:
    rules = [
        rule for spec in _policies_for(_pod_labels(service), "Egress") for rule in spec.get("egress", [])
    ]
    blocks = [peer["ipBlock"] for r in rules for peer in r.get("to", []) if "ipBlock" in peer]
    expected_ports = {"tasktide-notifier": {443, 587}, "tasktide-agent": {443}}.get(service.name)
    if expected_ports is None:
        assert blocks == []
        return
    assert {b["cidr"] for b in blocks} == {"0.0.0.0/0", "::/0"}
    v4 = next(b for b in blocks if b["cidr"] == "0.0.0.0/0")
    excluded = [ipaddress.ip_network(c) for c in v4["except"]]
    for private in PRIVATE_V4:
        assert any(ipaddress.ip_network(private).subnet_of(e) for e in excluded), private  # type: ignore[arg-type]
    ports = {
        p["port"] for r in rules if any("ipBlock" in peer for peer in r.get("to", [])) for p in r["ports"]
    }
    assert ports == expected_ports


def test_network_policy_postgres_admits_only_tasktide_and_its_operator() -> None:
    postgres = {"cnpg.io/cluster": "tasktide-pg"}
    rules = _rules(postgres, "Ingress")
    peers = [peer for rule in rules for peer in rule["from"]]
    assert {_peer_namespace(peer) for peer in peers} == {None, "cnpg-system"}
    client_rules = [r for r in rules if {p["port"] for p in r["ports"]} == {5432}]
    assert any(
        selects(peer.get("podSelector", {}), {"app.kubernetes.io/part-of": "tasktide"})
        for r in client_rules
        for peer in r["from"]
    )


def test_namespace_enforces_restricted_pod_security() -> None:
    (namespace,) = of_kind(from_origin("knative/namespace"), "Namespace")
    labels = namespace.doc["metadata"]["labels"]
    assert namespace.name == NAMESPACE
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"


@pytest.mark.parametrize("service", _services(), ids=lambda m: m.name)
def test_service_pods_meet_restricted_pod_security(service: Manifest) -> None:
    spec = service.doc["spec"]["template"]["spec"]
    for container in spec["containers"]:
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True and context.get("runAsUser", 1) != 0
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        assert "privileged" not in context
        assert all("hostPort" not in port for port in container.get("ports", []))
    assert all(
        set(volume) <= {"name", "emptyDir", "secret", "configMap", "projected"} for volume in spec["volumes"]
    )
    assert not {"hostNetwork", "hostPID", "hostIPC"} & set(spec)
    assert _annotations(service)["dapr.io/sidecar-seccomp-profile-type"] == "RuntimeDefault"


@pytest.mark.parametrize("service", _services(), ids=lambda m: m.name)
def test_service_dapr_sidecar_requires_api_token(service: Manifest) -> None:
    secret = _annotations(service)["dapr.io/api-token-secret"]
    examples = {
        m.name: m.doc for m in of_kind(raw(), "Secret") if m.origin == "dapr/dapr-api-token.example.yaml"
    }
    assert set(examples[secret]["stringData"]) == {"token"}


def test_dapr_configuration_access_control_denies_by_default() -> None:
    (config,) = of_kind(from_origin("dapr"), "Configuration", "dapr.io")
    access = config.doc["spec"]["accessControl"]
    assert access["defaultAction"] == "deny"
    (policy,) = access["policies"]
    assert policy["appId"] == "tasktide-agent" and policy["defaultAction"] == "deny"
    assert policy["namespace"] == NAMESPACE
    assert [(o["name"], o["action"]) for o in policy["operations"]] == [("/mcp", "allow")]
    allowed = {(a["name"], a["protocol"]) for a in config.doc["spec"]["api"]["allowed"]}
    assert allowed == {
        ("state", "grpc"),
        ("secrets", "grpc"),
        ("state", "http"),
        ("secrets", "http"),
        ("invoke", "http"),
    }


@pytest.mark.parametrize(
    ("origin", "redirected"), [("knative/overlays/prod", True), ("knative/overlays/dev", False)]
)
def test_overlay_prod_api_redirects_http_to_https(origin: str, redirected: bool) -> None:
    (api,) = [s for s in _services(origin) if s.name == "tasktide-api"]
    annotations = api.doc["metadata"].get("annotations") or {}
    assert (annotations.get("networking.knative.dev/http-protocol") == "Redirected") is redirected
    functions = [s for s in _services(origin) if s.name != "tasktide-api"]
    assert all(
        "networking.knative.dev/http-protocol" not in (f.doc["metadata"].get("annotations") or {})
        for f in functions
    )


@pytest.mark.parametrize("function", _functions(), ids=lambda m: m.name)
def test_service_function_verifies_sender_tokens_for_its_audience(function: Manifest) -> None:
    container = function.doc["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    audiences = {_subscriber_of(sender.doc)["audience"] for sender in _senders_of(function.name)}
    assert {env["TASKTIDE_EVENT_AUDIENCE"]} == audiences
    assert env["TASKTIDE_EVENT_JWKS_URL"] == "https://kubernetes.default.svc/openid/v1/jwks"
    assert env["TASKTIDE_EVENT_SUBJECTS"] == f"system:serviceaccount:{NAMESPACE}:*"
    assert "TASKTIDE_EVENT_SIGNING_KEY" not in env  # no shared secret on a cluster: the issuer's keys


def test_service_api_receives_no_events_so_verifies_none() -> None:
    (api,) = [s for s in _services() if s.name == "tasktide-api"]
    env = {e["name"] for e in api.doc["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert not {n for n in env if n.startswith("TASKTIDE_EVENT_")}
