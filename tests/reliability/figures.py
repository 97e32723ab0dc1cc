"""What the reliability suite observed, collected while it runs and read back by `report.py`.

Each test records one observation (the threat or fault, what was seen, and its counts) through the
`observe` fixture; conftest hooks add each test's outcome and write everything as JSON when the
session ends. The JSON lives outside the repository (a temp file, or ASTRABOT_RELIABILITY_FIGURES),
so `make test` never dirties the tree; `python -m tests.reliability.report` turns it into the table
in docs/RELIABILITY.md.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FIGURES_PATH = Path(
    os.environ.get(
        "ASTRABOT_RELIABILITY_FIGURES",
        str(Path(tempfile.gettempdir()) / "astrabot-reliability-figures.json"),
    )
)


@dataclass
class Observation:
    nodeid: str
    threat: str
    observed: str
    inputs: int = 0  # hostile or fuzzed requests sent
    faults: int = 0  # failures injected at an adapter boundary
    requests: int = 0  # requests the endpoint served
    lost: int = 0  # replies, usage records or alerts that never arrived
    outcome: str = "not run"
    reason: str = ""  # an expected failure's reason (a known bug)


@dataclass
class Figures:
    observations: dict[str, Observation] = field(default_factory=dict)
    counters: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, observation: Observation) -> None:
        with self._lock:
            self.observations[observation.nodeid] = observation

    def add(self, counter: str, amount: float = 1) -> None:
        with self._lock:
            self.counters[counter] = self.counters.get(counter, 0) + amount

    def set(self, counter: str, value: Any) -> None:
        with self._lock:
            self.counters[counter] = value

    def outcome(self, nodeid: str, outcome: str, reason: str = "") -> None:
        with self._lock:
            if nodeid in self.observations:
                self.observations[nodeid].outcome = outcome
                self.observations[nodeid].reason = reason

    def as_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "observations": [asdict(o) for o in self.observations.values()],
                "counters": dict(self.counters),
            }

    def write(self, path: Path = FIGURES_PATH) -> None:
        path.write_text(json.dumps(self.as_json(), indent=2, ensure_ascii=False))


FIGURES = Figures()
