"""The real kustomize (pinned, installed by .ci/kustomize.sh in `make services`) renders every
kustomization, and the local runtime's view of the eventing plane matches what it renders."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tasktide.router.manifests import load_documents

REPO_ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZATIONS = (
    "eventing",
    "eventing/kafka",
    "knative/base",
    "knative/overlays/dev",
    "knative/overlays/prod",
)


def kustomize() -> str:
    binary = REPO_ROOT / ".local" / "bin" / "kustomize"
    if not binary.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail("kustomize is not installed: run `bash .ci/kustomize.sh install` (make services)")
        pytest.skip("kustomize is not installed (run `bash .ci/kustomize.sh install`)")
    return str(binary)


def rendered(directory: str) -> list[dict[str, object]]:
    out = subprocess.run(
        [kustomize(), "build", str(REPO_ROOT / directory)], check=True, capture_output=True, text=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if isinstance(doc, dict)]


def test_kustomize_build_eventing_puts_the_broker_in_namespace_tasktide_with_ordering() -> None:
    manifests = load_documents(rendered("eventing"))
    assert {(b.namespace, b.name, b.partitions) for b in manifests.brokers} == {("tasktide", "default", 3)}
    ordered = {t.name: t.ordered for t in manifests.triggers}
    assert ordered == {"recurring": True, "audit": True, "notifier": False}
    assert {t.namespace for t in manifests.triggers} == {"tasktide"}
