"""Trigger filters: the legacy ``spec.filter.attributes`` and the new ``spec.filters`` dialect.

Consumes the raw YAML of a Trigger's filters (parsed once, at manifest load time, into :class:`Filter`
trees) and an event's string attributes; emits a match decision. ``cesql`` is rejected at load time with
:class:`UnsupportedFilter` naming the trigger.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

Dialect = Literal["exact", "prefix", "suffix", "all", "any", "not"]
_LEAF: tuple[Dialect, ...] = ("exact", "prefix", "suffix")
_NESTED: tuple[Dialect, ...] = ("all", "any", "not")


class UnsupportedFilter(ValueError):
    """A Trigger uses a filter the local runtime cannot evaluate (e.g. ``cesql``) or a malformed one."""


@dataclass(frozen=True)
class Filter:
    """One node of the new-style filter tree."""

    dialect: Dialect
    attributes: Mapping[str, str] = field(default_factory=dict)
    children: tuple[Filter, ...] = ()


def parse_filters(raw: object, trigger: str) -> tuple[Filter, ...]:
    """Parse ``spec.filters`` (a list of one-key mappings) for the trigger named ``trigger``."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise UnsupportedFilter(f"Trigger {trigger!r}: spec.filters must be a list")
    return tuple(_parse_one(item, trigger) for item in raw)


def _parse_one(item: object, trigger: str) -> Filter:
    if not isinstance(item, dict) or len(item) != 1:
        raise UnsupportedFilter(f"Trigger {trigger!r}: each filter must have exactly one dialect key")
    ((dialect, body),) = item.items()
    if dialect == "cesql":
        raise UnsupportedFilter(
            f"Trigger {trigger!r}: the 'cesql' filter dialect is not supported by the local runtime "
            f"(expression {body!r}); use exact/prefix/suffix/all/any/not"
        )
    if dialect in _LEAF:
        if not isinstance(body, dict) or not body:
            raise UnsupportedFilter(f"Trigger {trigger!r}: '{dialect}' needs a non-empty attribute map")
        return Filter(dialect, {str(k): str(v) for k, v in body.items()})
    if dialect == "not":
        return Filter("not", children=(_parse_one(body, trigger),))
    if dialect in ("all", "any"):
        if not isinstance(body, list):
            raise UnsupportedFilter(f"Trigger {trigger!r}: '{dialect}' needs a list of filters")
        return Filter(dialect, children=tuple(_parse_one(child, trigger) for child in body))
    raise UnsupportedFilter(f"Trigger {trigger!r}: unknown filter dialect {dialect!r}")


def evaluate(node: Filter, attrs: Mapping[str, str]) -> bool:
    """Evaluate one filter node against event attributes."""
    if node.dialect == "exact":
        return all(attrs.get(k) == v for k, v in node.attributes.items())
    if node.dialect == "prefix":
        return all(
            attrs.get(k, None) is not None and attrs[k].startswith(v) for k, v in node.attributes.items()
        )
    if node.dialect == "suffix":
        return all(
            attrs.get(k, None) is not None and attrs[k].endswith(v) for k, v in node.attributes.items()
        )
    if node.dialect == "all":
        return all(evaluate(child, attrs) for child in node.children)
    if node.dialect == "any":
        return any(evaluate(child, attrs) for child in node.children)
    return not evaluate(node.children[0], attrs)


def matches_legacy(filter_attributes: Mapping[str, str], attrs: Mapping[str, str]) -> bool:
    """Legacy ``spec.filter.attributes``: exact match; an empty-string value matches anything."""
    return all(want == "" or attrs.get(name) == want for name, want in filter_attributes.items())


class Filtered(Protocol):
    """What :func:`matches` reads of a Trigger (``manifests.Trigger``; this module imports no manifests)."""

    @property
    def filters(self) -> tuple[Filter, ...]: ...

    @property
    def filter_attributes(self) -> Mapping[str, str]: ...


def matches(trigger: Filtered, attrs: Mapping[str, str]) -> bool:
    """Whether ``trigger`` accepts an event with ``attrs``. ``spec.filters`` wins over ``spec.filter``."""
    if trigger.filters:
        return all(evaluate(node, attrs) for node in trigger.filters)
    return matches_legacy(trigger.filter_attributes, attrs)
