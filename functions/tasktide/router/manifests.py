"""Load Knative Eventing / Serving manifests into frozen dataclasses.

Consumes what the real ``kustomize build`` renders (namespace, overlays, patches) for each given
directory (default: the settings' ``eventing_dir`` and ``knative_dir``); a directory without its own
``kustomization.yaml`` is built from ``overlays/dev/``. The kustomize binary is ``$TASKTIDE_KUSTOMIZE``,
else ``<repo>/.local/bin/kustomize`` (``bash .ci/kustomize.sh``), else PATH; each rendering is run once per
process with a bounded timeout. Emits a :class:`Manifests` bundle of
Brokers, Triggers, KafkaSources, PingSources, KafkaSinks, KafkaTopics and Services. Unknown kinds are
ignored; unsupported Trigger filters raise :class:`~tasktide.router.filters.UnsupportedFilter`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tasktide.router.filters import Filter, parse_filters

_DURATION = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


class ManifestError(ValueError):
    """A manifest is structurally invalid (bad duration, missing name, ...)."""


class KustomizeNotFound(ManifestError):
    """No kustomize binary: ``$TASKTIDE_KUSTOMIZE``, ``<repo>/.local/bin/kustomize`` and PATH all miss."""


KUSTOMIZE_ENV = "TASKTIDE_KUSTOMIZE"
KUSTOMIZE_TIMEOUT = 60.0  # seconds per `kustomize build`
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_REPO_ROOT = Path(__file__).resolve().parents[3]


def find_kustomize() -> str:
    """The kustomize binary: ``$TASKTIDE_KUSTOMIZE``, then ``<repo>/.local/bin/kustomize``, then PATH."""
    explicit = os.environ.get(KUSTOMIZE_ENV)
    if explicit:
        if Path(explicit).is_file():
            return explicit
        raise KustomizeNotFound(f"{KUSTOMIZE_ENV}={explicit} is not a file; run `bash .ci/kustomize.sh`")
    local = _REPO_ROOT / ".local" / "bin" / "kustomize"
    if local.is_file():
        return str(local)
    found = shutil.which("kustomize")
    if found:
        return found
    raise KustomizeNotFound("kustomize is not installed: run `bash .ci/kustomize.sh`")


def kustomization_dir(root: Path) -> Path | None:
    """The kustomization to build for ``root``: itself, else its ``overlays/dev``; None if neither."""
    for candidate in (root, root / "overlays" / "dev"):
        if any((candidate / name).is_file() for name in KUSTOMIZATION_FILES):
            return candidate
    return None


@cache
def _render_cached(directory: str, binary: str) -> tuple[Mapping[str, Any], ...]:
    try:
        done = subprocess.run(
            [binary, "build", directory],
            capture_output=True,
            text=True,
            timeout=KUSTOMIZE_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ManifestError(f"kustomize build {directory} timed out after {KUSTOMIZE_TIMEOUT:g}s") from exc
    if done.returncode != 0:
        raise ManifestError(f"kustomize build {directory} failed: {done.stderr.strip()}")
    return tuple(d for d in yaml.safe_load_all(done.stdout) if isinstance(d, dict))


def render(directory: Path) -> list[Mapping[str, Any]]:
    """The documents ``kustomize build directory`` renders (cached per process)."""
    return list(_render_cached(str(directory.resolve()), find_kustomize()))


def parse_duration(text: str) -> float:
    """ISO 8601 duration (``PT0.5S``, ``PT1M``, ``P1DT2H``) to seconds."""
    match = _DURATION.match(text.strip())
    if not match or text.strip() in ("P", "PT"):
        raise ManifestError(f"invalid ISO 8601 duration {text!r}")
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    return parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]


@dataclass(frozen=True)
class Ref:
    kind: str
    name: str
    api_version: str = ""
    namespace: str = "default"


@dataclass(frozen=True)
class Destination:
    """A Knative ``Destination``: a ``ref``, a ``uri``, or both (uri relative to the ref)."""

    ref: Ref | None = None
    uri: str | None = None


@dataclass(frozen=True)
class DeliverySpec:
    retry: int | None = None
    backoff_policy: str | None = None  # "exponential" | "linear"
    backoff_delay: float | None = None  # seconds
    dead_letter_sink: Destination | None = None
    timeout: float | None = None  # seconds

    def merged_over(self, base: DeliverySpec | None) -> DeliverySpec:
        """This spec with unset fields taken from ``base`` (Trigger delivery over Broker delivery)."""
        if base is None:
            return self
        return DeliverySpec(
            retry=self.retry if self.retry is not None else base.retry,
            backoff_policy=self.backoff_policy or base.backoff_policy,
            backoff_delay=self.backoff_delay if self.backoff_delay is not None else base.backoff_delay,
            dead_letter_sink=self.dead_letter_sink or base.dead_letter_sink,
            timeout=self.timeout if self.timeout is not None else base.timeout,
        )


ORDER_ANNOTATION = "kafka.eventing.knative.dev/delivery.order"
BROKER_CONFIG_PARTITIONS = "default.topic.partitions"


@dataclass(frozen=True)
class Broker:
    name: str
    namespace: str = "default"
    delivery: DeliverySpec | None = None
    partitions: int = 1  # of its topic: the `default.topic.partitions` of its config ConfigMap


@dataclass(frozen=True)
class Trigger:
    name: str
    broker: str
    subscriber: Destination
    namespace: str = "default"
    filter_attributes: Mapping[str, str] = field(default_factory=dict)
    filters: tuple[Filter, ...] = ()
    delivery: DeliverySpec | None = None
    ordered: bool = False  # annotation kafka.eventing.knative.dev/delivery.order: ordered (default unordered)


@dataclass(frozen=True)
class KafkaSource:
    name: str
    topics: tuple[str, ...]
    consumer_group: str
    sink: Destination
    namespace: str = "default"
    delivery: DeliverySpec | None = None
    ordered: bool = False  # spec.ordering: ordered (absent in a manifest: ordered, as Knative defaults it)


@dataclass(frozen=True)
class PingSource:
    name: str
    schedule: str
    sink: Destination
    namespace: str = "default"
    data: str | None = None
    data_base64: str | None = None
    content_type: str | None = None
    timezone: str | None = None


@dataclass(frozen=True)
class KafkaSink:
    name: str
    topic: str
    namespace: str = "default"


@dataclass(frozen=True)
class KafkaTopic:
    name: str
    topic_name: str
    partitions: int = 1
    replicas: int = 1


@dataclass(frozen=True)
class ServiceDef:
    name: str
    namespace: str = "default"
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifests:
    brokers: tuple[Broker, ...] = ()
    triggers: tuple[Trigger, ...] = ()
    kafka_sources: tuple[KafkaSource, ...] = ()
    ping_sources: tuple[PingSource, ...] = ()
    kafka_sinks: tuple[KafkaSink, ...] = ()
    kafka_topics: tuple[KafkaTopic, ...] = ()
    services: tuple[ServiceDef, ...] = ()


def _map(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _destination(raw: object, ns: str) -> Destination:
    body = _map(raw)
    ref_raw = _map(body.get("ref"))
    ref = None
    if ref_raw:
        ref = Ref(
            kind=str(ref_raw.get("kind", "")),
            name=str(ref_raw.get("name", "")),
            api_version=str(ref_raw.get("apiVersion", "")),
            namespace=str(ref_raw.get("namespace", ns)),
        )
    uri = body.get("uri")
    return Destination(ref=ref, uri=str(uri) if uri is not None else None)


def _delivery(raw: object, ns: str) -> DeliverySpec | None:
    body = _map(raw)
    if not body:
        return None
    policy = body.get("backoffPolicy")
    if policy is not None and policy not in ("exponential", "linear"):
        raise ManifestError(f"backoffPolicy must be 'exponential' or 'linear', got {policy!r}")
    delay, timeout = body.get("backoffDelay"), body.get("timeout")
    dls = body.get("deadLetterSink")
    return DeliverySpec(
        retry=int(body["retry"]) if body.get("retry") is not None else None,
        backoff_policy=policy,
        backoff_delay=parse_duration(str(delay)) if delay else None,
        dead_letter_sink=_destination(dls, ns) if dls else None,
        timeout=parse_duration(str(timeout)) if timeout else None,
    )


def _env(spec: dict[str, Any]) -> dict[str, str]:
    containers = _map(_map(_map(spec.get("template")).get("spec"))).get("containers") or []
    env: dict[str, str] = {}
    for container in containers:
        for item in _map(container).get("env") or []:
            if isinstance(item, dict) and "name" in item and "value" in item:
                env[str(item["name"])] = str(item["value"])
    return env


def _ordering(value: object, what: str, *, default: bool = False, fold_case: bool = False) -> bool:
    if value is None:
        return default
    if fold_case and isinstance(value, str):  # the Kafka Trigger reconciler lowercases the annotation
        value = value.lower()
    if value == "unordered":
        return False
    if value == "ordered":
        return True
    raise ManifestError(f"{what}: delivery order must be 'ordered' or 'unordered', got {value!r}")


def _broker_partitions(spec: dict[str, Any], ns: str, config_maps: Mapping[tuple[str, str], Any]) -> int:
    config = _map(spec.get("config"))
    if config.get("kind", "ConfigMap") != "ConfigMap" or not config.get("name"):
        return 1
    data = _map(config_maps.get((str(config.get("namespace", ns)), str(config["name"]))))
    try:
        return max(int(data.get(BROKER_CONFIG_PARTITIONS, 1)), 1)
    except (TypeError, ValueError) as exc:
        raise ManifestError(f"{BROKER_CONFIG_PARTITIONS} must be an integer: {exc}") from exc


def _parse(
    doc: Mapping[str, Any], out: dict[str, list[Any]], config_maps: Mapping[tuple[str, str], Any]
) -> None:
    kind = doc.get("kind")
    meta, spec = _map(doc.get("metadata")), _map(doc.get("spec"))
    name, ns = str(meta.get("name", "")), str(meta.get("namespace", "default"))
    annotations = _map(meta.get("annotations"))
    if kind == "Broker":
        partitions = _broker_partitions(spec, ns, config_maps)
        out["brokers"].append(Broker(name, ns, _delivery(spec.get("delivery"), ns), partitions))
    elif kind == "Trigger":
        legacy = _map(_map(spec.get("filter")).get("attributes"))
        out["triggers"].append(
            Trigger(
                name=name,
                broker=str(spec.get("broker", "default")),
                subscriber=_destination(spec.get("subscriber"), ns),
                namespace=ns,
                filter_attributes={str(k): "" if v is None else str(v) for k, v in legacy.items()},
                filters=parse_filters(spec.get("filters"), name),
                delivery=_delivery(spec.get("delivery"), ns),
                ordered=_ordering(annotations.get(ORDER_ANNOTATION), f"Trigger {name}", fold_case=True),
            )
        )
    elif kind == "KafkaSource":
        out["kafka_sources"].append(
            KafkaSource(
                name=name,
                topics=tuple(str(t) for t in spec.get("topics") or ()),
                consumer_group=str(spec.get("consumerGroup") or name),
                sink=_destination(spec.get("sink"), ns),
                namespace=ns,
                delivery=_delivery(spec.get("delivery"), ns),
                # Knative's SetDefaults makes an absent spec.ordering `ordered` (a Trigger's is unordered)
                ordered=_ordering(spec.get("ordering"), f"KafkaSource {name}", default=True),
            )
        )
    elif kind == "PingSource":
        out["ping_sources"].append(
            PingSource(
                name=name,
                schedule=str(spec.get("schedule", "* * * * *")),
                sink=_destination(spec.get("sink"), ns),
                namespace=ns,
                data=spec.get("data"),
                data_base64=spec.get("dataBase64"),
                content_type=spec.get("contentType"),
                timezone=spec.get("timezone"),
            )
        )
    elif kind == "KafkaSink":
        out["kafka_sinks"].append(KafkaSink(name, str(spec.get("topic", name)), ns))
    elif kind == "KafkaTopic":
        topic = str(spec.get("topicName") or name)
        out["kafka_topics"].append(
            KafkaTopic(name, topic, int(spec.get("partitions", 1)), int(spec.get("replicas", 1)))
        )
    elif kind == "Service" and str(doc.get("apiVersion", "")).startswith("serving.knative.dev"):
        out["services"].append(ServiceDef(name, ns, _env(spec)))


def load_documents(docs: Iterable[Mapping[str, Any]]) -> Manifests:
    """Build a :class:`Manifests` from already-parsed YAML documents."""
    out: dict[str, list[Any]] = {name: [] for name in Manifests.__dataclass_fields__}
    seen: set[tuple[str, str, str]] = set()
    unique: list[Mapping[str, Any]] = []
    for doc in docs:
        if not isinstance(doc, dict):
            continue
        meta = _map(doc.get("metadata"))
        identity = (str(doc.get("kind")), str(meta.get("namespace", "default")), str(meta.get("name", "")))
        if identity in seen:  # e.g. an overlay repeating a base resource: the first (base) one wins
            continue
        seen.add(identity)
        unique.append(doc)
    config_maps: dict[tuple[str, str], Any] = {}
    for doc in unique:
        if doc.get("kind") == "ConfigMap":
            meta = _map(doc.get("metadata"))
            config_maps[(str(meta.get("namespace", "default")), str(meta.get("name")))] = doc.get("data")
    for doc in unique:
        _parse(doc, out, config_maps)
    return Manifests(**{name: tuple(items) for name, items in out.items()})


def load_manifests(*dirs: Path) -> Manifests:
    """Load what ``kustomize build`` renders for ``dirs`` (default: settings.eventing_dir, knative_dir).

    A missing directory contributes nothing; an existing one without a kustomization is an error."""
    if not dirs:
        from tasktide.settings import get_settings

        settings = get_settings()
        dirs = (settings.eventing_dir, settings.knative_dir)
    docs: list[Mapping[str, Any]] = []
    for root in dirs:
        if not root.is_dir():
            continue
        target = kustomization_dir(root)
        if target is None:
            raise ManifestError(f"{root}: no kustomization.yaml (nor overlays/dev/) to `kustomize build`")
        docs.extend(render(target))
    return load_documents(docs)
