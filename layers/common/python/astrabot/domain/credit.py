"""Credit semantics (DESIGN.md section 3): status, affordable tokens, grants and fallbacks.

Money is `Decimal` end to end: OpenRouter prices are strings such as "0.00003" USD per token and
a float would turn 0.0213 / 0.00003 into 709.9999.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

ZERO = Decimal(0)
# What "affordable" means for a free model: effectively unlimited, but a finite int for arithmetic.
FREE_MODEL_TOKENS = 10**9


class CreditStatus(StrEnum):
    HEALTHY = "healthy"
    LOW = "low"
    EMERGENCY = "emergency"
    CRITICAL = "critical"
    UNKNOWN = "unknown"

    @property
    def level(self) -> int:
        """Severity as a number for metrics and ordering: healthy 0 .. critical 3, unknown -1."""
        return _LEVELS[self]

    @property
    def emoji(self) -> str:
        return _EMOJI[self]

    @property
    def colour(self) -> int:
        """Discord embed colour."""
        return _COLOURS[self]


_LEVELS = {
    CreditStatus.UNKNOWN: -1,
    CreditStatus.HEALTHY: 0,
    CreditStatus.LOW: 1,
    CreditStatus.EMERGENCY: 2,
    CreditStatus.CRITICAL: 3,
}
_EMOJI = {
    CreditStatus.HEALTHY: "🟢",
    CreditStatus.LOW: "🟡",
    CreditStatus.EMERGENCY: "🔴",
    CreditStatus.CRITICAL: "🚨",
    CreditStatus.UNKNOWN: "⚪",
}
_COLOURS = {
    CreditStatus.HEALTHY: 0x2ECC71,
    CreditStatus.LOW: 0xF1C40F,
    CreditStatus.EMERGENCY: 0xE74C3C,
    CreditStatus.CRITICAL: 0x992D22,
    CreditStatus.UNKNOWN: 0x95A5A6,
}


@dataclass(frozen=True)
class Thresholds:
    """Affordable-token thresholds at the default model's price (all configurable)."""

    low: int = 2000
    emergency: int = 500
    critical: int = 100


def parse_usd(value: Any) -> Decimal | None:
    """An amount from OpenRouter (string, int or float) as an exact Decimal; None when absent or bad."""
    if value is None or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return amount if amount.is_finite() else None


@dataclass(frozen=True)
class ModelPrice:
    """USD per token for one model, as OpenRouter's /models lists it."""

    model: str
    prompt: Decimal = ZERO
    completion: Decimal = ZERO
    request: Decimal = ZERO

    @property
    def is_free(self) -> bool:
        return self.completion <= 0 and self.prompt <= 0 and self.request <= 0

    @classmethod
    def from_pricing(cls, model: str, pricing: Mapping[str, Any]) -> ModelPrice | None:
        """Parse a /models `pricing` object; None when the completion price is missing or negative.

        OpenRouter lists "-1" for router models whose price is not known up front: unusable for
        budgeting, so such a model is treated as unpriced.
        """
        completion = parse_usd(pricing.get("completion"))
        if completion is None or completion < 0:
            return None
        prompt = parse_usd(pricing.get("prompt")) or ZERO
        request = parse_usd(pricing.get("request")) or ZERO
        return cls(model=model, prompt=max(prompt, ZERO), completion=completion, request=max(request, ZERO))

    def prompt_cost(self, prompt_tokens: int) -> Decimal:
        return self.prompt * max(prompt_tokens, 0) + self.request

    def worst_case_cost(self, prompt_tokens: int, max_tokens: int) -> Decimal:
        """What a call with this prompt and `max_tokens` can cost at most."""
        return self.prompt_cost(prompt_tokens) + self.completion * max(max_tokens, 0)

    def to_item(self) -> dict[str, str]:
        return {"prompt": str(self.prompt), "completion": str(self.completion), "request": str(self.request)}


def is_free_model_id(model: str) -> bool:
    return model.endswith(":free")


def available_usd(remaining: Decimal, reserved: Decimal = ZERO, spent_since_poll: Decimal = ZERO) -> Decimal:
    """What is left to spend now: the polled balance less open reservations and unpolled spend."""
    return remaining - max(reserved, ZERO) - max(spent_since_poll, ZERO)


def affordable_tokens(available: Decimal | None, price: ModelPrice, prompt_tokens: int = 0) -> int | None:
    """floor((available - prompt cost) / completion price); None when the balance is unknown.

    A free model is affordable unless the balance is negative (OpenRouter still answers 402 then).
    Never negative.
    """
    if available is None:
        return None
    if price.completion <= 0:
        if available < 0:
            return 0
        # A model with a prompt price but free completions is only as affordable as its prompt.
        return FREE_MODEL_TOKENS if price.prompt_cost(prompt_tokens) <= available else 0
    budget = available - price.prompt_cost(prompt_tokens)
    if budget <= 0:
        return 0
    return int((budget / price.completion).to_integral_value(rounding=ROUND_FLOOR))


