"""The DynamoDB ledger: balance, history, reservations, usage counters and recent errors.

One table, `pk`/`sk` strings (DESIGN.md section 5). The balance item keeps `available_usd`
(= remaining - reserved - spent since the last poll) as a stored attribute because DynamoDB
conditions cannot do arithmetic: a reservation is one conditional update
`available_usd >= :amount` (see reservations.py), so concurrent reservations can never exceed
the balance.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from astrabot.adapters import dynamo
from astrabot.adapters.dynamo import condition_failed, dump, epoch, iso, load, parse_iso, wire
from astrabot.adapters.ledger_records import (
    BALANCE_KEY,
    ZERO,
    BalanceSnapshot,
    BalanceUpdate,
    ErrorRecord,
    Reservation,
    ReservationRequest,
    UsageTotals,
    day_key,
    month_key,
)
from astrabot.adapters.reservations import RESERVATION_TIMEOUT, ReservationBook
from astrabot.domain.credit import CreditStatus, ModelPrice, parse_usd
from astrabot.domain.forecast import BalancePoint
from astrabot.errors import BalanceConflict, LedgerBusy

__all__ = [
    "RESERVATION_TIMEOUT",
    "BalanceSnapshot",
    "BalanceUpdate",
    "ErrorRecord",
    "Ledger",
    "Reservation",
    "ReservationRequest",
    "UsageTotals",
    "day_key",
    "month_key",
]

HISTORY_TTL = timedelta(days=30)
ERROR_TTL = timedelta(days=7)
USER_DAY_TTL = timedelta(days=3)
USAGE_DAY_TTL = timedelta(days=400)
WRITE_ATTEMPTS = 5  # a poll's write racing with reservations: re-read and try again

_UNCHANGED_SINCE_READ = "version = :expected AND reserved_usd = :reserved AND spent_since_poll = :spent"
# Attributes every balance item needs before a poll can write it (write_balance's condition): set
# whenever a write might be the one that creates the item.
_ITEM_SKELETON = (
    "reserved_usd = if_not_exists(reserved_usd, :zero), version = if_not_exists(version, :zero), "
    "spent_since_poll = if_not_exists(spent_since_poll, :zero)"
)


class Ledger(ReservationBook):
    """All DynamoDB access. Takes a low-level client (moto, stubbed or real) and the table name."""

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
