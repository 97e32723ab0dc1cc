"""The DynamoDB ledger: balance, history, reservations, usage counters and recent errors.

One table, `pk`/`sk` strings (DESIGN.md section 5). The balance item keeps `available_usd`
(= remaining - reserved - spent since the last poll) as a stored attribute because DynamoDB
conditions cannot do arithmetic: a reservation is one conditional update
`available_usd >= :amount`, so concurrent reservations can never exceed the balance.
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from astrabot.adapters import dynamo
from astrabot.adapters.dynamo import (
    cancel_codes,
    condition_failed,
    dump,
    epoch,
    iso,
    load,
    parse_iso,
    wire,
)
from astrabot.domain.credit import CreditStatus, ModelPrice, parse_usd
from astrabot.domain.forecast import BalancePoint
from astrabot.errors import BalanceConflict, LedgerBusy, LedgerUnavailable, ReservationRejected

ZERO = Decimal(0)
HISTORY_TTL = timedelta(days=30)
ERROR_TTL = timedelta(days=7)
USER_DAY_TTL = timedelta(days=3)
USAGE_DAY_TTL = timedelta(days=400)
RESERVATION_TIMEOUT = timedelta(minutes=15)
TRANSACTION_ATTEMPTS = 6  # about 0.3 s of jittered waiting at most
WRITE_ATTEMPTS = 5  # a poll's write racing with reservations: re-read and try again

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
    check_balance: bool = True  # False in conservative mode when the balance is unknown


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


_UNCHANGED_SINCE_READ = "version = :expected AND reserved_usd = :reserved AND spent_since_poll = :spent"
# Attributes every balance item needs before a poll can write it (write_balance's condition): set
# whenever a write might be the one that creates the item.
_ITEM_SKELETON = (
    "reserved_usd = if_not_exists(reserved_usd, :zero), version = if_not_exists(version, :zero), "
    "spent_since_poll = if_not_exists(spent_since_poll, :zero)"
)
_BOOK_SPEND = (
    "SET spent_since_poll = if_not_exists(spent_since_poll, :zero) + :cost, "
    "reserved_usd = if_not_exists(reserved_usd, :zero), version = if_not_exists(version, :zero)"
)


def _user_day_key(user_id: str, day: str) -> dict[str, str]:
    return {"pk": f"USER#{user_id}", "sk": f"DAY#{day}"}


def _month_key(month: str) -> dict[str, str]:
    return {"pk": "USAGE", "sk": f"MONTH#{month}"}


def day_key(at: datetime) -> str:
    return at.astimezone(UTC).date().isoformat()


def month_key(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m")


class Ledger:
    """All DynamoDB access. Takes a low-level client (moto, stubbed or real) and the table name."""

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

    def ping(self) -> None:
        """A cheap read that proves the table answers (for /nexus status)."""
        with wire("ping"):
            self._client.get_item(TableName=self._table, Key=dump({"pk": "PING", "sk": "PING"}))

    # --- balance --------------------------------------------------------------------------------
    def get_balance(self) -> BalanceSnapshot | None:
        with wire("read balance"):
            answer = self._client.get_item(TableName=self._table, Key=dump(BALANCE_KEY), ConsistentRead=True)
        item = answer.get("Item")
        return BalanceSnapshot.from_item(load(item)) if item else None

    def write_balance(
        self, update: BalanceUpdate, *, expected_version: int | None, spent_at_read: Decimal | None = None
    ) -> int:
        """Store a fresh poll. `expected_version` is the version read before polling (None: no item).

        `available_usd` is recomputed from the open reservations, and `spent_since_poll` keeps only
        what was settled after `spent_at_read` (the figure read before calling OpenRouter; None: all
        spend is in the new figure). The write is conditional on reservations and spend being what it
        read, so a reservation or settle racing with the poll is never lost. Returns the new version.
        Raises BalanceConflict when another run wrote first.
        """
        fields_ = {
            "remaining_usd": update.remaining_usd,
            "limit_usd": update.limit_usd,
            "usage_usd": update.usage_usd,
            "usage_daily_usd": update.usage_daily_usd,
            "usage_weekly_usd": update.usage_weekly_usd,
            "usage_monthly_usd": update.usage_monthly_usd,
            "status": update.status.value,
            "affordable_tokens": update.affordable_tokens,
            "default_model": update.default_model,
            "prices": {model: price.to_item() for model, price in update.prices.items()},
            "fetched_at": iso(update.fetched_at),
            "checked_at": iso(update.fetched_at),
            "source": update.source,
            "stale": False,
            "consecutive_failures": 0,
        }
        try:
            if expected_version is None:
                item = {
                    **BALANCE_KEY,
                    **fields_,
                    "available_usd": update.remaining_usd,
                    "reserved_usd": ZERO,
                    "spent_since_poll": ZERO,
                    "version": 1,
                }
                with wire("create balance"):
                    self._client.put_item(
                        TableName=self._table,
                        Item=dump(item),
                        ConditionExpression="attribute_not_exists(pk)",
                    )
                return 1
            present = {k: v for k, v in fields_.items() if v is not None}
            absent = [k for k, v in fields_.items() if v is None]
            names = {f"#{k}": k for k in (*present, *absent)}
            sets = [f"#{k} = :{k}" for k in present]
            sets += ["available_usd = :available", "spent_since_poll = :carried", "version = :next"]
            expression = (
                "SET " + ", ".join(sets) + " REMOVE " + ", ".join(["last_error", *(f"#{k}" for k in absent)])
            )
            for _ in range(WRITE_ATTEMPTS):
                current = self.get_balance()
                if current is None or current.version != expected_version:
                    raise BalanceConflict("the balance item changed while this poll ran")
                # Spend settled after the poll read OpenRouter may be missing from its figure: keep it.
                carried = (
                    ZERO if spent_at_read is None else max(current.spent_since_poll - spent_at_read, ZERO)
                )
                try:
                    with wire("write balance"):
                        self._client.update_item(
                            TableName=self._table,
                            Key=dump(BALANCE_KEY),
                            UpdateExpression=expression,
                            ConditionExpression=_UNCHANGED_SINCE_READ,
                            ExpressionAttributeNames=names,
                            ExpressionAttributeValues=dynamo.values(
                                **present,
                                available=update.remaining_usd - current.reserved_usd - carried,
                                carried=carried,
                                reserved=current.reserved_usd,
                                spent=current.spent_since_poll,
                                next=expected_version + 1,
                                expected=expected_version,
                            ),
                        )
                    return expected_version + 1
                except ClientError as exc:
                    if not condition_failed(exc):
                        raise
                    # A reservation or settle landed between the read and the write: read again.
            raise LedgerBusy("the balance kept changing while the poll wrote it")
        except ClientError as exc:
            if condition_failed(exc):
                raise BalanceConflict("the balance item changed while this poll ran") from exc
            raise

    def mark_balance_stale(
        self, error: str, at: datetime, *, prices: Mapping[str, ModelPrice] | None = None
    ) -> None:
        """An outage: keep the last good balance, flag it stale, count the failure. Never zero it.

        `prices` read in this poll are kept even so: conservative mode needs them to grant paid models
        while the balance itself is unknown."""
        sets = (
            "SET stale = :true, last_error = :error, checked_at = :at, "
            "#status = if_not_exists(#status, :unknown), " + _ITEM_SKELETON
        )
        named: dict[str, Any] = {
            "true": True,
            "error": error[:300],
            "at": iso(at),
            "unknown": CreditStatus.UNKNOWN.value,
            "zero": ZERO,
            "one": 1,
        }
        if prices:
            sets += ", prices = :prices"
            named["prices"] = {model: price.to_item() for model, price in prices.items()}
        with wire("mark balance stale"):
            self._client.update_item(
                TableName=self._table,
                Key=dump(BALANCE_KEY),
                UpdateExpression=sets + " ADD consecutive_failures :one",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=dynamo.values(**named),
            )

    def correct_available(
        self,
        affordable_usd: Decimal,
        *,
        status: CreditStatus | None = None,
        affordable_tokens: int | None = None,
    ) -> bool:
        """After a 402: OpenRouter says only `affordable_usd` is left. Lower the cached balance at once.

        OpenRouter's figure does not know our open reservations (they are not charged yet), so the new
        available is that figure less everything reserved. The difference is booked as unpolled spend
        so remaining - reserved - spent = available keeps holding. Only ever lowers the balance.
        Returns True when a correction was written.
        """
        for _ in range(3):
            current = self.get_balance()
            if current is None or current.available_usd is None:
                return False
            target = affordable_usd - current.reserved_usd
            if current.available_usd <= target:
                return False
            diff = current.available_usd - target
            sets = "available_usd = :new, spent_since_poll = spent_since_poll + :diff"
            values: dict[str, Any] = {"new": target, "diff": diff, "old": current.available_usd}
            names: dict[str, str] = {}
            if status is not None:
                sets += ", #status = :status"
                values["status"] = status.value
                names["#status"] = "status"
            if affordable_tokens is not None:
                sets += ", affordable_tokens = :tokens"
                values["tokens"] = affordable_tokens
            try:
                with wire("correct balance"):
                    self._client.update_item(
                        TableName=self._table,
                        Key=dump(BALANCE_KEY),
                        UpdateExpression="SET " + sets,
                        ConditionExpression="available_usd = :old",
                        ExpressionAttributeValues=dynamo.values(**values),
                        **({"ExpressionAttributeNames": names} if names else {}),
                    )
                return True
            except ClientError as exc:
                if not condition_failed(exc):
                    raise
        return False

    # --- history --------------------------------------------------------------------------------
    def add_history_point(self, at: datetime, remaining_usd: Decimal) -> None:
        item = {
            "pk": "BALANCE",
            "sk": f"HIST#{iso(at)}",
            "remaining_usd": remaining_usd,
            "at": iso(at),
            "expires_at": epoch(at + HISTORY_TTL),
        }
        with wire("write history"):
            self._client.put_item(TableName=self._table, Item=dump(item))

    def balance_history(self, since: datetime) -> list[BalancePoint]:
        points: list[BalancePoint] = []
        for item in self._query("BALANCE", sk_between=(f"HIST#{iso(since)}", "HIST#~")):
            at = parse_iso(item.get("at"))
            amount = parse_usd(item.get("remaining_usd"))
            if at is not None and amount is not None:
                points.append(BalancePoint(at=at, remaining_usd=amount))
        return points

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
                _user_day_key(request.user_id, reservation.day),
                "ADD quota_tokens :tokens SET expires_at = :ttl",
                "attribute_not_exists(quota_tokens) OR quota_tokens <= :limit",
                tokens=request.tokens,
                limit=request.user_daily_quota - request.tokens,
                ttl=epoch(request.at + USER_DAY_TTL),
            )
            items.append((ReservationRejected.USER_QUOTA, quota))
        if reservation.tracks_budget:
            budget = self._update_op(
                _month_key(reservation.month),
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
                    _user_day_key(reservation.user_id, reservation.day),
                    "ADD quota_tokens :delta",
                    delta=tokens_used - reservation.tokens,
                )
            )
        if reservation.tracks_budget:
            items.append(
                self._update_op(
                    _month_key(reservation.month),
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
                self._add(_month_key(reservation.month), "budget_usd", cost_usd)
            if reservation.tracks_quota:
                self._add(_user_day_key(reservation.user_id, reservation.day), "quota_tokens", tokens_used)
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

    # --- usage ----------------------------------------------------------------------------------
    def record_usage(
        self,
        *,
        at: datetime,
        user_id: str,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        cost_usd: Decimal,
    ) -> None:
        """Count one answered request per day, per month (with per-model cost) and per user."""
        names = {"#mreq": f"requests#{model}", "#mcost": f"cost#{model}"}
        counters = dynamo.values(
            one=1,
            prompt=prompt_tokens,
            completion=completion_tokens,
            cost=cost_usd,
            ttl=epoch(at + USAGE_DAY_TTL),
        )
        expression = (
            "ADD requests :one, prompt_tokens :prompt, completion_tokens :completion, cost_usd :cost, "
            "#mreq :one, #mcost :cost SET expires_at = :ttl"
        )
        with wire("record usage"):
            for sk in (f"DAY#{day_key(at)}", f"MONTH#{month_key(at)}"):
                self._client.update_item(
                    TableName=self._table,
                    Key=dump({"pk": "USAGE", "sk": sk}),
                    UpdateExpression=expression,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=counters,
                )
            self._client.update_item(
                TableName=self._table,
                Key=dump({"pk": f"USER#{user_id}", "sk": f"DAY#{day_key(at)}"}),
                UpdateExpression=(
                    "ADD requests :one, tokens_used :tokens, cost_usd :cost SET expires_at = :ttl"
                ),
                ExpressionAttributeValues=dynamo.values(
                    one=1,
                    tokens=prompt_tokens + completion_tokens,
                    cost=cost_usd,
                    ttl=epoch(at + USER_DAY_TTL),
                ),
            )

    def count_event(self, kind: str, at: datetime, amount: int = 1) -> None:
        """Count an event ("402", "retry", "failure", "refusal", "rejected", ...) for today and this month."""
        with wire("count event"):
            for sk in (f"DAY#{day_key(at)}", f"MONTH#{month_key(at)}"):
                self._client.update_item(
                    TableName=self._table,
                    Key=dump({"pk": "USAGE", "sk": sk}),
                    UpdateExpression="ADD #event :n",
                    ExpressionAttributeNames={"#event": f"events#{kind}"},
                    ExpressionAttributeValues=dynamo.values(n=amount),
                )

    def _usage(self, sk: str) -> UsageTotals:
        with wire("read usage"):
            answer = self._client.get_item(TableName=self._table, Key=dump({"pk": "USAGE", "sk": sk}))
        item = load(answer.get("Item") or {})
        return UsageTotals(
            requests=int(item.get("requests", 0)),
            prompt_tokens=int(item.get("prompt_tokens", 0)),
            completion_tokens=int(item.get("completion_tokens", 0)),
            cost_usd=Decimal(item.get("cost_usd", 0)),
            events={k.split("#", 1)[1]: int(v) for k, v in item.items() if k.startswith("events#")},
            models={k.split("#", 1)[1]: Decimal(v) for k, v in item.items() if k.startswith("cost#")},
        )

    def usage_for_day(self, day: date | datetime) -> UsageTotals:
        key = day_key(day) if isinstance(day, datetime) else day.isoformat()
        return self._usage(f"DAY#{key}")

    def usage_for_month(self, at: datetime) -> UsageTotals:
        return self._usage(f"MONTH#{month_key(at)}")

    def user_tokens_today(self, user_id: str, at: datetime) -> int:
        with wire("read user quota"):
            answer = self._client.get_item(
                TableName=self._table, Key=dump({"pk": f"USER#{user_id}", "sk": f"DAY#{day_key(at)}"})
            )
        item = load(answer.get("Item") or {})
        return int(item.get("quota_tokens", item.get("tokens_used", 0)))

    # --- errors ---------------------------------------------------------------------------------
    def record_error(self, source: str, message: str, at: datetime) -> None:
        item = {
            "pk": "ERROR",
            "sk": f"{iso(at)}#{secrets.token_hex(3)}",
            "source": source,
            "message": message[:500],
            "at": iso(at),
            "expires_at": epoch(at + ERROR_TTL),
        }
        with wire("record error"):
            self._client.put_item(TableName=self._table, Item=dump(item))

    def recent_errors(self, limit: int = 10) -> list[ErrorRecord]:
        records = []
        for item in self._query("ERROR", newest_first=True, limit=limit):
            at = parse_iso(item.get("at"))
            if at is not None:
                records.append(
                    ErrorRecord(
                        at=at, source=str(item.get("source", "")), message=str(item.get("message", ""))
                    )
                )
        return records

    # --- generic small items (component heartbeats, alert state) ---------------------------------
    def get_item(self, pk: str, sk: str) -> dict[str, Any] | None:
        with wire("read item"):
            answer = self._client.get_item(
                TableName=self._table, Key=dump({"pk": pk, "sk": sk}), ConsistentRead=True
            )
        item = answer.get("Item")
        return load(item) if item else None

    def put_heartbeat(self, component: str, at: datetime, **details: Any) -> None:
        """Record that a component ran (read by /nexus status)."""
        item = {"pk": "HEARTBEAT", "sk": component, "at": iso(at), **details}
        with wire("write heartbeat"):
            self._client.put_item(TableName=self._table, Item=dump(item))

    def heartbeats(self) -> dict[str, dict[str, Any]]:
        return {str(i["sk"]): i for i in self._query("HEARTBEAT")}
