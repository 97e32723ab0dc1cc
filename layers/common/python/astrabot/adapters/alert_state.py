"""The alert state item (`ALERT/STATE`): version-checked decisions, per-alert publish claims.

Layout: the AlertState fields, `version`, and `pending`, a map alert_id -> {seq, message (JSON),
claimed_until}. Decisions are written only if `version` is unchanged since the read, and only ADD
pending entries, so they never undo another run's claim or publication. Each pending entry is
claimed (a short lease), published, then removed, each step conditional on the entry itself:
two runs can never publish the same alert, and a run that died mid-publish is retried once the
lease runs out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from botocore.exceptions import ClientError

from astrabot.adapters.dynamo import condition_failed, dump, iso, load, parse_iso, wire
from astrabot.domain.alerts import Alert, AlertState, MalformedAlert
from astrabot.domain.credit import CreditStatus
from astrabot.errors import AstraBotError
from astrabot.observability import logger

STATE_KEY = {"pk": "ALERT", "sk": "STATE"}


class Claim(Enum):
    CLAIMED = "claimed"
    HELD = "held"  # another run is publishing it right now
    GONE = "gone"  # published already


class AlertStateConflict(AstraBotError):
    """Another poller run advanced the alert state since this run read it."""


def _scalars(state: AlertState, at: datetime) -> dict[str, Any]:
    """The state's own fields as item attributes; None for an absent timestamp."""
    return {
        "last_status": state.last_status.value,
        "last_alert_at": iso(state.last_alert_at) if state.last_alert_at else None,
        "next_reminder_at": iso(state.next_reminder_at) if state.next_reminder_at else None,
        "forecast_episode_open": state.forecast_episode_open,
        "unknown_polls": state.unknown_polls,
        "unknown_alerted": state.unknown_alerted,
        "episode": state.episode,
        "sequence": state.sequence,
        "updated_at": iso(at),
    }


def _pending_entries(state: AlertState, added: Sequence[Alert]) -> dict[str, dict[str, Any]]:
    """`seq` orders publication: `state.sequence` counts every alert decided, these included."""
    first = state.sequence - len(added) + 1
    return {
        alert.alert_id: {"seq": first + index, "message": json.dumps(alert.message())}
        for index, alert in enumerate(added)
    }


def _pending(entries: Mapping[str, Any]) -> tuple[Alert, ...]:
    alerts: list[tuple[int, Alert]] = []
    for alert_id, entry in entries.items():
        try:
            alerts.append((int(entry["seq"]), Alert.from_message(json.loads(entry["message"]))))
        except (KeyError, ValueError, TypeError, MalformedAlert):
            logger.error("unreadable pending alert left in the state", extra={"alert_id": alert_id})
    return tuple(alert for _, alert in sorted(alerts, key=lambda pair: pair[0]))


