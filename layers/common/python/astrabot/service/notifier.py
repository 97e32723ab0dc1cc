"""alert_notifier: SNS alert records -> Discord embeds on the alert webhook.

Transient Discord failures raise so SNS redelivers the record; permanent ones (webhook deleted,
token revoked) are logged and counted, never retried (a retry loop on 401/403/404 counts towards
Discord's IP ban and cannot succeed). CloudWatch alarm notifications from the stack's own
alarms are rendered too; any other record is skipped.
The webhook URL is a secret: it appears in no log line and no exception.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from astrabot import metric_names as m
from astrabot.adapters.ledger import Ledger
from astrabot.domain.alert_embed import is_cloudwatch_alarm, render_alert, render_cloudwatch_alarm
from astrabot.domain.alerts import MalformedAlert
from astrabot.errors import AstraBotError, DiscordError, LedgerUnavailable
from astrabot.observability import MetricUnit, logger, metrics


class WebhookSender(Protocol):
    def execute_webhook(self, webhook_url: str, message: Mapping[str, Any]) -> dict[str, Any]: ...


class AlertDeliveryFailed(AstraBotError):
    """Discord failed transiently; raised so SNS delivers the alert again."""


def deliver_alerts(
    event: Mapping[str, Any], discord: WebhookSender, *, webhook_url: str, mention_role_id: str = ""
) -> int:
    """Post each alert of an SNS event to the webhook; returns how many were delivered."""
    delivered = 0
    for record in event.get("Records") or ():
        message = _alert_message(record)
        if message is None:
            continue
        try:
            if is_cloudwatch_alarm(message):
                payload = render_cloudwatch_alarm(message)
            else:
                payload = render_alert(message, mention_role_id=mention_role_id)
        except MalformedAlert as exc:
            logger.error("SNS record is not a credit alert; skipped", extra={"reason": str(exc)})
            continue
        alert_id = message.get("alert_id")
        try:
            discord.execute_webhook(webhook_url, payload)
        except DiscordError as exc:
            if not exc.permanent:
                logger.warning("alert delivery failed; SNS will retry", extra=_failure(alert_id, exc))
                raise AlertDeliveryFailed(
                    f"Discord webhook failed (HTTP {exc.status}), alert {alert_id}"
                ) from None
            metrics.add_metric(name=m.ALERT_DELIVERY_FAILURES, unit=MetricUnit.Count, value=1)
            logger.error("alert webhook refused the alert; not retried", extra=_failure(alert_id, exc))
            continue
        metrics.add_metric(name=m.ALERTS_DELIVERED, unit=MetricUnit.Count, value=1)
        logger.info("alert delivered", extra={"alert_id": alert_id, "kind": message.get("kind")})
        delivered += 1
    return delivered


def _alert_message(record: Any) -> dict[str, Any] | None:
    """The alert JSON of one SNS record, or None (logged) when the record cannot be read."""
    body = record.get("Sns", {}).get("Message") if isinstance(record, Mapping) else None
    try:
        message = json.loads(body) if isinstance(body, str) else None
    except ValueError:
        message = None
    if not isinstance(message, dict):
        logger.error("SNS record has no JSON message; skipped")
        return None
    return message


def _failure(alert_id: Any, exc: DiscordError) -> dict[str, Any]:
    # Status and code only: the error's text is redacted by the client, but need not be trusted.
    return {"alert_id": alert_id, "status": exc.status, "code": exc.code, "permanent": exc.permanent}


def record_heartbeat(ledger: Ledger | None, at: datetime, **details: Any) -> None:
    """Tell /nexus status when the alert pipeline last delivered. Never fails the delivery."""
    if ledger is None:
        return
    try:
        ledger.put_heartbeat("alert_notifier", at, **details)
    except LedgerUnavailable as exc:
        logger.warning("could not record the notifier heartbeat", extra={"error": str(exc)})
