"""Findings of a review of the money path, each first proved by a failing test and then fixed.
One finding per test; the test names say the behaviour now guaranteed."""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from astrabot.adapters.ledger import BalanceUpdate, Ledger, ReservationRequest
from astrabot.adapters.openrouter import Credits, KeyInfo
from astrabot.domain.credit import CreditStatus, ModelPrice
from astrabot.errors import LedgerUnavailable
from astrabot.service.poller import poll_once
from tests.unit.llm_world import (
    FREE,
    FREE_PRICE,
    MODEL,
    NOW,
    PAID,
    World,
    completion,
    interaction,
)
from tools.cfn import load_template

WITH_PROMPT_PRICE = ModelPrice(MODEL, Decimal("0.00001"), Decimal("0.00003"))


@pytest.fixture
def llm(world: World) -> World:
    """llm_call's handler built inside moto (a cold start), OpenRouter and Discord on respx."""
    return world


def _balance_update(remaining: str, *, price: ModelPrice = PAID) -> BalanceUpdate:
    return BalanceUpdate(
        remaining_usd=Decimal(remaining),
        status=CreditStatus.HEALTHY,
        affordable_tokens=0,
        default_model=MODEL,
        prices={MODEL: price, FREE: FREE_PRICE},
        fetched_at=NOW,
        source="key",
    )


def _request(rid: str, amount: str, **kw: Any) -> ReservationRequest:
    fields: dict[str, Any] = {"tokens": 100, "user_id": "42", "model": MODEL, "at": NOW, **kw}
    return ReservationRequest(reservation_id=rid, amount_usd=Decimal(amount), **fields)


def _key(limit: str | None, remaining: str | None) -> KeyInfo:
    return KeyInfo(
        label="k",
        limit=None if limit is None else Decimal(limit),
        limit_remaining=None if remaining is None else Decimal(remaining),
        limit_reset=None,
        usage=Decimal("1"),
        usage_daily=None,
        usage_weekly=None,
        usage_monthly=None,
        is_free_tier=False,
    )


class FakeOpenRouter:
    """The poller's view of OpenRouter; `during_read` runs between GET /key and the write."""

    def __init__(self, key: KeyInfo, during_read: Any = None) -> None:
        self.key = key
        self.during_read = during_read

    def get_key(self) -> KeyInfo:
        return self.key

    def get_credits(self) -> Credits | None:
        if self.during_read is not None:
            self.during_read()
        return None

    def model_prices(self, models: list[str] | None = None) -> dict[str, ModelPrice]:
        return {MODEL: PAID, FREE: FREE_PRICE}


