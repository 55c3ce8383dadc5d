"""Every manifest document validates against its schema, offline.

Custom kinds: ``<schemas>/<group>/<kind lower>_<version>.json`` with JSON Schema Draft 7 (datreeio CRDs
catalog copies, ``additionalProperties`` kept so misspelled fields fail). Core kinds (no group, a group
without a dot, or ``*.k8s.io``): ``kubernetes_validate`` in strict mode. A document whose schema is
absent is skipped with the reason; nothing else is skipped.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from .corpus import (
    LOOSE_RESOURCE_FILES,
    REPO_ROOT,
    SCHEMAS_ENV,
    Manifest,
    all_manifests,
    built,
    find_kustomization,
    is_resource,
    kustomization_dirs,
    load_yaml,
    of_kind,
    raw,
    schemas_dir,
    yaml_files,
)

# The Kubernetes minor the manifests target (Knative 1.16+ supports 1.30 and later).
K8S_VERSION = "1.31.0"


def is_core_group(group: str) -> bool:
    return group == "" or "." not in group or group.endswith(".k8s.io")


@cache
def _custom_validator(path: Path) -> jsonschema.Draft7Validator:
    with path.open(encoding="utf-8") as fh:
        return jsonschema.Draft7Validator(json.load(fh))


def schema_errors(doc: dict[str, Any], label: str) -> list[str]:
    """Validation errors for ``doc``; ``pytest.skip`` with a reason when its schema is absent."""
    group, _, version = str(doc["apiVersion"]).rpartition("/")
    kind = str(doc["kind"])
    if is_core_group(group):
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            pytest.skip(
                f"{label}: kubernetes-validate {K8S_VERSION} has no schema for {doc['apiVersion']} {kind}"
            )
        except kubernetes_validate.ValidationError as exc:
            return [f"{'/'.join(map(str, exc.path)) or '<root>'}: {exc.message}"]
        return []
    root = schemas_dir()
    if root is None:
        pytest.skip(
            f"CRD schemas not found (looked for ../shared/schemas beside the repo and ${SCHEMAS_ENV})"
        )
    schema = root / group / f"{kind.lower()}_{version}.json"
    if not schema.is_file():
        pytest.skip(f"{label}: no schema {group}/{schema.name} in {root} (none published for this kind)")
    errors = _custom_validator(schema).iter_errors(doc)
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]


@pytest.mark.parametrize("manifest", all_manifests(), ids=lambda m: m.label)
def test_manifest_validated_against_its_schema_has_no_errors(manifest: Manifest) -> None:
    assert schema_errors(manifest.doc, manifest.label) == []


def test_manifest_corpus_loaded_covers_every_tree() -> None:
    origins = {m.origin.split("/")[0] for m in all_manifests()}
    assert origins == {"knative", "eventing", "dapr"}
    assert len(of_kind(built(), "Service", "serving.knative.dev")) == 21  # base + dev + prod, 7 each


def test_knative_service_misspelled_container_field_reports_error() -> None:
    (api,) = [m for m in of_kind(raw(), "Service", "serving.knative.dev") if m.name == "tasktide-api"]
    doc = copy.deepcopy(api.doc)
    container = doc["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbes"] = container.pop("readinessProbe")
    errors = schema_errors(doc, "mutated tasktide-api")
    assert any("readinessProbes" in error for error in errors)


def test_kafka_source_misspelled_delivery_field_reports_error() -> None:
    source = of_kind(raw(), "KafkaSource")[0]
    doc = copy.deepcopy(source.doc)
    doc["spec"]["delivery"]["retries"] = doc["spec"]["delivery"].pop("retry")
    errors = schema_errors(doc, "mutated KafkaSource")
    assert any("retries" in error for error in errors)


def test_core_role_unknown_field_reports_error() -> None:
    (role,) = of_kind(raw(), "Role", "rbac.authorization.k8s.io")
    doc = copy.deepcopy(role.doc)
    doc["rulez"] = doc.pop("rules")
    errors = schema_errors(doc, "mutated Role")
    assert any("rulez" in error for error in errors)


def _referenced_files(directory: Path) -> set[Path]:
    kfile = find_kustomization(directory)
    assert kfile is not None
    (spec,) = load_yaml(kfile)
    entries = list(spec.get("resources") or []) + [
        p["path"] for p in spec.get("patches") or [] if "path" in p
    ]
    return {(directory / entry).resolve() for entry in entries}


def test_resource_file_outside_kustomizations_only_when_allowlisted() -> None:
    referenced = set().union(*(_referenced_files(d) for d in kustomization_dirs()))
    orphans = {
        path.relative_to(REPO_ROOT).as_posix()
        for path in yaml_files()
        if path.resolve() not in referenced and any(is_resource(doc) for doc in load_yaml(path))
    }
    assert orphans == set(LOOSE_RESOURCE_FILES)
