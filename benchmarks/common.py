"""What every benchmark shares: the result row, statistics, machine facts, quiet output and the
local AWS (moto_server in its own process, so the code under test does not share a GIL with it).

Everything binds 127.0.0.1 and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from astrabot.domain.credit import ModelPrice

ROOT = Path(__file__).resolve().parents[1]
LAYER = ROOT / "layers" / "common" / "python"
HOST = "127.0.0.1"
REGION = "us-east-1"
# Fake credentials: nothing here may reach real AWS, and boto3 refuses to sign without some.
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
}


def use_fake_aws() -> None:
    """Point this process at fake credentials, never at a real account or endpoint."""
    os.environ.update(FAKE_AWS_ENV)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        os.environ.pop(name, None)


@dataclass(frozen=True)
class Row:
    """One line of the results. `ratio` = ours / baseline; `goal` is the ratio we promise.

    `target` is a goal on `ours` itself (e.g. "<= 1000"), shown in the markdown only: the JSON keeps
    exactly the keys the issue names.
    """

    name: str
    unit: str
    ours: float
    baseline: float | None = None
    goal: float | None = None
    p99: float | None = None
    target: str = ""
    higher_is_better: bool = False

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.ours / self.baseline

    def met(self) -> bool | None:
        """Whether the promise holds; None when there is no promise."""
        checks: list[bool] = []
        if self.goal is not None and self.ratio is not None:
            checks.append(self.ratio >= self.goal if self.higher_is_better else self.ratio <= self.goal)
        if self.target:
            op, _, value = self.target.partition(" ")
            checks.append(_compare(self.ours, op, float(value)))
        return all(checks) if checks else None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "unit": self.unit, "ours": _round(self.ours)}
        if self.baseline is not None:
            out["baseline"] = _round(self.baseline)
            if self.ratio is not None:
                out["ratio"] = _round(self.ratio)
            if self.goal is not None:
                out["goal"] = self.goal
        if self.p99 is not None:
            out["p99"] = _round(self.p99)
        return out


@dataclass
class Section:
    """One benchmark's rows plus the notes a reader needs to judge them (written to the markdown)."""

    title: str
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _compare(value: float, op: str, bound: float) -> bool:
    return {"<=": value <= bound, ">=": value >= bound, "==": value == bound}[op]


def _round(value: float) -> float:
    """Four significant digits: more would be noise."""
    if value == 0 or not math.isfinite(value):
        return value
    return float(round(value, 3 - math.floor(math.log10(abs(value)))))


# --- statistics -----------------------------------------------------------------------------------
def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def p99(samples: Sequence[float]) -> float:
    """Nearest-rank 99th percentile (with fewer than 100 samples it is the maximum)."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def time_call_us(fn: Callable[[], object]) -> float:
    started = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - started) / 1000


def interleaved_us(
    cases: dict[str, Callable[[], object]], rounds: int, warmup: int = 20
) -> dict[str, list[float]]:
    """Time each case `rounds` times, rotating the order every round so drift hits all alike."""
    names = list(cases)
    for _ in range(warmup):
        for name in names:
            cases[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(time_call_us(cases[name]))
    return samples


# --- machine --------------------------------------------------------------------------------------
def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
    }


# --- quiet output ---------------------------------------------------------------------------------
@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Send the code under test's logs and EMF metrics to nowhere (they are still formatted, as in
    Lambda, so their cost stays in the figures)."""
    from astrabot.observability import logger

    handlers = [h for h in logger.handlers if isinstance(h, logging.StreamHandler)]
    streams = [h.setStream(_NullWriter()) for h in handlers]
    try:
        with contextlib.redirect_stdout(_NullWriter()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for handler, stream in zip(handlers, streams, strict=True):
            if stream is not None:
                handler.setStream(stream)


class _NullWriter(io.TextIOBase):
    def write(self, text: str) -> int:
        return len(text)


# --- local AWS ------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with code {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listened on {HOST}:{port} within {timeout:.0f} s")


@dataclass
class Stack:
    """Shared local services, started on first use and stopped by `close()`."""

    _moto: subprocess.Popen[bytes] | None = None
    _moto_url: str = ""

    def moto_url(self) -> str:
        if self._moto is None:
            port = free_port()
            path = os.pathsep.join([str(ROOT), str(LAYER), os.environ.get("PYTHONPATH", "")])
            env = {**os.environ, **FAKE_AWS_ENV, "PYTHONPATH": path}
            self._moto = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.moto_server", "-H", HOST, "-p", str(port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
                cwd=ROOT,
            )
            wait_for_port(port, timeout=30, proc=self._moto)
            self._moto_url = f"http://{HOST}:{port}"
        return self._moto_url

    def dynamodb(self, pool: int = 32) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "dynamodb",
            region_name=REGION,
            endpoint_url=self.moto_url(),
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - moto's fake credentials
            config=Config(
                retries={"max_attempts": 3, "mode": "standard"},
                max_pool_connections=pool,
                connect_timeout=5,
                read_timeout=30,
            ),
        )

    def new_table(self, client: Any) -> str:
        """A fresh ledger table, made from infra/template.yaml like the deployed one."""
        from tools.cfn import create_table_from_template

        name = f"bench-{uuid.uuid4().hex[:8]}"
        create_table_from_template(client, name)
        return name

    def close(self) -> None:
        proc, self._moto = self._moto, None
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- ledger fixtures ------------------------------------------------------------------------------
MODEL = "openai/gpt-4o-mini"


def model_price(model: str = MODEL) -> ModelPrice:
    """The simulator's own price for `model`, so the ledger and the simulator agree."""
    from tools.simulators.openrouter_sim import DEFAULT_PRICES

    prompt, completion = DEFAULT_PRICES[model]
    return ModelPrice(model, prompt=Decimal(prompt), completion=Decimal(completion))


def seed_balance(ledger: Any, remaining_usd: Decimal, model: str = MODEL) -> None:
    """Write a fresh balance item, as a successful poll would."""
    from datetime import UTC, datetime

    from astrabot.adapters.ledger import BalanceUpdate
    from astrabot.domain.credit import CreditStatus

    ledger.write_balance(
        BalanceUpdate(
            remaining_usd=remaining_usd,
            status=CreditStatus.HEALTHY,
            affordable_tokens=10**6,
            default_model=model,
            prices={model: model_price(model)},
            fetched_at=datetime.now(UTC),
            source="key",
        ),
        expected_version=None,
    )
