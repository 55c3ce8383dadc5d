"""Cross-references between the manifests resolve: subscribers, sinks, topics, dead-letter sinks, Dapr ids.

Consumes the built kustomizations (``knative/base``, overlays, ``eventing``, ``eventing/kafka``, ``dapr``).
"""

from __future__ import annotations

from typing import Any

import pytest

from .corpus import REPO_ROOT, Manifest, built, from_origin, of_kind, raw

SERVING = "serving.knative.dev/v1"
BROKER_API = "eventing.knative.dev/v1"
KAFKA_SINK_API = "eventing.knative.dev/v1alpha1"
FUNCTIONS = ("recurring", "reminders", "notifier", "audit", "relay")
SERVICE_NAMES = {"tasktide-api", "tasktide-agent", *(f"tasktide-{fn}" for fn in FUNCTIONS)}


def base_service_names() -> set[str]:
    return {m.name for m in of_kind(from_origin("knative/base"), "Service", "serving.knative.dev")}


def eventing() -> list[Manifest]:
    return from_origin("eventing") + from_origin("eventing/kafka")


def named(kind: str) -> set[str]:
    return {m.name for m in of_kind(eventing(), kind)}


def _ids(manifests: list[Manifest]) -> list[str]:
    return [m.label for m in manifests]


def _resolves(ref: dict[str, Any]) -> bool:
    """A Destination ref names a base Knative Service, the Broker or the KafkaSink (apiVersion must match)."""
    targets = {
        ("Service", SERVING): base_service_names(),
        ("Broker", BROKER_API): named("Broker"),
        ("KafkaSink", KAFKA_SINK_API): named("KafkaSink"),
    }
    return ref.get("name") in targets.get((ref.get("kind", ""), ref.get("apiVersion", "")), set())


def delivery_owners() -> list[Manifest]:
    return [m for m in eventing() if "delivery" in (m.doc.get("spec") or {})]


TRIGGERS = of_kind(from_origin("eventing"), "Trigger")
PING_SOURCES = of_kind(from_origin("eventing"), "PingSource")
KAFKA_SOURCES = of_kind(from_origin("eventing"), "KafkaSource")


def test_knative_base_defines_every_service_named_in_architecture() -> None:
    assert base_service_names() == SERVICE_NAMES


def test_eventing_names_expected_resources_all_present() -> None:
    assert named("Trigger") == {"recurring", "notifier", "audit"}
    assert named("PingSource") == {"reminders-tick", "outbox-sweep"}
    assert named("KafkaSource") == {"task-events", "reminders"}
    assert named("KafkaTopic") == {"task-events", "task-updates", "reminders", "tasktide-dead-letter"}
    assert named("Broker") == {"default"}
    assert named("KafkaSink") == {"tasktide-dead-letter"}


@pytest.mark.parametrize("trigger", TRIGGERS, ids=_ids(TRIGGERS))
def test_trigger_subscriber_ref_names_base_service(trigger: Manifest) -> None:
    ref = trigger.doc["spec"]["subscriber"]["ref"]
    assert ref["kind"] == "Service" and ref["apiVersion"] == SERVING
    assert ref["name"] in base_service_names()


@pytest.mark.parametrize("trigger", TRIGGERS, ids=_ids(TRIGGERS))
def test_trigger_broker_names_defined_broker(trigger: Manifest) -> None:
    assert trigger.doc["spec"]["broker"] in named("Broker")


@pytest.mark.parametrize("source", PING_SOURCES + KAFKA_SOURCES, ids=_ids(PING_SOURCES + KAFKA_SOURCES))
def test_source_sink_ref_names_service_or_broker(source: Manifest) -> None:
    ref = source.doc["spec"]["sink"]["ref"]
    assert ref["kind"] in ("Service", "Broker")
    assert _resolves(ref), ref


