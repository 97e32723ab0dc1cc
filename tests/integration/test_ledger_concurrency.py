"""Reservations under real concurrency: threads against moto_server over loopback."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from astrabot.adapters.ledger import BalanceUpdate, Ledger, ReservationRequest
from astrabot.domain.credit import CreditStatus
from astrabot.errors import LedgerUnavailable, ReservationRejected

pytestmark = pytest.mark.integration
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def _attempt(ledger: Ledger, i: int, amount: str) -> bool:
    for _ in range(30):  # a transaction conflict is "busy", not "no": try again (bounded)
        try:
            ledger.reserve(
                ReservationRequest(f"r{i}", Decimal(amount), 100, "42", "m", NOW), balance_known=True
            )
            return True
        except ReservationRejected:
            return False
        except LedgerUnavailable:
            continue
    return False


def test_given_50_threads_when_reserving_then_total_never_exceeds_balance(server_ledger: Ledger) -> None:
    """50 concurrent reservations of 0.03 against 0.50: exactly 16 fit, none beyond."""
    server_ledger.write_balance(
        BalanceUpdate(Decimal("0.50"), CreditStatus.HEALTHY, 1, "m", {}, NOW, "key"), expected_version=None
    )
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda i: _attempt(server_ledger, i, "0.03"), range(50)))
    snap = server_ledger.get_balance()
    assert snap is not None
    assert sum(results) == 16
    assert snap.reserved_usd == Decimal("0.48")
    assert snap.available_usd == Decimal("0.02")
    assert len(server_ledger.open_reservations()) == 16


def test_given_reservations_all_settled_when_reserving_again_then_exponent_zero_is_fine(
    server_ledger: Ledger,
) -> None:
    """0.0006048 - 0.0006048 is Decimal('0E-7'); the next reservation must still work (as on AWS)."""
    server_ledger.write_balance(
        BalanceUpdate(Decimal("1"), CreditStatus.HEALTHY, 1, "m", {}, NOW, "key"), expected_version=None
    )
    first = server_ledger.reserve(
        ReservationRequest("a", Decimal("0.0006048"), 100, "42", "m", NOW), balance_known=True
    )
    server_ledger.release(first)
    server_ledger.reserve(
        ReservationRequest("b", Decimal("0.0006048"), 100, "42", "m", NOW), balance_known=True
    )
    snap = server_ledger.get_balance()
    assert snap is not None
    assert snap.reserved_usd == Decimal("0.0006048")
