"""Tests for manifest loading into frozen dataclasses."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasktide.router.manifests import (
    KafkaSink,
    ManifestError,
    Manifests,
    load_documents,
    load_manifests,
    parse_duration,
)

from .conftest import FIXTURES

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("PT0.5S", 0.5), ("PT2S", 2.0), ("PT1M", 60.0), ("PT1H30M", 5400.0), ("P1DT1S", 86401.0)],
)
def test_parse_duration_iso8601_returns_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5s", "PT", "P", "PTXS", ""])
def test_parse_duration_invalid_raises(text: str) -> None:
    with pytest.raises(ManifestError):
        parse_duration(text)


def test_load_manifests_fixture_parses_every_kind(manifests: Manifests) -> None:
    assert [b.name for b in manifests.brokers] == ["default"]
    assert {t.name for t in manifests.triggers} == {
        "flaky",
        "broken",
        "replier",
        "answers",
        "looper",
        "tasks",
    }
    assert manifests.kafka_sinks == (KafkaSink("dead-letters", "test-dead-letter"),)
    source = manifests.kafka_sources[0]
    assert (source.topics, source.consumer_group) == (("task-events",), "tasktide-test-task-events")
    assert source.sink.ref is not None and source.sink.ref.kind == "Broker"
    ping = manifests.ping_sources[0]
    assert (ping.schedule, ping.data, ping.content_type) == (
        "0 0 1 1 *",
        '{"job": "tick"}',
        "application/json",
    )
    assert manifests.kafka_topics[0].partitions == 3


def test_load_manifests_trigger_delivery_parsed(manifests: Manifests) -> None:
    flaky = next(t for t in manifests.triggers if t.name == "flaky")
    assert flaky.delivery is not None
    assert (flaky.delivery.retry, flaky.delivery.backoff_policy, flaky.delivery.backoff_delay) == (
        3,
        "exponential",
        0.1,
    )
    dls = flaky.delivery.dead_letter_sink
    assert dls is not None and dls.ref is not None and dls.ref.kind == "KafkaSink"


def test_load_manifests_trigger_subscriber_ref_with_relative_uri(manifests: Manifests) -> None:
    tasks = next(t for t in manifests.triggers if t.name == "tasks")
    assert tasks.subscriber.ref is not None and tasks.subscriber.ref.name == "audit"
    assert tasks.subscriber.uri == "/inbox"


def test_load_manifests_skips_local_dir(manifests: Manifests) -> None:
    assert "must-be-skipped" not in {t.name for t in manifests.triggers}


def test_load_manifests_service_env_only_literal_values(manifests: Manifests) -> None:
    (service,) = manifests.services
    assert service.name == "tasktide-recurring"
    assert service.env == {"FUNCTION_TARGET": "recurring"}


def test_load_manifests_missing_dir_yields_empty() -> None:
    assert load_manifests(FIXTURES / "does-not-exist") == Manifests()


@pytest.mark.skipif(
    not (REPO / "eventing" / "triggers.yaml").exists(), reason="repo manifests not written yet"
)
def test_load_manifests_repo_manifests_load_and_reference_known_services() -> None:
    loaded = load_manifests(REPO / "eventing", REPO / "knative")
    assert loaded.brokers and loaded.triggers
    services = {s.name for s in loaded.services}
    for trigger in loaded.triggers:
        ref = trigger.subscriber.ref
        if ref is not None and ref.kind == "Service":
            assert ref.name in services, f"Trigger {trigger.name} subscribes unknown Service {ref.name}"


def _kustomization(root: Path, body: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "kustomization.yaml").write_text(body, encoding="utf-8")
    return root


def test_load_manifests_kustomize_namespace_and_patch_seen_by_router(tmp_path: Path) -> None:
    import shutil

    base = tmp_path / "base"
    shutil.copytree(FIXTURES / "eventing", base)
    overlay = _kustomization(
        tmp_path / "overlay",
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: elsewhere\n"
        "resources: [../base]\npatches:\n"
        "  - target: {group: eventing.knative.dev, kind: Trigger, name: flaky}\n"
        "    patch: |-\n      - op: replace\n        path: /spec/delivery/retry\n        value: 9\n",
    )
    loaded = load_manifests(overlay)
    assert loaded.brokers and {b.namespace for b in loaded.brokers} == {"elsewhere"}
    assert {t.namespace for t in loaded.triggers} == {"elsewhere"}
    flaky = next(t for t in loaded.triggers if t.name == "flaky")
    assert flaky.delivery is not None and flaky.delivery.retry == 9


def test_load_manifests_dir_without_kustomization_rejected(tmp_path: Path) -> None:
    (tmp_path / "broker.yaml").write_text("kind: Broker\nmetadata: {name: default}\n", encoding="utf-8")
    with pytest.raises(ManifestError, match="no kustomization"):
        load_manifests(tmp_path)


def test_load_manifests_repo_renders_namespace_tasktide() -> None:
    loaded = load_manifests(REPO / "eventing", REPO / "knative")
    assert {(b.namespace, b.name) for b in loaded.brokers} == {("tasktide", "default")}
    assert {s.namespace for s in loaded.services} == {"tasktide"}


def test_find_kustomize_env_pointing_nowhere_raises(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tasktide.router.manifests import KustomizeNotFound, find_kustomize

    monkeypatch.setenv("TASKTIDE_KUSTOMIZE", str(tmp_path / "missing"))
    with pytest.raises(KustomizeNotFound, match=r"\.ci/kustomize\.sh"):
        find_kustomize()


@pytest.mark.parametrize(("ordering", "ordered"), [(None, True), ("ordered", True), ("unordered", False)])
def test_load_documents_kafka_source_ordering_defaults_as_knative(
    ordering: str | None, ordered: bool
) -> None:
    # Knative's KafkaSource SetDefaults turns an absent spec.ordering into `ordered`; a Trigger's is unordered
    spec: dict[str, object] = {"topics": ["t"], "sink": {"ref": {"kind": "Broker", "name": "default"}}}
    if ordering is not None:
        spec["ordering"] = ordering
    docs = [
        {"kind": "KafkaSource", "metadata": {"name": "src"}, "spec": spec},
        {
            "kind": "Trigger",
            "metadata": {"name": "t"},
            "spec": {"broker": "default", "subscriber": {"uri": "http://x/"}},
        },
    ]
    loaded = load_documents(docs)
    assert loaded.kafka_sources[0].ordered is ordered
    assert loaded.triggers[0].ordered is False


@pytest.mark.parametrize(("value", "ordered"), [("Ordered", True), ("UNORDERED", False), ("ordered", True)])
def test_load_documents_trigger_delivery_order_any_case_read_as_the_reconciler_does(
    value: str, ordered: bool
) -> None:
    # The Kafka Trigger reconciler lowercases kafka.eventing.knative.dev/delivery.order before reading it
    trigger = {
        "kind": "Trigger",
        "metadata": {"name": "t", "annotations": {"kafka.eventing.knative.dev/delivery.order": value}},
        "spec": {"broker": "default", "subscriber": {"uri": "http://x/"}},
    }
    assert load_documents([trigger]).triggers[0].ordered is ordered


def test_load_documents_trigger_delivery_order_unknown_raises() -> None:
    trigger = {
        "kind": "Trigger",
        "metadata": {"name": "t", "annotations": {"kafka.eventing.knative.dev/delivery.order": "sorted"}},
        "spec": {"broker": "default", "subscriber": {"uri": "http://x/"}},
    }
    with pytest.raises(ManifestError, match="delivery order"):
        load_documents([trigger])
