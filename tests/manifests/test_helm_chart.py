"""The Helm chart renders the same objects as the kustomize sources, from one source.

Consumes: a real helm (`.ci/helm.sh`, built from the Go module proxy by `make services`), a real kustomize
(through `.ci/helm-chart.sh`), `charts/tasktide/` and the kustomize directories `dapr/`,
`knative/overlays/prod`, `eventing/`. Skipped locally without helm, a failure under CI.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "tasktide"


def _helm() -> str:
    path = subprocess.run(
        ["bash", str(ROOT / ".ci" / "helm.sh"), "path"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if not os.access(path, os.X_OK):
        if os.environ.get("CI") == "true":
            pytest.fail(f"helm is not installed at {path}: `make services` runs .ci/helm.sh install")
        pytest.skip("helm not installed (bash .ci/helm.sh install)")
    return path


def _objects(text: str) -> dict[tuple[str, str, str], Any]:
    docs = [d for d in yaml.safe_load_all(text) if d]
    objects = {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d for d in docs}
    assert len(objects) == len(docs), "duplicate objects"
    return objects


def _run(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True, cwd=ROOT, timeout=120).stdout


def _helm_template(*extra: str) -> dict[tuple[str, str, str], Any]:
    return _objects(_run(_helm(), "template", "tasktide", str(CHART), "--namespace", "tasktide", *extra))


def _kustomize() -> dict[tuple[str, str, str], Any]:
    return _objects(_run("bash", ".ci/helm-chart.sh", "kustomize"))


def test_helm_chart_generated_file_matches_kustomize_sources() -> None:
    result = subprocess.run(
        ["bash", ".ci/helm-chart.sh", "check"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_helm_template_default_values_renders_exactly_the_kustomize_objects() -> None:
    rendered, expected = _helm_template(), _kustomize()
    assert sorted(rendered) == sorted(expected)
    assert len(rendered) > 20  # Services, eventing, Dapr components: not an empty chart
    for key, obj in expected.items():
        assert rendered[key] == obj, key


def test_helm_template_image_value_changes_only_the_service_images() -> None:
    image = "registry.example/tasktide:abc123"
    rendered, expected = _helm_template("--set", f"image={image}"), _kustomize()
    assert sorted(rendered) == sorted(expected)
    services = [
        key
        for key in expected
        if key[0] == "Service" and "serving.knative.dev" in expected[key]["apiVersion"]
    ]
    assert len(services) == 7
    for key in services:
        [container] = rendered[key]["spec"]["template"]["spec"]["containers"]
        assert container["image"] == image
        container["image"] = expected[key]["spec"]["template"]["spec"]["containers"][0]["image"]
    for key, obj in expected.items():
        assert rendered[key] == obj, key
