"""Dapr resources for a self-hosted daprd, rendered from the cluster YAML under ``dapr/``.

Consumes: ``dapr/*.yaml`` (Components, Configuration, Resiliency, Subscriptions) and the local values that
replace what only a cluster has: a Postgres DSN instead of the ``statestore-connection-string`` Secret,
a ``secretstores.local.file`` instead of ``secretstores.kubernetes``, loopback Kafka brokers.
Emits: ``Resources`` (a directory for ``daprd --resources-path`` plus a Configuration file for ``--config``).

What changes self-hosted, and why:
- ``spec.mtls`` and ``spec.tracing`` are dropped: mTLS needs the control plane's Sentry, tracing needs the
  cluster's OpenTelemetry collector. Secret scoping, metrics and resiliency run as on the cluster.
- ``spec.nameResolution`` is set to the ``kubernetes`` resolver with a template that maps each app id to
  its daprd's loopback internal gRPC port: daprd's self-hosted default (mDNS) binds 0.0.0.0:5353 and
  multicasts, which nothing here may do.
- The local secret store is ``multiValued``: its top-level key ``tasktide-secrets`` is the same bundle the
  cluster's Kubernetes Secret is, so the Configuration's secret scope (only ``tasktide-secrets``) holds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tasktide.settings import REPO_ROOT

DAPR_DIR = REPO_ROOT / "dapr"
SECRET_BUNDLE = "tasktide-secrets"
UNRESOLVED = "127.0.0.1:1"  # an app id nobody registered: connection refused, never a lookup off-host

Doc = dict[str, Any]


def load(name: str, dapr_dir: Path = DAPR_DIR) -> list[Doc]:
    """The YAML documents of ``dapr/<name>``."""
    text = (dapr_dir / name).read_text(encoding="utf-8")
    return [doc for doc in yaml.safe_load_all(text) if doc]


def load_one(name: str, dapr_dir: Path = DAPR_DIR) -> Doc:
    (doc,) = load(name, dapr_dir)
    return doc


def set_metadata(doc: Doc, name: str, value: str) -> Doc:
    """Set (or add) component metadata ``name`` to a literal ``value`` (dropping any secretKeyRef)."""
    items: list[Doc] = doc["spec"].setdefault("metadata", []) or []
    doc["spec"]["metadata"] = items
    for item in items:
        if item.get("name") == name:
            item.pop("secretKeyRef", None)
            item["value"] = value
            return doc
    items.append({"name": name, "value": value})
    return doc


def libpq_dsn(url: str) -> str:
    """``postgresql+psycopg://u:p@h:port/db`` (SQLAlchemy) -> ``postgres://u:p@h:port/db`` (pgx)."""
    scheme, _, rest = url.partition("://")
    if not scheme.startswith("postgres"):
        raise ValueError(f"not a Postgres URL: {url}")
    return f"postgres://{rest}"


def statestore(postgres_url: str, *, table: str | None = None) -> Doc:
    """``dapr/statestore.yaml`` (state.postgresql) with a literal connection string."""
    doc = set_metadata(load_one("statestore.yaml"), "connectionString", libpq_dsn(postgres_url))
    if table is not None:
        set_metadata(doc, "tableName", table)
        set_metadata(doc, "metadataTableName", f"{table}_metadata")
    return doc


def secretstore(secrets_file: Path) -> Doc:
    """The cluster's ``secretstore`` name, served by a multi-valued ``secretstores.local.file``."""
    return {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Component",
        "metadata": {"name": "secretstore"},
        "spec": {
            "type": "secretstores.local.file",
            "version": "v1",
            "metadata": [
                {"name": "secretsFile", "value": str(secrets_file)},
                {"name": "multiValued", "value": "true"},
            ],
        },
    }


def write_secrets(path: Path, bundle: Mapping[str, str], others: Mapping[str, str] | None = None) -> Path:
    """A local.file secrets file: ``tasktide-secrets`` = ``bundle``; ``others`` as single-key secrets."""
    document: dict[str, Any] = {SECRET_BUNDLE: dict(bundle)}
    for name, value in (others or {}).items():
        document[name] = {name: value}
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return path


def resolver_template(internal_ports: Mapping[str, int]) -> str:
    """A Go text/template for the kubernetes resolver: app id -> 127.0.0.1:<its internal gRPC port>."""
    if not internal_ports:
        return UNRESOLVED
    branches = [f'if eq .ID "{app}"}}}}127.0.0.1:{port}' for app, port in sorted(internal_ports.items())]
    return "{{" + "{{else ".join(branches) + "{{else}}" + UNRESOLVED + "{{end}}"


def configuration(internal_ports: Mapping[str, int]) -> Doc:
    """``dapr/configuration.yaml`` minus its cluster-only parts (mtls, tracing, accessControl), with loopback
    name resolution; the API allowlist and the secret scopes stay."""
    doc = load_one("configuration.yaml")
    spec = doc["spec"]
    spec.pop("mtls", None)
    spec.pop("tracing", None)
    # accessControl judges a caller by its mTLS (SPIFFE) identity; without Sentry every caller is anonymous
    # and a deny-by-default policy refuses them all, so it is cluster-only like mtls.
    spec.pop("accessControl", None)
    spec["nameResolution"] = {
        "component": "kubernetes",
        "configuration": {"template": resolver_template(internal_ports)},
    }
    return doc


def pubsub(bootstrap: str) -> Doc:
    """``dapr/eventing/pubsub.yaml`` (pubsub.kafka) pointed at a loopback broker."""
    return set_metadata(load_one("eventing/pubsub.yaml"), "brokers", bootstrap)


@dataclass(frozen=True)
class Resources:
    """A ``--resources-path`` directory and the ``--config`` file beside it."""

    path: Path
    config: Path


def write(dest: Path, config: Doc, docs: Iterable[Doc]) -> Resources:
    """Write ``docs`` (one file each) to ``dest/resources`` and ``config`` to ``dest/config.yaml``."""
    resources = dest / "resources"
    resources.mkdir(parents=True, exist_ok=True)
    for index, doc in enumerate(docs):
        name = f"{index:02d}-{doc['kind'].lower()}-{doc['metadata']['name']}.yaml"
        (resources / name).write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    config_file = dest / "config.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return Resources(resources, config_file)