@pytest.mark.parametrize("source", KAFKA_SOURCES, ids=_ids(KAFKA_SOURCES))
def test_kafka_source_topics_exist_as_kafka_topics(source: Manifest) -> None:
    topics = {m.doc["spec"].get("topicName", m.name) for m in of_kind(eventing(), "KafkaTopic")}
    assert set(source.doc["spec"]["topics"]) <= topics


@pytest.mark.parametrize("source", KAFKA_SOURCES, ids=_ids(KAFKA_SOURCES))
def test_kafka_source_consumer_group_set_and_unique(source: Manifest) -> None:
    groups = [m.doc["spec"]["consumerGroup"] for m in KAFKA_SOURCES]
    assert source.doc["spec"]["consumerGroup"].startswith("tasktide-")
    assert groups.count(source.doc["spec"]["consumerGroup"]) == 1


def test_kafka_sources_task_updates_not_consumed_by_source() -> None:
    consumed = {topic for m in KAFKA_SOURCES for topic in m.doc["spec"]["topics"]}
    assert consumed == {"task-events", "reminders"}


def test_kafka_sink_topic_exists_as_kafka_topic() -> None:
    (sink,) = of_kind(eventing(), "KafkaSink")
    assert sink.doc["spec"]["topic"] in named("KafkaTopic")


def test_kafka_topics_strimzi_cluster_label_and_partitions_set() -> None:
    for topic in of_kind(eventing(), "KafkaTopic"):
        assert topic.doc["metadata"]["labels"]["strimzi.io/cluster"] == "my-cluster"
        assert topic.doc["metadata"]["namespace"] == "kafka"
        assert topic.doc["spec"]["partitions"] == 3
        assert int(topic.doc["spec"]["config"]["retention.ms"]) > 0


def test_delivery_blocks_present_on_every_trigger_and_kafka_source() -> None:
    owners = {(m.kind, m.name) for m in delivery_owners()}
    expected = {(m.kind, m.name) for m in TRIGGERS + KAFKA_SOURCES}
    assert expected <= owners


@pytest.mark.parametrize("owner", delivery_owners(), ids=_ids(delivery_owners()))
def test_delivery_dead_letter_sink_ref_resolves_to_kafka_sink(owner: Manifest) -> None:
    delivery = owner.doc["spec"]["delivery"]
    ref = delivery["deadLetterSink"]["ref"]
    assert ref["kind"] == "KafkaSink" and _resolves(ref), ref
    assert (delivery["retry"], delivery["backoffPolicy"], delivery["backoffDelay"]) == (
        5,
        "exponential",
        "PT0.5S",
    )


def test_broker_kafka_class_config_map_included() -> None:
    (broker,) = of_kind(eventing(), "Broker")
    assert broker.doc["metadata"]["annotations"]["eventing.knative.dev/broker.class"] == "Kafka"
    config = broker.doc["spec"]["config"]
    assert (config["apiVersion"], config["kind"]) == ("v1", "ConfigMap")
    assert config["name"] in {m.name for m in of_kind(eventing(), "ConfigMap")}


def test_triggers_filter_types_route_to_expected_services() -> None:
    routes = {}
    for trigger in TRIGGERS:
        spec = trigger.doc["spec"]
        if "filters" in spec:
            routes[("prefix", spec["filters"][0]["prefix"]["type"])] = spec["subscriber"]["ref"]["name"]
        else:
            routes[("exact", spec["filter"]["attributes"]["type"])] = spec["subscriber"]["ref"]["name"]
    assert routes == {
        ("exact", "com.tasktide.task.completed"): "tasktide-recurring",
        ("exact", "com.tasktide.reminder.due"): "tasktide-notifier",
        ("prefix", "com.tasktide.task."): "tasktide-audit",
    }


SERVICES = of_kind(built(), "Service", "serving.knative.dev")


def _template(service: Manifest) -> dict[str, Any]:
    template: dict[str, Any] = service.doc["spec"]["template"]
    return template