def status_for(tokens: int | None, thresholds: Thresholds = Thresholds()) -> CreditStatus:
    """Status from affordable tokens at the default model's price."""
    if tokens is None:
        return CreditStatus.UNKNOWN
    if tokens < thresholds.critical:
        return CreditStatus.CRITICAL
    if tokens < thresholds.emergency:
        return CreditStatus.EMERGENCY
    if tokens < thresholds.low:
        return CreditStatus.LOW
    return CreditStatus.HEALTHY


def grant_tokens(
    requested: int, affordable: int | None, *, safety_buffer: int, cap: int | None = None
) -> int:
    """max_tokens = min(requested, affordable - safety buffer[, cap]); 0 when nothing is affordable.

    `affordable=None` (unknown balance) grants `min(requested, cap)`: the caller passes the
    conservative cap in that case.
    """
    grant = max(requested, 0)
    if affordable is not None:
        grant = min(grant, affordable - safety_buffer)
    if cap is not None:
        grant = min(grant, cap)
    return max(grant, 0)


@dataclass(frozen=True)
class GrantPolicy:
    default_max_tokens: int = 1000
    safety_buffer: int = 100
    min_grant: int = 100
    conservative_cap: int = 500


class GrantReason(StrEnum):
    FULL = "full"  # the whole request fits
    TRIMMED = "trimmed"  # cut to what the balance affords
    CONSERVATIVE = "conservative"  # balance unknown or stale: capped
    FALLBACK = "fallback"  # the chosen model was unaffordable; a cheaper one answers


@dataclass(frozen=True)
class Grant:
    model: str
    max_tokens: int
    requested_tokens: int
    affordable_tokens: int | None
    reason: GrantReason
    reserve_usd: Decimal
    original_model: str
    price: ModelPrice

    @property
    def trimmed(self) -> bool:
        return self.max_tokens < self.requested_tokens

    @property
    def is_fallback(self) -> bool:
        return self.model != self.original_model


@dataclass(frozen=True)
class Refusal:
    """Nothing affordable: not even a fallback fits above the minimum grant."""

    model: str
    affordable_tokens: int | None
    min_grant: int


def plan_grant(
    *,
    requested: int | None,
    candidates: Sequence[ModelPrice],
    available: Decimal | None,
    prompt_tokens: int,
    policy: GrantPolicy,
    conservative: bool = False,
) -> Grant | Refusal:
    """Pick the first candidate model (the chosen one first, then the fallbacks) whose grant
    reaches the minimum. `available` None means the balance is unknown (conservative mode)."""
    if not candidates:
        raise ValueError("plan_grant needs at least one candidate model")
    wanted = requested if requested and requested > 0 else policy.default_max_tokens
    chosen = candidates[0]
    cap = policy.conservative_cap if (conservative or available is None) else None
    first_affordable: int | None = None
    for index, price in enumerate(candidates):
        affordable = affordable_tokens(available, price, prompt_tokens)
        if index == 0:
            first_affordable = affordable
        granted = grant_tokens(wanted, affordable, safety_buffer=policy.safety_buffer, cap=cap)
        if granted < min(policy.min_grant, wanted):
            continue
        if index > 0:
            reason = GrantReason.FALLBACK
        elif cap is not None and granted == cap < wanted:
            reason = GrantReason.CONSERVATIVE
        elif granted < wanted:
            reason = GrantReason.TRIMMED
        else:
            reason = GrantReason.FULL
        return Grant(
            model=price.model,
            max_tokens=granted,
            requested_tokens=wanted,
            affordable_tokens=affordable,
            reason=reason,
            reserve_usd=price.worst_case_cost(prompt_tokens, granted),
            original_model=chosen.model,
            price=price,
        )
    return Refusal(model=chosen.model, affordable_tokens=first_affordable, min_grant=policy.min_grant)


def candidate_models(chosen: str, fallbacks: Iterable[str]) -> list[str]:
    """The chosen model, then each fallback once, in order."""
    order: list[str] = []
    for model in (chosen, *fallbacks):
        if model and model not in order:
            order.append(model)
    return order


def estimate_prompt_tokens(text: str) -> int:
    """A deliberately generous estimate (about 3 characters a token, plus chat framing) so the
    reserved prompt cost is never below the real one for ordinary text."""
    return len(text) // 3 + 16


def replies_left(tokens: int | None, tokens_per_reply: int) -> int | None:
    if tokens is None or tokens_per_reply <= 0:
        return None
    return max(tokens, 0) // tokens_per_reply
