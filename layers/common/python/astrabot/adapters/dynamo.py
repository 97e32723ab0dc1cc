"""DynamoDB plumbing shared by the table adapters: (de)serialisation, timestamps, error mapping."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from astrabot.errors import LedgerUnavailable

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def iso(at: datetime) -> str:
    """UTC, second precision, `Z` suffix: sorts lexically in sort keys."""
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_iso(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def epoch(at: datetime) -> int:
    """Seconds since the epoch, the form DynamoDB TTL (`expires_at`) wants."""
    return int(at.timestamp())


def dump(item: Mapping[str, Any]) -> dict[str, Any]:
    """A Python item as DynamoDB attribute values; None values are left out."""
    return {k: _serializer.serialize(v) for k, v in item.items() if v is not None}


def load(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deserializer.deserialize(v) for k, v in item.items()}


def values(**named: Any) -> dict[str, Any]:
    """ExpressionAttributeValues from keyword arguments: values(amount=x) -> {":amount": ...}."""
    return {f":{k}": _serializer.serialize(v) for k, v in named.items()}


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


def condition_failed(exc: ClientError) -> bool:
    return error_code(exc) == "ConditionalCheckFailedException"


def cancel_codes(exc: ClientError) -> list[str]:
    """The per-item codes of a cancelled transaction ("None", "ConditionalCheckFailed", ...)."""
    reasons = exc.response.get("CancellationReasons") or []
    codes = [str(r.get("Code", "None")) for r in reasons]
    if not codes:  # some SDKs/mocks only put them in the message: "[None, ConditionalCheckFailed]"
        message = exc.response.get("Error", {}).get("Message", "")
        if "[" in message:
            codes = [c.strip() for c in message[message.rfind("[") + 1 : message.rfind("]")].split(",")]
    return codes


@contextmanager
def wire(action: str) -> Iterator[None]:
    """Turn botocore failures into LedgerUnavailable. Condition failures and cancelled
    transactions pass through: callers decide what they mean."""
    try:
        yield
    except ClientError as exc:
        if condition_failed(exc) or error_code(exc) == "TransactionCanceledException":
            raise
        raise LedgerUnavailable(f"DynamoDB {action} failed: {error_code(exc)}") from exc
    except BotoCoreError as exc:
        raise LedgerUnavailable(f"DynamoDB {action} failed: {type(exc).__name__}") from exc
