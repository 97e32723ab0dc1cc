"""One run of the credit poller: OpenRouter balance and prices -> the balance item, history, metrics.

An OpenRouter outage keeps the last good balance, marks it stale and records the error; a zero is
never written for a figure we did not read. Alerts are decided after the write through the
`on_balance` seam (see astrabot.service.alerting).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from astrabot import metric_names as m
from astrabot.adapters.ledger import BalanceSnapshot, BalanceUpdate, Ledger
from astrabot.adapters.openrouter import Credits, KeyInfo
from astrabot.domain.credit import (
    CreditStatus,
    ModelPrice,
    Thresholds,
    affordable_tokens,
    available_usd,
    candidate_models,
    status_for,
)
from astrabot.errors import BalanceConflict, OpenRouterError
from astrabot.observability import MetricUnit, logger, metrics
from astrabot.settings import Settings


class BalanceSource(Protocol):
    """What the poller needs of the OpenRouter client."""

    def get_key(self) -> KeyInfo: ...

    def get_credits(self) -> Credits | None: ...

    def model_prices(self, models: list[str] | None = None) -> dict[str, ModelPrice]: ...


@dataclass(frozen=True)
class PollOutcome:
    ok: bool
    status: CreditStatus
    remaining_usd: Decimal | None
    affordable_tokens: int | None
    error: str | None = None
    reclaimed: int = 0


# Called after the balance item is written: (previous, current, now). Alerting plugs in here.
BalanceHook = Callable[[BalanceSnapshot | None, BalanceSnapshot, datetime], None]


def thresholds_of(settings: Settings) -> Thresholds:
    return Thresholds(
        low=settings.credit_low_tokens,
        emergency=settings.credit_emergency_tokens,
        critical=settings.credit_critical_tokens,
    )


def remaining_from(key: KeyInfo, credits: Credits | None) -> tuple[Decimal | None, str]:
    """The smaller known figure of the key's remaining limit and the account's credits.

    A key with `limit: null` says nothing about the account: without a management key the
    balance is then unknown (conservative mode), never assumed infinite.
    """
    figures: list[tuple[Decimal, str]] = []
    if key.limit is not None and key.limit_remaining is not None:
        figures.append((key.limit_remaining, "key"))
    if credits is not None:
        figures.append((credits.remaining, "credits"))
    if not figures:
        return None, "none"
    amount = min(f for f, _ in figures)
    return amount, "+".join(sorted(source for _, source in figures))


def poll_once(
    settings: Settings,
    ledger: Ledger,
    openrouter: BalanceSource,
    now: datetime,
    on_balance: BalanceHook | None = None,
) -> PollOutcome:
    previous = ledger.get_balance()
    models = candidate_models(settings.default_model, settings.fallback_models)
    try:
        key = openrouter.get_key()
        credits = openrouter.get_credits()
        prices = openrouter.model_prices(models)
    except OpenRouterError as exc:
        return _record_outage(ledger, f"OpenRouter: {exc}", now, previous, on_balance)

    remaining, source = remaining_from(key, credits)
    if previous is not None:  # keep prices we knew for models /models no longer lists
        prices = {**previous.prices, **prices}
    default_price = prices.get(settings.default_model)
    known_prices = {model: prices[model] for model in models if model in prices}
    if remaining is None:
        return _record_outage(
            ledger,
            "balance unknown: the key has no limit and no management key is configured",
            now,
            previous,
            on_balance,
            prices=known_prices,
        )
    if default_price is None:
        return _record_outage(
            ledger,
            f"no price for DEFAULT_MODEL {settings.default_model!r} in /models",
            now,
            previous,
            on_balance,
            prices=known_prices,
        )

    reserved = previous.reserved_usd if previous else Decimal(0)
    tokens = affordable_tokens(available_usd(remaining, reserved), default_price) or 0
    status = status_for(tokens, thresholds_of(settings))
    update = BalanceUpdate(
        remaining_usd=remaining,
        status=status,
        affordable_tokens=tokens,
        default_model=settings.default_model,
        prices=known_prices,
        fetched_at=now,
        source=source,
        limit_usd=key.limit,
        usage_usd=key.usage,
        usage_daily_usd=key.usage_daily,
        usage_weekly_usd=key.usage_weekly,
        usage_monthly_usd=key.usage_monthly,
    )
    try:
        ledger.write_balance(
            update,
            expected_version=previous.version if previous else None,
            spent_at_read=previous.spent_since_poll if previous else None,
        )
    except BalanceConflict:
        # Another run wrote while we polled; its figure is as fresh as ours. Do not overwrite.
        logger.info("balance written by an overlapping poll; this run's figure is dropped")
        current = ledger.get_balance()
        return PollOutcome(
            ok=True,
            status=current.status if current else status,
            remaining_usd=current.remaining_usd if current else remaining,
            affordable_tokens=current.affordable_tokens if current else tokens,
        )
    ledger.add_history_point(now, remaining)
    reclaimed = ledger.reclaim_expired(now)
    ledger.put_heartbeat("credit_poller", now, ok=True)

    metrics.add_metric(name=m.CREDITS_REMAINING_USD, unit=MetricUnit.NoUnit, value=float(remaining))
    metrics.add_metric(name=m.AFFORDABLE_TOKENS, unit=MetricUnit.Count, value=tokens)
    metrics.add_metric(name=m.CREDIT_STATUS_LEVEL, unit=MetricUnit.NoUnit, value=status.level)
    if reclaimed:
        metrics.add_metric(name=m.RESERVATIONS_RECLAIMED, unit=MetricUnit.Count, value=reclaimed)
    logger.info(
        "credit poll",
        extra={
            "status": status.value,
            "remaining_usd": str(remaining),
            "affordable_tokens": tokens,
            "model": settings.default_model,
            "source": source,
            "reserved_usd": str(reserved),
            "reservations_reclaimed": reclaimed,
        },
    )
    current = ledger.get_balance()
    if on_balance is not None and current is not None:
        on_balance(previous, current, now)
    return PollOutcome(
        ok=True, status=status, remaining_usd=remaining, affordable_tokens=tokens, reclaimed=reclaimed
    )


def _record_outage(
    ledger: Ledger,
    error: str,
    now: datetime,
    previous: BalanceSnapshot | None,
    on_balance: BalanceHook | None,
    *,
    prices: Mapping[str, ModelPrice] | None = None,
) -> PollOutcome:
    ledger.mark_balance_stale(error, now, prices=prices)
    ledger.record_error("credit_poller", error, now)
    ledger.reclaim_expired(now)
    ledger.put_heartbeat("credit_poller", now, ok=False, error=error[:300])
    metrics.add_metric(name=m.POLL_FAILURES, unit=MetricUnit.Count, value=1)
    logger.warning(
        "credit poll failed; keeping the last good balance, marked stale",
        extra={"error": error, "last_good_usd": str(previous.remaining_usd) if previous else None},
    )
    current = ledger.get_balance()
    if on_balance is not None and current is not None:
        on_balance(previous, current, now)
    return PollOutcome(
        ok=False,
        status=current.status if current else CreditStatus.UNKNOWN,
        remaining_usd=current.remaining_usd if current else None,
        affordable_tokens=current.affordable_tokens if current else None,
        error=error,
    )
