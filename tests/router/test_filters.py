"""Tests for Trigger filters: legacy attributes and the new filters dialects."""

from __future__ import annotations

from typing import Any

import pytest

from tasktide.router.filters import UnsupportedFilter, matches, parse_filters
from tasktide.router.manifests import Destination, Trigger, load_documents

ATTRS = {"type": "com.tasktide.task.created", "source": "/tasktide/api", "subject": "t1"}


def _trigger(filters: list[Any] | None = None, legacy: dict[str, str] | None = None) -> Trigger:
    return Trigger(
        name="t",
        broker="default",
        subscriber=Destination(uri="http://x"),
        filter_attributes=legacy or {},
        filters=parse_filters(filters, "t"),
    )


def test_matches_no_filter_accepts_everything() -> None:
    assert matches(_trigger(), ATTRS)


@pytest.mark.parametrize(
    ("legacy", "expected"),
    [
        ({"type": "com.tasktide.task.created"}, True),
        ({"type": "com.tasktide.task.deleted"}, False),
        ({"type": "com.tasktide.task.created", "subject": "t2"}, False),
        ({"type": ""}, True),
        ({"missing": ""}, True),
        ({"missing": "x"}, False),
    ],
)
def test_matches_legacy_attributes_exact_or_empty_any(legacy: dict[str, str], expected: bool) -> None:
    assert matches(_trigger(legacy=legacy), ATTRS) is expected


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ([{"exact": {"type": "com.tasktide.task.created"}}], True),
        ([{"exact": {"type": "com.tasktide.task"}}], False),
        ([{"prefix": {"type": "com.tasktide.task."}}], True),
        ([{"prefix": {"type": "com.other."}}], False),
        ([{"prefix": {"nothere": "x"}}], False),
        ([{"suffix": {"type": ".created"}}], True),
        ([{"suffix": {"type": ".deleted"}}], False),
        ([{"all": [{"prefix": {"type": "com."}}, {"exact": {"subject": "t1"}}]}], True),
        ([{"all": [{"prefix": {"type": "com."}}, {"exact": {"subject": "t2"}}]}], False),
        ([{"any": [{"exact": {"subject": "t2"}}, {"suffix": {"source": "/api"}}]}], True),
        ([{"any": [{"exact": {"subject": "t2"}}, {"suffix": {"source": "/x"}}]}], False),
        ([{"not": {"exact": {"type": "com.tasktide.task.deleted"}}}], True),
        ([{"not": {"prefix": {"type": "com.tasktide."}}}], False),
        ([{"prefix": {"type": "com."}}, {"exact": {"subject": "nope"}}], False),
    ],
)
def test_matches_new_filters_dialects(filters: list[Any], expected: bool) -> None:
    assert matches(_trigger(filters), ATTRS) is expected


def test_matches_new_filters_take_precedence_over_legacy() -> None:
    trigger = _trigger([{"prefix": {"type": "com.tasktide."}}], legacy={"type": "something.else"})
    assert matches(trigger, ATTRS)


def test_load_trigger_with_cesql_raises_unsupported_filter_naming_trigger() -> None:
    doc = {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": "sql-trigger"},
        "spec": {
            "broker": "default",
            "filters": [{"cesql": "type LIKE 'com.%'"}],
            "subscriber": {"uri": "http://x"},
        },
    }
    with pytest.raises(UnsupportedFilter, match=r"sql-trigger.*cesql"):
        load_documents([doc])


def test_parse_filters_nested_cesql_is_rejected() -> None:
    with pytest.raises(UnsupportedFilter, match="'nested'"):
        parse_filters([{"any": [{"exact": {"type": "a"}}, {"cesql": "true"}]}], "nested")


def test_parse_filters_unknown_dialect_is_rejected() -> None:
    with pytest.raises(UnsupportedFilter, match="regex"):
        parse_filters([{"regex": {"type": "a.*"}}], "t")
