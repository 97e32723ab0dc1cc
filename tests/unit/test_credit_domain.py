"""The pure credit domain at every boundary (DESIGN.md section 3)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from astrabot.domain.credit import (
    FREE_MODEL_TOKENS,
    CreditStatus,
    Grant,
    GrantPolicy,
    GrantReason,
    ModelPrice,
    Refusal,
    Thresholds,
    affordable_tokens,
    available_usd,
    candidate_models,
    grant_tokens,
    parse_usd,
    plan_grant,
    status_for,
)

PAID = ModelPrice("openai/gpt-4o-mini", Decimal("0.00000015"), Decimal("0.00003"))
FREE = ModelPrice("meta-llama/llama-3.3-70b-instruct:free")
POLICY = GrantPolicy(default_max_tokens=1000, safety_buffer=100, min_grant=100, conservative_cap=500)


@pytest.mark.parametrize(
    ("tokens", "status"),
    [
        (2000, CreditStatus.HEALTHY),
        (1999, CreditStatus.LOW),
        (500, CreditStatus.LOW),
        (499, CreditStatus.EMERGENCY),
        (100, CreditStatus.EMERGENCY),
        (99, CreditStatus.CRITICAL),
        (0, CreditStatus.CRITICAL),
        (None, CreditStatus.UNKNOWN),
    ],
)
def test_given_affordable_tokens_then_status_at_each_threshold(
    tokens: int | None, status: CreditStatus
) -> None:
    assert status_for(tokens, Thresholds()) is status


def test_given_custom_thresholds_then_status_follows_them() -> None:
    custom = Thresholds(low=10_000, emergency=5_000, critical=1_000)
    assert status_for(9_999, custom) is CreditStatus.LOW
    assert status_for(999, custom) is CreditStatus.CRITICAL


def test_given_string_prices_then_parsed_exactly_not_as_float() -> None:
    price = ModelPrice.from_pricing("m", {"prompt": "0.00000015", "completion": "0.00003", "request": "0"})
    assert price is not None
    assert price.completion == Decimal("0.00003")
    assert affordable_tokens(Decimal("0.0213"), price) == 710  # a float would say 709
    assert affordable_tokens(Decimal("0.01"), price) == 333


def test_given_unpriced_router_model_then_no_price() -> None:
    assert ModelPrice.from_pricing("openrouter/auto", {"prompt": "-1", "completion": "-1"}) is None
    assert ModelPrice.from_pricing("m", {"prompt": "0.1"}) is None


@pytest.mark.parametrize("raw", [None, "", "abc", "NaN", "Infinity", True])
def test_given_unparseable_amount_then_none(raw: object) -> None:
    assert parse_usd(raw) is None


def test_given_price_zero_then_free_model_affordable_unless_negative() -> None:
    assert affordable_tokens(Decimal("0"), FREE) == FREE_MODEL_TOKENS
    assert affordable_tokens(Decimal("-0.01"), FREE) == 0
    assert FREE.is_free


def test_given_negative_balance_then_nothing_affordable() -> None:
    assert affordable_tokens(Decimal("-1"), PAID) == 0
    assert status_for(affordable_tokens(Decimal("-1"), PAID)) is CreditStatus.CRITICAL


def test_given_unknown_balance_then_affordable_unknown() -> None:
    assert affordable_tokens(None, PAID) is None


def test_given_prompt_cost_then_it_is_paid_before_completion_tokens() -> None:
    # 1000 prompt tokens at 0.00000015 = 0.00015 USD leaves 0.0003 -> 10 tokens
    assert affordable_tokens(Decimal("0.00045"), PAID, prompt_tokens=1000) == 10


def test_given_reservations_and_unpolled_spend_then_available_excludes_them() -> None:
    assert available_usd(Decimal("1"), Decimal("0.3"), Decimal("0.2")) == Decimal("0.5")


@pytest.mark.parametrize(
    ("requested", "affordable", "granted"),
    [(1000, 721, 621), (1000, 5000, 1000), (1000, 199, 99), (1000, 100, 0), (1000, 50, 0), (300, None, 300)],
)
def test_given_request_and_affordable_then_grant_keeps_safety_buffer(
    requested: int, affordable: int | None, granted: int
) -> None:
    assert grant_tokens(requested, affordable, safety_buffer=100) == granted


def test_given_trimmed_balance_then_grant_is_affordable_minus_buffer() -> None:
    available = PAID.completion * 721
    plan = plan_grant(requested=1000, candidates=[PAID], available=available, prompt_tokens=0, policy=POLICY)
    assert isinstance(plan, Grant)
    assert (plan.max_tokens, plan.reason, plan.trimmed) == (621, GrantReason.TRIMMED, True)
    assert plan.reserve_usd == PAID.completion * 621


def test_given_plenty_then_full_grant_of_the_default() -> None:
    plan = plan_grant(
        requested=None, candidates=[PAID], available=Decimal(10), prompt_tokens=20, policy=POLICY
    )
    assert isinstance(plan, Grant)
    assert (plan.max_tokens, plan.reason) == (1000, GrantReason.FULL)


@pytest.mark.parametrize(("affordable", "granted"), [(200, 100), (199, None)])
def test_given_grant_at_minimum_edge_then_granted_or_refused(affordable: int, granted: int | None) -> None:
    plan = plan_grant(
        requested=1000,
        candidates=[PAID],
        available=PAID.completion * affordable,
        prompt_tokens=0,
        policy=POLICY,
    )
    if granted is None:
        assert isinstance(plan, Refusal)
        assert plan.affordable_tokens == affordable
    else:
        assert isinstance(plan, Grant)
        assert plan.max_tokens == granted


def test_given_unaffordable_default_then_falls_back_to_free_model() -> None:
    plan = plan_grant(
        requested=1000,
        candidates=[PAID, FREE],
        available=PAID.completion * 150,
        prompt_tokens=0,
        policy=POLICY,
    )
    assert isinstance(plan, Grant)
    assert (plan.model, plan.reason, plan.is_fallback, plan.max_tokens) == (
        FREE.model,
        GrantReason.FALLBACK,
        True,
        1000,
    )
    assert plan.reserve_usd == 0


def test_given_negative_balance_then_even_free_model_refused() -> None:
    plan = plan_grant(
        requested=1000, candidates=[PAID, FREE], available=Decimal("-0.5"), prompt_tokens=0, policy=POLICY
    )
    assert isinstance(plan, Refusal)
    assert plan.model == PAID.model


def test_given_unknown_balance_then_conservative_cap() -> None:
    plan = plan_grant(requested=1000, candidates=[PAID], available=None, prompt_tokens=0, policy=POLICY)
    assert isinstance(plan, Grant)
    assert (plan.max_tokens, plan.reason) == (500, GrantReason.CONSERVATIVE)


def test_given_stale_but_known_balance_then_cap_and_balance_both_apply() -> None:
    plan = plan_grant(
        requested=1000,
        candidates=[PAID],
        available=PAID.completion * 400,
        prompt_tokens=0,
        policy=POLICY,
        conservative=True,
    )
    assert isinstance(plan, Grant)
    assert (plan.max_tokens, plan.reason) == (300, GrantReason.TRIMMED)


def test_given_small_request_then_minimum_does_not_refuse_it() -> None:
    plan = plan_grant(
        requested=50, candidates=[PAID], available=PAID.completion * 200, prompt_tokens=0, policy=POLICY
    )
    assert isinstance(plan, Grant)
    assert plan.max_tokens == 50


def test_given_fallback_list_then_chosen_first_without_duplicates() -> None:
    assert candidate_models("a", ["b", "a", "", "c"]) == ["a", "b", "c"]


@settings(max_examples=300, deadline=None)
@given(
    balance=st.decimals(min_value=Decimal("-1"), max_value=Decimal("5"), places=6),
    requested=st.integers(min_value=1, max_value=8000),
    prompt_tokens=st.integers(min_value=0, max_value=4000),
)
def test_property_a_grant_never_costs_more_than_the_balance(
    balance: Decimal, requested: int, prompt_tokens: int
) -> None:
    plan = plan_grant(
        requested=requested, candidates=[PAID], available=balance, prompt_tokens=prompt_tokens, policy=POLICY
    )
    if isinstance(plan, Grant):
        assert 0 < plan.max_tokens <= requested
        assert plan.reserve_usd <= balance
        assert PAID.worst_case_cost(prompt_tokens, plan.max_tokens) == plan.reserve_usd
