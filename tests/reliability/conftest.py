"""Reliability suite fixtures: figures, the secret scan, fault injection, and an llm_call world.

Every test here is scanned after it runs: no value in support.SECRETS may appear in any log record
(message, extra fields or traceback) or in anything printed (EMF metrics included).
"""

from __future__ import annotations

import importlib
import logging
import os
import platform
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from botocore.client import BaseClient
from moto import mock_aws

from astrabot.adapters import aws as aws_factory
from astrabot.adapters.discord import DiscordClient
from astrabot.adapters.ledger import BalanceUpdate, Ledger
from astrabot.adapters.openrouter import OpenRouterClient
from astrabot.domain.credit import CreditStatus, ModelPrice
from astrabot.observability import metrics
from astrabot.runtime import utcnow
from astrabot.service.chat import ChatDeps
from tests.reliability import support
from tests.reliability.endpoint import Endpoint
from tests.reliability.figures import FIGURES, Observation
from tests.reliability.support import (
    APP_ID,
    FREE,
    MODEL,
    PRICES,
    SECRETS,
    TABLE,
    AwsCalls,
    Context,
    FaultPlan,
)
from tools import moto_fidelity
from tools.cfn import create_table_from_template
from tools.simulators.discord_sink import DiscordSink, SinkCall
from tools.simulators.openrouter_sim import OpenRouterSimulator


# --- figures -------------------------------------------------------------------------------------
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        reason = str(getattr(report, "wasxfail", ""))
        outcome = "xfailed" if hasattr(report, "wasxfail") else report.outcome
        FIGURES.outcome(report.nodeid, outcome, reason.removeprefix("reason: "))


_COLLECTED_AT = time.monotonic()  # this conftest is imported as tests/reliability is collected


def pytest_sessionfinish(session: pytest.Session) -> None:
    if FIGURES.observations:
        FIGURES.set("run_at", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
        FIGURES.set("python", platform.python_version())
        FIGURES.set("cpus", os.cpu_count() or 0)
        FIGURES.set("session_seconds", round(time.monotonic() - _COLLECTED_AT, 1))
        FIGURES.write()


Observe = Callable[..., None]


@pytest.fixture
def observe(request: pytest.FixtureRequest) -> Observe:
    """Record what this test saw: `observe(threat, observed, inputs=, faults=, requests=, lost=)`."""

    def record(
        threat: str, observed: str, *, inputs: int = 0, faults: int = 0, requests: int = 0, lost: int = 0
    ) -> None:
        FIGURES.record(Observation(request.node.nodeid, threat, observed, inputs, faults, requests, lost))

    return record


# --- the secret scan -----------------------------------------------------------------------------
@dataclass
class Printed:
    """stdout of the test so far. Read it through here so the secret scan still sees it."""

    capsys: pytest.CaptureFixture[str]
    seen: list[str] = field(default_factory=list)

    def out(self) -> str:
        self.seen.append(self.capsys.readouterr().out)
        return "".join(self.seen)


@pytest.fixture
def printed(capsys: pytest.CaptureFixture[str]) -> Printed:
    return Printed(capsys)


def record_text(record: logging.LogRecord) -> str:
    """Everything a log record can carry to CloudWatch: message, extra fields, traceback."""
    parts = [record.getMessage(), *(str(value) for value in vars(record).values())]
    if record.exc_info:
        parts.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(parts)


def leaked(text: str, extra: tuple[str, ...] = ()) -> list[str]:
    return [secret for secret in (*SECRETS, *extra) if secret and secret in text]


@pytest.fixture(autouse=True)
def no_secret_in_logs_or_output(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str], printed: Printed
) -> Iterator[None]:
    # Loggers keep their own levels, as in Lambda: the product's at INFO, the root (and so httpx,
    # botocore) at WARNING. test_secrets.py shows what a root logger at INFO would add.
    metrics.clear_metrics()  # nothing left over from another test's unflushed metrics
    yield
    records = caplog.get_records("setup") + caplog.get_records("call")
    out = "".join(printed.seen) + capsys.readouterr().out
    found = sorted({s for r in records for s in leaked(record_text(r))} | set(leaked(out)))
    FIGURES.add("log_records_scanned", len(records))
    FIGURES.add("output_lines_scanned", out.count("\n"))
    assert not found, f"secret values reached the logs or output: {[s[:12] + '…' for s in found]}"


# --- AWS: moto, recording and faults --------------------------------------------------------------
@pytest.fixture
def aws_calls(monkeypatch: pytest.MonkeyPatch) -> AwsCalls:
    """Records every AWS API call in this process, whichever client makes it."""
    calls = AwsCalls()
    original = BaseClient._make_api_call  # type: ignore[attr-defined]

    def recording(self: Any, operation_name: str, api_params: Any) -> Any:
        calls.record(self.meta.service_model.service_id.hyphenize(), operation_name)
        return original(self, operation_name, api_params)

    monkeypatch.setattr(BaseClient, "_make_api_call", recording)
    return calls


@pytest.fixture
def retry_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """botocore's retry waits, recorded instead of slept."""
    sleeps: list[float] = []
    monkeypatch.setattr("botocore.endpoint.time", types.SimpleNamespace(sleep=sleeps.append))
    return sleeps


BUILD_CLIENT = aws_factory.client


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch, retry_sleeps: list[float]) -> FaultPlan:
    """A fault plan attached to every client the product builds (astrabot.adapters.aws.client)."""
    plan = FaultPlan()
    build = BUILD_CLIENT

    def client(service: str, **overrides: Any) -> Any:
        return plan.attach(build(service, **overrides))

    monkeypatch.setattr(aws_factory, "client", client)
    return plan


