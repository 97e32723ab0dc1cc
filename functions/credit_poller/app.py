"""EventBridge Scheduler target: poll OpenRouter's balance and prices, store them, decide alerts."""

from __future__ import annotations

from functools import cache
from typing import Any

from astrabot.adapters.openrouter import OpenRouterClient
from astrabot.observability import logger, metrics
from astrabot.runtime import ledger_for, settings_for, utcnow
from astrabot.service.alerting import alert_hook_for
from astrabot.service.poller import BalanceHook, poll_once

REQUIRED = ("TABLE_NAME", "OPENROUTER_API_KEY")


@cache
def _runtime() -> tuple[Any, Any, OpenRouterClient, BalanceHook | None]:
    settings = settings_for("credit_poller", REQUIRED)
    ledger = ledger_for(settings)
    client = OpenRouterClient(
        settings.openrouter_api_key.reveal(),
        base_url=settings.openrouter_base_url,
        management_key=settings.openrouter_management_key.reveal(),
    )
    return settings, ledger, client, alert_hook_for(settings, ledger)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    settings, ledger, client, on_balance = _runtime()
    outcome = poll_once(settings, ledger, client, utcnow(), on_balance=on_balance)
    return {
        "ok": outcome.ok,
        "status": outcome.status.value,
        "remaining_usd": None if outcome.remaining_usd is None else str(outcome.remaining_usd),
        "affordable_tokens": outcome.affordable_tokens,
        "error": outcome.error,
    }
