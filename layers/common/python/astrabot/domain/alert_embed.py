"""A credit alert as a Discord webhook message (pure): one embed an operator can act on.

The role mention pings only for emergency and critical (never for a test), and
`allowed_mentions` names that one role, so nothing else in the text can ever ping.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from astrabot.domain.alerts import REMINDED, Alert, AlertKind
from astrabot.domain.credit import CreditStatus
from astrabot.domain.messages import no_mentions, safe_message

USERNAME = "AstraBot Nexus"
TEST_EMOJI = "🧪"

_LEVEL_WORDS = {
    CreditStatus.HEALTHY: "healthy",
    CreditStatus.LOW: "low",
    CreditStatus.EMERGENCY: "at emergency level",
    CreditStatus.CRITICAL: "critical",
    CreditStatus.UNKNOWN: "unknown",
}
_LEVEL_ADVICE = {
    CreditStatus.LOW: "Top up soon. Long answers are already trimmed to what the balance affords.",
    CreditStatus.EMERGENCY: (
        "Top up now. Answers are cut short and will soon be refused; until you top up, a cheaper "
        "DEFAULT_MODEL or a lower USER_DAILY_TOKEN_QUOTA stretches what is left."
    ),
    CreditStatus.CRITICAL: "Top up immediately. Paid models are refused; only free fallback models answer.",
}
_KIND_ADVICE = {
    AlertKind.RECOVERY: "Nothing: the balance is healthy again and reminders have stopped.",
    AlertKind.FORECAST: (
        "At the current burn rate the balance reaches the emergency level within a day. Top up, or "
        "slow spending with USER_DAILY_TOKEN_QUOTA or MONTHLY_BUDGET_USD."
    ),
    AlertKind.UNKNOWN: (
        "The poller cannot read the balance, so answers run in conservative mode. Check the "
        "OpenRouter key and OpenRouter's status; `/nexus diagnostics` shows the last error."
    ),
    AlertKind.TEST: "Nothing: this is a test from `/nexus diagnostics`. Alerts reach this channel.",
}


def render_alert(message: Mapping[str, Any], *, mention_role_id: str = "") -> dict[str, Any]:
    """The webhook payload for an SNS alert message. Raises MalformedAlert for anything else."""
    alert = Alert.from_message(message)
    pings = bool(mention_role_id) and alert.kind is not AlertKind.TEST and alert.status in REMINDED
    content = f"{title(alert)} — {usd(alert.remaining_usd)} left"
    allowed = no_mentions()
    if pings:
        content = f"<@&{mention_role_id}> {content}"
        allowed["roles"] = [mention_role_id]
    reply = safe_message(content, embeds=[_embed(alert)], allowed_mentions=allowed)
    return {**reply, "username": USERNAME}


def title(alert: Alert) -> str:
    emoji = TEST_EMOJI if alert.kind is AlertKind.TEST else alert.status.emoji
    words = _LEVEL_WORDS[alert.status]
    text = {
        AlertKind.ESCALATION: f"OpenRouter credits are {words}",
        AlertKind.REMINDER: f"Reminder: OpenRouter credits are still {words}",
        AlertKind.RECOVERY: "OpenRouter credits are healthy again",
        AlertKind.FORECAST: "OpenRouter credits will reach emergency level within 24 h",
        AlertKind.UNKNOWN: "OpenRouter credit balance is unknown",
        AlertKind.TEST: f"Test alert (credits {words})",
    }[alert.kind]
    return f"{emoji} {text}"


def what_to_do(alert: Alert) -> str:
    return _KIND_ADVICE.get(alert.kind) or _LEVEL_ADVICE.get(alert.status, "Check `/nexus credits`.")


def usd(amount: str | None) -> str:
    if amount is None:
        return "unknown"
    value = Decimal(amount)
    sign, value = ("-", -value) if value < 0 else ("", value)
    return f"{sign}${value:,.2f}" if value >= 1 else f"{sign}${value:.4f}"


def _embed(alert: Alert) -> dict[str, Any]:
    tokens = "unknown" if alert.affordable_tokens is None else f"{alert.affordable_tokens:,}"
    fields = [
        ("Remaining", usd(alert.remaining_usd)),
        ("Affordable tokens", f"{tokens} on `{alert.model}`"),
        ("Burn rate", "not enough history yet" if alert.burn_usd_per_day is None else _burn(alert)),
        ("Hours to empty", _hours(alert.hours_to_empty)),
        ("Top up", f"[Add credits on OpenRouter]({alert.topup_url})"),
        ("What to do", what_to_do(alert)),
    ]
    return {
        "title": title(alert),
        "description": _transition(alert),
        "url": alert.topup_url,
        "color": alert.status.colour,
        "fields": [
            {"name": name, "value": value, "inline": index < 4} for index, (name, value) in enumerate(fields)
        ],
        "footer": {"text": f"{alert.kind.value} · {alert.alert_id}"},
        "timestamp": alert.at,
    }


def _transition(alert: Alert) -> str:
    if alert.previous_status is alert.status:
        return f"Status: **{alert.status.value}**"
    return f"Status: {alert.previous_status.value} → **{alert.status.value}**"


def _burn(alert: Alert) -> str:
    return f"{usd(alert.burn_usd_per_day)} / day"


def _hours(hours: float | None) -> str:
    if hours is None:
        return "unknown (no spending measured)"
    return f"about {hours / 24:.1f} days" if hours > 48 else f"about {hours:.1f} h"


_ALARM_COLOURS = {"ALARM": 0xE74C3C, "OK": 0x2ECC71}
_ALARM_EMOJI = {"ALARM": "⏰", "OK": "✅"}


def is_cloudwatch_alarm(message: Mapping[str, Any]) -> bool:
    return "AlarmName" in message and "NewStateValue" in message


def render_cloudwatch_alarm(message: Mapping[str, Any]) -> dict[str, Any]:
    """A CloudWatch alarm notification (the stack's own alarms publish to the alert topic)."""
    state = str(message.get("NewStateValue", "UNKNOWN"))
    name = str(message.get("AlarmName", "alarm"))
    embed = {
        "title": f"{_ALARM_EMOJI.get(state, '⚠️')} CloudWatch alarm {name}: {state}",
        "description": str(message.get("AlarmDescription") or ""),
        "color": _ALARM_COLOURS.get(state, 0x95A5A6),
        "fields": [
            {
                "name": "Why",
                "value": str(message.get("NewStateReason") or "(no reason given)"),
                "inline": False,
            },
            {"name": "Since", "value": str(message.get("StateChangeTime") or "?"), "inline": True},
            {"name": "Was", "value": str(message.get("OldStateValue") or "?"), "inline": True},
        ],
    }
    return {"username": USERNAME, **safe_message(embeds=[embed])}
