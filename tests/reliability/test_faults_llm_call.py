"""Faults around llm_call: DynamoDB (botocore before-send), OpenRouter (the simulator's fail_next),
Discord (the sink's fail_next), and a Lambda timeout in the middle of a call followed by Lambda's
async retry.

For each: what the user sees (the sink), what the operator sees (log records and EMF metrics), and
that the books close: no reservation left open (or it is reclaimed after its deadline), no usage
record lost, nothing charged for an answer that was not given.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
)

from astrabot.domain import replies
from functions.credit_poller import app as poller_app
from tests.reliability.conftest import LlmWorld, Observe, Printed, assert_no_pings, later
from tests.reliability.support import (
    THROTTLED,
    UNAVAILABLE,
    Context,
    emf_metrics,
    log_messages,
)

CHAT = "/chat/completions"
CLOSED = (0, Decimal(0))  # no reservation open, nothing reserved


def operator_view(caplog: pytest.LogCaptureFixture, printed: Printed) -> tuple[list[str], list[str]]:
    """Warning/error log messages and EMF metric names, each once, in order."""
    logs = [r.getMessage() for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
    return list(dict.fromkeys(logs)), list(dict.fromkeys(emf_metrics(printed.out())))


def open_books(world: LlmWorld) -> tuple[int, Decimal]:
    """Open reservations and the reserved amount on the balance item."""
    snapshot = world.ledger.get_balance()
    assert snapshot is not None
    return len(world.ledger.open_reservations()), snapshot.reserved_usd


def describe(user: str, logs: list[str], metrics: list[str], world: LlmWorld) -> str:
    opened, reserved = open_books(world)
    return (
        f"user: '{user[:90]}{'…' if len(user) > 90 else ''}'; operator: log "
        f"{' / '.join(repr(m) for m in logs) or '(none)'}; metrics {', '.join(metrics) or '(none)'}; "
        f"open reservations {opened}, reserved ${reserved}"
    )


# --- DynamoDB ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("error", [THROTTLED, UNAVAILABLE], ids=["throttled", "unavailable"])
def test_given_the_ledger_down_when_asked_then_user_told_and_openrouter_never_called(
    llm: LlmWorld, error: str, caplog: pytest.LogCaptureFixture, printed: Printed, observe: Observe
) -> None:
    llm.balance("5.00")
    interaction = llm.interaction()
    llm.plan.add("dynamodb", error, clients={"ledger"})
    result = llm.run(interaction)
    llm.plan.clear()
    logs, metrics = operator_view(caplog, printed)
    assert result["result"] == "ledger_down"
    assert llm.text(interaction) == replies.ledger_down_text()
    assert llm.sim.count(CHAT) == 0
    assert "ledger unavailable; refusing to answer without a reservation" in logs
    assert "LLMFailures" in metrics
    assert open_books(llm) == CLOSED
    observe(
        f"DynamoDB {error} in llm_call (ledger reads and writes)",
        describe(llm.text(interaction), logs, metrics, llm) + "; OpenRouter calls 0",
        faults=llm.plan.injected,
    )


def test_given_the_whole_table_down_when_asked_then_user_still_told(
    llm: LlmWorld, caplog: pytest.LogCaptureFixture, printed: Printed, observe: Observe
) -> None:
    llm.balance("5.00")
    interaction = llm.interaction()
    llm.plan.add("dynamodb", THROTTLED)
    raised = ""
    try:
        llm.run(interaction)
    except IdempotencyPersistenceLayerError as exc:  # Lambda would retry; the user must hear either way
        raised = type(exc).__name__
    llm.plan.clear()
    observe(
        "DynamoDB throttled in llm_call for the whole table (ledger and idempotency store)",
        f"handler raised {raised or 'nothing'}; user sees "
        f"'{llm.text(interaction) or '(nothing: thinking…)'}'; OpenRouter calls {llm.sim.count(CHAT)}; "
        "Lambda's async retry may still answer (it replaces this message)",
        faults=llm.plan.injected,
    )
    assert llm.sim.count(CHAT) == 0
    assert llm.text(interaction) == replies.ledger_down_text()


def test_given_the_whole_table_down_for_one_attempt_when_lambda_retries_then_answered_once(
    llm: LlmWorld, observe: Observe
) -> None:
    llm.balance("5.00")
    interaction = llm.interaction()
    llm.plan.add("dynamodb", THROTTLED)
    with pytest.raises(IdempotencyPersistenceLayerError):
        llm.run(interaction)
    injected = llm.plan.injected
    llm.plan.clear()
    result = llm.run(interaction)  # Lambda's async retry of the same event
    assert result["result"] == "answered"
    shown = llm.shown(interaction)
    # The first attempt told the user the ledger was down; the retry's answer replaced it in place.
    assert llm.sim.count(CHAT) == 1
    assert [c.kind for c in shown] == ["edit_original", "edit_original"]
    assert shown[0].content == replies.ledger_down_text()
    assert shown[-1].content != replies.ledger_down_text()
    assert llm.usage_requests() == 1
    assert open_books(llm) == CLOSED
    observe(
        "DynamoDB down for a whole invocation, then Lambda's async retry",
        "first attempt told the user and raised (Lambda retries); the retry answered once, editing the "
        "same message: OpenRouter calls 1, usage records 1, open reservations 0",
        faults=injected,
    )


def test_given_transient_throttling_when_asked_then_sdk_retries_absorb_it(
    llm: LlmWorld, retry_sleeps: list[float], observe: Observe
) -> None:
    llm.balance("5.00")
    interaction = llm.interaction()
    llm.plan.add("dynamodb", THROTTLED, clients={"ledger"}, operations={"TransactWriteItems"}, times=2)
    result = llm.run(interaction)
    assert result["result"] == "answered"
    assert llm.plan.injected == 2
    assert len(retry_sleeps) == 2  # botocore backed off twice, then the reservation went through
    assert llm.usage_requests() == 1
    assert open_books(llm) == CLOSED
    observe(
        "DynamoDB throttled twice on the reservation (transient)",
        f"botocore retried after {', '.join(f'{s:.2f}' for s in retry_sleeps)} s; answered once, "
        "usage recorded, open reservations 0",
        faults=2,
    )


def test_given_settlement_failing_after_the_answer_then_answer_kept_and_reservation_reclaimed_later(
    llm: LlmWorld,
    caplog: pytest.LogCaptureFixture,
    printed: Printed,
    poller: Any,
    observe: Observe,
) -> None:
    llm.balance("5.00")
    interaction = llm.interaction()
    # The reservation (the first transaction) passes; every settlement attempt is throttled.
    llm.plan.add("dynamodb", THROTTLED, clients={"ledger"}, operations={"TransactWriteItems"}, skip=1)
    result = llm.run(interaction)
    injected = llm.plan.injected
    llm.plan.clear()
    metrics = operator_view(caplog, printed)[1]
    booked = next(r for r in caplog.records if r.getMessage().startswith("could not book usage"))
    assert result["result"] == "answered"
    assert len(llm.shown(interaction)) == 1
    assert "LLMCostUSD" in metrics
    assert Decimal(booked.__dict__["cost_usd"]) == Decimal(result["cost_usd"])  # the record survives here
    assert open_books(llm)[0] == 1
    poller(later(llm, minutes=16))
    assert open_books(llm) == CLOSED
    observe(
        "DynamoDB throttled on settlement, after OpenRouter answered",
        "user: answer delivered; operator: log 'could not book usage…' with cost_usd "
        f"{booked.__dict__['cost_usd']}, metric LLMCostUSD; reservation held, reclaimed by the poller "
        "after its 15 min deadline (ReservationsReclaimed); the USAGE/DAY counter misses this request "
        "(see Gaps)",
        faults=injected,
    )


# --- OpenRouter ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [402, 408, 429, 500, 502, 503])
def test_given_openrouter_failing_every_attempt_then_clear_message_nothing_charged_books_closed(
    llm: LlmWorld, status: int, caplog: pytest.LogCaptureFixture, printed: Printed, observe: Observe
) -> None:
    llm.balance("5.00")
    interaction = llm.interaction()
    llm.sim.fail_next(status, times=3, retry_after=0.01)
    result = llm.run(interaction)
    logs, metrics = operator_view(caplog, printed)
    text = llm.text(interaction)
    if status == 402:
        assert result["result"] == "refused"
        assert "out of credits" in text
        assert "Requests402" in metrics
    else:
        assert result["result"] == "failed"
        assert text == replies.unavailable_text(status, retry_soon=True)
        assert "OpenRouter call failed" in logs
        assert "LLMFailures" in metrics
        assert llm.ledger.recent_errors(1)[0].source == "llm_call"
    assert llm.sim.balance == Decimal("5.00")  # nothing charged
    assert llm.usage_requests() == 0
    assert open_books(llm) == CLOSED
    observe(
        f"OpenRouter HTTP {status} on every attempt",
        describe(text, logs, metrics, llm) + f"; attempts {llm.sim.count(CHAT)}",
        faults=llm.sim.count(CHAT),
    )


@pytest.mark.parametrize("fault", [408, 429, 500, 502, 503, "error_in_200"])
def test_given_openrouter_failing_once_then_the_retry_answers(
    llm: LlmWorld, fault: int | str, observe: Observe
) -> None:
    llm.balance("5.00")
    interaction = llm.interaction()
    llm.sim.fail_next(fault, times=1, retry_after=0.01)
    result = llm.run(interaction)
    assert result["result"] == "answered"
    assert (llm.sim.count(CHAT), len(llm.shown(interaction))) == (2, 1)
    assert llm.usage_requests() == 1
    assert open_books(llm) == CLOSED
    observe(
        f"OpenRouter {fault} once (transient)",
        f"retried after {llm.sleeps[0]:.2f} s; answered once, usage recorded, open reservations 0",
        faults=1,
    )


def test_given_a_402_naming_what_is_affordable_then_one_retry_at_that_size(
    llm: LlmWorld, printed: Printed, observe: Observe
) -> None:
    llm.balance("5.00")
    interaction = llm.interaction()
    message = (
        "This request requires more credits, or fewer max_tokens. You requested up to 1000 tokens, "
        "but can only afford 300. To increase, visit https://openrouter.ai/settings/credits"
    )
    llm.sim.fail_next(402, message=message)
    result = llm.run(interaction)
    grants = [r.body["max_tokens"] for r in llm.sim.requests if r.path == CHAT]
    assert result["result"] == "answered"
    assert grants == [1000, 300]
    assert "retried with fewer tokens" in llm.text(interaction)
    assert "Requests402" in emf_metrics(printed.out())
    assert open_books(llm) == CLOSED
    observe(
        "OpenRouter 402 'can only afford 300'",
        "balance corrected at once; retried with max_tokens 300; answered, footer says why; "
        "metric Requests402",
        faults=1,
    )


@pytest.mark.parametrize("fault", ["timeout", "malformed", "error_in_200"])
def test_given_openrouter_timeouts_malformed_json_or_errors_inside_200_then_clear_message(
    llm: LlmWorld, fault: str, caplog: pytest.LogCaptureFixture, printed: Printed, observe: Observe
) -> None:
    llm.balance("5.00")
    llm.openrouter._chat_timeout = 0.1  # the simulator holds each answer 0.3 s
    interaction = llm.interaction()
    llm.sim.fail_next(fault, times=3, delay=0.3)
    result = llm.run(interaction)
    logs, metrics = operator_view(caplog, printed)
    text = llm.text(interaction)
    assert result["result"] == "failed"
    if fault == "malformed":
        # An unreadable 200 may already have been billed: the reply must not promise otherwise.
        assert text.startswith("⚠️ The AI provider's answer arrived unreadable")
        assert "Nothing was charged" not in text
    elif fault == "timeout":
        # A read timeout: the request reached OpenRouter, so it is neither resent nor promised free.
        assert text.startswith("⚠️ The AI provider took too long to answer")
        assert "Nothing was charged" not in text
        assert llm.sim.count(CHAT) == 1
    else:
        assert text.startswith("⚠️ The AI provider could not answer")
        assert "Nothing was charged" in text
    assert "OpenRouter call failed" in logs
    assert "LLMFailures" in metrics
    assert llm.usage_requests() == 0
    assert open_books(llm) == CLOSED
    observe(
        f"OpenRouter {fault} on every attempt",
        describe(text, logs, metrics, llm) + f"; attempts {llm.sim.count(CHAT)}",
        faults=llm.sim.count(CHAT),
    )


# --- Discord ------------------------------------------------------------------------------------------
LONG = 900  # tokens: the answer needs a follow-up after the edit of @original


@pytest.mark.parametrize(
    ("kind", "status", "times", "delivered"),
    [
        ("edit_original", 404, 1, True),
        ("edit_original", 404, 4, False),
        ("followup", 404, 4, False),
        ("followup", 429, 1, True),
        ("followup", 500, 1, True),
        ("followup", 500, 4, False),
    ],
    ids=[
        "edit-404-once",
        "edit-404-always",
        "followup-404-always",
        "followup-429",
        "followup-500",
        "followup-500-always",
    ],
)
def test_given_discord_failing_on_replies_then_usage_still_recorded_and_failure_visible(
    llm: LlmWorld,
    kind: str,
    status: int,
    times: int,
    delivered: bool,
    caplog: pytest.LogCaptureFixture,
    observe: Observe,
) -> None:
    llm.balance("5.00")
    llm.sim.answer_tokens = LONG
    interaction = llm.interaction()
    llm.sink.fail_next(status, times=times, retry_after=0.05, kind=kind)
    result = llm.run(interaction)
    shown = llm.shown(interaction)
    failed = [c for c in llm.sink.calls if not c.accepted]
    assert result["result"] == "answered"
    assert len(failed) == times
    assert llm.usage_requests() == 1  # booked before Discord was told
    assert open_books(llm) == CLOSED
    assert assert_no_pings(shown) == len(shown)
    if delivered:
        assert result["messages_sent"] == len(shown) >= 2
    else:
        assert "Discord reply failed" in log_messages(caplog.records)
        assert llm.ledger.recent_errors(1)[0].message.startswith("Discord reply failed")
    observe(
        f"Discord {status} ×{times} on {kind.replace('_', ' ')}",
        (
            f"retried after {', '.join(f'{s:g}' for s in llm.sleeps)} s; all {len(shown)} messages delivered"
            if delivered
            else f"{len(shown)} of the answer's messages shown; log 'Discord reply failed' + error record "
            "for /nexus diagnostics (no metric: see Gaps)"
        )
        + "; usage recorded, open reservations 0",
        faults=times,
        lost=0,
    )


# --- a Lambda timeout in the middle, then Lambda's async retry ---------------------------------------
class LambdaTimeout(BaseException):
    """What the runtime does at the timeout: the process stops, no `except Exception` runs."""


class DiesOnFirstCall:
    """The OpenRouter adapter of an invocation that times out while waiting for the model."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls = 0

    def chat(self, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            raise LambdaTimeout
        return self.real.chat(**kwargs)


def idempotency_status(world: LlmWorld) -> str:
    items = world.ledger._query("IDEMPOTENCY#llm_call")
    (item,) = items
    return str(item["status"])


@pytest.fixture
def poller(llm: LlmWorld, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Run credit_poller's handler as its schedule would, at a given time."""
    poller_app._runtime.cache_clear()

    def run(at: Any) -> dict[str, Any]:
        monkeypatch.setattr(poller_app, "utcnow", lambda: at)
        result: dict[str, Any] = poller_app.lambda_handler({}, Context("credit_poller"))
        return result

    yield run
    poller_app._runtime.cache_clear()


def test_given_a_timeout_after_reserving_when_retried_after_expiry_then_one_answer_and_reservation_reclaimed(
    llm: LlmWorld,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    printed: Printed,
    poller: Any,
    observe: Observe,
) -> None:
    llm.balance("5.00")
    interaction = llm.interaction()
    assert llm.deps is not None
    monkeypatch.setattr(llm.deps, "openrouter", DiesOnFirstCall(llm.openrouter))
    with pytest.raises(LambdaTimeout):
        llm.run(interaction, context=Context("llm_call", remaining_ms=5))  # in-progress expires in 5 ms
    assert idempotency_status(llm) == "INPROGRESS"
    assert open_books(llm)[0] == 1
    time.sleep(0.02)  # past the in-progress expiry (Powertools reads the real clock)
    retried = llm.run(interaction)
    assert retried["result"] == "answered"
    assert (llm.sim.count(CHAT), len(llm.shown(interaction))) == (1, 1)
    assert idempotency_status(llm) == "COMPLETED"
    assert llm.usage_requests() == 1
    assert open_books(llm)[0] == 1  # the crashed attempt's hold, until its deadline
    poll = poller(later(llm, minutes=16))
    metrics = emf_metrics(printed.out())
    assert poll["ok"] is True
    assert "ReservationsReclaimed" in metrics
    assert open_books(llm) == CLOSED
    duplicate = llm.run(interaction)  # a late duplicate delivery changes nothing
    assert duplicate == retried
    assert (llm.sim.count(CHAT), len(llm.shown(interaction))) == (1, 1)
    observe(
        "Lambda timeout in llm_call after reserving, then the async retry",
        "record left INPROGRESS; retry after its expiry answered once (OpenRouter 1, messages 1, usage 1); "
        "crashed reservation reclaimed by the poller 16 min later (metric ReservationsReclaimed); "
        "a later duplicate replayed the stored result",
        faults=1,
    )


def test_given_a_timeout_when_retried_before_the_record_expires_then_nothing_is_done_twice(
    llm: LlmWorld, monkeypatch: pytest.MonkeyPatch, observe: Observe
) -> None:
    llm.balance("5.00")
    interaction = llm.interaction()
    assert llm.deps is not None
    monkeypatch.setattr(llm.deps, "openrouter", DiesOnFirstCall(llm.openrouter))
    with pytest.raises(LambdaTimeout):
        llm.run(interaction, context=Context("llm_call", remaining_ms=60_000))
    with pytest.raises(IdempotencyAlreadyInProgressError):
        llm.run(interaction)  # Lambda retries again later, after the record expires
    assert llm.sim.count(CHAT) == 0
    assert llm.shown(interaction) == []
    assert open_books(llm)[0] == 1
    observe(
        "Lambda timeout in llm_call, retried while the record is still in progress",
        "retry raised IdempotencyAlreadyInProgressError (Lambda retries later); no second reservation, "
        "no OpenRouter call, no message",
        faults=1,
    )


def test_given_many_answers_with_mentions_then_no_message_ever_pings(llm: LlmWorld, observe: Observe) -> None:
    llm.balance("5.00")
    llm.sim.responder = lambda prompt: ("@everyone @here <@&123> <@456> " * 200)[:3900]
    interactions = [llm.interaction(f"ping them all {n}") for n in range(3)]
    for interaction in interactions:
        llm.run(interaction)
    checked = assert_no_pings(llm.sink.calls)
    assert checked >= 6
    assert all("@everyone" in str(c.content) for c in llm.sink.calls if c.kind == "edit_original")
    observe(
        "LLM output with @everyone, @here, role and user mentions",
        f"{checked} messages (edits and follow-ups) all sent with allowed_mentions {{'parse': []}}",
        requests=len(interactions),
    )
