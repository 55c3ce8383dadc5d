"""Unit tests of the benchmark plumbing (statistics and docs/benchmarks.md section handling).

Run: .venv/bin/pytest loadtests/bench -q   (no services needed; nothing is timed)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests.bench import benchlib

DOC = """# Benchmarks

intro

## Event latency

theirs

## Cold start

old cold numbers

## Reminder scan

old scan
"""


def test_percentile_of_sorted_values_interpolates_between_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert benchlib.percentile(values, 0) == 1.0
    assert benchlib.percentile(values, 100) == 4.0
    assert benchlib.percentile(values, 50) == pytest.approx(2.5)
    assert benchlib.percentile(values, 99) == pytest.approx(3.97)


def test_percentile_of_no_values_raises() -> None:
    with pytest.raises(ValueError):
        benchlib.percentile([], 50)


def test_percentile_outside_range_raises() -> None:
    with pytest.raises(ValueError):
        benchlib.percentile([1.0], 101)


def test_summary_of_seconds_reports_milliseconds() -> None:
    summary = benchlib.Summary.of_seconds([0.001, 0.002, 0.003])
    assert summary.count == 3
    assert summary.p50_ms == pytest.approx(2.0)
    assert summary.mean_ms == pytest.approx(2.0)
    assert summary.p99_ms == pytest.approx(2.98)


def test_replace_section_existing_title_replaces_only_that_section() -> None:
    updated = benchlib.replace_section(DOC, "Cold start", "new cold numbers")
    assert "new cold numbers" in updated
    assert "old cold numbers" not in updated
    assert "theirs" in updated
    assert "old scan" in updated
    assert (
        updated.index("## Event latency") < updated.index("## Cold start") < updated.index("## Reminder scan")
    )


def test_replace_section_missing_title_appends_it() -> None:
    updated = benchlib.replace_section(DOC, "Reminder lateness", "late")
    assert updated.rstrip().endswith("## Reminder lateness\n\nlate")
    assert updated.count("## ") == 4


def test_replace_section_similar_prefix_is_not_matched() -> None:
    doc = "# B\n\n## Cold start extra\n\nkeep\n"
    updated = benchlib.replace_section(doc, "Cold start", "new")
    assert "keep" in updated
    assert updated.count("## Cold start") == 2


def test_reorder_sections_listed_first_others_kept_after() -> None:
    reordered = benchlib.reorder_sections(DOC, ["Reminder scan", "Cold start"])
    head, sections = benchlib.split_sections(reordered)
    assert head.startswith("# Benchmarks")
    assert list(sections) == ["Reminder scan", "Cold start", "Event latency"]
    assert "theirs" in sections["Event latency"]


def test_write_section_missing_file_creates_titled_doc(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    benchlib.write_section("Machine", "| fact | value |", doc)
    assert doc.read_text() == "# Benchmarks\n\n## Machine\n\n| fact | value |\n"


def test_table_renders_markdown_rows() -> None:
    rendered = benchlib.table(["a", "b"], [[1, "x"]])
    assert rendered.splitlines() == ["| a | b |", "|---|---|", "| 1 | x |"]


def test_pg_database_url_swaps_only_the_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKTIDE_BENCH_PG", "postgresql://u:p@h:1/postgres")
    assert benchlib.pg_database_url("tasktide_bench_x") == "postgresql://u:p@h:1/tasktide_bench_x"
    assert benchlib.sqlalchemy_url("postgresql://u:p@h:1/d") == "postgresql+psycopg://u:p@h:1/d"


def test_recreate_database_unsafe_name_raises() -> None:
    with pytest.raises(ValueError):
        benchlib.recreate_database("x; DROP TABLE tasks")
