"""The grant decision from the cached balance item: shared by llm_call and the interactions precheck."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from astrabot.adapters.ledger import BalanceSnapshot
from astrabot.domain.credit import (
    Grant,
    GrantPolicy,
    ModelPrice,
    Refusal,
    candidate_models,
    estimate_prompt_tokens,
    is_free_model_id,
    plan_grant,
)
from astrabot.settings import Settings


@dataclass(frozen=True)
class GrantDecision:
    plan: Grant | Refusal
    conservative: bool  # balance missing, unknown or stale
    prompt_tokens: int


def policy_of(settings: Settings) -> GrantPolicy:
    return GrantPolicy(
        default_max_tokens=settings.default_max_tokens,
        safety_buffer=settings.token_safety_buffer,
        min_grant=settings.min_grant_tokens,
        conservative_cap=settings.conservative_max_tokens,
    )


def known_prices(snapshot: BalanceSnapshot | None, models: list[str]) -> list[ModelPrice]:
    """Prices for the candidate models, in order. A model with no cached price is skipped,
    except `:free` models, which cost nothing by definition."""
    prices = snapshot.prices if snapshot else {}
    out: list[ModelPrice] = []
    for model in models:
        if model in prices:
            out.append(prices[model])
        elif is_free_model_id(model):
            out.append(ModelPrice(model))
    return out


def decide_grant(
    settings: Settings,
    snapshot: BalanceSnapshot | None,
    *,
    model: str | None,
    prompt: str,
    requested: int | None,
    now: datetime,
    exclude: tuple[str, ...] = (),
) -> GrantDecision:
    chosen = model or settings.default_model
    models = [m for m in candidate_models(chosen, settings.fallback_models) if m not in exclude]
    prompt_tokens = estimate_prompt_tokens(prompt)
    conservative = snapshot is None or snapshot.is_stale(now, settings.stale_after_seconds)
    candidates = known_prices(snapshot, models)
    if not candidates:
        # No price cached for any candidate (first run, before a poll): refuse rather than guess.
        return GrantDecision(Refusal(chosen, None, settings.min_grant_tokens), conservative, prompt_tokens)
    available = snapshot.available_usd if snapshot is not None else None
    plan = plan_grant(
        requested=requested,
        candidates=candidates,
        available=available,
        prompt_tokens=prompt_tokens,
        policy=policy_of(settings),
        conservative=conservative,
    )
    return GrantDecision(plan, conservative, prompt_tokens)
