"""A small, pure-Python subset of ``kustomize build`` for offline manifest tests.

Consumes a directory holding ``kustomization.yaml`` (fields ``resources`` (files or directories),
``namespace``, ``images`` (``newName``/``newTag``/``digest``) and ``patches`` (``path`` or inline ``patch``,
optional ``target`` by group/version/kind/name/namespace/labelSelector)). Patches are JSON6902 operation
lists (add/replace/remove/test) or strategic-merge documents; the latter merge as kustomize merges custom
resources it has no schema for: maps recursively, ``null`` deletes, lists are replaced whole.
Emits the resulting documents as plain dicts. Anything else in a kustomization raises ``KustomizeError``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

Doc = dict[str, Any]

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_FIELDS = frozenset({"apiVersion", "kind", "namespace", "resources", "images", "patches"})


class KustomizeError(ValueError):
    """The kustomization uses something this subset does not implement, or a patch does not apply."""


@dataclass(frozen=True)
class Target:
    """A patch target selector; ``None`` fields match anything."""

    group: str | None = None
    version: str | None = None
    kind: str | None = None
    name: str | None = None
    namespace: str | None = None
    label_selector: str | None = None

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Target:
        return cls(
            group=raw.get("group"),
            version=raw.get("version"),
            kind=raw.get("kind"),
            name=raw.get("name"),
            namespace=raw.get("namespace"),
            label_selector=raw.get("labelSelector"),
        )

    def matches(self, doc: Mapping[str, Any]) -> bool:
        group, _, version = str(doc.get("apiVersion", "")).rpartition("/")
        meta = doc.get("metadata") or {}
        checks = (
            (self.group, group),
            (self.version, version),
            (self.kind, doc.get("kind")),
            (self.name, meta.get("name")),
            (self.namespace, meta.get("namespace")),
        )
        if any(want is not None and want != have for want, have in checks):
            return False
        return self.label_selector is None or _labels_match(self.label_selector, meta.get("labels") or {})


def _labels_match(selector: str, labels: Mapping[str, Any]) -> bool:
    """Equality-based selectors only (``a=b,c==d,e!=f``)."""
    for term in filter(None, (part.strip() for part in selector.split(","))):
        if "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = (s.strip() for s in term.replace("==", "=").split("=", 1))
            if labels.get(key) != value:
                return False
        else:
            raise KustomizeError(f"unsupported label selector term {term!r}")
    return True


def load_yaml(path: Path) -> list[Any]:
    """Every non-empty YAML document in ``path``."""
    with path.open(encoding="utf-8") as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]


def find_kustomization(directory: Path) -> Path | None:
    for name in KUSTOMIZATION_FILES:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None


def build(directory: Path) -> list[Doc]:
    """``kustomize build directory`` for the supported subset."""
    kfile = find_kustomization(directory)
    if kfile is None:
        raise KustomizeError(f"no kustomization file in {directory}")
    (spec,) = load_yaml(kfile)
    unknown = set(spec) - SUPPORTED_FIELDS
    if unknown:
        raise KustomizeError(f"{kfile}: unsupported fields {sorted(unknown)}")

    docs: list[Doc] = []
    for entry in spec.get("resources") or []:
        path = (directory / entry).resolve()
        if path.is_dir():
            docs.extend(build(path))
        elif path.is_file():
            docs.extend(_as_resource(doc, path) for doc in load_yaml(path))
        else:
            raise KustomizeError(f"{kfile}: resource {entry!r} not found")

    for patch_entry in spec.get("patches") or []:
        _apply_patch_entry(docs, patch_entry, directory)
    for image in spec.get("images") or []:
        for doc in docs:
            _set_images(doc, image)
    namespace = spec.get("namespace")
    if namespace:
        for doc in docs:
            doc.setdefault("metadata", {})["namespace"] = namespace
    return docs


def _as_resource(doc: Any, path: Path) -> Doc:
    if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
        raise KustomizeError(f"{path}: a resource document needs apiVersion and kind")
    return copy.deepcopy(doc)


def _apply_patch_entry(docs: list[Doc], entry: Mapping[str, Any], directory: Path) -> None:
    if "path" in entry:
        patches = load_yaml(directory / entry["path"])
    elif "patch" in entry:
        patches = [doc for doc in yaml.safe_load_all(entry["patch"]) if doc is not None]
    else:
        raise KustomizeError(f"patch entry without path or patch: {entry!r}")
    target = Target.from_mapping(entry["target"]) if entry.get("target") else None
    for patch in patches:
        if isinstance(patch, list):
            if target is None:
                raise KustomizeError("a JSON6902 patch needs a target")
            selected = [doc for doc in docs if target.matches(doc)]
            for doc in selected:
                apply_json6902(doc, patch)
        elif isinstance(patch, dict):
            meta = patch.get("metadata") or {}
            own = Target(kind=patch.get("kind"), name=meta.get("name"))
            indices = [i for i, doc in enumerate(docs) if (target or own).matches(doc)]
            selected = [docs[i] for i in indices]
            for index in indices:
                body = copy.deepcopy(patch)
                body.setdefault("metadata", {})["name"] = docs[index]["metadata"]["name"]
                docs[index] = strategic_merge(docs[index], body)
        else:
            raise KustomizeError(f"patch must be a list or a mapping, got {type(patch).__name__}")
        if not selected:
            raise KustomizeError(f"patch {entry!r} matched no resource")


def strategic_merge(base: Any, patch: Any) -> Any:
    """Merge ``patch`` into ``base`` as kustomize does for schema-less (custom) resources."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = copy.deepcopy(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            elif key in merged:
                merged[key] = strategic_merge(merged[key], value)
            else:
                merged[key] = copy.deepcopy(value)
        return merged
    return copy.deepcopy(patch)


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"JSON pointer must start with '/': {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _walk(doc: Any, parts: Sequence[str], path: str) -> Any:
    node = doc
    for part in parts:
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise KustomizeError(f"JSON patch path {path!r} does not exist") from exc
    return node


