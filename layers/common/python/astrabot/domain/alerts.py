"""Alert decisions (pure): from the previous alert state and a fresh balance, which alerts to send.

One call per poll. The state remembers the level operators were told about, so each level is
announced once; a level is only left when the balance clears its threshold by a margin
(hysteresis), so a balance wobbling around 2000 tokens does not flap between low and healthy.
Decided alerts are kept in `pending` until published (see astrabot.service.alerting).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from astrabot.domain.credit import CreditStatus, Thresholds, status_for
from astrabot.domain.forecast import Forecast, hours_until
from astrabot.errors import AstraBotError
from astrabot.settings import TOPUP_URL

MESSAGE_TYPE = "credit_alert"
REMINDED = frozenset({CreditStatus.EMERGENCY, CreditStatus.CRITICAL})


class AlertKind(StrEnum):
    ESCALATION = "escalation"
    REMINDER = "reminder"
    RECOVERY = "recovery"
    FORECAST = "forecast"
    TEST = "test"
    UNKNOWN = "unknown"


class MalformedAlert(AstraBotError):
    """A message that is not a credit alert this code can read."""


@dataclass(frozen=True)
class AlertPolicy:
    thresholds: Thresholds = field(default_factory=Thresholds)
    reminder_every: timedelta = timedelta(hours=6)
    # A level is left only once affordable tokens exceed its threshold by this fraction.
    recovery_margin: Decimal = Decimal("0.10")
    forecast_horizon_hours: Decimal = Decimal(24)
    forecast_reset_hours: Decimal = Decimal(48)
    unknown_after_polls: int = 3
    topup_url: str = TOPUP_URL


@dataclass(frozen=True)
class BalanceView:
    """What alerting needs of the balance item. `unknown`: stale or never read."""

    affordable_tokens: int | None
    remaining_usd: Decimal | None
    available_usd: Decimal | None
    model: str
    completion_price: Decimal | None  # USD per token of the default model
    unknown: bool = False


@dataclass(frozen=True)
class Alert:
    """One alert; `message()` is the SNS body (DESIGN.md section 5) plus its stable `alert_id`."""

    alert_id: str
    kind: AlertKind
    status: CreditStatus
    previous_status: CreditStatus
    remaining_usd: str | None
    affordable_tokens: int | None
    model: str
    burn_usd_per_day: str | None
    hours_to_empty: float | None
    topup_url: str
    at: str

    @property
    def severity(self) -> str:
        """For SNS subscription filters: a test or a recovery never pages anyone."""
        if self.kind in (AlertKind.TEST, AlertKind.RECOVERY):
            return "info"
        return "critical" if self.status in REMINDED else "warning"

    def message(self) -> dict[str, Any]:
        return {
            "type": MESSAGE_TYPE,
            "alert_id": self.alert_id,
            "kind": self.kind.value,
            "status": self.status.value,
            "previous_status": self.previous_status.value,
            "remaining_usd": self.remaining_usd,
            "affordable_tokens": self.affordable_tokens,
            "model": self.model,
            "burn_usd_per_day": self.burn_usd_per_day,
            "hours_to_empty": self.hours_to_empty,
            "topup_url": self.topup_url,
            "at": self.at,
        }

    @classmethod
    def from_message(cls, message: Any) -> Alert:
        if not isinstance(message, Mapping) or message.get("type") != MESSAGE_TYPE:
            raise MalformedAlert("not a credit_alert message")
        try:
            return cls(
                alert_id=str(message["alert_id"]),
                kind=AlertKind(message["kind"]),
                status=CreditStatus(message["status"]),
                previous_status=CreditStatus(message.get("previous_status") or message["status"]),
                remaining_usd=_optional_usd(message.get("remaining_usd")),
                affordable_tokens=_optional_int(message.get("affordable_tokens")),
                model=str(message.get("model") or ""),
                burn_usd_per_day=_optional_usd(message.get("burn_usd_per_day")),
                hours_to_empty=_optional_float(message.get("hours_to_empty")),
                topup_url=str(message.get("topup_url") or TOPUP_URL),
                at=str(message["at"]),
            )
        except (KeyError, ValueError, TypeError, InvalidOperation) as exc:
            raise MalformedAlert(f"credit_alert message is malformed ({type(exc).__name__})") from None


@dataclass(frozen=True)
class AlertState:
    """What the alerts remember between polls (the `ALERT/STATE` item)."""

    last_status: CreditStatus = CreditStatus.HEALTHY  # the level operators were last told about
    last_alert_at: datetime | None = None
    next_reminder_at: datetime | None = None
    forecast_episode_open: bool = False
    unknown_polls: int = 0
    unknown_alerted: bool = False
    episode: int = 0  # credit episodes: +1 each time the balance leaves healthy
    sequence: int = 0  # alerts decided so far; makes every alert_id unique
    pending: tuple[Alert, ...] = ()  # decided, not yet published
    version: int = 0  # of the stored item; 0 = never stored


@dataclass(frozen=True)
class _Poll:
    view: BalanceView
    history: Forecast
    now: datetime
    policy: AlertPolicy


_Step = tuple[AlertState, tuple[Alert, ...]]


def decide_alerts(
    state: AlertState, view: BalanceView, history: Forecast, now: datetime, policy: AlertPolicy
) -> tuple[AlertState, list[Alert]]:
    """The state after this poll and the alerts it decided (also appended to `pending`)."""
    poll = _Poll(view, history, now, policy)
    state, decided = _track_monitoring(state, poll)
    if view.affordable_tokens is not None:
        # A stale balance keeps its last level (reminders go on) but says nothing about the burn.
        steps = (_track_level, _remind) if view.unknown else (_track_level, _remind, _track_forecast)
        for step in steps:
            state, alerts = step(state, poll)
            decided += alerts
    return replace(state, pending=state.pending + decided), list(decided)


def diagnostic_alert(view: BalanceView, status: CreditStatus, now: datetime, policy: AlertPolicy) -> Alert:
    """The alert /nexus diagnostics sends to prove delivery works; never stored in the state."""
    poll = _Poll(view, Forecast(None, None, 0), now, policy)
    return _alert(poll, f"test:{status.value}:{_iso(now)}", AlertKind.TEST, status, status)


def tracked_status(current: CreditStatus, tokens: int, policy: AlertPolicy) -> CreditStatus:
    """Escalate at once; de-escalate only as far as the thresholds raised by the margin allow."""
    raw = status_for(tokens, policy.thresholds)
    if current is CreditStatus.UNKNOWN or raw.level >= current.level:
        return raw
    sticky = status_for(tokens, _raised(policy.thresholds, policy.recovery_margin))
    return sticky if sticky.level < current.level else current


def hours_to_emergency(view: BalanceView, history: Forecast, policy: AlertPolicy) -> Decimal | None:
    """Hours until the balance reaches the emergency threshold in USD at the default model's price."""
    if view.completion_price is None:
        return None
    floor_usd = view.completion_price * policy.thresholds.emergency
    return hours_until(view.available_usd, floor_usd, history.burn_usd_per_day)


