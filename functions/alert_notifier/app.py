"""SNS subscriber: each credit alert becomes a Discord embed on the alert webhook."""

from __future__ import annotations

from functools import cache
from typing import Any

from astrabot.adapters.discord import DiscordClient
from astrabot.adapters.ledger import Ledger
from astrabot.observability import logger, metrics
from astrabot.runtime import ledger_for, settings_for, utcnow
from astrabot.service.notifier import AlertDeliveryFailed, deliver_alerts, record_heartbeat
from astrabot.settings import Settings

REQUIRED = ("DISCORD_ALERT_WEBHOOK_URL",)


@cache
def _runtime() -> tuple[Settings, DiscordClient, Ledger | None]:
    settings = settings_for("alert_notifier", REQUIRED)
    # Worst case 3 tries x 5 s + 2 waits x 5 s fits the function's 30 s timeout; a longer 429
    # wait raises instead, and SNS delivers the alert again later.
    discord = DiscordClient(base_url=settings.discord_api_base_url, timeout=5.0, max_retries=2, max_wait=5.0)
    ledger = ledger_for(settings) if settings.table_name else None
    return settings, discord, ledger


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    settings, discord, ledger = _runtime()
    try:
        delivered = deliver_alerts(
            event,
            discord,
            webhook_url=settings.discord_alert_webhook_url.reveal(),
            mention_role_id=settings.alert_mention_role_id,
        )
    except AlertDeliveryFailed as exc:
        record_heartbeat(ledger, utcnow(), ok=False, error=str(exc))
        raise
    record_heartbeat(ledger, utcnow(), ok=True, delivered=delivered)
    return {"delivered": delivered}
