"""The report script: figures of a green, complete run fill docs/RELIABILITY.md; nothing else does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.report import END, SECTIONS, START, ReportError, write


def figures(outcome: str = "passed", *, modules: tuple[str, ...] = tuple(SECTIONS)) -> dict[str, Any]:
    observations = [
        {
            "nodeid": f"tests/reliability/{module}::test_one",
            "threat": f"threat of {module}",
            "observed": "401 ×3 | AWS calls: 0",
            "inputs": 3,
            "faults": 2,
            "requests": 3,
            "lost": 0,
            "outcome": outcome,
            "reason": "",
        }
        for module in modules
    ]
    counters = {
        "load_throughput_rps": 120.0,
        "load_p50_ms": 9.5,
        "load_p99_ms": 700.0,
        "log_records_scanned": 10,
    }
    return {"observations": observations, "counters": counters}


def files(tmp_path: Path, data: dict[str, Any]) -> tuple[Path, Path]:
    doc, path = tmp_path / "RELIABILITY.md", tmp_path / "figures.json"
    doc.write_text(f"# Title\n\nprose before\n\n{START}\nold table\n{END}\n\nprose after\n")
    path.write_text(json.dumps(data))
    return doc, path


def test_given_a_green_complete_run_when_reported_then_only_the_marked_section_is_replaced(
    tmp_path: Path,
) -> None:
    doc, path = files(tmp_path, figures())
    write(doc, path)
    text = doc.read_text()
    assert text.startswith("# Title\n\nprose before\n\n")
    assert text.endswith("\n\nprose after\n")
    assert "old table" not in text
    assert f"| Hostile and fuzzed inputs tried | {3 * len(SECTIONS)} |" in text
    assert "| **Data lost** (replies, usage records, alerts) | **0** |" in text
    assert "401 ×3 \\| AWS calls: 0" in text  # a pipe in an observation cannot break the table


def test_given_a_failed_test_when_reported_then_refused_and_the_doc_untouched(tmp_path: Path) -> None:
    doc, path = files(tmp_path, figures(outcome="failed"))
    before = doc.read_text()
    with pytest.raises(ReportError, match="did not pass"):
        write(doc, path)
    assert doc.read_text() == before


def test_given_a_partial_run_when_reported_then_refused(tmp_path: Path) -> None:
    doc, path = files(tmp_path, figures(modules=("test_fuzz.py",)))
    with pytest.raises(ReportError, match="partial run"):
        write(doc, path)