def apply_json6902(doc: Doc, ops: Iterable[Mapping[str, Any]]) -> None:
    """Apply RFC 6902 ``add``/``replace``/``remove``/``test`` operations to ``doc`` in place."""
    for op in ops:
        kind, path = op.get("op"), str(op.get("path", ""))
        parts = _pointer(path)
        parent, last = _walk(doc, parts[:-1], path), parts[-1]
        if kind == "test":
            if _walk(doc, parts, path) != op.get("value"):
                raise KustomizeError(f"JSON patch test failed at {path!r}")
        elif kind == "remove":
            _walk(doc, parts, path)
            del parent[int(last) if isinstance(parent, list) else last]
        elif kind in ("add", "replace"):
            value = copy.deepcopy(op.get("value"))
            if kind == "replace":
                _walk(doc, parts, path)
            if isinstance(parent, list):
                index = len(parent) if last == "-" else int(last)
                if kind == "add":
                    parent.insert(index, value)
                else:
                    parent[index] = value
            elif isinstance(parent, dict):
                parent[last] = value
            else:
                raise KustomizeError(f"JSON patch parent of {path!r} is not a container")
        else:
            raise KustomizeError(f"unsupported JSON patch op {kind!r}")


def _set_images(node: Any, image: Mapping[str, Any]) -> None:
    """Rewrite ``image`` fields of every ``containers``/``initContainers`` list below ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                for container in value:
                    if isinstance(container, dict) and "image" in container:
                        container["image"] = _rewrite_image(str(container["image"]), image)
            _set_images(value, image)
    elif isinstance(node, list):
        for item in node:
            _set_images(item, image)


def _rewrite_image(ref: str, image: Mapping[str, Any]) -> str:
    name, tag, digest = split_image(ref)
    if name != image["name"]:
        return ref
    name = str(image.get("newName", name))
    if "digest" in image:
        return f"{name}@{image['digest']}"
    if "newTag" in image:
        return f"{name}:{image['newTag']}"
    return name + (f"@{digest}" if digest else f":{tag}" if tag else "")


def split_image(ref: str) -> tuple[str, str | None, str | None]:
    """``registry:5000/repo:tag@sha256:..`` -> (name, tag, digest)."""
    name, _, digest = ref.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = None
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    return name, tag, digest or None
