"""`make bench`: run every benchmark, print the table, write benchmarks/results/latest.{json,md}.

python -m benchmarks.run            # full counts (a couple of minutes on 2 cores)
python -m benchmarks.run --quick    # tiny counts, prints only (add --out DIR to write files)
python -m benchmarks.run --only signature,drain
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, Row, Section, Stack, machine, quiet, use_fake_aws

RESULTS = ROOT / "benchmarks" / "results"
BENCHMARKS = ("signature", "handler", "cold_start", "credit_check", "drain", "throughput")


def _load(name: str) -> Callable[[bool, Stack], Section]:
    module = __import__(f"benchmarks.{name}", fromlist=["run"])
    runner: Callable[[bool, Stack], Section] = module.run
    return runner


def run_all(names: Sequence[str], *, quick: bool, progress: Callable[[str], None]) -> list[Section]:
    sections: list[Section] = []
    with Stack() as stack:
        for index, name in enumerate(names, start=1):
            progress(f"[{index}/{len(names)}] {name} ...")
            started = time.perf_counter()
            runner = _load(name)
            with quiet():
                section = runner(quick, stack)
            section.seconds = time.perf_counter() - started
            sections.append(section)
            progress(f"[{index}/{len(names)}] {name}: {len(section.rows)} figures in {section.seconds:.1f} s")
    return sections


def report(sections: Sequence[Section], *, date: str) -> dict[str, Any]:
    return {
        "machine": machine(),
        "date": date,
        "benchmarks": [row.as_json() for section in sections for row in section.rows],
    }


def _number(value: float | None) -> str:
    if value is None:
        return "–"
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def _goal(row: Row) -> str:
    parts = []
    if row.goal is not None:
        parts.append(f"ratio {'≥' if row.higher_is_better else '≤'} {row.goal:g}")
    if row.target:
        op, _, value = row.target.partition(" ")
        parts.append(f"{ {'<=': '≤', '>=': '≥', '==': '='}[op] } {value}".strip())
    return ", ".join(parts) or "–"


def _met(row: Row) -> str:
    met = row.met()
    return "–" if met is None else ("yes" if met else "**no**")


def markdown(sections: Sequence[Section], results: dict[str, Any], *, quick: bool, load_before: float) -> str:
    m = results["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"Measured {results['date']} on {m['cpu']}, {m['cores']} cores, {m['python']}, {m['platform']}.",
        "Written by `make bench` (`python -m benchmarks.run`) with `latest.json`; medians, p99 where a "
        "figure is a distribution, each comparison measured in the same run. 1-minute load average "
        f"before the run: {load_before:.2f} (above about 0.1 is other work sharing the cores).",
    ]
    if quick:
        lines += ["", "**Quick run (tiny counts): not figures to quote.**"]
    lines += [
        "",
        "| Benchmark | Unit | Ours (median) | p99 | Baseline | Ratio | Goal | Met |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for section in sections:
        for row in section.rows:
            lines.append(
                f"| {row.name} | {row.unit} | {_number(row.ours)} | {_number(row.p99)} | "
                f"{_number(row.baseline)} | {_number(row.ratio)} | {_goal(row)} | {_met(row)} |"
            )
    lines += ["", "## Notes", ""]
    for section in sections:
        lines += [f"### {section.title}", ""]
        lines += [f"- {note}" for note in section.notes]
        lines.append("")
    return "\n".join(lines)


def table(sections: Sequence[Section]) -> str:
    """The console table: name, ours, p99, baseline, ratio, goal, met."""
    rows = [("benchmark", "unit", "ours", "p99", "baseline", "ratio", "goal", "met")]
    for section in sections:
        for row in section.rows:
            rows.append(
                (
                    row.name,
                    row.unit,
                    _number(row.ours),
                    _number(row.p99),
                    _number(row.baseline),
                    _number(row.ratio),
                    _goal(row),
                    _met(row).strip("*"),
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(r, widths, strict=True)) for r in rows
    )


def write(out: Path, results: dict[str, Any], text: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, content in (
        ("latest.json", json.dumps(results, indent=2, ensure_ascii=False) + "\n"),
        ("latest.md", text),
    ):
        temporary = out / f"{name}.tmp"
        temporary.write_text(content, encoding="utf-8")
        temporary.replace(out / name)  # atomic: a reader never sees half a file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny counts (seconds); writes only with --out")
    parser.add_argument("--out", type=Path, default=None, help=f"results directory (default {RESULTS})")
    parser.add_argument("--only", default="", help=f"comma list of: {', '.join(BENCHMARKS)}")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    use_fake_aws()
    out = args.out or (None if args.quick else RESULTS)
    console = sys.stdout

    def progress(line: str) -> None:
        print(line, file=console, flush=True)

    started = time.perf_counter()
    date = datetime.now(UTC).isoformat(timespec="seconds")
    load_before = os.getloadavg()[0]
    sections = run_all(names, quick=args.quick, progress=progress)
    results = report(sections, date=date)
    print("\n" + table(sections), flush=True)
    if out is not None:
        write(out, results, markdown(sections, results, quick=args.quick, load_before=load_before))
        print(f"\nwrote {out / 'latest.json'} and {out / 'latest.md'}", flush=True)
    print(f"done in {time.perf_counter() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