@pytest.fixture
def aws() -> Iterator[None]:
    moto_fidelity.apply()  # DynamoDB's isolation and number handling, which moto lacks
    with mock_aws():
        yield


@pytest.fixture
def ddb(aws: None, faults: FaultPlan) -> Any:
    """The ledger's DynamoDB client, built the product's way (retries, timeouts); faults can pick
    it out by the label "ledger"."""
    client = faults.attach(BUILD_CLIENT("dynamodb"), label="ledger")
    create_table_from_template(client, TABLE)
    return client


@pytest.fixture
def ledger(ddb: Any) -> Ledger:
    return Ledger(ddb, TABLE)


def model_prices() -> dict[str, ModelPrice]:
    return {model: ModelPrice(model, Decimal(p), Decimal(c)) for model, (p, c) in PRICES.items()}


def write_balance(ledger: Ledger, usd: str, *, at: datetime | None = None) -> None:
    current = ledger.get_balance()
    ledger.write_balance(
        BalanceUpdate(
            remaining_usd=Decimal(usd),
            status=CreditStatus.HEALTHY,
            affordable_tokens=int(Decimal(usd) / Decimal(PRICES[MODEL][1])),
            default_model=MODEL,
            prices=model_prices(),
            fetched_at=at or utcnow(),
            source="key",
        ),
        expected_version=current.version if current else None,
    )


# --- simulators ----------------------------------------------------------------------------------
@pytest.fixture
def sim() -> Iterator[OpenRouterSimulator]:
    with OpenRouterSimulator(
        balance="5.00",
        prices=PRICES,
        api_key=support.OPENROUTER_API_KEY,
        management_key=support.OPENROUTER_MANAGEMENT_KEY,
        answer_tokens=40,
    ) as server:
        yield server


@pytest.fixture
def sink() -> Iterator[DiscordSink]:
    with DiscordSink(application_id=APP_ID, bot_token=support.DISCORD_BOT_TOKEN) as server:
        yield server


def assert_no_pings(calls: list[SinkCall]) -> int:
    """Every answer that reached Discord pings nobody; returns how many messages were checked."""
    bodies = [c.body for c in calls if c.kind in ("edit_original", "followup")]
    for body in bodies:
        assert body["allowed_mentions"] == {"parse": []}
    return len(bodies)


# --- llm_call, in-process, against moto and the simulators ---------------------------------------
@dataclass
class LlmWorld:
    app: types.ModuleType
    ledger: Ledger
    sim: OpenRouterSimulator
    sink: DiscordSink
    plan: FaultPlan
    openrouter: OpenRouterClient
    sleeps: list[float]
    now: datetime
    deps: ChatDeps | None = None

    def balance(self, usd: str) -> None:
        write_balance(self.ledger, usd, at=self.now)

    def interaction(self, prompt: str = "what is a lambda?") -> dict[str, Any]:
        return support.ask(prompt, at=self.now)

    def run(self, interaction: dict[str, Any], *, context: Context | None = None) -> dict[str, Any]:
        event = {"interaction": interaction}
        result: dict[str, Any] = self.app.lambda_handler(event, context or Context("llm_call"))
        return result

    def shown(self, interaction: dict[str, Any]) -> list[SinkCall]:
        return self.sink.messages_for(interaction["token"])

    def text(self, interaction: dict[str, Any]) -> str:
        return "\n".join(str(c.content) for c in self.shown(interaction))

    def usage_requests(self) -> int:
        return self.ledger.usage_for_day(self.now).requests


def llm_env(monkeypatch: pytest.MonkeyPatch, sim_url: str, sink_url: str) -> None:
    for name, value in {
        "TABLE_NAME": TABLE,
        "OPENROUTER_API_KEY": support.OPENROUTER_API_KEY,
        "OPENROUTER_MANAGEMENT_KEY": support.OPENROUTER_MANAGEMENT_KEY,
        "DISCORD_APPLICATION_ID": APP_ID,
        "OPENROUTER_BASE_URL": sim_url,
        "DISCORD_API_BASE_URL": sink_url,
        "DEFAULT_MODEL": MODEL,
        "FALLBACK_MODELS": FREE,
    }.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def llm(
    ledger: Ledger,
    faults: FaultPlan,
    sim: OpenRouterSimulator,
    sink: DiscordSink,
    monkeypatch: pytest.MonkeyPatch,
) -> LlmWorld:
    llm_env(monkeypatch, sim.url, sink.url)
    import functions.llm_call.app as module

    app = importlib.reload(module)  # a cold start inside the mock: its idempotency client has the faults
    sleeps: list[float] = []
    openrouter = OpenRouterClient(
        support.OPENROUTER_API_KEY, base_url=sim.url, sleep=sleeps.append, chat_timeout=2.0
    )
    world = LlmWorld(app, ledger, sim, sink, faults, openrouter, sleeps, utcnow())
    deps = ChatDeps(
        settings=app._settings,
        ledger=ledger,
        openrouter=openrouter,
        discord=DiscordClient(application_id=APP_ID, base_url=sink.url, sleep=sleeps.append),
        clock=lambda: world.now,
    )
    world.deps = deps
    monkeypatch.setattr(app, "_deps", lambda: deps)
    return world


def later(world: LlmWorld, **delta: float) -> datetime:
    world.now = world.now + timedelta(**delta)
    return world.now


# --- the interactions endpoint with spies --------------------------------------------------------
@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Endpoint:
    from functions.interactions import app

    served = Endpoint()
    monkeypatch.setattr(app, "runtime", lambda: served.deps)
    return served
