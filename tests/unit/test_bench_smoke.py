"""Smoke test of `make bench`: each benchmark runs once with tiny counts and returns well-formed rows.

Shape only. No figure is asserted: timings belong to `make bench`, never to `make test`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks import run as bench
from benchmarks.common import Section, Stack, quiet

ROW_KEYS = {"name", "unit", "ours", "baseline", "ratio", "goal", "p99"}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with Stack() as shared:
        yield shared


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _assert_row_shape(row: dict[str, object]) -> None:
    assert set(row) <= ROW_KEYS
    assert {"name", "unit", "ours"} <= set(row)
    assert all(_finite(row[key]) for key in set(row) - {"name", "unit"})
    if "baseline" not in row:
        assert "ratio" not in row
        assert "goal" not in row


@pytest.mark.parametrize("name", bench.BENCHMARKS)
def test_given_tiny_counts_when_a_benchmark_runs_then_it_returns_well_formed_rows(
    name: str, stack: Stack
) -> None:
    with quiet():
        section = bench._load(name)(True, stack)

    assert isinstance(section, Section)
    assert section.rows
    for row in section.rows:
        _assert_row_shape(row.as_json())


def test_given_a_quick_run_when_written_then_json_and_markdown_follow_the_issue_format(
    tmp_path: Path,
) -> None:
    """Given --quick --only signature --out DIR, when run, then latest.json has machine, date and rows,
    and latest.md holds the table."""
    assert bench.main(["--quick", "--only", "signature", "--out", str(tmp_path)]) == 0

    results = json.loads((tmp_path / "latest.json").read_text())
    assert set(results) == {"machine", "date", "benchmarks"}
    assert {"cpu", "cores", "python", "platform"} <= set(results["machine"])
    assert results["benchmarks"]
    for row in results["benchmarks"]:
        _assert_row_shape(row)
    markdown = (tmp_path / "latest.md").read_text()
    assert "| Benchmark | Unit | Ours (median) | p99 | Baseline | Ratio | Goal | Met |" in markdown