# --- llm_call: exactly once -----------------------------------------------------------------------
def test_given_answer_delivered_when_idempotency_success_write_fails_then_answer_is_kept(
    llm: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given an answered turn, when Powertools cannot mark the record COMPLETED, then the delivered
    answer is not replaced by "could not check the balance" and the invocation is not failed."""
    llm.balance("5.00")
    llm.openrouter.respond(json=completion())

    def save_fails(**_: Any) -> None:
        raise RuntimeError("ProvisionedThroughputExceeded")

    monkeypatch.setattr(llm.app.persistence, "save_success", save_fails)
    result = llm.run()
    assert result["result"] == "answered"
    assert [b["content"].split("\n")[0] for b in llm.sent_bodies()] == ["A Lambda is a function."]


def test_given_heartbeat_write_fails_after_answer_when_lambda_retries_then_openrouter_paid_once(
    llm: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    llm.balance("5.00")
    llm.openrouter.respond(json=completion())
    heartbeat = llm.ledger.put_heartbeat
    calls = {"n": 0}

    def flaky_heartbeat(component: str, at: Any, **details: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise LedgerUnavailable("DynamoDB write heartbeat failed: ThrottlingException")
        heartbeat(component, at, **details)

    monkeypatch.setattr(llm.ledger, "put_heartbeat", flaky_heartbeat)
    event = {"interaction": interaction()}
    with contextlib.suppress(LedgerUnavailable):
        llm.run(event)
    llm.run(json.loads(json.dumps(event)))  # Lambda's async retry of the failed invocation
    assert llm.openrouter.call_count == 1


def _llm_call_timeout_seconds() -> float:
    template = load_template()
    return float(template["Resources"]["LlmCallFunction"]["Properties"]["Timeout"])


def test_given_chat_timing_out_then_the_retries_fit_inside_the_lambda_timeout(llm: World) -> None:
    llm.balance("5.00")
    llm.openrouter.side_effect = httpx.ReadTimeout("slow")
    llm.run()
    waited = sum(c.request.extensions["timeout"]["read"] for c in llm.openrouter.calls) + sum(llm.sleeps)
    assert waited < _llm_call_timeout_seconds()


# --- llm_call: grants -------------------------------------------------------------------------------
def test_given_key_without_limit_and_no_management_key_when_asked_then_conservative_grant(
    llm: World,
) -> None:
    outcome = poll_once(llm.app._settings, llm.ledger, FakeOpenRouter(_key(None, None)), NOW)
    assert outcome.ok is False  # unknown balance: a monitoring problem, as DECISIONS.md says
    llm.openrouter.respond(json=completion())
    llm.run()
    sent = llm.chat_bodies()[0]
    assert (sent["model"], sent["max_tokens"]) == (MODEL, 500)  # today: the :free fallback, or a refusal


def test_given_quota_of_1000_when_first_ask_of_the_day_then_answered_within_quota(
    llm: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = replace(llm.app._settings, user_daily_token_quota=1000)
    deps = replace(llm.app._deps(), settings=settings)
    monkeypatch.setattr(llm.app, "_deps", lambda: deps)
    llm.balance("5.00")
    llm.openrouter.respond(json=completion())
    result = llm.run()
    assert result["result"] == "answered"
    assert llm.chat_bodies()[0]["max_tokens"] <= 1000


def test_given_answer_without_usage_cost_then_prompt_cost_is_booked_too(llm: World) -> None:
    llm.ledger.write_balance(_balance_update("5.00", price=WITH_PROMPT_PRICE), expected_version=None)
    body = completion(tokens=50)
    del body["usage"]["cost"]
    llm.openrouter.respond(json=body)
    llm.run()
    snap = llm.ledger.get_balance()
    assert snap is not None
    prompt_tokens = body["usage"]["prompt_tokens"]
    assert snap.spent_since_poll >= WITH_PROMPT_PRICE.worst_case_cost(prompt_tokens, 50)


# --- ledger: available = remaining - reserved - spent ----------------------------------------------
def _invariant_gap(ledger: Ledger) -> Decimal:
    snap = ledger.get_balance()
    assert snap is not None
    assert snap.remaining_usd is not None
    assert snap.available_usd is not None
    return snap.available_usd - (snap.remaining_usd - snap.reserved_usd - snap.spent_since_poll)


def test_given_unknown_balance_reservation_when_settled_after_first_poll_then_invariant_holds(
    ledger: Ledger,
) -> None:
    ledger.mark_balance_stale("balance unknown", NOW)
    reservation = ledger.reserve(_request("a", "0.05"), balance_known=False)
    ledger.write_balance(_balance_update("1.00"), expected_version=0)
    ledger.settle(reservation, cost_usd=Decimal("0.02"), tokens_used=100)
    assert _invariant_gap(ledger) == 0


def test_given_settle_while_poll_reads_openrouter_then_its_cost_survives_the_poll(llm: World) -> None:
    llm.balance("1.00")
    reservation = llm.ledger.reserve(_request("a", "0.30"), balance_known=True)

    def settle_now() -> None:  # the chat finished (and was billed) after GET /key answered
        llm.ledger.settle(reservation, cost_usd=Decimal("0.10"), tokens_used=100)

    source = FakeOpenRouter(_key("10", "1.00"), during_read=settle_now)
    assert poll_once(llm.app._settings, llm.ledger, source, NOW + timedelta(minutes=5)).ok
    snap = llm.ledger.get_balance()
    assert snap is not None
    assert snap.available_usd == Decimal("0.90")


def test_given_balance_item_created_by_a_settle_when_polled_then_the_balance_is_written(llm: World) -> None:
    reservation = llm.ledger.reserve(_request("a", "0.05"), balance_known=False)
    llm.ledger.settle(reservation, cost_usd=Decimal("0.02"), tokens_used=100)
    poll_once(llm.app._settings, llm.ledger, FakeOpenRouter(_key("10", "4.00")), NOW)
    snap = llm.ledger.get_balance()
    assert snap is not None
    assert snap.remaining_usd == Decimal("4.00")


def test_given_reclaimed_reservation_when_settled_late_then_monthly_budget_counts_the_cost(
    ledger: Ledger,
) -> None:
    ledger.write_balance(_balance_update("10"), expected_version=None)
    budget = Decimal("1.00")
    reservation = ledger.reserve(_request("a", "0.30", monthly_budget_usd=budget), balance_known=True)
    assert ledger.reclaim_expired(NOW + timedelta(minutes=16)) == 1
    ledger.settle(reservation, cost_usd=Decimal("0.25"), tokens_used=100)
    month = ledger.get_item("USAGE", f"MONTH#{NOW:%Y-%m}")
    assert month is not None
    assert Decimal(month["budget_usd"]) == Decimal("0.25")
