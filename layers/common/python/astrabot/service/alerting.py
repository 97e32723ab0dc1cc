"""Credit alerts after each poll, published to SNS exactly once.

read state (version v) -> decide (pure) -> write the new state with the decided alerts as
`pending` (only if still at v: of two overlapping runs one wins, the other publishes nothing)
-> publish every pending alert, oldest first, each claimed then removed by a conditional write.
A failed publish stays pending and is retried first by the next run; a retried run finds the
alerts it already published gone from `pending` and does not publish them again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

from astrabot import metric_names as m
from astrabot.adapters import aws
from astrabot.adapters.alert_state import AlertStateConflict, AlertStateStore, Claim
from astrabot.adapters.ledger import BalanceSnapshot, Ledger
from astrabot.adapters.sns import AlertPublisher
from astrabot.domain.alerts import Alert, AlertPolicy, BalanceView, decide_alerts, diagnostic_alert
from astrabot.domain.credit import CreditStatus
from astrabot.domain.forecast import forecast
from astrabot.errors import AlertPublishFailed
from astrabot.observability import MetricUnit, logger, metrics
from astrabot.service.poller import BalanceHook, thresholds_of
from astrabot.settings import Settings

HISTORY_WINDOW = timedelta(hours=24)
# Counted from the poll's start: it must outlast the poller function's timeout, so a claim is
# never taken over from a run that is still alive; a run that died holding one delays its alert
# to the next poll.
CLAIM_LEASE = timedelta(minutes=2)


class Publisher(Protocol):
    def publish(self, alert: Alert) -> str: ...


def alert_policy(settings: Settings) -> AlertPolicy:
    return AlertPolicy(
        thresholds=thresholds_of(settings),
        reminder_every=timedelta(hours=settings.alert_reminder_hours),
    )


def balance_view(settings: Settings, snapshot: BalanceSnapshot | None) -> BalanceView:
    if snapshot is None:
        return BalanceView(None, None, None, settings.default_model, None, unknown=True)
    price = snapshot.prices.get(settings.default_model)
    return BalanceView(
        affordable_tokens=snapshot.affordable_tokens,
        remaining_usd=snapshot.remaining_usd,
        available_usd=snapshot.available_usd,
        model=snapshot.default_model or settings.default_model,
        completion_price=price.completion if price else None,
        unknown=snapshot.stale or snapshot.remaining_usd is None or snapshot.status is CreditStatus.UNKNOWN,
    )


def make_alert_hook(
    settings: Settings, ledger: Ledger, store: AlertStateStore, publisher: Publisher
) -> BalanceHook:
    policy = alert_policy(settings)

    def on_balance(previous: BalanceSnapshot | None, current: BalanceSnapshot, now: datetime) -> None:
        run_alerts(policy, ledger, store, publisher, balance_view(settings, current), now)

    return on_balance


def alert_hook_for(settings: Settings, ledger: Ledger) -> BalanceHook | None:
    """The poller's hook with real clients, or None when no ALERT_TOPIC_ARN is configured."""
    if not settings.alert_topic_arn:
        return None
    store = AlertStateStore(aws.client("dynamodb"), ledger.table_name)
    return make_alert_hook(
        settings, ledger, store, AlertPublisher(aws.client("sns"), settings.alert_topic_arn)
    )


def run_alerts(
    policy: AlertPolicy,
    ledger: Ledger,
    store: AlertStateStore,
    publisher: Publisher,
    view: BalanceView,
    now: datetime,
) -> list[str]:
    """Decide and publish; returns the ids of the alerts this run published."""
    state = store.load()
    history = forecast(ledger.balance_history(now - HISTORY_WINDOW), view.available_usd, now=now)
    decided, alerts = decide_alerts(state, view, history, now, policy)
    if decided != state:
        try:
            decided = store.save(decided, alerts, now)
        except AlertStateConflict:
            logger.info("alert state advanced by an overlapping poller run; this run publishes nothing")
            return []
    for alert in alerts:
        logger.info("alert decided", extra={"alert_id": alert.alert_id, "kind": alert.kind.value})
    return publish_pending(decided.pending, store, publisher, ledger, now)


def publish_pending(
    pending: Sequence[Alert], store: AlertStateStore, publisher: Publisher, ledger: Ledger, now: datetime
) -> list[str]:
    published: list[str] = []
    for alert in pending:
        claim = store.claim(alert.alert_id, now, CLAIM_LEASE)
        if claim is Claim.GONE:
            continue  # published already by another run
        if claim is Claim.HELD:
            break  # another run is publishing it: later alerts wait, so operators read them in order
        try:
            message_id = publisher.publish(alert)
        except AlertPublishFailed as exc:
            store.release(alert.alert_id)
            metrics.add_metric(name=m.ALERT_PUBLISH_FAILURES, unit=MetricUnit.Count, value=1)
            logger.warning("alert publish failed; it stays pending", extra={"alert_id": alert.alert_id})
            ledger.record_error("alerting", str(exc), now)
            break  # later alerts wait behind it, so operators read them in order
        store.mark_published(alert.alert_id)
        _count_published(alert, message_id)
        published.append(alert.alert_id)
    return published


def publish_test_alert(
    settings: Settings, publisher: Publisher, snapshot: BalanceSnapshot | None, now: datetime
) -> str:
    """Publish a `test` alert through the real path (SNS -> notifier -> Discord); returns MessageId.

    Raises AlertPublishFailed for the caller (/nexus diagnostics) to report.
    """
    status = snapshot.status if snapshot else CreditStatus.UNKNOWN
    alert = diagnostic_alert(balance_view(settings, snapshot), status, now, alert_policy(settings))
    message_id = publisher.publish(alert)
    _count_published(alert, message_id)
    return message_id


def _count_published(alert: Alert, message_id: str) -> None:
    metrics.add_metric(name=m.ALERTS_PUBLISHED, unit=MetricUnit.Count, value=1)
    logger.info(
        "alert published",
        extra={
            "alert_id": alert.alert_id,
            "kind": alert.kind.value,
            "status": alert.status.value,
            "severity": alert.severity,
            "message_id": message_id,
        },
    )
