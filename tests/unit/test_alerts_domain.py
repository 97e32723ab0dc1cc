"""Alert decisions (pure): escalation, reminders, recovery, forecast, unknown balance, hysteresis."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from astrabot.domain.alerts import (
    Alert,
    AlertKind,
    AlertPolicy,
    AlertState,
    BalanceView,
    MalformedAlert,
    decide_alerts,
    diagnostic_alert,
)
from astrabot.domain.credit import CreditStatus
from astrabot.domain.forecast import Forecast

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
PRICE = Decimal("0.00003")  # USD per completion token: 2000 tokens = $0.06
MODEL = "openai/gpt-4o-mini"
POLICY = AlertPolicy()
NO_HISTORY = Forecast(None, None, 0)
POLL = timedelta(minutes=5)

H, L, E, C, U = (
    CreditStatus.HEALTHY,
    CreditStatus.LOW,
    CreditStatus.EMERGENCY,
    CreditStatus.CRITICAL,
    CreditStatus.UNKNOWN,
)


def view(tokens: int | None, *, unknown: bool = False) -> BalanceView:
    usd = None if tokens is None else PRICE * tokens
    return BalanceView(
        affordable_tokens=tokens,
        remaining_usd=usd,
        available_usd=usd,
        model=MODEL,
        completion_price=PRICE,
        unknown=unknown,
    )


class Walk:
    """Feeds polls to decide_alerts every 5 minutes, keeping the state and every alert decided."""

    def __init__(self, state: AlertState | None = None, start: datetime = T0) -> None:
        self.state = state or AlertState()
        self.now = start
        self.alerts: list[Alert] = []

    def poll(
        self, tokens: int | None, *, unknown: bool = False, history: Forecast = NO_HISTORY
    ) -> list[Alert]:
        self.state, decided = decide_alerts(
            self.state, view(tokens, unknown=unknown), history, self.now, POLICY
        )
        self.alerts += decided
        self.now += POLL
        return decided

    def hold(self, tokens: int | None, duration: timedelta, **kwargs: object) -> None:
        end = self.now + duration
        while self.now < end:
            self.poll(tokens, **kwargs)  # type: ignore[arg-type]

    def series(self, tokens: Iterable[int]) -> None:
        for amount in tokens:
            self.poll(amount)

    def summary(self) -> list[tuple[str, str, str]]:
        return [(a.kind.value, a.status.value, a.previous_status.value) for a in self.alerts]


def test_given_a_whole_episode_when_polled_every_5_minutes_then_exact_alerts_in_order() -> None:
    walk = Walk()
    walk.hold(5000, timedelta(hours=1))  # healthy: nothing to say
    walk.hold(1500, timedelta(hours=1))  # low
    walk.hold(400, timedelta(hours=7))  # emergency; one reminder after 6 h
    walk.hold(50, timedelta(hours=13))  # critical; reminders at +6 h and +12 h
    walk.hold(100_000, timedelta(hours=2))  # topped up
    assert walk.summary() == [
        ("escalation", "low", "healthy"),
        ("escalation", "emergency", "low"),
        ("reminder", "emergency", "emergency"),
        ("escalation", "critical", "emergency"),
        ("reminder", "critical", "critical"),
        ("reminder", "critical", "critical"),
        ("recovery", "healthy", "critical"),
    ]
    assert len({a.alert_id for a in walk.alerts}) == len(walk.alerts)


def test_given_the_episode_then_reminders_come_every_reminder_interval() -> None:
    walk = Walk()
    walk.hold(400, timedelta(hours=13))
    times = [a.at for a in walk.alerts]
    assert times == ["2025-03-01T08:00:00Z", "2025-03-01T14:00:00Z", "2025-03-01T20:00:00Z"]


def test_given_balance_wobbling_around_2000_when_polled_then_one_low_alert_and_no_flap() -> None:
    walk = Walk()
    walk.series([2100, 1990, 2010, 1985, 2150, 1999, 2005, 2190, 1950, 2100])
    assert walk.summary() == [("escalation", "low", "healthy")]


def test_given_low_when_tokens_clear_the_margin_then_recovery_once() -> None:
    walk = Walk()
    walk.series([1900, 2199])
    assert walk.poll(2200)[0].kind is AlertKind.RECOVERY
    walk.series([2300, 2250, 5000])
    assert walk.summary() == [("escalation", "low", "healthy"), ("recovery", "healthy", "low")]


def test_given_emergency_when_tokens_wobble_around_500_then_no_de_escalation_until_550() -> None:
    walk = Walk()
    walk.series([400, 510, 490, 540])
    assert walk.state.last_status is E
    walk.poll(550)
    assert walk.state.last_status is L
    assert walk.summary() == [("escalation", "emergency", "healthy")]


def test_given_healthy_when_balance_jumps_two_levels_then_one_alert_at_the_new_level() -> None:
    walk = Walk()
    walk.series([5000, 80])
    assert walk.summary() == [("escalation", "critical", "healthy")]


def test_given_critical_when_partly_topped_up_to_emergency_then_silent_and_reminders_continue() -> None:
    walk = Walk()
    walk.poll(50)
    walk.hold(300, timedelta(hours=6, minutes=5))
    assert walk.summary() == [("escalation", "critical", "healthy"), ("reminder", "emergency", "emergency")]


def test_given_emergency_when_de_escalated_to_low_then_reminders_stop() -> None:
    walk = Walk()
    walk.poll(400)
    walk.hold(1000, timedelta(hours=13))
    assert walk.summary() == [("escalation", "emergency", "healthy")]
    assert walk.state.next_reminder_at is None


def test_given_poller_down_for_a_day_when_back_then_one_reminder_not_one_per_missed_slot() -> None:
    walk = Walk()
    walk.poll(400)
    walk.now += timedelta(hours=25)
    walk.poll(400)
    assert [a.kind for a in walk.alerts] == [AlertKind.ESCALATION, AlertKind.REMINDER]
    assert walk.state.next_reminder_at == T0 + timedelta(hours=30)


def test_given_unknown_balance_when_more_than_three_polls_then_one_monitoring_alert() -> None:
    walk = Walk()
    walk.poll(5000)
    for _ in range(3):
        assert walk.poll(5000, unknown=True) == []
    fourth = walk.poll(5000, unknown=True)
    walk.hold(5000, timedelta(hours=2), unknown=True)
    assert [(a.kind, a.status, a.previous_status) for a in fourth] == [(AlertKind.UNKNOWN, U, H)]
    assert len(walk.alerts) == 1


def test_given_monitoring_recovers_then_silent_reset_and_a_new_outage_alerts_again() -> None:
    walk = Walk()
    walk.hold(None, timedelta(minutes=25), unknown=True)
    assert walk.poll(5000) == []
    walk.hold(None, timedelta(minutes=25), unknown=True)
    assert [a.kind for a in walk.alerts] == [AlertKind.UNKNOWN, AlertKind.UNKNOWN]
    assert walk.alerts[0].alert_id != walk.alerts[1].alert_id


def test_given_stale_emergency_balance_when_reminder_due_then_reminder_still_sent() -> None:
    walk = Walk()
    walk.poll(400)
    walk.hold(400, timedelta(hours=6, minutes=5), unknown=True)
    assert [a.kind for a in walk.alerts] == [AlertKind.ESCALATION, AlertKind.UNKNOWN, AlertKind.REMINDER]


def burning(usd_per_day: str) -> Forecast:
    return Forecast(Decimal(usd_per_day), None, 7200)


def test_given_burn_reaching_emergency_within_24h_then_one_forecast_per_episode() -> None:
    # 3000 tokens = $0.09; the emergency floor (500 tokens) = $0.015; $0.075 at $0.10/day = 18 h.
    walk = Walk()
    first = walk.poll(3000, history=burning("0.10"))
    walk.hold(3000, timedelta(hours=3), history=burning("0.10"))
    assert [(a.kind, a.status) for a in first] == [(AlertKind.FORECAST, H)]
    assert len(walk.alerts) == 1


def test_given_forecast_above_48h_then_episode_closes_and_a_new_burn_alerts_again() -> None:
    walk = Walk()
    walk.poll(3000, history=burning("0.10"))
    walk.poll(3000, history=burning("0.03"))  # 60 h away: episode closed
    walk.poll(3000, history=burning("0.10"))
    assert [a.kind for a in walk.alerts] == [AlertKind.FORECAST, AlertKind.FORECAST]


def test_given_forecast_between_24_and_48h_then_episode_stays_open() -> None:
    walk = Walk()
    walk.poll(3000, history=burning("0.10"))
    walk.poll(3000, history=burning("0.05"))  # 36 h: neither alert nor close
    walk.poll(3000, history=burning("0.10"))
    assert [a.kind for a in walk.alerts] == [AlertKind.FORECAST]


def test_given_already_emergency_then_no_forecast_alert() -> None:
    walk = Walk()
    walk.series([400])
    walk.poll(400, history=burning("1.0"))
    assert [a.kind for a in walk.alerts] == [AlertKind.ESCALATION]


def test_given_not_enough_history_then_no_forecast() -> None:
    walk = Walk()
    walk.poll(2500, history=NO_HISTORY)
    assert walk.alerts == []


def test_given_a_forecast_episode_when_recovered_then_closed() -> None:
    walk = Walk()
    walk.poll(1900, history=burning("0.10"))  # low + forecast
    walk.poll(100_000, history=NO_HISTORY)  # recovery closes the forecast episode
    walk.poll(1900, history=burning("0.10"))
    assert [a.kind.value for a in walk.alerts] == [
        "escalation",
        "forecast",
        "recovery",
        "escalation",
        "forecast",
    ]


def test_given_decided_alerts_then_they_are_pending_in_order() -> None:
    state, alerts = decide_alerts(AlertState(), view(1900), burning("0.10"), T0, POLICY)
    assert state.pending == tuple(alerts)
    assert [a.alert_id for a in alerts] == ["escalation:low:e1:1", "forecast:low:e1:2"]


def test_given_an_alert_then_message_is_the_design_shape() -> None:
    _, (alert,) = decide_alerts(AlertState(), view(333), burning("0.024"), T0, POLICY)
    assert alert.message() == {
        "type": "credit_alert",
        "alert_id": "escalation:emergency:e1:1",
        "kind": "escalation",
        "status": "emergency",
        "previous_status": "healthy",
        "remaining_usd": "0.00999",
        "affordable_tokens": 333,
        "model": MODEL,
        "burn_usd_per_day": "0.024000",
        "hours_to_empty": 10.0,
        "topup_url": "https://openrouter.ai/settings/credits",
        "at": "2025-03-01T08:00:00Z",
    }


def test_given_a_message_when_read_back_then_same_alert() -> None:
    _, (alert,) = decide_alerts(AlertState(), view(50), NO_HISTORY, T0, POLICY)
    assert Alert.from_message(alert.message()) == alert


@pytest.mark.parametrize(
    "message",
    [
        None,
        [],
        {"type": "something_else"},
        {"type": "credit_alert", "kind": "escalation"},
        {"type": "credit_alert", "alert_id": "x", "kind": "party", "status": "low", "at": "t"},
        {
            "type": "credit_alert",
            "alert_id": "x",
            "kind": "reminder",
            "status": "low",
            "at": "t",
            "remaining_usd": "a",
        },
    ],
)
def test_given_a_malformed_message_when_read_then_malformed_alert(message: object) -> None:
    with pytest.raises(MalformedAlert):
        Alert.from_message(message)


@pytest.mark.parametrize(
    ("tokens", "severity"),
    [(1500, "warning"), (400, "critical"), (50, "critical")],
)
def test_given_status_then_severity(tokens: int, severity: str) -> None:
    _, (alert,) = decide_alerts(AlertState(), view(tokens), NO_HISTORY, T0, POLICY)
    assert alert.severity == severity


def test_given_forecast_while_healthy_then_severity_warning() -> None:
    _, (alert,) = decide_alerts(AlertState(), view(3000), burning("0.10"), T0, POLICY)
    assert (alert.kind, alert.status, alert.severity) == (AlertKind.FORECAST, H, "warning")


def test_given_recovery_and_test_alerts_then_severity_info() -> None:
    state, _ = decide_alerts(AlertState(), view(50), NO_HISTORY, T0, POLICY)
    _, (recovery,) = decide_alerts(state, view(90_000), NO_HISTORY, T0 + POLL, POLICY)
    probe = diagnostic_alert(view(50), C, T0, POLICY)
    assert (recovery.severity, probe.severity, probe.kind) == ("info", "info", AlertKind.TEST)


def test_given_custom_margin_then_recovery_needs_that_margin() -> None:
    policy = replace(POLICY, recovery_margin=Decimal("0.25"))
    state, _ = decide_alerts(AlertState(), view(1900), NO_HISTORY, T0, policy)
    state, held = decide_alerts(state, view(2400), NO_HISTORY, T0 + POLL, policy)
    _, recovered = decide_alerts(state, view(2500), NO_HISTORY, T0 + 2 * POLL, policy)
    assert (held, [a.kind for a in recovered]) == ([], [AlertKind.RECOVERY])