# --- steps ---------------------------------------------------------------------------------------
def _track_monitoring(state: AlertState, poll: _Poll) -> _Step:
    if not poll.view.unknown:  # monitoring recovered: reset silently
        return replace(state, unknown_polls=0, unknown_alerted=False), ()
    state = replace(state, unknown_polls=state.unknown_polls + 1)
    if state.unknown_alerted or state.unknown_polls <= poll.policy.unknown_after_polls:
        return state, ()
    return _emit(replace(state, unknown_alerted=True), poll, AlertKind.UNKNOWN, CreditStatus.UNKNOWN)


def _track_level(state: AlertState, poll: _Poll) -> _Step:
    previous, tokens = state.last_status, poll.view.affordable_tokens
    level = previous if tokens is None else tracked_status(previous, tokens, poll.policy)
    if level is previous:
        return state, ()
    if level.level > previous.level:
        episode = state.episode + 1 if previous is CreditStatus.HEALTHY else state.episode
        due = poll.now + poll.policy.reminder_every if level in REMINDED else None
        state = replace(state, last_status=level, episode=episode, next_reminder_at=due)
        return _emit(state, poll, AlertKind.ESCALATION, level, previous)
    due = state.next_reminder_at if level in REMINDED else None
    state = replace(state, last_status=level, next_reminder_at=due)
    if level is not CreditStatus.HEALTHY:
        return state, ()  # a partial de-escalation is not news; reminders continue if still due
    return _emit(replace(state, forecast_episode_open=False), poll, AlertKind.RECOVERY, level, previous)


