"""Cold-start wiring shared by the handlers: settings and clients built once per container."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from astrabot.adapters import aws
from astrabot.adapters.ledger import Ledger
from astrabot.observability import logger
from astrabot.settings import Settings, load_settings


def utcnow() -> datetime:
    return datetime.now(UTC)


def settings_for(function: str, required: tuple[str, ...]) -> Settings:
    """Load settings or stop with one line naming the variable (logged, then re-raised)."""
    from astrabot.errors import ConfigError

    try:
        return load_settings(required)
    except ConfigError as exc:
        logger.error(f"{function}: configuration error: {exc}")
        raise


def ledger_for(settings: Settings, client: Any | None = None) -> Ledger:
    return Ledger(client or aws.client("dynamodb"), settings.table_name)
