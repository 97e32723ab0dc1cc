"""The DynamoDB ledger on moto, with the table built from the template's own definition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from astrabot.adapters.ledger import BalanceUpdate, Ledger, ReservationRequest
from astrabot.domain.credit import CreditStatus, ModelPrice
from astrabot.errors import BalanceConflict, LedgerBusy, LedgerUnavailable, ReservationRejected

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
PRICE = ModelPrice("openai/gpt-4o-mini", Decimal("0.00000015"), Decimal("0.0000006"))


def _update(remaining: str, at: datetime = NOW) -> BalanceUpdate:
    return BalanceUpdate(
        remaining_usd=Decimal(remaining),
        status=CreditStatus.HEALTHY,
        affordable_tokens=1000,
        default_model=PRICE.model,
        prices={PRICE.model: PRICE},
        fetched_at=at,
        source="key",
        limit_usd=None,
    )


def _request(rid: str, amount: str, **kw: Any) -> ReservationRequest:
    defaults: dict[str, Any] = {"tokens": 100, "user_id": "42", "model": PRICE.model, "at": NOW}
    defaults.update(kw)
    return ReservationRequest(reservation_id=rid, amount_usd=Decimal(amount), **defaults)


def test_given_no_item_when_balance_written_then_it_reads_back_exactly(ledger: Ledger) -> None:
    assert ledger.get_balance() is None
    version = ledger.write_balance(_update("0.0213"), expected_version=None)
    snap = ledger.get_balance()
    assert version == 1
    assert snap is not None
    assert snap.remaining_usd == Decimal("0.0213")
    assert snap.available_usd == Decimal("0.0213")
    assert snap.prices[PRICE.model] == PRICE
    assert snap.limit_usd is None
    assert snap.fetched_at == NOW


def test_given_stale_version_when_balance_written_then_conflict(ledger: Ledger) -> None:
    ledger.write_balance(_update("1"), expected_version=None)
    ledger.write_balance(_update("2"), expected_version=1)
    with pytest.raises(BalanceConflict):
        ledger.write_balance(_update("3"), expected_version=1)
    with pytest.raises(BalanceConflict):
        ledger.write_balance(_update("3"), expected_version=None)
    snap = ledger.get_balance()
    assert snap is not None
    assert snap.remaining_usd == Decimal("2")


def test_given_open_reservation_when_poll_writes_then_available_keeps_it_and_spend_resets(
    ledger: Ledger,
) -> None:
    ledger.write_balance(_update("1.00"), expected_version=None)
    ledger.reserve(_request("a", "0.30"), balance_known=True)
    r2 = ledger.reserve(_request("b", "0.20"), balance_known=True)
    ledger.settle(r2, cost_usd=Decimal("0.05"), tokens_used=80)
    ledger.write_balance(_update("0.95"), expected_version=1)
    snap = ledger.get_balance()
    assert snap is not None
    assert snap.reserved_usd == Decimal("0.30")
    assert snap.spent_since_poll == 0
    assert snap.available_usd == Decimal("0.65")


def test_given_balance_when_reserving_past_it_then_rejected_for_balance(ledger: Ledger) -> None:
    ledger.write_balance(_update("0.50"), expected_version=None)
    ledger.reserve(_request("a", "0.40"), balance_known=True)
    with pytest.raises(ReservationRejected) as info:
        ledger.reserve(_request("b", "0.20"), balance_known=True)
    assert info.value.reason == ReservationRejected.BALANCE
    snap = ledger.get_balance()
    assert snap is not None
    assert snap.reserved_usd == Decimal("0.40")
    assert [r.reservation_id for r in ledger.open_reservations()] == ["a"]


def test_given_same_id_when_reserved_twice_then_duplicate(ledger: Ledger) -> None:
    ledger.write_balance(_update("1"), expected_version=None)
    ledger.reserve(_request("a", "0.10"), balance_known=True)
    with pytest.raises(ReservationRejected) as info:
        ledger.reserve(_request("a", "0.10"), balance_known=True)
    assert info.value.reason == ReservationRejected.DUPLICATE


def test_given_reservation_when_settled_then_real_cost_is_booked(ledger: Ledger) -> None:
    ledger.write_balance(_update("1.00"), expected_version=None)
    reservation = ledger.reserve(_request("a", "0.30"), balance_known=True)
    assert ledger.settle(reservation, cost_usd=Decimal("0.0123"), tokens_used=90) is True
    snap = ledger.get_balance()
    assert snap is not None
    assert snap.reserved_usd == 0
    assert snap.spent_since_poll == Decimal("0.0123")
    assert snap.available_usd == Decimal("0.9877")
    assert ledger.open_reservations() == []


def test_given_reservation_when_released_then_balance_is_whole_again(ledger: Ledger) -> None:
    ledger.write_balance(_update("1.00"), expected_version=None)
    reservation = ledger.reserve(_request("a", "0.30"), balance_known=True)
    assert ledger.release(reservation) is True
    assert ledger.release(reservation) is False  # second release is a no-op
    snap = ledger.get_balance()
    assert snap is not None
    assert (snap.available_usd, snap.reserved_usd) == (Decimal("1.00"), 0)


def test_given_reclaimed_reservation_when_settled_late_then_cost_still_booked_once(ledger: Ledger) -> None:
    ledger.write_balance(_update("1.00"), expected_version=None)
    reservation = ledger.reserve(_request("a", "0.30"), balance_known=True)
    assert ledger.reclaim_expired(NOW + timedelta(minutes=16)) == 1
    assert ledger.settle(reservation, cost_usd=Decimal("0.01"), tokens_used=50) is False
    snap = ledger.get_balance()
    assert snap is not None
    assert snap.available_usd == Decimal("0.99")
    assert snap.reserved_usd == 0
    assert snap.spent_since_poll == Decimal("0.01")


def test_given_fresh_reservation_when_reclaiming_then_it_is_kept(ledger: Ledger) -> None:
    ledger.write_balance(_update("1.00"), expected_version=None)
    ledger.reserve(_request("a", "0.30"), balance_known=True)
    assert ledger.reclaim_expired(NOW + timedelta(minutes=5)) == 0
    assert len(ledger.open_reservations()) == 1


def test_given_user_quota_when_exceeded_then_rejected_and_settle_adjusts(ledger: Ledger) -> None:
    ledger.write_balance(_update("10"), expected_version=None)
    first = ledger.reserve(_request("a", "0.01", tokens=600, user_daily_quota=1000), balance_known=True)
    with pytest.raises(ReservationRejected) as info:
        ledger.reserve(_request("b", "0.01", tokens=600, user_daily_quota=1000), balance_known=True)
    assert info.value.reason == ReservationRejected.USER_QUOTA
    ledger.settle(first, cost_usd=Decimal("0.001"), tokens_used=200)
    assert ledger.user_tokens_today("42", NOW) == 200
    ledger.reserve(_request("c", "0.01", tokens=600, user_daily_quota=1000), balance_known=True)


def test_given_monthly_budget_when_exhausted_then_rejected(ledger: Ledger) -> None:
    ledger.write_balance(_update("10"), expected_version=None)
    ledger.reserve(_request("a", "0.60", monthly_budget_usd=Decimal("1.00")), balance_known=True)
    with pytest.raises(ReservationRejected) as info:
        ledger.reserve(_request("b", "0.60", monthly_budget_usd=Decimal("1.00")), balance_known=True)
    assert info.value.reason == ReservationRejected.MONTHLY_BUDGET


def test_given_unknown_balance_when_reserving_then_counted_without_balance_check(ledger: Ledger) -> None:
    reservation = ledger.reserve(_request("a", "5.00"), balance_known=False)
    assert ledger.get_balance() is None
    ledger.settle(reservation, cost_usd=Decimal("0.02"), tokens_used=100)
    snap = ledger.get_balance()
    assert snap is not None
    assert snap.spent_since_poll == Decimal("0.02")
    assert snap.remaining_usd is None


def test_given_outage_when_marked_stale_then_last_good_balance_is_kept(ledger: Ledger) -> None:
    ledger.write_balance(_update("0.75"), expected_version=None)
    ledger.mark_balance_stale("OpenRouter 503", NOW + timedelta(minutes=5))
    ledger.mark_balance_stale("OpenRouter 503", NOW + timedelta(minutes=10))
    snap = ledger.get_balance()
    assert snap is not None
    assert snap.remaining_usd == Decimal("0.75")
    assert snap.stale is True
    assert snap.consecutive_failures == 2
    assert snap.last_error == "OpenRouter 503"
    ledger.write_balance(_update("0.70", NOW + timedelta(minutes=15)), expected_version=snap.version)
    healed = ledger.get_balance()
    assert healed is not None
    assert (healed.stale, healed.consecutive_failures, healed.last_error) == (False, 0, None)


def test_given_no_item_when_marked_stale_then_unknown_not_zero(ledger: Ledger) -> None:
    ledger.mark_balance_stale("timeout", NOW)
    snap = ledger.get_balance()
    assert snap is not None
    assert snap.remaining_usd is None
    assert snap.status is CreditStatus.UNKNOWN


def test_given_402_figure_when_correcting_then_available_only_goes_down(ledger: Ledger) -> None:
    ledger.write_balance(_update("1.00"), expected_version=None)
    assert ledger.correct_available(Decimal("0.25"), status=CreditStatus.LOW, affordable_tokens=400) is True
    assert ledger.correct_available(Decimal("0.50")) is False
    snap = ledger.get_balance()
    assert snap is not None
    assert snap.available_usd == Decimal("0.25")
    assert snap.spent_since_poll == Decimal("0.75")
    assert (snap.status, snap.affordable_tokens) == (CreditStatus.LOW, 400)


def test_given_history_points_then_read_back_in_order_with_ttl(ledger: Ledger, ddb: Any) -> None:
    for minutes, amount in ((0, "1.0"), (5, "0.9"), (10, "0.8")):
        ledger.add_history_point(NOW + timedelta(minutes=minutes), Decimal(amount))
    points = ledger.balance_history(NOW + timedelta(minutes=1))
    assert [p.remaining_usd for p in points] == [Decimal("0.9"), Decimal("0.8")]
    raw = ddb.get_item(
        TableName="astrabot-test", Key={"pk": {"S": "BALANCE"}, "sk": {"S": "HIST#2026-12-04T12:00:00Z"}}
    )
    assert int(raw["Item"]["expires_at"]["N"]) == int((NOW + timedelta(days=30)).timestamp())


def test_given_usage_when_recorded_then_day_month_model_and_user_totals(ledger: Ledger) -> None:
    for model, cost in ((PRICE.model, "0.001"), (PRICE.model, "0.002"), ("x/free:free", "0")):
        ledger.record_usage(
            at=NOW, user_id="42", model=model, prompt_tokens=10, completion_tokens=90, cost_usd=Decimal(cost)
        )
    ledger.count_event("402", NOW)
    day = ledger.usage_for_day(NOW)
    month = ledger.usage_for_month(NOW)
    assert (day.requests, day.tokens, day.cost_usd) == (3, 300, Decimal("0.003"))
    assert day.models == {PRICE.model: Decimal("0.003"), "x/free:free": Decimal(0)}
    assert day.events == {"402": 1}
    assert month.cost_usd == Decimal("0.003")
    assert ledger.usage_for_day(NOW + timedelta(days=1)).requests == 0


def test_given_errors_when_recorded_then_newest_first_and_bounded(ledger: Ledger) -> None:
    for i in range(12):
        ledger.record_error("poller", f"failure {i}", NOW + timedelta(seconds=i))
    errors = ledger.recent_errors(limit=5)
    assert [e.message for e in errors] == [f"failure {i}" for i in (11, 10, 9, 8, 7)]


def test_given_throttling_when_reading_then_ledger_unavailable(ledger: Ledger, ddb: Any) -> None:
    with Stubber(ddb) as stub:
        stub.add_client_error("get_item", "ProvisionedThroughputExceededException", http_status_code=400)
        with pytest.raises(LedgerUnavailable, match="ProvisionedThroughputExceeded"):
            ledger.get_balance()


def _conflict(stub: Stubber) -> None:
    stub.add_client_error(
        "transact_write_items",
        "TransactionCanceledException",
        "Transaction cancelled [TransactionConflict, None]",
        modeled_fields={"CancellationReasons": [{"Code": "TransactionConflict"}, {"Code": "None"}]},
    )


def test_given_transaction_conflicts_when_reserving_then_retried_until_it_goes_through(ddb: Any) -> None:
    sleeps: list[float] = []
    ledger = Ledger(ddb, "astrabot-test", sleep=sleeps.append, random=lambda: 0.5)
    with Stubber(ddb) as stub:
        _conflict(stub)
        _conflict(stub)
        stub.add_response("transact_write_items", {})
        reservation = ledger.reserve(_request("a", "0.10"), balance_known=True)
        stub.assert_no_pending_responses()
    assert reservation.reservation_id == "a"
    assert sleeps == [0.01, 0.02]


def test_given_endless_conflicts_when_reserving_then_busy_not_rejected(ddb: Any) -> None:
    ledger = Ledger(ddb, "astrabot-test", sleep=lambda _: None)
    with Stubber(ddb) as stub:
        for _ in range(6):
            _conflict(stub)
        with pytest.raises(LedgerBusy):
            ledger.reserve(_request("a", "0.10"), balance_known=True)


def test_given_a_conflict_when_settling_then_retried_and_cost_booked(ledger: Ledger, ddb: Any) -> None:
    ledger.write_balance(_update("1.00"), expected_version=None)
    reservation = ledger.reserve(_request("a", "0.30"), balance_known=True)
    retrying = Ledger(ddb, "astrabot-test", sleep=lambda _: None)
    real_transact = ddb.transact_write_items
    calls: list[int] = []

    def conflict_once(**kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise ClientError(
                {
                    "Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
                    "CancellationReasons": [{"Code": "None"}, {"Code": "TransactionConflict"}],
                },
                "TransactWriteItems",
            )
        return real_transact(**kwargs)

    ddb.transact_write_items = conflict_once
    try:
        assert retrying.settle(reservation, cost_usd=Decimal("0.01"), tokens_used=10) is True
    finally:
        del ddb.transact_write_items
    snap = ledger.get_balance()
    assert snap is not None
    assert (snap.reserved_usd, snap.spent_since_poll, len(calls)) == (0, Decimal("0.01"), 2)
