"""Burn rate and hours to empty, robust to top-ups and gaps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from astrabot.domain.forecast import BalancePoint, burn_rate, forecast, hours_until

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def _series(
    *amounts: str, step: timedelta = timedelta(minutes=30), end: datetime = NOW
) -> list[BalancePoint]:
    start = end - step * (len(amounts) - 1)
    return [BalancePoint(start + step * i, Decimal(a)) for i, a in enumerate(amounts)]


def test_given_steady_spend_then_burn_per_day_and_hours_to_empty() -> None:
    points = _series("10.0", "9.9", "9.8", "9.7", "9.6")  # 0.1 per 30 min = 4.8 per day
    result = forecast(points, Decimal("9.6"), now=NOW)
    assert result.burn_usd_per_day == Decimal("4.8")
    assert result.hours_to_empty == Decimal("48")


def test_given_a_top_up_then_it_is_not_negative_spend() -> None:
    points = _series("1.0", "0.9", "10.9", "10.8")
    rate, _ = burn_rate(points, now=NOW)
    assert rate == Decimal("4.8")


def test_given_a_gap_then_it_neither_inflates_nor_dilutes_the_rate() -> None:
    before = _series("5.0", "4.9", end=NOW - timedelta(hours=10))
    after = _series("3.0", "2.9", "2.8")
    rate, observed = burn_rate(before + after, now=NOW)
    assert observed == 3 * 1800
    assert rate == Decimal("4.8")


def test_given_too_little_history_then_unknown() -> None:
    rate, _ = burn_rate(_series("1.0", "0.9", step=timedelta(minutes=5)), now=NOW)
    assert rate is None
    assert forecast([], Decimal(1), now=NOW).known is False


def test_given_no_spend_then_no_time_to_empty() -> None:
    result = forecast(_series("1", "1", "1"), Decimal(1), now=NOW)
    assert result.burn_usd_per_day == 0
    assert result.hours_to_empty is None


def test_given_floor_already_passed_then_zero_hours() -> None:
    assert hours_until(Decimal("0.01"), Decimal("0.02"), Decimal(1)) == 0
    assert hours_until(None, Decimal(0), Decimal(1)) is None
