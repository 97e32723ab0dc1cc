"""Burn rate and hours-to-empty from the balance history.

Robust to top-ups (an interval in which the balance rose is money added: left out) and to gaps
(an interval longer than `max_gap` is left out of both spend and elapsed time, so a poller outage
neither inflates nor dilutes the rate).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import pairwise

ZERO = Decimal(0)
SECONDS_PER_DAY = Decimal(86400)


@dataclass(frozen=True)
class BalancePoint:
    at: datetime
    remaining_usd: Decimal


@dataclass(frozen=True)
class Forecast:
    burn_usd_per_day: Decimal | None  # None: not enough history to say
    hours_to_empty: Decimal | None  # None: no burn or unknown
    observed_seconds: int

    @property
    def known(self) -> bool:
        return self.burn_usd_per_day is not None


def burn_rate(
    points: Iterable[BalancePoint],
    *,
    now: datetime,
    window: timedelta = timedelta(hours=24),
    max_gap: timedelta = timedelta(hours=2),
    min_observed: timedelta = timedelta(minutes=30),
) -> tuple[Decimal | None, int]:
    """USD per day spent over the window, and the seconds of history it rests on."""
    recent = sorted((p for p in points if now - window <= p.at <= now), key=lambda p: p.at)
    spent = ZERO
    observed = 0.0
    for before, after in pairwise(recent):
        elapsed = (after.at - before.at).total_seconds()
        drop = before.remaining_usd - after.remaining_usd
        if elapsed <= 0 or elapsed > max_gap.total_seconds() or drop < 0:
            # A gap tells nothing; a rise is a top-up whose interval hides the real spend.
            continue
        observed += elapsed
        spent += drop
    if observed < min_observed.total_seconds():
        return None, int(observed)
    return spent * SECONDS_PER_DAY / Decimal(str(observed)), int(observed)


def hours_until(
    available_usd: Decimal | None, floor_usd: Decimal, burn_usd_per_day: Decimal | None
) -> Decimal | None:
    """Hours until the balance falls to `floor_usd` at the current burn; 0 when already there."""
    if available_usd is None or burn_usd_per_day is None or burn_usd_per_day <= 0:
        return None
    headroom = available_usd - floor_usd
    if headroom <= 0:
        return ZERO
    return headroom / burn_usd_per_day * 24


def forecast(points: Iterable[BalancePoint], available_usd: Decimal | None, *, now: datetime) -> Forecast:
    rate, observed = burn_rate(points, now=now)
    return Forecast(
        burn_usd_per_day=rate,
        hours_to_empty=hours_until(available_usd, ZERO, rate),
        observed_seconds=observed,
    )
