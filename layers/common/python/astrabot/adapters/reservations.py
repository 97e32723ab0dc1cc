"""Reservations: a grant's worst-case cost held atomically against the balance, the user's daily
quota and the monthly budget, then settled with the real cost or released.

One `TransactWriteItems` per reservation (the record, the balance, the quota, the budget, each with
its own condition), so concurrent reservations can never together exceed the balance. Each one
has a deadline; the poller reclaims those a crashed llm_call left behind.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from astrabot.adapters import dynamo
from astrabot.adapters.dynamo import cancel_codes, condition_failed, dump, epoch, iso, load, parse_iso, wire
from astrabot.adapters.ledger_records import (
    BALANCE_KEY,
    ZERO,
    Reservation,
    ReservationRequest,
    day_key,
    month_key,
    month_usage_key,
    user_day_key,
)
from astrabot.errors import LedgerBusy, LedgerUnavailable, ReservationRejected

USER_DAY_TTL = timedelta(days=3)
RESERVATION_TIMEOUT = timedelta(minutes=15)
TRANSACTION_ATTEMPTS = 6  # about 0.3 s of jittered waiting at most
_BOOK_SPEND = (
    "SET spent_since_poll = if_not_exists(spent_since_poll, :zero) + :cost, "
    "reserved_usd = if_not_exists(reserved_usd, :zero), version = if_not_exists(version, :zero)"
)


class ReservationBook:
    """The table adapter's base: the client, the table, queries, and the reservation operations."""

    def __init__(
        self,
        client: Any,
        table_name: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = random.random,
    ) -> None:
        self._client = client
        self._table = table_name
        self._sleep = sleep
        self._random = random

    @property
    def table_name(self) -> str:
        return self._table

    def _query(
        self,
        pk: str,
        *,
        sk_between: tuple[str, str] | None = None,
        sk_prefix: str | None = None,
        newest_first: bool = False,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        condition = "pk = :pk"
        values: dict[str, Any] = {"pk": pk}
        if sk_between:
            condition += " AND sk BETWEEN :lo AND :hi"
            values.update(lo=sk_between[0], hi=sk_between[1])
        elif sk_prefix:
            condition += " AND begins_with(sk, :prefix)"
            values["prefix"] = sk_prefix
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": dynamo.values(**values),
            "ScanIndexForward": not newest_first,
        }
        items: list[dict[str, Any]] = []
        while True:
            if limit is not None:
                kwargs["Limit"] = limit - len(items)
            with wire("query"):
                page = self._client.query(**kwargs)
            items.extend(load(i) for i in page.get("Items", []))
            last = page.get("LastEvaluatedKey")
            if not last or (limit is not None and len(items) >= limit):
                return items
            kwargs["ExclusiveStartKey"] = last

    # --- reservations ---------------------------------------------------------------------------
    def _update_op(
        self, key: Mapping[str, str], expression: str, condition: str | None = None, **values: Any
    ) -> dict[str, Any]:
        """One `Update` entry of a transaction."""
        op: dict[str, Any] = {"TableName": self._table, "Key": dump(key), "UpdateExpression": expression}
        if condition:
            op["ConditionExpression"] = condition
        if values:
            op["ExpressionAttributeValues"] = dynamo.values(**values)
        return {"Update": op}

    def _transact(self, items: list[dict[str, Any]], action: str) -> None:
        """TransactWriteItems, retried (bounded, jittered) while DynamoDB cancels it only for a
        conflict with another transaction on the same item: busy is not "no". Condition failures
        come back as the ClientError; conflicts that outlast the retries as LedgerBusy."""
        for attempt in range(TRANSACTION_ATTEMPTS):
            try:
                with wire(action):
                    self._client.transact_write_items(TransactItems=items)
                return
            except ClientError as exc:
                codes = cancel_codes(exc)
                if "TransactionConflict" not in codes or "ConditionalCheckFailed" in codes:
                    raise
                if attempt == TRANSACTION_ATTEMPTS - 1:
                    raise LedgerBusy(
                        f"DynamoDB {action}: transaction conflicts outlasted the retries"
                    ) from exc
                self._sleep(min(0.2, 0.01 * 2**attempt) * (0.5 + self._random()))

    def reserve(self, request: ReservationRequest, *, balance_known: bool) -> Reservation:
        """Reserve a grant's worst-case cost, the user's quota and the monthly budget in ONE transaction.

        Raises ReservationRejected with the reason of the first condition that failed.
        `balance_known` False (conservative mode): reservations are still counted, but not checked
        against a balance nobody knows.
        """
        if request.user_daily_quota and request.tokens > request.user_daily_quota:
            raise ReservationRejected(ReservationRejected.USER_QUOTA)
        if request.monthly_budget_usd and request.amount_usd > request.monthly_budget_usd:
            raise ReservationRejected(ReservationRejected.MONTHLY_BUDGET)
        reservation = Reservation(
            reservation_id=request.reservation_id,
            amount_usd=request.amount_usd,
            tokens=request.tokens,
            user_id=request.user_id,
            model=request.model,
            day=day_key(request.at),
            month=month_key(request.at),
            tracks_balance=balance_known,
            tracks_quota=bool(request.user_daily_quota),
            tracks_budget=bool(request.monthly_budget_usd),
        )
        deadline = request.at + RESERVATION_TIMEOUT
        record = {
            "pk": "RESV",
            "sk": request.reservation_id,
            **{k: v for k, v in asdict(reservation).items() if k != "reservation_id"},
            "created_at": iso(request.at),
            "deadline": iso(deadline),
            "expires_at": epoch(deadline + timedelta(days=1)),
        }
        put = {
            "TableName": self._table,
            "Item": dump(record),
            "ConditionExpression": "attribute_not_exists(pk)",
        }
        items: list[tuple[str, dict[str, Any]]] = [(ReservationRejected.DUPLICATE, {"Put": put})]
        if balance_known:
            balance = self._update_op(
                BALANCE_KEY,
                "SET available_usd = available_usd - :amount, reserved_usd = reserved_usd + :amount",
                "available_usd >= :amount",
                amount=request.amount_usd,
            )
            items.append((ReservationRejected.BALANCE, balance))
        if reservation.tracks_quota:
            quota = self._update_op(
                user_day_key(request.user_id, reservation.day),
                "ADD quota_tokens :tokens SET expires_at = :ttl",
                "attribute_not_exists(quota_tokens) OR quota_tokens <= :limit",
                tokens=request.tokens,
                limit=request.user_daily_quota - request.tokens,
                ttl=epoch(request.at + USER_DAY_TTL),
            )
            items.append((ReservationRejected.USER_QUOTA, quota))
        if reservation.tracks_budget:
            budget = self._update_op(
                month_usage_key(reservation.month),
                "ADD budget_usd :amount",
                "attribute_not_exists(budget_usd) OR budget_usd <= :limit",
                amount=request.amount_usd,
                limit=request.monthly_budget_usd - request.amount_usd,
            )
            items.append((ReservationRejected.MONTHLY_BUDGET, budget))
        try:
            self._transact([entry for _, entry in items], "reserve")
        except ClientError as exc:
            codes = cancel_codes(exc)
            for (reason, _), code in zip(items, codes, strict=False):
                if code == "ConditionalCheckFailed":
                    raise ReservationRejected(reason) from exc
            raise LedgerUnavailable(f"reservation cancelled: {', '.join(codes) or 'unknown reason'}") from exc
        return reservation

    def _close_reservation(self, reservation: Reservation, *, cost_usd: Decimal, tokens_used: int) -> bool:
        """Delete the reservation and book the real cost in one transaction.

        Returns False when the reservation was already closed (reclaimed or settled before): then
        only the spend is booked, so a real cost is never lost.
        """
        delete = {
            "TableName": self._table,
            "Key": dump({"pk": "RESV", "sk": reservation.reservation_id}),
            "ConditionExpression": "attribute_exists(pk)",
        }
        items: list[dict[str, Any]] = [{"Delete": delete}]
        if reservation.tracks_balance:
            items.append(
                self._update_op(
                    BALANCE_KEY,
                    "SET available_usd = available_usd + :delta, reserved_usd = reserved_usd - :amount, "
                    "spent_since_poll = spent_since_poll + :cost",
                    delta=reservation.amount_usd - cost_usd,
                    amount=reservation.amount_usd,
                    cost=cost_usd,
                )
            )
        if reservation.tracks_quota:
            items.append(
                self._update_op(
                    user_day_key(reservation.user_id, reservation.day),
                    "ADD quota_tokens :delta",
                    delta=tokens_used - reservation.tokens,
                )
            )
        if reservation.tracks_budget:
            items.append(
                self._update_op(
                    month_usage_key(reservation.month),
                    "ADD budget_usd :delta",
                    delta=cost_usd - reservation.amount_usd,
                )
            )
        try:
            self._transact(items, "settle")
            if not reservation.tracks_balance and cost_usd > 0:
                self._book_spend(cost_usd)  # reserved while the balance was unknown
            return True
        except ClientError as exc:
            codes = cancel_codes(exc)
            if not codes or codes[0] != "ConditionalCheckFailed":
                raise LedgerUnavailable("settling the reservation was cancelled") from exc
        if cost_usd > 0:  # already closed: still book what the call really cost
            self._book_spend(cost_usd)
            # Reclaiming gave the budget and quota back too: count what was really used.
            if reservation.tracks_budget:
                self._add(month_usage_key(reservation.month), "budget_usd", cost_usd)
            if reservation.tracks_quota:
                self._add(user_day_key(reservation.user_id, reservation.day), "quota_tokens", tokens_used)
        return False

    def _book_spend(self, cost_usd: Decimal) -> None:
        """Spend outside a tracked reservation: lower `available_usd` too whenever the item has one,
        so remaining - reserved - spent = available keeps holding."""
        book = {"TableName": self._table, "Key": dump(BALANCE_KEY)}
        named = dynamo.values(cost=cost_usd, zero=ZERO)
        with wire("book spend"):
            try:
                self._client.update_item(
                    **book,
                    UpdateExpression=_BOOK_SPEND + ", available_usd = available_usd - :cost",
                    ConditionExpression="attribute_exists(available_usd)",
                    ExpressionAttributeValues=named,
                )
            except ClientError as exc:
                if not condition_failed(exc):
                    raise
                self._client.update_item(
                    **book, UpdateExpression=_BOOK_SPEND, ExpressionAttributeValues=named
                )

    def _add(self, key: Mapping[str, str], attribute: str, amount: Decimal | int) -> None:
        with wire(f"add to {attribute}"):
            self._client.update_item(
                TableName=self._table,
                Key=dump(key),
                UpdateExpression="ADD #a :n",
                ExpressionAttributeNames={"#a": attribute},
                ExpressionAttributeValues=dynamo.values(n=amount),
            )

    def settle(self, reservation: Reservation, *, cost_usd: Decimal, tokens_used: int) -> bool:
        """Release the reservation and book the real cost (OpenRouter's `usage.cost`)."""
        return self._close_reservation(reservation, cost_usd=max(cost_usd, ZERO), tokens_used=tokens_used)

    def release(self, reservation: Reservation) -> bool:
        """Give the whole reservation back (the call failed and cost nothing)."""
        return self._close_reservation(reservation, cost_usd=ZERO, tokens_used=0)

    def open_reservations(self) -> list[Reservation]:
        return [self._reservation_from_item(i) for i in self._query("RESV")]

    def reclaim_expired(self, now: datetime) -> int:
        """Release reservations held past their deadline (a crashed or timed-out llm_call)."""
        reclaimed = 0
        for item in self._query("RESV"):
            deadline = parse_iso(item.get("deadline"))
            if deadline is not None and deadline < now and self.release(self._reservation_from_item(item)):
                reclaimed += 1
        return reclaimed

    @staticmethod
    def _reservation_from_item(item: Mapping[str, Any]) -> Reservation:
        return Reservation(
            reservation_id=str(item["sk"]),
            amount_usd=Decimal(item["amount_usd"]),
            tokens=int(item.get("tokens", 0)),
            user_id=str(item.get("user_id", "")),
            model=str(item.get("model", "")),
            day=str(item.get("day", "")),
            month=str(item.get("month", "")),
            tracks_balance=bool(item.get("tracks_balance", False)),
            tracks_quota=bool(item.get("tracks_quota", False)),
            tracks_budget=bool(item.get("tracks_budget", False)),
        )
