"""What the ledger stores and returns: the balance item, reservations, usage totals, item keys."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from astrabot.adapters.dynamo import parse_iso
from astrabot.domain.credit import CreditStatus, ModelPrice, parse_usd

ZERO = Decimal(0)
BALANCE_KEY = {"pk": "BALANCE", "sk": "CURRENT"}


@dataclass(frozen=True)
class BalanceSnapshot:
    """The cached balance item. `remaining_usd` None means unknown (never a zero)."""

    remaining_usd: Decimal | None
    available_usd: Decimal | None
    reserved_usd: Decimal = ZERO
    spent_since_poll: Decimal = ZERO
    limit_usd: Decimal | None = None
    usage_usd: Decimal | None = None
    usage_daily_usd: Decimal | None = None
    usage_weekly_usd: Decimal | None = None
    usage_monthly_usd: Decimal | None = None
    status: CreditStatus = CreditStatus.UNKNOWN
    affordable_tokens: int | None = None
    default_model: str = ""
    prices: dict[str, ModelPrice] = field(default_factory=dict)
    fetched_at: datetime | None = None  # last successful read of OpenRouter
    checked_at: datetime | None = None  # last poll attempt, successful or not
    stale: bool = False
    last_error: str | None = None
    source: str = ""
    consecutive_failures: int = 0
    version: int = 0

    def age_seconds(self, now: datetime) -> float | None:
        return None if self.fetched_at is None else (now - self.fetched_at).total_seconds()

    def is_stale(self, now: datetime, stale_after_seconds: float) -> bool:
        age = self.age_seconds(now)
        return self.remaining_usd is None or age is None or age > stale_after_seconds

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> BalanceSnapshot:
        prices = {
            model: price
            for model, raw in (item.get("prices") or {}).items()
            if (price := ModelPrice.from_pricing(model, raw)) is not None
        }
        affordable = item.get("affordable_tokens")
        return cls(
            remaining_usd=parse_usd(item.get("remaining_usd")),
            available_usd=parse_usd(item.get("available_usd")),
            reserved_usd=parse_usd(item.get("reserved_usd")) or ZERO,
            spent_since_poll=parse_usd(item.get("spent_since_poll")) or ZERO,
            limit_usd=parse_usd(item.get("limit_usd")),
            usage_usd=parse_usd(item.get("usage_usd")),
            usage_daily_usd=parse_usd(item.get("usage_daily_usd")),
            usage_weekly_usd=parse_usd(item.get("usage_weekly_usd")),
            usage_monthly_usd=parse_usd(item.get("usage_monthly_usd")),
            status=CreditStatus(item.get("status", CreditStatus.UNKNOWN.value)),
            affordable_tokens=None if affordable is None else int(affordable),
            default_model=str(item.get("default_model", "")),
            prices=prices,
            fetched_at=parse_iso(item.get("fetched_at")),
            checked_at=parse_iso(item.get("checked_at")),
            stale=bool(item.get("stale", False)),
            last_error=item.get("last_error"),
            source=str(item.get("source", "")),
            consecutive_failures=int(item.get("consecutive_failures", 0)),
            version=int(item.get("version", 0)),
        )


@dataclass(frozen=True)
class BalanceUpdate:
    """What one successful poll learned."""

    remaining_usd: Decimal
    status: CreditStatus
    affordable_tokens: int
    default_model: str
    prices: Mapping[str, ModelPrice]
    fetched_at: datetime
    source: str
    limit_usd: Decimal | None = None
    usage_usd: Decimal | None = None
    usage_daily_usd: Decimal | None = None
    usage_weekly_usd: Decimal | None = None
    usage_monthly_usd: Decimal | None = None


@dataclass(frozen=True)
class ReservationRequest:
    reservation_id: str
    amount_usd: Decimal
    tokens: int
    user_id: str
    model: str
    at: datetime
    user_daily_quota: int = 0  # 0 = off
    monthly_budget_usd: Decimal = ZERO  # 0 = off


@dataclass(frozen=True)
class Reservation:
    reservation_id: str
    amount_usd: Decimal
    tokens: int
    user_id: str
    model: str
    day: str
    month: str
    tracks_balance: bool
    tracks_quota: bool
    tracks_budget: bool


@dataclass(frozen=True)
class UsageTotals:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: Decimal = ZERO
    events: dict[str, int] = field(default_factory=dict)  # "402", "retry", "failure", "refusal", ...
    models: dict[str, Decimal] = field(default_factory=dict)  # cost per model

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class ErrorRecord:
    at: datetime
    source: str
    message: str


def user_day_key(user_id: str, day: str) -> dict[str, str]:
    return {"pk": f"USER#{user_id}", "sk": f"DAY#{day}"}


def month_usage_key(month: str) -> dict[str, str]:
    return {"pk": "USAGE", "sk": f"MONTH#{month}"}


def day_key(at: datetime) -> str:
    return at.astimezone(UTC).date().isoformat()


def month_key(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m")
