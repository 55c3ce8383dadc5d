"""The cluster manifests under test, loaded once, and where their JSON Schemas live.

Consumes ``knative/``, ``eventing/`` (minus ``eventing/local/``) and ``dapr/`` from the repo root and the
CRD schema directory (``<repo root>/../shared/schemas``, else env ``TASKTIDE_SCHEMAS_DIR``).
Emits :class:`Manifest` records: every kustomization rendered by the real
``kustomize build`` (:func:`tasktide.router.manifests.render`, the router's own loader), and every resource
file on its own (so files outside a kustomization, e.g. ``dapr/local/``, are checked too).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tasktide.router.manifests import KUSTOMIZATION_FILES, render

REPO_ROOT = Path(__file__).resolve().parents[2]
MANIFEST_TREES = ("knative", "eventing", "dapr")
SKIPPED_DIRS = (REPO_ROOT / "eventing" / "local",)
SCHEMAS_ENV = "TASKTIDE_SCHEMAS_DIR"

# Shipped on purpose outside every kustomization (applied by hand or used by `dapr run`).
LOOSE_RESOURCE_FILES = frozenset(
    {
        "dapr/secret.example.yaml",
        "dapr/dapr-api-token.example.yaml",
        "dapr/local/secretstore.yaml",
        "dapr/local/statestore.yaml",
    }
)


@dataclass(frozen=True)
class Manifest:
    """One Kubernetes document and where it came from (a kustomization dir or a file, repo-relative)."""

    origin: str
    doc: dict[str, Any]

    @property
    def api_version(self) -> str:
        return str(self.doc.get("apiVersion", ""))

    @property
    def kind(self) -> str:
        return str(self.doc.get("kind", ""))

    @property
    def name(self) -> str:
        return str((self.doc.get("metadata") or {}).get("name", ""))

    @property
    def label(self) -> str:
        return f"{self.origin}:{self.kind}/{self.name}"


def schemas_dir() -> Path | None:
    """``<repo root>/../shared/schemas`` if present, else ``$TASKTIDE_SCHEMAS_DIR`` if set and present."""
    candidates = [REPO_ROOT.parent / "shared" / "schemas"]
    if os.environ.get(SCHEMAS_ENV):
        candidates.append(Path(os.environ[SCHEMAS_ENV]))
    return next((path for path in candidates if path.is_dir()), None)


def load_yaml(path: Path) -> list[Any]:
    """Every non-empty YAML document in ``path``."""
    with path.open(encoding="utf-8") as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]


def find_kustomization(directory: Path) -> Path | None:
    return next((directory / n for n in KUSTOMIZATION_FILES if (directory / n).is_file()), None)


def build(directory: Path) -> list[dict[str, Any]]:
    """What the real ``kustomize build directory`` renders."""
    return [dict(doc) for doc in render(directory)]


def _rel(path: Path) -> str:
    return path.relative_to(REPO_ROOT).as_posix()


def _skipped(path: Path) -> bool:
    return any(path.is_relative_to(skip) for skip in SKIPPED_DIRS)


def yaml_files() -> Iterator[Path]:
    """Every YAML file of the manifest trees, sorted, minus the skipped dirs."""
    for tree in MANIFEST_TREES:
        for path in sorted((REPO_ROOT / tree).rglob("*")):
            if path.suffix in (".yaml", ".yml") and path.is_file() and not _skipped(path):
                yield path


def kustomization_dirs() -> list[Path]:
    return sorted(
        path.parent
        for path in yaml_files()
        if path.name in KUSTOMIZATION_FILES and find_kustomization(path.parent)
    )


def is_resource(doc: Any) -> bool:
    return (
        isinstance(doc, dict)
        and "apiVersion" in doc
        and "kind" in doc
        and not str(doc["apiVersion"]).startswith("kustomize.config.k8s.io/")
    )


@cache
def built() -> tuple[Manifest, ...]:
    """Output of every kustomization (base, overlays, eventing, eventing/kafka, dapr)."""
    return tuple(Manifest(_rel(d), doc) for d in kustomization_dirs() for doc in build(d))


@cache
def raw() -> tuple[Manifest, ...]:
    """Every resource document of every YAML file as written (patch files and kustomizations excluded)."""
    return tuple(
        Manifest(_rel(path), doc) for path in yaml_files() for doc in load_yaml(path) if is_resource(doc)
    )


def all_manifests() -> tuple[Manifest, ...]:
    return built() + raw()


def from_origin(origin: str) -> list[Manifest]:
    """The built documents of one kustomization dir, e.g. ``knative/overlays/prod``."""
    return [m for m in built() if m.origin == origin]


def of_kind(manifests: tuple[Manifest, ...] | list[Manifest], kind: str, group: str = "") -> list[Manifest]:
    return [m for m in manifests if m.kind == kind and m.api_version.startswith(group)]


def cluster_manifests() -> list[Manifest]:
    """Built documents that go to the cluster together (prod overlay stands for the Services)."""
    origins = {"knative/overlays/prod", "eventing", "eventing/kafka", "dapr"}
    return [m for m in built() if m.origin in origins]
