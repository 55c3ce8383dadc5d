"""Every Knative object the kustomizations render passes Knative's own admission: SetDefaults + Validate.

Consumes: the validator `.ci/knative-validate.sh` builds (our Go program in `.ci/knative-validate/` over
knative.dev/serving, eventing and eventing-kafka-broker, built by `make services`), the cluster's webhook
ConfigMaps `.ci/knative-validate/cluster-config.yaml`, every kustomization the real kustomize renders
(`corpus.built()`), and the `config-features` patches in `docs/`. Skipped locally without the binary, a
failure under CI.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tasktide.router.manifests import load_documents

from .corpus import REPO_ROOT, Manifest, built, from_origin

SCRIPT = REPO_ROOT / ".ci" / "knative-validate.sh"
CLUSTER_CONFIG = REPO_ROOT / ".ci" / "knative-validate" / "cluster-config.yaml"
DOCS = (REPO_ROOT / "docs" / "deploy.md", REPO_ROOT / "docs" / "operations.md")
TIMEOUT = 120  # seconds per validator run

# The Knative kinds our manifests use: each must really have been validated, not skipped.
EXPECTED_KINDS = {
    "serving.knative.dev/v1 Service",
    "eventing.knative.dev/v1 Broker",
    "eventing.knative.dev/v1 Trigger",
    "eventing.knative.dev/v1alpha1 EventPolicy",
    "eventing.knative.dev/v1alpha1 KafkaSink",
    "sources.knative.dev/v1 PingSource",
    "sources.knative.dev/v1beta1 KafkaSource",
}


def _validator() -> str:
    path = subprocess.run(
        ["bash", str(SCRIPT), "path"], capture_output=True, text=True, check=True, timeout=TIMEOUT
    ).stdout.strip()
    if not os.access(path, os.X_OK):
        if os.environ.get("CI") == "true":
            pytest.fail(f"knative-validate not built at {path}: `make services` runs .ci/knative-validate.sh")
        pytest.skip("knative-validate not built (bash .ci/knative-validate.sh install)")
    return path


def _write(tmp_path: Path, name: str, docs: list[dict[str, Any]]) -> Path:
    path = tmp_path / (name.replace("/", "__") + ".yaml")
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False), encoding="utf-8")
    return path


def _validate(*files: Path, defaulted: bool = False) -> tuple[int, dict[str, Any], str]:
    flags = ["-json", "-defaulted"] if defaulted else ["-json"]
    done = subprocess.run(
        [_validator(), "-config", str(CLUSTER_CONFIG), *flags, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode in (0, 1), f"validator failed to run ({done.returncode}): {done.stderr}"
    return done.returncode, json.loads(done.stdout), done.stderr


def _by_origin() -> dict[str, list[dict[str, Any]]]:
    origins: dict[str, list[dict[str, Any]]] = {}
    for manifest in built():
        origins.setdefault(manifest.origin, []).append(manifest.doc)
    return origins


def _lines(report: dict[str, Any]) -> str:
    return "\n".join(
        f"{f['source']}: {f['level']}: {f['kind']}/{f['name']} [{f['webhook']}] {f['field']}: {f['message']}"
        for f in report["findings"]
    )


def test_knative_validation_every_rendered_object_passes_setdefaults_and_validate(tmp_path: Path) -> None:
    files = [_write(tmp_path, origin, docs) for origin, docs in sorted(_by_origin().items())]
    code, report, _ = _validate(*files)
    assert code == 0 and report["errors"] == 0, _lines(report)
    assert report["warnings"] == 0, _lines(report)
    assert set(report["validated"]) >= EXPECTED_KINDS, report["validated"]
    # Only kinds outside Knative are skipped (core Kubernetes, Dapr, Strimzi), each with its reason.
    assert all(".knative.dev/" not in kind for kind in report["skipped"]), report["skipped"]
    assert set(report["skippedReasons"].values()) <= {"not a Knative kind"}, report["skippedReasons"]


def test_knative_validation_router_reads_each_kafka_source_order_as_knative_defaults_it(
    tmp_path: Path,
) -> None:
    # KafkaSource.SetDefaults makes an absent spec.ordering "ordered"; the router must not run it otherwise.
    docs = [m.doc for m in from_origin("eventing")]
    code, report, _ = _validate(_write(tmp_path, "eventing", docs), defaulted=True)
    assert code == 0, _lines(report)
    knative = {
        d["metadata"]["name"]: d["spec"]["ordering"] == "ordered"
        for d in report["defaulted"]
        if d["kind"] == "KafkaSource"
    }
    router = {s.name: s.ordered for s in load_documents(docs).kafka_sources}
    assert knative == router and len(router) == 2, (knative, router)


def _rendered(kind: str, name: str) -> dict[str, Any]:
    found: list[Manifest] = [
        m for m in built() if m.kind == kind and m.name == name and m.api_version.endswith(".knative.dev/v1")
    ]
    assert found, f"no rendered {kind}/{name}"
    return copy.deepcopy(found[0].doc)


def _bad_backoff_delay(doc: dict[str, Any]) -> None:
    doc["spec"]["delivery"]["backoffDelay"] = "half a second"


def _unknown_container_field(doc: dict[str, Any]) -> None:
    doc["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"


def _bad_delivery_order(doc: dict[str, Any]) -> None:
    doc["metadata"]["annotations"]["kafka.eventing.knative.dev/delivery.order"] = "fifo"


def _scale_bounds_crossed(doc: dict[str, Any]) -> None:
    annotations = doc["spec"]["template"]["metadata"]["annotations"]
    annotations["autoscaling.knative.dev/min-scale"] = "30"
    annotations["autoscaling.knative.dev/max-scale"] = "20"


@pytest.mark.parametrize(
    ("kind", "name", "break_it", "field"),
    [
        ("Trigger", "audit", _bad_backoff_delay, "spec.delivery.backoffDelay"),
        (
            "Service",
            "tasktide-api",
            _unknown_container_field,
            "spec.template.spec.containers[0].imagePullPolicyy",
        ),
        ("Trigger", "notifier", _bad_delivery_order, "kafka.eventing.knative.dev/delivery.order"),
        ("Service", "tasktide-api", _scale_bounds_crossed, "autoscaling.knative.dev/min-scale"),
    ],
    ids=["trigger-backoff-delay", "service-unknown-field", "trigger-delivery-order", "service-min-over-max"],
)
def test_knative_validation_broken_object_fails_naming_the_field(
    tmp_path: Path, kind: str, name: str, break_it: Any, field: str
) -> None:
    doc = _rendered(kind, name)
    code, report, _ = _validate(_write(tmp_path, "intact", [copy.deepcopy(doc)]))
    assert code == 0, _lines(report)
    break_it(doc)
    code, report, _ = _validate(_write(tmp_path, "broken", [doc]))
    assert code == 1 and report["errors"] >= 1, report
    assert any(field in f["field"] and f["level"] == "error" for f in report["findings"]), _lines(report)
    assert {(f["kind"], f["name"]) for f in report["findings"]} == {(kind, name)}


def test_knative_validation_unknown_knative_version_is_an_error_and_other_kinds_are_skipped(
    tmp_path: Path,
) -> None:
    docs = [
        {"apiVersion": "sources.knative.dev/v1beta1", "kind": "PingSource", "metadata": {"name": "old"}},
        {"apiVersion": "kafka.strimzi.io/v1beta2", "kind": "KafkaTopic", "metadata": {"name": "t"}},
    ]
    code, report, _ = _validate(_write(tmp_path, "mixed", docs))
    assert code == 1
    assert [(f["kind"], f["name"], f["level"]) for f in report["findings"]] == [
        ("PingSource", "old", "error")
    ]
    assert report["skipped"] == {"kafka.strimzi.io/v1beta2 KafkaTopic": 1}


_PATCH = re.compile(
    r"-n (knative-\w+) patch configmap config-features[^']*-p\s*'(\{.*?\})'|"
    r"patch configmap/config-features -n (knative-\w+)[^']*-p\s*'(\{.*?\})'"
)


def _doc_patches() -> list[tuple[str, dict[str, str]]]:
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8").replace("\\\n", " ")
        for match in _PATCH.finditer(text):
            namespace = match.group(1) or match.group(3)
            body = json.loads(match.group(2) or match.group(4))
            found.append((namespace, body["data"]))
    return found


def test_knative_validation_cluster_config_holds_every_feature_the_docs_set() -> None:
    config = {
        (d["metadata"]["namespace"], d["metadata"]["name"]): d.get("data") or {}
        for d in yaml.safe_load_all(CLUSTER_CONFIG.read_text(encoding="utf-8"))
        if d
    }
    patches = _doc_patches()
    assert {ns for ns, _ in patches} == {"knative-serving", "knative-eventing"}, patches
    for namespace, data in patches:
        held = config[(namespace, "config-features")]
        assert {k: held.get(k) for k in data} == data, (namespace, data)
