"""DynamoDB throttling and unavailability in the interactions function (moto + botocore before-send).

The endpoint's DynamoDB client is built the product's way (functions/interactions/app.py FAST:
short timeouts, 2 attempts); every attempt of every call is faulted. Discord must still get an
answer within its 3 s: /ask defers anyway (llm_call decides with its own read), /nexus says the
ledger is down.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from astrabot.adapters import aws as aws_factory
from astrabot.adapters.ledger import Ledger
from astrabot.adapters.signature import SignatureVerifier
from astrabot.service.interactions import LEDGER_DOWN_TEXT, InteractionDeps
from functions.interactions import app
from tests.reliability.conftest import Observe, Printed, write_balance
from tests.reliability.endpoint import SpyLambda, SpyPublisher, endpoint_settings
from tests.reliability.support import (
    ADMIN,
    HUNG,
    TABLE,
    THROTTLED,
    UNAVAILABLE,
    Context,
    FaultPlan,
    ask,
    emf_metrics,
    encode,
    log_messages,
    nexus,
    signed_event,
)

ERRORS = pytest.mark.parametrize("error", [THROTTLED, UNAVAILABLE], ids=["throttled", "unavailable"])


def faulty_endpoint(
    ledger: Ledger, faults: FaultPlan, error: str, monkeypatch: pytest.MonkeyPatch
) -> SpyLambda:
    """Install the endpoint with the product's DynamoDB client; from now on every DynamoDB call fails."""
    write_balance(ledger, "5.00")
    client = aws_factory.client("dynamodb", config=app.FAST)  # the faults fixture attaches the plan
    calls: list[str] = []
    spy_lambda = SpyLambda(calls)
    settings = endpoint_settings()
    deps = InteractionDeps(
        settings=settings,
        verifier=SignatureVerifier(settings.discord_public_key),
        ledger=lambda: Ledger(client, TABLE),
        lambda_client=lambda: spy_lambda,
        publisher=lambda: SpyPublisher(calls),  # type: ignore[arg-type,return-value]
    )
    monkeypatch.setattr(app, "runtime", lambda: deps)
    faults.add("dynamodb", error)
    return spy_lambda


def call(interaction: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    raw = app.lambda_handler(signed_event(encode(interaction)), Context("interactions"))
    return raw["statusCode"], json.loads(raw["body"])


@ERRORS
def test_given_dynamodb_down_when_ask_then_deferred_and_llm_call_invoked(
    ledger: Ledger,
    faults: FaultPlan,
    error: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    printed: Printed,
    observe: Observe,
) -> None:
    spy_lambda = faulty_endpoint(ledger, faults, error, monkeypatch)
    status, body = call(ask("what is a lambda?"))
    assert (status, body) == (200, {"type": 5})
    assert len(spy_lambda.payloads) == 1
    assert "precheck skipped: ledger unavailable" in log_messages(caplog.records)
    metrics = emf_metrics(printed.out())
    assert "CommandsHandled" in metrics
    observe(
        f"DynamoDB {error} in interactions, /ask",
        f"user: deferred (type 5), llm_call invoked once; operator: log 'precheck skipped: ledger "
        f"unavailable', metric {', '.join(metrics)}; {faults.injected} faulted DynamoDB attempts",
        faults=faults.injected,
        requests=1,
    )


@ERRORS
def test_given_dynamodb_down_when_nexus_status_then_embed_says_dynamodb_is_down(
    ledger: Ledger,
    faults: FaultPlan,
    error: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    printed: Printed,
    observe: Observe,
) -> None:
    faulty_endpoint(ledger, faults, error, monkeypatch)
    status, body = call(nexus("status", who=ADMIN))
    (embed,) = body["data"]["embeds"]
    assert status == 200
    assert body["data"]["flags"] == 64
    assert embed["title"].startswith("🔴 Action needed: DynamoDB")
    assert "nexus status: ledger unavailable" in log_messages(caplog.records)
    observe(
        f"DynamoDB {error} in interactions, /nexus status",
        f"user: ephemeral embed '{embed['title']}'; operator: log 'nexus status: ledger unavailable', "
        f"metric {', '.join(emf_metrics(printed.out()))}; {faults.injected} faulted attempts",
        faults=faults.injected,
        requests=1,
    )


@ERRORS
def test_given_dynamodb_down_when_nexus_credits_then_ledger_down_text(
    ledger: Ledger,
    faults: FaultPlan,
    error: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    observe: Observe,
) -> None:
    faulty_endpoint(ledger, faults, error, monkeypatch)
    status, body = call(nexus("credits", who=ADMIN))
    assert (status, body["data"]["content"], body["data"]["flags"]) == (200, LEDGER_DOWN_TEXT, 64)
    assert "nexus credits: ledger unavailable" in log_messages(caplog.records)
    observe(
        f"DynamoDB {error} in interactions, /nexus credits",
        f"user: ephemeral '{LEDGER_DOWN_TEXT[:60]}…'; operator: log 'nexus credits: ledger unavailable'",
        faults=faults.injected,
        requests=1,
    )


@ERRORS
def test_given_dynamodb_down_when_nexus_diagnostics_then_embed_with_errors_unknown(
    ledger: Ledger,
    faults: FaultPlan,
    error: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    observe: Observe,
) -> None:
    faulty_endpoint(ledger, faults, error, monkeypatch)
    status, body = call(nexus("diagnostics", who=ADMIN))
    text = json.dumps(body["data"]["embeds"], ensure_ascii=False)
    assert status == 200
    assert "unknown (ledger unavailable)" in text
    assert "nexus diagnostics: ledger unavailable" in log_messages(caplog.records)
    observe(
        f"DynamoDB {error} in interactions, /nexus diagnostics",
        "user: ephemeral embed, recent errors 'unknown (ledger unavailable)'; operator: log "
        "'nexus diagnostics: ledger unavailable'",
        faults=faults.injected,
        requests=1,
    )


def test_given_dynamodb_hanging_when_ask_then_the_worst_case_wait_fits_discords_3_s(
    ledger: Ledger,
    faults: FaultPlan,
    retry_sleeps: list[float],
    monkeypatch: pytest.MonkeyPatch,
    observe: Observe,
) -> None:
    spy_lambda = faulty_endpoint(ledger, faults, HUNG, monkeypatch)
    status, body = call(ask("what is a lambda?"))
    # No real waiting here: each faulted attempt would have waited the client's full read timeout.
    worst_case = faults.injected * float(app.FAST.read_timeout) + sum(retry_sleeps)  # type: ignore[attr-defined]
    observe(
        "DynamoDB hanging (read timeouts) in interactions, /ask",
        f"deferred after {faults.injected} attempts: at least {worst_case:.1f} s of waiting before "
        "Discord gets the deferral (deadline 3 s)",
        faults=faults.injected,
        requests=1,
    )
    assert (status, body, len(spy_lambda.payloads)) == (200, {"type": 5}, 1)
    assert worst_case <= 2.5  # Discord's 3 s, less Lambda overhead and the llm_call invoke