def _remind(state: AlertState, poll: _Poll) -> _Step:
    due = state.next_reminder_at
    if state.last_status not in REMINDED or due is None or poll.now < due:
        return state, ()
    state = replace(state, next_reminder_at=_next_slot(due, poll.now, poll.policy.reminder_every))
    return _emit(state, poll, AlertKind.REMINDER, state.last_status)


def _track_forecast(state: AlertState, poll: _Poll) -> _Step:
    hours = hours_to_emergency(poll.view, poll.history, poll.policy)
    burn_known = poll.history.burn_usd_per_day is not None
    if state.forecast_episode_open:
        calm = burn_known and (hours is None or hours > poll.policy.forecast_reset_hours)
        return (replace(state, forecast_episode_open=False) if calm else state), ()
    if hours is None or hours >= poll.policy.forecast_horizon_hours or state.last_status in REMINDED:
        return state, ()
    return _emit(replace(state, forecast_episode_open=True), poll, AlertKind.FORECAST, state.last_status)


# --- helpers -------------------------------------------------------------------------------------
def _emit(
    state: AlertState,
    poll: _Poll,
    kind: AlertKind,
    status: CreditStatus,
    previous: CreditStatus | None = None,
) -> _Step:
    sequence = state.sequence + 1
    alert_id = f"{kind.value}:{status.value}:e{state.episode}:{sequence}"
    alert = _alert(poll, alert_id, kind, status, state.last_status if previous is None else previous)
    return replace(state, sequence=sequence, last_alert_at=poll.now), (alert,)


def _alert(
    poll: _Poll, alert_id: str, kind: AlertKind, status: CreditStatus, previous: CreditStatus
) -> Alert:
    view, history = poll.view, poll.history
    burn = history.burn_usd_per_day
    hours = hours_until(view.available_usd, Decimal(0), burn)
    return Alert(
        alert_id=alert_id,
        kind=kind,
        status=status,
        previous_status=previous,
        remaining_usd=None if view.remaining_usd is None else str(view.remaining_usd),
        affordable_tokens=view.affordable_tokens,
        model=view.model,
        burn_usd_per_day=None if burn is None else str(burn.quantize(Decimal("0.000001"))),
        hours_to_empty=None if hours is None else round(float(hours), 1),
        topup_url=poll.policy.topup_url,
        at=_iso(poll.now),
    )


def _raised(thresholds: Thresholds, margin: Decimal) -> Thresholds:
    def up(tokens: int) -> int:
        return math.ceil(tokens * (1 + margin))

    return Thresholds(
        low=up(thresholds.low), emergency=up(thresholds.emergency), critical=up(thresholds.critical)
    )


def _next_slot(due: datetime, now: datetime, every: timedelta) -> datetime:
    """The first reminder slot after `now`, keeping the cadence and skipping slots missed in an outage."""
    missed = (now - due) // every
    return due + every * (missed + 1)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _optional_usd(value: Any) -> str | None:
    return None if value is None else str(Decimal(str(value)))


def _optional_int(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError("not an integer")
    return int(value)


def _optional_float(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError("not a number")
    return float(value)
