"""3. Cold start: `python -X importtime` of each function module in a fresh process vs `import boto3`.

The figure is the cumulative import time of the module itself (its own top-level code included,
e.g. clients built at import), as Python reports it, in microseconds. Runs rotate over the modules
so drift hits all alike; one warm-up run each first compiles the bytecode caches.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from benchmarks.common import FAKE_AWS_ENV, LAYER, ROOT, Row, Section, Stack, median, p99

FUNCTIONS = ROOT / "functions"
BASELINE = "boto3"
GOALS = {"interactions": 1.5}
# Enough configuration for every function module to import (the values are placeholders).
MODULE_ENV = {
    **FAKE_AWS_ENV,
    "TABLE_NAME": "astrabot-bench",
    "ALERT_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:astrabot-alerts",
    "LLM_FUNCTION_NAME": "astrabot-llm-call",
    "DISCORD_PUBLIC_KEY": "a" * 64,
    "DISCORD_APPLICATION_ID": "900000000000000001",
    "OPENROUTER_API_KEY": "sk-or-bench",
    "DISCORD_BOT_TOKEN": "bench-token",
    "DISCORD_ALERT_WEBHOOK_URL": "http://127.0.0.1:9/api/webhooks/1/bench",
    "OPENROUTER_BASE_URL": "http://127.0.0.1:9/api/v1",
    "DISCORD_API_BASE_URL": "http://127.0.0.1:9/api/v10",
    "POWERTOOLS_SERVICE_NAME": "astrabot",
    "POWERTOOLS_METRICS_NAMESPACE": "AstraBotNexus",
}
_LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)\s*$")


def function_dirs() -> list[Path]:
    return sorted(path.parent for path in FUNCTIONS.glob("*/app.py"))


def cumulative_us(stderr: str, module: str) -> int:
    """The cumulative time of the top-level import of `module` in `-X importtime` output."""
    for line in stderr.splitlines():
        match = _LINE.match(line)
        if match and match.group(4) == module and match.group(3) == " ":
            return int(match.group(2))
    raise ValueError(f"no top-level import of {module!r} in the importtime output")


def import_once(module: str, function_dir: Path | None) -> int:
    path = [str(LAYER)] + ([str(function_dir)] if function_dir else [])
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108 - only botocore's config lookup
        **MODULE_ENV,
        "PYTHONPATH": os.pathsep.join(path),
    }
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=function_dir or ROOT,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"import {module} failed: {last}")
    return cumulative_us(done.stderr, module)


def run(quick: bool, stack: Stack) -> Section:
    runs = 1 if quick else 9
    targets: dict[str, tuple[str, Path | None]] = {BASELINE: (BASELINE, None)}
    targets.update({path.name: ("app", path) for path in function_dirs()})
    notes: list[str] = []
    for name, (module, where) in list(targets.items()):
        try:
            import_once(module, where)  # warm-up: writes the bytecode caches
        except (RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
            notes.append(f"{name}: skipped, {exc}")
            del targets[name]
    if BASELINE not in targets:
        raise RuntimeError("cannot time the baseline `import boto3`")
    samples: dict[str, list[float]] = {name: [] for name in targets}
    names = list(targets)
    for index in range(runs):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            module, where = targets[name]
            samples[name].append(float(import_once(module, where)))
    baseline = median(samples[BASELINE])
    rows = [
        Row(
            f"cold import: {name} vs boto3",
            "µs",
            median(values),
            baseline=baseline,
            goal=GOALS.get(name),
            p99=p99(values),
        )
        for name, values in samples.items()
        if name != BASELINE
    ]
    notes.insert(
        0,
        f"{runs} fresh processes per module, rotating; bare `import boto3` median {baseline / 1000:.0f} ms "
        f"(p99 {p99(samples[BASELINE]) / 1000:.0f} ms). Python {sys.version.split()[0]} here; Lambda runs "
        "python3.13 on arm64, with its own boto3 preinstalled. Import only: work done on the first "
        "call (settings, verify key, clients built lazily) is not in these figures.",
    )
    return Section("3. Cold start (import time)", rows, notes)