@pytest.mark.parametrize("service", SERVICES, ids=_ids(SERVICES))
def test_dapr_app_id_names_its_own_service(service: Manifest) -> None:
    annotations = _template(service)["metadata"]["annotations"]
    assert annotations["dapr.io/enabled"] == "true"
    assert annotations["dapr.io/app-id"] == service.name
    assert annotations["dapr.io/app-id"] in base_service_names()
    assert annotations["dapr.io/app-port"] == "8080"


@pytest.mark.parametrize("service", SERVICES, ids=_ids(SERVICES))
def test_dapr_config_annotation_names_defined_configuration(service: Manifest) -> None:
    configurations = {m.name for m in of_kind(from_origin("dapr"), "Configuration", "dapr.io")}
    assert _template(service)["metadata"]["annotations"]["dapr.io/config"] in configurations


def test_dapr_resiliency_targets_defined_components() -> None:
    (resiliency,) = of_kind(from_origin("dapr"), "Resiliency", "dapr.io")
    components = {m.name for m in of_kind(from_origin("dapr"), "Component", "dapr.io")}
    eventing_components = {m.name for m in of_kind(from_origin("dapr/eventing"), "Component", "dapr.io")}
    targets = resiliency.doc["spec"]["targets"]["components"]
    assert {"statestore", "secretstore"} <= components
    assert set(targets) <= components | eventing_components
    policies = resiliency.doc["spec"]["policies"]
    for target in targets.values():
        for direction in target.values():
            assert direction["timeout"] in policies["timeouts"]
            assert direction.get("retry", next(iter(policies["retries"]))) in policies["retries"]
    assert set(resiliency.doc["scopes"]) == base_service_names()


def test_dapr_resiliency_stores_no_retry_no_breaker_conflicts_are_answers() -> None:
    """Dapr retries and counts every component error but an etag error; a lost first write is not one."""
    (resiliency,) = of_kind(from_origin("dapr"), "Resiliency", "dapr.io")
    targets = resiliency.doc["spec"]["targets"]["components"]
    for store in ("statestore", "secretstore"):
        assert set(targets[store]["outbound"]) == {"timeout"}
    assert "circuitBreakers" not in resiliency.doc["spec"]["policies"]


def test_dapr_component_secret_refs_name_example_secret_keys() -> None:
    (secret,) = [m for m in of_kind(raw(), "Secret") if m.origin == "dapr/secret.example.yaml"]
    for component in of_kind(from_origin("dapr"), "Component", "dapr.io"):
        for item in component.doc["spec"]["metadata"]:
            if "secretKeyRef" in item:
                assert item["secretKeyRef"]["name"] == secret.name
                assert item["secretKeyRef"]["key"] in secret.doc["stringData"]


def test_rbac_binds_service_account_the_services_run_as() -> None:
    (binding,) = of_kind(from_origin("dapr"), "RoleBinding")
    (role,) = of_kind(from_origin("dapr"), "Role")
    assert binding.doc["roleRef"]["name"] == role.name
    accounts = {_template(s)["spec"]["serviceAccountName"] for s in SERVICES}
    assert {subject["name"] for subject in binding.doc["subjects"]} == accounts
    assert accounts <= {m.name for m in of_kind(from_origin("knative/base"), "ServiceAccount")}
    assert role.doc["rules"][0]["resourceNames"] == ["tasktide-secrets"]


def test_router_loader_reads_cluster_manifests_consistently() -> None:
    from tasktide.router.manifests import load_manifests

    loaded = load_manifests(REPO_ROOT / "eventing", REPO_ROOT / "knative")
    assert {s.name for s in loaded.services} == SERVICE_NAMES
    assert len(loaded.services) == len(SERVICE_NAMES)  # overlay patches are not mistaken for Services
    assert {t.name for t in loaded.triggers} == {"recurring", "notifier", "audit"}
    assert {p.name for p in loaded.ping_sources} == {"reminders-tick", "outbox-sweep"}
    env = {s.name: s.env for s in loaded.services}
    assert all(env[f"tasktide-{fn}"]["FUNCTION_TARGET"] == fn for fn in FUNCTIONS)