class AlertStateStore:
    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def load(self) -> AlertState:
        with wire("read alert state"):
            answer = self._client.get_item(TableName=self._table, Key=dump(STATE_KEY), ConsistentRead=True)
        if "Item" not in answer:
            return AlertState()
        item = load(answer["Item"])
        return AlertState(
            last_status=CreditStatus(item.get("last_status", CreditStatus.HEALTHY.value)),
            last_alert_at=parse_iso(item.get("last_alert_at")),
            next_reminder_at=parse_iso(item.get("next_reminder_at")),
            forecast_episode_open=bool(item.get("forecast_episode_open", False)),
            unknown_polls=int(item.get("unknown_polls", 0)),
            unknown_alerted=bool(item.get("unknown_alerted", False)),
            episode=int(item.get("episode", 0)),
            sequence=int(item.get("sequence", 0)),
            pending=_pending(item.get("pending") or {}),
            version=int(item.get("version", 0)),
        )

    def save(self, state: AlertState, added: Sequence[Alert], at: datetime) -> AlertState:
        """Write `state` (read at `state.version`) with `added` pending; returns it at its new version.

        Raises AlertStateConflict when another run wrote first: this run's decisions are dropped
        (the next poll decides again from the winner's state).
        """
        fields = _scalars(state, at)
        present = {k: v for k, v in fields.items() if v is not None}
        absent = [k for k, v in fields.items() if v is None]
        pending = _pending_entries(state, added)
        try:
            if state.version == 0:
                self._create(present, pending)
            else:
                self._update(present, absent, pending, state.version)
        except ClientError as exc:  # _call lets only condition failures through
            raise AlertStateConflict("the alert state changed while this run decided") from exc
        return replace(state, version=state.version + 1)

    def _create(self, present: Mapping[str, Any], pending: Mapping[str, Any]) -> None:
        item = {**STATE_KEY, **present, "version": 1, "pending": pending}
        with wire("create alert state"):
            self._client.put_item(
                TableName=self._table, Item=dump(item), ConditionExpression="attribute_not_exists(pk)"
            )

    def _update(
        self, present: Mapping[str, Any], absent: Sequence[str], pending: Mapping[str, Any], version: int
    ) -> None:
        names = {f"#{k}": k for k in (*present, *absent)}
        values = {f":{k}": v for k, v in present.items()}
        sets = [f"#{k} = :{k}" for k in present] + ["version = :next"]
        for index, (alert_id, entry) in enumerate(pending.items()):
            names[f"#a{index}"] = alert_id
            values[f":a{index}"] = entry
            sets.append(f"pending.#a{index} = :a{index}")
        expression = "SET " + ", ".join(sets)
        if absent:
            expression += " REMOVE " + ", ".join(f"#{k}" for k in absent)
        with wire("write alert state"):
            self._client.update_item(
                TableName=self._table,
                Key=dump(STATE_KEY),
                UpdateExpression=expression,
                ConditionExpression="version = :expected",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=dump({**values, ":next": version + 1, ":expected": version}),
            )

    def claim(self, alert_id: str, now: datetime, lease: timedelta) -> Claim:
        """Take the right to publish a pending alert. HELD: another run holds it (later alerts must
        wait behind it); GONE: it was published already (carry on)."""
        claimed = self._pending_update(
            alert_id,
            "SET pending.#id.claimed_until = :until",
            "attribute_exists(pending.#id) AND (attribute_not_exists(pending.#id.claimed_until) "
            "OR pending.#id.claimed_until < :now)",
            {":until": iso(now + lease), ":now": iso(now)},
        )
        if claimed:
            return Claim.CLAIMED
        with wire("read pending alert"):
            answer = self._client.get_item(
                TableName=self._table,
                Key=dump(STATE_KEY),
                ConsistentRead=True,
                ProjectionExpression="pending.#id",
                ExpressionAttributeNames={"#id": alert_id},
            )
        still_pending = bool(load(answer.get("Item") or {}).get("pending"))
        return Claim.HELD if still_pending else Claim.GONE

    def release(self, alert_id: str) -> bool:
        """Give a claim back after a failed publish so the next run retries at once."""
        return self._pending_update(
            alert_id, "REMOVE pending.#id.claimed_until", "attribute_exists(pending.#id)", {}
        )

    def mark_published(self, alert_id: str) -> bool:
        """Drop a published alert from pending; False if it was not pending any more."""
        return self._pending_update(alert_id, "REMOVE pending.#id", "attribute_exists(pending.#id)", {})

    def _pending_update(
        self, alert_id: str, expression: str, condition: str, values: Mapping[str, Any]
    ) -> bool:
        extra = {"ExpressionAttributeValues": dump(values)} if values else {}
        try:
            with wire("update pending alert"):
                self._client.update_item(
                    TableName=self._table,
                    Key=dump(STATE_KEY),
                    UpdateExpression=expression,
                    ConditionExpression=condition,
                    ExpressionAttributeNames={"#id": alert_id},
                    **extra,
                )
        except ClientError as exc:
            if condition_failed(exc):
                return False
            raise
        return True
