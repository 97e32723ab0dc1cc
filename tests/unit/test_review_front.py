"""Findings of a review of the alerting path and the Discord front door, each first proved by a
failing test and then fixed; the test names say the behaviour now guaranteed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from astrabot.adapters.alert_state import AlertStateStore, Claim
from astrabot.adapters.ledger import Ledger
from astrabot.domain.alerts import Alert, AlertPolicy, BalanceView, decide_alerts
from astrabot.domain.forecast import Forecast
from astrabot.service.alerting import CLAIM_LEASE, publish_pending
from tests.unit.conftest import TABLE
from tools.cfn import function_environment, load_template

MODEL = "openai/gpt-4o-mini"
PRICE = Decimal("0.00003")
T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
NO_HISTORY = Forecast(None, None, 0)


def _view(tokens: int) -> BalanceView:
    usd = PRICE * tokens
    return BalanceView(tokens, usd, usd, MODEL, PRICE)


class RecordingPublisher:
    """Stands in for SNS: records the order in which alerts were published."""

    def __init__(self) -> None:
        self.published: list[str] = []

    def publish(self, alert: Alert) -> str:
        self.published.append(alert.alert_id)
        return f"msg-{len(self.published)}"


def _decide_and_save(store: AlertStateStore, tokens: int, now: datetime) -> list[Alert]:
    """One poller run that decides and stores its alerts but dies before publishing them."""
    state, alerts = decide_alerts(store.load(), _view(tokens), NO_HISTORY, now, AlertPolicy())
    store.save(state, alerts, now)
    return alerts


def test_given_oldest_pending_alert_claimed_by_another_run_when_a_run_publishes_then_later_alerts_wait(
    ddb: Any, ledger: Ledger
) -> None:
    """Given two pending alerts (critical escalation, then recovery) and a run that claimed the
    escalation and died mid-publish (its lease still running), when the next run publishes,
    then the recovery must not reach operators before the escalation it recovers from."""
    store = AlertStateStore(ddb, TABLE)
    (escalation,) = _decide_and_save(store, 50, T0)
    (recovery,) = _decide_and_save(store, 5000, T0 + timedelta(minutes=1))
    assert store.claim(escalation.alert_id, T0, CLAIM_LEASE) is Claim.CLAIMED  # the run that then died
    publisher = RecordingPublisher()

    publish_pending(store.load().pending, store, publisher, ledger, T0 + timedelta(minutes=1))

    assert recovery.alert_id not in publisher.published


def test_given_the_template_then_interactions_sees_the_configuration_it_reports_as_effective() -> None:
    """Given `/nexus diagnostics` prints the interactions function's Settings as the "effective
    configuration", when the template deploys it, then the settings that change the bot's
    behaviour elsewhere (quota, reminder cadence) must reach that function too, or the dashboard
    shows defaults (quota "0" = off, reminders every 6 h) that are not in force."""
    environment = function_environment(load_template(), "InteractionsFunction")
    missing = {"USER_DAILY_TOKEN_QUOTA", "ALERT_REMINDER_HOURS"} - set(environment)
    assert missing == set()
