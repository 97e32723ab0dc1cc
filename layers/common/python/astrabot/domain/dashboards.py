"""The three /nexus embeds (credits, status, diagnostics): pure renderers of what the ledger knows.

The service gathers the figures (one read each) and passes them in; nothing here does I/O, so every
case (healthy, critical, unknown, stale, DynamoDB down) is a plain function call in the tests.
Every embed leaves through `clamp_embed`, so no figure can push it past Discord's limits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

from astrabot.adapters.ledger import BalanceSnapshot, ErrorRecord, UsageTotals
from astrabot.domain.credit import FREE_MODEL_TOKENS, CreditStatus, Grant, Refusal, replies_left
from astrabot.domain.forecast import BalancePoint, Forecast, forecast
from astrabot.domain.messages import clamp_embed, truncate
from astrabot.settings import TOPUP_URL, Settings

SPARK_LEVELS: Final = "▁▂▃▄▅▆▇█"
SPARK_WIDTH: Final = 24
HISTORY_WINDOW: Final = timedelta(hours=24)
CONFIG_BUDGET: Final = 3200  # characters of the diagnostics description; the fields get the rest
DIAGNOSTICS_COLOUR: Final = 0x5865F2
FOOTER: Final = "AstraBot Nexus"


# --- formatting ----------------------------------------------------------------------------------
def usd(amount: Decimal | None) -> str:
    if amount is None:
        return "unknown"
    sign = "-" if amount < 0 else ""
    places = 2 if abs(amount) >= 1 else 4
    return f"{sign}${abs(amount):,.{places}f}"


def tokens(count: int | None) -> str:
    if count is None:
        return "unknown"
    return "unlimited (free model)" if count >= FREE_MODEL_TOKENS else f"{count:,}"


def ago(then: datetime | None, now: datetime) -> str:
    if then is None:
        return "never"
    seconds = (now - then).total_seconds()
    if seconds < 5:
        return "just now"
    if seconds < 90:
        return f"{int(seconds)} s ago"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min ago"
    if seconds < 48 * 3600:
        return f"{round(seconds / 3600)} h ago"
    return f"{round(seconds / 86400)} days ago"


def hours_text(hours: Decimal) -> str:
    if hours < 1:
        return f"~{max(int(hours * 60), 1)} min"
    if hours < 48:
        return f"~{hours:.0f} h"
    return f"~{hours / 24:.1f} days"


def _parse_at(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _field(name: str, value: str, *, inline: bool = False) -> dict[str, Any]:
    return {"name": name, "value": value, "inline": inline}


def _embed(
    title: str, colour: int, fields: list[dict[str, Any]], now: datetime, **extra: Any
) -> dict[str, Any]:
    embed = {
        "title": title,
        "color": colour,
        "fields": fields,
        "footer": {"text": FOOTER},
        "timestamp": now.astimezone(UTC).isoformat(),
        **extra,
    }
    return clamp_embed(embed)


# --- sparkline -----------------------------------------------------------------------------------
def sparkline(values: Sequence[Decimal], width: int = SPARK_WIDTH) -> str:
    """▁▂▃▄▅▆▇█ over `values` (evenly sampled down to `width`); a flat series is a middle line."""
    if not values or width < 1:
        return ""
    if len(values) > width:
        step = (len(values) - 1) / max(width - 1, 1)
        values = [values[round(i * step)] for i in range(width)] if width > 1 else [values[-1]]
    low, high = min(values), max(values)
    if high == low:
        return SPARK_LEVELS[3] * len(values)
    top = len(SPARK_LEVELS) - 1
    return "".join(SPARK_LEVELS[int((v - low) / (high - low) * top + Decimal("0.5"))] for v in values)


def history_text(points: Sequence[BalancePoint], now: datetime) -> str:
    recent = sorted((p for p in points if now - HISTORY_WINDOW <= p.at <= now), key=lambda p: p.at)
    if not recent:
        return "no history yet (the poller records a point every run)"
    line = f"`{sparkline([p.remaining_usd for p in recent])}`"
    if len(recent) == 1:
        return f"{line} {usd(recent[0].remaining_usd)} (one point so far)"
    low = min(p.remaining_usd for p in recent)
    high = max(p.remaining_usd for p in recent)
    return (
        f"{line}\n{usd(recent[0].remaining_usd)} → {usd(recent[-1].remaining_usd)} "
        f"(low {usd(low)}, high {usd(high)})"
    )


# --- /nexus credits ------------------------------------------------------------------------------
def recommendations(
    status: CreditStatus,
    *,
    settings: Settings,
    stale: bool,
    hours_to_empty: Decimal | None,
    budget_used_pct: Decimal | None,
    plan: Grant | Refusal,
) -> list[str]:
    advice = {
        CreditStatus.UNKNOWN: "No balance has been read yet: check the credit poller in `/nexus status`.",
        CreditStatus.CRITICAL: "🚨 Top up now: /ask is refusing or falling back to free models.",
        CreditStatus.EMERGENCY: "🔴 Top up today: answers are being trimmed to what the balance affords.",
        CreditStatus.LOW: f"🟡 Plan a top-up: fewer than {settings.credit_low_tokens:,} tokens left.",
        CreditStatus.HEALTHY: "Nothing to do: the balance is healthy.",
    }
    out = [advice[status]]
    if stale and status is not CreditStatus.UNKNOWN:
        out.append(
            f"The balance is older than {settings.stale_after_seconds // 60} min, so /ask is capped at "
            f"{settings.conservative_max_tokens} tokens: check the poller in `/nexus status`."
        )
    if isinstance(plan, Grant) and plan.is_fallback:
        out.append(f"{plan.original_model} cannot be afforded: answers come from {plan.model}.")
    if hours_to_empty is not None and hours_to_empty < 24 and status is not CreditStatus.CRITICAL:
        out.append(f"At the current burn the credits run out in {hours_text(hours_to_empty)}.")
    if budget_used_pct is not None and budget_used_pct >= 80:
        out.append(
            f"The monthly budget is {budget_used_pct:.0f}% used: raise MONTHLY_BUDGET_USD or expect refusals."
        )
    return out


def _cap_text(plan: Grant | Refusal, conservative: bool) -> str:
    if isinstance(plan, Refusal):
        return "none: /ask refuses (nothing affordable, not even a fallback)"
    text = f"{plan.max_tokens:,} tokens on {plan.model}"
    if plan.is_fallback:
        text += " (fallback)"
    return text + (" (conservative cap: balance stale or unknown)" if conservative else "")


def _usage_text(key_usd: Decimal | None, bot: UsageTotals) -> str:
    key = f"key {usd(key_usd)}" if key_usd is not None else "key: not reported"
    return f"{key}\nbot: {bot.requests:,} answers, {bot.tokens:,} tokens, {usd(bot.cost_usd)}"


def _remaining_text(snapshot: BalanceSnapshot | None) -> str:
    if snapshot is None:
        return usd(None)
    text = usd(snapshot.remaining_usd)
    if snapshot.reserved_usd > 0:
        text += f"\n{usd(snapshot.reserved_usd)} reserved for answers in progress"
    return text


def _limit_text(snapshot: BalanceSnapshot | None) -> str:
    if snapshot is None or snapshot.remaining_usd is None:
        return "unknown"
    if snapshot.limit_usd is None or snapshot.limit_usd <= 0:
        return "no limit on this key"
    used = (snapshot.usage_usd or Decimal(0)) / snapshot.limit_usd * 100
    return f"{usd(snapshot.limit_usd)} · {used:.1f}% used"


def _affordable_text(settings: Settings, affordable: int | None) -> str:
    left = replies_left(affordable, settings.default_max_tokens)
    replies = "unknown" if left is None else "unlimited" if affordable == FREE_MODEL_TOKENS else f"{left:,}"
    return (
        f"{tokens(affordable)} tokens at {settings.default_model}\n"
        f"≈ {replies} replies left at {settings.default_max_tokens:,} tokens each"
    )


def _burn_text(outlook: Forecast) -> str:
    if outlook.burn_usd_per_day is None:
        return "not enough history yet (needs 30 min of polls)"
    empty = "never" if outlook.hours_to_empty is None else hours_text(outlook.hours_to_empty)
    return f"{usd(outlook.burn_usd_per_day)}/day · empty in {empty}"


def _age_text(snapshot: BalanceSnapshot | None, stale: bool, now: datetime) -> str:
    if snapshot is None:
        return "no balance read yet"
    text = f"fetched {ago(snapshot.fetched_at, now)}"
    if stale:
        text += " ⚠️ stale" + (f": {truncate(snapshot.last_error, 200)}" if snapshot.last_error else "")
    return text


def credits_embed(
    settings: Settings,
    snapshot: BalanceSnapshot | None,
    *,
    plan: Grant | Refusal,
    conservative: bool,
    today: UsageTotals,
    month: UsageTotals,
    history: Sequence[BalancePoint],
    now: datetime,
) -> dict[str, Any]:
    status = snapshot.status if snapshot else CreditStatus.UNKNOWN
    stale = snapshot is None or snapshot.stale or snapshot.is_stale(now, settings.stale_after_seconds)
    outlook = forecast(history, snapshot.available_usd if snapshot else None, now=now)
    budget = settings.monthly_budget_usd
    budget_pct = month.cost_usd / budget * 100 if budget > 0 else None
    month_text = _usage_text(snapshot.usage_monthly_usd if snapshot else None, month)
    if budget_pct is not None:
        month_text += f"\nbudget: {usd(month.cost_usd)} of {usd(budget)} ({budget_pct:.0f}%)"
    advice = recommendations(
        status,
        settings=settings,
        stale=stale,
        hours_to_empty=outlook.hours_to_empty,
        budget_used_pct=budget_pct,
        plan=plan,
    )
    today_text = _usage_text(snapshot.usage_daily_usd if snapshot else None, today)
    fields = [
        _field("Remaining", _remaining_text(snapshot), inline=True),
        _field("Key limit", _limit_text(snapshot), inline=True),
        _field("Status", f"{status.emoji} {status.value}", inline=True),
        _field("Affordable", _affordable_text(settings, snapshot.affordable_tokens if snapshot else None)),
        _field("/ask max_tokens now", _cap_text(plan, conservative)),
        _field("Usage today", today_text, inline=True),
        _field("Usage this month", month_text, inline=True),
        _field("Burn rate", _burn_text(outlook)),
        _field("Balance, last 24 h", history_text(history, now)),
        _field("Data age", _age_text(snapshot, stale, now)),
        _field("Recommendations", "\n".join(f"• {line}" for line in advice)),
        _field("Top up", f"[openrouter.ai/settings/credits]({TOPUP_URL})"),
    ]
    return _embed(f"{status.emoji} Credits: {status.value}", status.colour, fields, now, url=TOPUP_URL)


# --- /nexus status -------------------------------------------------------------------------------
class Health(StrEnum):
    OK = "🟢"
    NO_DATA = "⚪"  # nothing recorded yet: not a fault by itself
    DEGRADED = "🟡"
    DOWN = "🔴"

    @property
    def rank(self) -> int:
        return {"🟢": 0, "⚪": 0, "🟡": 1, "🔴": 2}[self.value]


@dataclass(frozen=True)
class Component:
    name: str
    health: Health
    detail: str


def poller_component(
    settings: Settings, heartbeat: Mapping[str, Any] | None, snapshot: BalanceSnapshot | None, now: datetime
) -> Component:
    name = "Credit poller"
    at = _parse_at(heartbeat.get("at")) if heartbeat else None
    if at is None:
        return Component(name, Health.DOWN, "has never run")
    if (now - at).total_seconds() > settings.stale_after_seconds:
        every = settings.poll_interval_seconds // 60 or 1
        return Component(name, Health.DOWN, f"last ran {ago(at, now)} (expected every {every} min)")
    if heartbeat and heartbeat.get("ok") is False:
        error = truncate(str(heartbeat.get("error") or "no detail"), 200)
        return Component(name, Health.DEGRADED, f"last run failed {ago(at, now)}: {error}")
    if snapshot is None or snapshot.is_stale(now, settings.stale_after_seconds):
        fetched = ago(snapshot.fetched_at if snapshot else None, now)
        return Component(
            name, Health.DEGRADED, f"ran {ago(at, now)}, but the balance was last read {fetched}"
        )
    return Component(name, Health.OK, f"ran {ago(at, now)}, balance read {ago(snapshot.fetched_at, now)}")


def openrouter_component(snapshot: BalanceSnapshot | None, now: datetime) -> Component:
    name = "OpenRouter (as last seen)"
    if snapshot is None:
        return Component(name, Health.NO_DATA, "not read yet")
    if snapshot.stale or snapshot.last_error:
        error = truncate(snapshot.last_error or "no detail", 200)
        health = Health.DOWN if snapshot.consecutive_failures >= 3 else Health.DEGRADED
        return Component(name, health, f"{snapshot.consecutive_failures} failed poll(s) in a row: {error}")
    if snapshot.remaining_usd is None:
        return Component(name, Health.DEGRADED, "answered, but reported no usable balance")
    return Component(name, Health.OK, f"answered {ago(snapshot.fetched_at, now)}")


def alerts_component(settings: Settings, heartbeat: Mapping[str, Any] | None, now: datetime) -> Component:
    name = "Alert pipeline"
    if not settings.alert_topic_arn:
        return Component(name, Health.DEGRADED, "ALERT_TOPIC_ARN is not set: alerts go nowhere")
    at = _parse_at(heartbeat.get("at")) if heartbeat else None
    if heartbeat is None or at is None:
        return Component(name, Health.NO_DATA, "no delivery recorded")
    if heartbeat.get("ok") is False:
        error = truncate(str(heartbeat.get("error") or "no detail"), 200)
        return Component(name, Health.DOWN, f"last delivery failed {ago(at, now)}: {error}")
    return Component(name, Health.OK, f"last delivery {ago(at, now)}")


def llm_component(today: UsageTotals | None, heartbeat: Mapping[str, Any] | None, now: datetime) -> Component:
    """Success rate from today's counters (answers vs failures) and llm_call's last failure."""
    name = "LLM answers (today)"
    if today is None:
        return Component(name, Health.NO_DATA, "unknown (ledger unavailable)")
    failures = today.events.get("failure", 0)
    total = today.requests + failures
    if total == 0:
        health, detail = Health.NO_DATA, "no requests today"
    else:
        rate = Decimal(today.requests) / total * 100
        health = Health.OK if rate >= 95 else Health.DEGRADED if rate >= 80 else Health.DOWN
        detail = f"{rate:.0f}% of {total:,} succeeded · {today.events.get('402', 0)} × 402"
    if heartbeat is not None and heartbeat.get("ok") is False:
        error = truncate(str(heartbeat.get("error") or "no detail"), 200)
        detail += f"\nlast call failed {ago(_parse_at(heartbeat.get('at')), now)}: {error}"
    return Component(name, health, detail)


def verdict(components: Sequence[Component]) -> tuple[str, int]:
    worst = max((c.health.rank for c in components), default=0)
    names = ", ".join(c.name for c in components if c.health.rank == worst)
    if worst == 0:
        return "🟢 All systems go", CreditStatus.HEALTHY.colour
    if worst == 1:
        return f"🟡 Degraded: {names}", CreditStatus.LOW.colour
    return f"🔴 Action needed: {names}", CreditStatus.EMERGENCY.colour


def status_embed(
    settings: Settings,
    *,
    ledger_ok: bool,
    snapshot: BalanceSnapshot | None,
    heartbeats: Mapping[str, Mapping[str, Any]],
    today: UsageTotals | None,
    last_error: ErrorRecord | None,
    now: datetime,
) -> dict[str, Any]:
    dynamodb = (
        Component("DynamoDB", Health.OK, "the ledger table answers")
        if ledger_ok
        else Component("DynamoDB", Health.DOWN, "unreachable: the other figures are unknown")
    )
    components = [dynamodb]
    if ledger_ok:
        components += [
            poller_component(settings, heartbeats.get("credit_poller"), snapshot, now),
            openrouter_component(snapshot, now),
            alerts_component(settings, heartbeats.get("alert_notifier"), now),
            llm_component(today, heartbeats.get("llm_call"), now),
        ]
    title, colour = verdict(components)
    fields = [_field(f"{c.health.value} {c.name}", c.detail) for c in components]
    if last_error is not None:
        error = f"{last_error.source}, {ago(last_error.at, now)}: {truncate(last_error.message, 300)}"
        fields.append(_field("Last error", error))
    elif ledger_ok:
        fields.append(_field("Last error", "none recorded in the last 7 days"))
    return _embed(title, colour, fields, now)


# --- /nexus diagnostics --------------------------------------------------------------------------
def _no_backticks(text: str) -> str:
    # A backtick in a value would end the code span or block it is shown in.
    return text.replace("`", "'")


def config_block(described: Mapping[str, str], budget: int = CONFIG_BUDGET) -> str:
    """`NAME = value` lines in a code block that stays within `budget` characters, fence included."""
    lines: list[str] = []
    used = len("```\n```")
    for position, (name, value) in enumerate(described.items()):
        line = f"{name} = {truncate(_no_backticks(value), 100)}"
        if used + len(line) + 1 > budget - 20:
            lines.append(f"… ({len(described) - position} more)")
            break
        lines.append(line)
        used += len(line) + 1
    return "```\n" + "\n".join(lines) + "\n```"


def _counts(label: str, usage: UsageTotals | None) -> str:
    if usage is None:
        return f"{label}: unknown"
    events = usage.events
    return (
        f"{label}: {events.get('402', 0)} × 402, {events.get('retry', 0)} retries, "
        f"{events.get('failure', 0)} failures, {events.get('refusal', 0)} refusals"
    )


def diagnostics_embed(
    settings: Settings,
    *,
    errors: Sequence[ErrorRecord] | None,
    today: UsageTotals | None,
    month: UsageTotals | None,
    versions: Mapping[str, str],
    test_alert: str | None,
    now: datetime,
) -> dict[str, Any]:
    if errors is None:
        error_text = "unknown (ledger unavailable)"
    elif not errors:
        error_text = "none recorded in the last 7 days"
    else:
        error_text = "\n".join(
            f"`{e.at.astimezone(UTC):%m-%d %H:%M}` {e.source}: {truncate(_no_backticks(e.message), 150)}"
            for e in errors[:5]
        )
    fields = [
        _field("Recent errors", error_text),
        _field("402s and retries", f"{_counts('today', today)}\n{_counts('this month', month)}"),
        _field("Versions", " · ".join(f"{name} {version}" for name, version in versions.items())),
    ]
    if test_alert is not None:
        fields.append(_field("Test alert", test_alert))
    description = "Effective configuration (secrets masked):\n" + config_block(settings.describe())
    return _embed("🛠️ Diagnostics", DIAGNOSTICS_COLOUR, fields, now, description=description)
