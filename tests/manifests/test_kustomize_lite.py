"""Unit tests of the pure-Python kustomize subset on small kustomizations written to ``tmp_path``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from .kustomize_lite import KustomizeError, apply_json6902, build, split_image, strategic_merge

SERVICE = {
    "apiVersion": "serving.knative.dev/v1",
    "kind": "Service",
    "metadata": {"name": "svc", "labels": {"tier": "fn"}},
    "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "reg.io/app:1", "env": []}]}}},
}


def _write(directory: Path, files: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (directory / name).write_text(yaml.safe_dump(content), encoding="utf-8")


def test_build_json6902_patch_with_label_target_applies_to_match(tmp_path: Path) -> None:
    _write(tmp_path / "base", {"svc.yaml": SERVICE, "kustomization.yaml": {"resources": ["svc.yaml"]}})
    patch = [
        {"op": "add", "path": "/spec/template/spec/containers/0/env/-", "value": {"name": "A", "value": "1"}}
    ]
    _write(
        tmp_path / "overlay",
        {
            "patch.yaml": patch,
            "kustomization.yaml": {
                "namespace": "ns",
                "resources": ["../base"],
                "images": [{"name": "reg.io/app", "newTag": "2"}],
                "patches": [
                    {"path": "patch.yaml", "target": {"kind": "Service", "labelSelector": "tier=fn"}}
                ],
            },
        },
    )
    (doc,) = build(tmp_path / "overlay")
    container = doc["spec"]["template"]["spec"]["containers"][0]
    assert container["env"] == [{"name": "A", "value": "1"}]
    assert container["image"] == "reg.io/app:2"
    assert doc["metadata"]["namespace"] == "ns"


def test_build_patch_matching_nothing_raises(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "svc.yaml": SERVICE,
            "patch.yaml": [{"op": "remove", "path": "/spec"}],
            "kustomization.yaml": {
                "resources": ["svc.yaml"],
                "patches": [{"path": "patch.yaml", "target": {"name": "other"}}],
            },
        },
    )
    with pytest.raises(KustomizeError, match="matched no resource"):
        build(tmp_path)


def test_build_unsupported_field_raises(tmp_path: Path) -> None:
    _write(
        tmp_path, {"svc.yaml": SERVICE, "kustomization.yaml": {"resources": ["svc.yaml"], "namePrefix": "x-"}}
    )
    with pytest.raises(KustomizeError, match="namePrefix"):
        build(tmp_path)


def test_json6902_failed_test_op_raises() -> None:
    doc: dict[str, Any] = {"a": [{"name": "x"}]}
    with pytest.raises(KustomizeError, match="test failed"):
        apply_json6902(doc, [{"op": "test", "path": "/a/0/name", "value": "y"}])


def test_json6902_replace_missing_path_raises() -> None:
    with pytest.raises(KustomizeError, match="does not exist"):
        apply_json6902({"a": {}}, [{"op": "replace", "path": "/a/b~1c", "value": 1}])


def test_json6902_escaped_key_replaced() -> None:
    doc: dict[str, Any] = {"annotations": {"x.io/min": "0"}}
    apply_json6902(doc, [{"op": "replace", "path": "/annotations/x.io~1min", "value": "1"}])
    assert doc == {"annotations": {"x.io/min": "1"}}


def test_strategic_merge_lists_replaced_and_null_deletes() -> None:
    merged = strategic_merge({"a": {"b": 1, "c": 2}, "l": [1, 2]}, {"a": {"c": None, "d": 3}, "l": [9]})
    assert merged == {"a": {"b": 1, "d": 3}, "l": [9]}


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("ghcr.io/o/app:1.2", ("ghcr.io/o/app", "1.2", None)),
        ("localhost:5000/app", ("localhost:5000/app", None, None)),
        ("app@sha256:abc", ("app", None, "sha256:abc")),
    ],
)
def test_split_image_reference_parts_extracted(
    ref: str, expected: tuple[str, str | None, str | None]
) -> None:
    assert split_image(ref) == expected
