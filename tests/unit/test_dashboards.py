"""The /nexus embeds as pure functions: healthy, critical, unknown and stale data, within Discord's limits."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from astrabot.adapters.ledger import BalanceSnapshot, ErrorRecord, UsageTotals
from astrabot.domain import dashboards
from astrabot.domain.credit import CreditStatus, ModelPrice
from astrabot.domain.dashboards import Health
from astrabot.domain.forecast import BalancePoint
from astrabot.domain.messages import (
    EMBED_DESCRIPTION_LIMIT,
    EMBED_FIELD_VALUE_LIMIT,
    EMBED_FIELDS_LIMIT,
    EMBED_TITLE_LIMIT,
    EMBED_TOTAL_LIMIT,
    embed_size,
)
from astrabot.service.grants import decide_grant
from astrabot.settings import TOPUP_URL, Secret, Settings

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
MODEL = "openai/gpt-4o-mini"
FREE = "meta-llama/llama-3.3-70b-instruct:free"
PRICE = ModelPrice(MODEL, Decimal("0.00000015"), Decimal("0.0000006"))
SETTINGS = Settings(default_model=MODEL, fallback_models=(FREE,), alert_topic_arn="arn:aws:sns:us-east-1:1:t")
NO_USAGE = UsageTotals()


def snapshot(remaining: str | None, status: CreditStatus, tokens: int | None, **kw: Any) -> BalanceSnapshot:
    amount = None if remaining is None else Decimal(remaining)
    defaults: dict[str, Any] = {
        "remaining_usd": amount,
        "available_usd": amount,
        "status": status,
        "affordable_tokens": tokens,
        "default_model": MODEL,
        "prices": {MODEL: PRICE},
        "fetched_at": NOW - timedelta(minutes=2),
        "limit_usd": Decimal(10),
        "usage_usd": Decimal("2.5"),
    }
    defaults.update(kw)
    return BalanceSnapshot(**defaults)


HEALTHY = snapshot("6.00", CreditStatus.HEALTHY, 10_000_000)
CRITICAL = snapshot("0.00004", CreditStatus.CRITICAL, 50)


def history(values: list[str], every: timedelta = timedelta(minutes=5)) -> list[BalancePoint]:
    start = NOW - every * (len(values) - 1)
    return [BalancePoint(start + every * i, Decimal(v)) for i, v in enumerate(values)]


def credits(
    snap: BalanceSnapshot | None,
    *,
    settings: Settings = SETTINGS,
    points: list[BalancePoint] | None = None,
    month: UsageTotals = NO_USAGE,
) -> dict[str, Any]:
    decision = decide_grant(settings, snap, model=None, prompt="", requested=None, now=NOW)
    return dashboards.credits_embed(
        settings,
        snap,
        plan=decision.plan,
        conservative=decision.conservative,
        today=NO_USAGE,
        month=month,
        history=points or [],
        now=NOW,
    )


def field(embed: dict[str, Any], name: str) -> str:
    (value,) = [f["value"] for f in embed["fields"] if f["name"] == name]
    return str(value)


def assert_within_discord_limits(embed: dict[str, Any]) -> None:
    assert len(embed.get("title", "")) <= EMBED_TITLE_LIMIT
    assert len(embed.get("description", "")) <= EMBED_DESCRIPTION_LIMIT
    assert len(embed.get("fields", [])) <= EMBED_FIELDS_LIMIT
    assert all(0 < len(f["value"]) <= EMBED_FIELD_VALUE_LIMIT for f in embed.get("fields", []))
    assert embed_size(embed) <= EMBED_TOTAL_LIMIT


# --- sparkline -------------------------------------------------------------------------------------
def test_given_no_points_when_sparkline_then_empty() -> None:
    assert dashboards.sparkline([]) == ""


def test_given_flat_series_when_sparkline_then_a_middle_line() -> None:
    assert dashboards.sparkline([Decimal(1)] * 5) == "▄▄▄▄▄"


def test_given_falling_series_when_sparkline_then_from_top_to_bottom() -> None:
    assert dashboards.sparkline([Decimal(v) for v in (8, 6, 4, 2, 0)]) == "█▆▅▃▁"


def test_given_a_day_of_polls_when_sparkline_then_sampled_to_width_keeping_both_ends() -> None:
    line = dashboards.sparkline([Decimal(288 - i) for i in range(288)], width=24)
    assert (len(line), line[0], line[-1]) == (24, "█", "▁")


def test_given_no_history_when_rendered_then_says_so() -> None:
    assert dashboards.history_text([], NOW).startswith("no history yet")


def test_given_one_point_when_rendered_then_one_bar_and_the_amount() -> None:
    assert dashboards.history_text(history(["1.5"]), NOW) == "`▄` $1.50 (one point so far)"


def test_given_points_older_than_a_day_when_rendered_then_left_out() -> None:
    old = [BalancePoint(NOW - timedelta(hours=30), Decimal(100))]
    assert "$100" not in dashboards.history_text(old + history(["2", "1"]), NOW)


# --- /nexus credits ------------------------------------------------------------------------------
def test_given_healthy_balance_when_credits_rendered_then_green_with_replies_left_and_top_up_link() -> None:
    embed = credits(HEALTHY)
    assert (embed["title"], embed["color"]) == ("🟢 Credits: healthy", CreditStatus.HEALTHY.colour)
    assert "≈ 10,000 replies left at 1,000 tokens each" in field(embed, "Affordable")
    assert field(embed, "/ask max_tokens now") == f"1,000 tokens on {MODEL}"
    assert field(embed, "Key limit") == "$10.00 · 25.0% used"
    assert TOPUP_URL in field(embed, "Top up")
    assert_within_discord_limits(embed)


def test_given_critical_balance_when_credits_rendered_then_siren_fallback_and_top_up_now() -> None:
    embed = credits(CRITICAL)
    assert (embed["title"], embed["color"]) == ("🚨 Credits: critical", CreditStatus.CRITICAL.colour)
    assert field(embed, "/ask max_tokens now").startswith(f"1,000 tokens on {FREE} (fallback)")
    assert "Top up now" in field(embed, "Recommendations")
    assert f"{MODEL} cannot be afforded" in field(embed, "Recommendations")
    assert_within_discord_limits(embed)


def test_given_nothing_affordable_when_credits_rendered_then_cap_says_refusing() -> None:
    settings = replace(SETTINGS, fallback_models=())
    embed = credits(CRITICAL, settings=settings)
    assert field(embed, "/ask max_tokens now").startswith("none: /ask refuses")


def test_given_no_balance_item_when_credits_rendered_then_unknown_and_points_to_status() -> None:
    embed = credits(None)
    assert embed["title"] == "⚪ Credits: unknown"
    assert field(embed, "Data age") == "no balance read yet"
    assert "`/nexus status`" in field(embed, "Recommendations")
    assert "≈ unknown replies left" in field(embed, "Affordable")
    assert_within_discord_limits(embed)


def test_given_stale_balance_when_credits_rendered_then_flagged_with_the_error_and_capped() -> None:
    stale = replace(
        HEALTHY, fetched_at=NOW - timedelta(hours=2), stale=True, last_error="OpenRouter HTTP 503"
    )
    embed = credits(stale)
    assert field(embed, "Data age") == "fetched 2 h ago ⚠️ stale: OpenRouter HTTP 503"
    assert "(conservative cap" in field(embed, "/ask max_tokens now")
    assert "older than 15 min" in field(embed, "Recommendations")


def test_given_burn_history_when_credits_rendered_then_rate_and_hours_to_empty() -> None:
    points = history([str(Decimal("6.5") - Decimal("0.01") * i) for i in range(13)])
    embed = credits(HEALTHY, points=points)
    assert field(embed, "Burn rate") == "$2.88/day · empty in ~2.1 days"
    assert field(embed, "Balance, last 24 h").startswith("`█")


def test_given_monthly_budget_mostly_used_when_credits_rendered_then_percent_and_advice() -> None:
    settings = replace(SETTINGS, monthly_budget_usd=Decimal(10))
    embed = credits(HEALTHY, settings=settings, month=UsageTotals(requests=900, cost_usd=Decimal(9)))
    assert "budget: $9.00 of $10.00 (90%)" in field(embed, "Usage this month")
    assert "monthly budget is 90% used" in field(embed, "Recommendations")


@pytest.mark.parametrize(
    ("status", "advice"),
    [
        (CreditStatus.HEALTHY, "Nothing to do"),
        (CreditStatus.LOW, "Plan a top-up"),
        (CreditStatus.EMERGENCY, "Top up today"),
        (CreditStatus.CRITICAL, "Top up now"),
        (CreditStatus.UNKNOWN, "No balance has been read yet"),
    ],
)
def test_given_each_status_when_recommending_then_matching_advice_first(
    status: CreditStatus, advice: str
) -> None:
    decision = decide_grant(SETTINGS, HEALTHY, model=None, prompt="", requested=None, now=NOW)
    lines = dashboards.recommendations(
        status, settings=SETTINGS, stale=False, hours_to_empty=None, budget_used_pct=None, plan=decision.plan
    )
    assert advice in lines[0]


# --- /nexus status ---------------------------------------------------------------------------------
def status(
    *,
    ledger_ok: bool = True,
    snap: BalanceSnapshot | None = HEALTHY,
    heartbeats: dict[str, dict[str, Any]] | None = None,
    today: UsageTotals | None = NO_USAGE,
    last_error: ErrorRecord | None = None,
    settings: Settings = SETTINGS,
) -> dict[str, Any]:
    beats = (
        heartbeats
        if heartbeats is not None
        else {"credit_poller": {"at": "2026-12-04T11:58:00Z", "ok": True}}
    )
    return dashboards.status_embed(
        settings,
        ledger_ok=ledger_ok,
        snapshot=snap,
        heartbeats=beats,
        today=today,
        last_error=last_error,
        now=NOW,
    )


def test_given_everything_fresh_when_status_rendered_then_all_systems_go() -> None:
    embed = status()
    assert embed["title"] == "🟢 All systems go"
    assert "⚪ Alert pipeline" in [f["name"] for f in embed["fields"]]
    assert field(embed, "⚪ Alert pipeline") == "no delivery recorded"
    assert_within_discord_limits(embed)


def test_given_poller_never_ran_when_status_rendered_then_action_needed() -> None:
    embed = status(snap=None, heartbeats={})
    assert embed["title"].startswith("🔴 Action needed: Credit poller")
    assert field(embed, "🔴 Credit poller") == "has never run"


def test_given_poller_silent_past_three_intervals_when_status_rendered_then_down() -> None:
    component = dashboards.poller_component(
        SETTINGS, {"at": "2026-12-04T11:40:00Z", "ok": True}, HEALTHY, NOW
    )
    assert (component.health, component.detail) == (Health.DOWN, "last ran 20 min ago (expected every 5 min)")


def test_given_openrouter_failing_when_status_rendered_then_degraded_with_last_error() -> None:
    stale = replace(HEALTHY, stale=True, last_error="OpenRouter HTTP 503", consecutive_failures=1)
    component = dashboards.openrouter_component(stale, NOW)
    assert (component.health, component.detail) == (
        Health.DEGRADED,
        "1 failed poll(s) in a row: OpenRouter HTTP 503",
    )


def test_given_failed_alert_delivery_when_status_rendered_then_down() -> None:
    beat = {"at": "2026-12-04T11:00:00Z", "ok": False, "error": "HTTP 404 Unknown Webhook"}
    component = dashboards.alerts_component(SETTINGS, beat, NOW)
    assert (component.health, component.detail) == (
        Health.DOWN,
        "last delivery failed 60 min ago: HTTP 404 Unknown Webhook",
    )


@pytest.mark.parametrize(
    ("answers", "failures", "health"),
    [(99, 1, Health.OK), (9, 1, Health.DEGRADED), (1, 1, Health.DOWN), (0, 0, Health.NO_DATA)],
)
def test_given_todays_answers_and_failures_when_status_rendered_then_llm_health_by_success_rate(
    answers: int, failures: int, health: Health
) -> None:
    today = UsageTotals(requests=answers, events={"failure": failures} if failures else {})
    assert dashboards.llm_component(today, None, NOW).health is health


def test_given_llm_call_last_failed_when_status_rendered_then_its_error_is_shown() -> None:
    beat = {"at": "2026-12-04T11:55:00Z", "ok": False, "error": "OpenRouter HTTP 502"}
    detail = dashboards.llm_component(UsageTotals(requests=3), beat, NOW).detail
    assert detail.endswith("last call failed 5 min ago: OpenRouter HTTP 502")


def test_given_ledger_down_when_status_rendered_then_only_dynamodb_and_red() -> None:
    embed = status(ledger_ok=False, snap=None, heartbeats={}, today=None)
    assert embed["title"] == "🔴 Action needed: DynamoDB"
    assert [f["name"] for f in embed["fields"]] == ["🔴 DynamoDB"]


def test_given_huge_last_error_when_status_rendered_then_within_limits() -> None:
    error = ErrorRecord(at=NOW, source="llm_call", message="x" * 5000)
    assert_within_discord_limits(status(last_error=error))


# --- /nexus diagnostics --------------------------------------------------------------------------
def diagnostics(settings: Settings = SETTINGS, **kw: Any) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "errors": [],
        "today": UsageTotals(events={"402": 2, "retry": 1}),
        "month": UsageTotals(events={"402": 7}),
        "versions": {"astrabot": "0.1.0", "Python": "3.13.0", "Powertools": "3.37.0"},
        "test_alert": None,
        "now": NOW,
    }
    defaults.update(kw)
    return dashboards.diagnostics_embed(settings, **defaults)


def test_given_secrets_when_diagnostics_rendered_then_masked_in_a_closed_code_block() -> None:
    settings = replace(SETTINGS, discord_bot_token=Secret("MTIz.bot-token-secret-value"))
    embed = diagnostics(settings)
    assert "bot-token-secret" not in embed["description"]
    assert "DISCORD_BOT_TOKEN = ****alue" in embed["description"]
    assert embed["description"].endswith("\n```")


def test_given_counts_when_diagnostics_rendered_then_402_and_retries_today_and_this_month() -> None:
    text = field(diagnostics(), "402s and retries")
    assert text.startswith("today: 2 × 402, 1 retries")
    assert "this month: 7 × 402, 0 retries" in text


def test_given_test_alert_result_when_diagnostics_rendered_then_reported() -> None:
    assert field(diagnostics(test_alert="✅ Sent"), "Test alert") == "✅ Sent"


def test_given_oversized_config_and_errors_when_diagnostics_rendered_then_within_limits() -> None:
    settings = replace(SETTINGS, fallback_models=tuple(f"vendor/model-{i}-{'x' * 80}" for i in range(40)))
    errors = [ErrorRecord(at=NOW, source="credit_poller", message="`boom` " * 300) for _ in range(20)]
    embed = diagnostics(settings, errors=errors)
    assert_within_discord_limits(embed)
    assert embed["description"].endswith("\n```")


def test_given_ledger_unavailable_when_diagnostics_rendered_then_unknown_not_zero() -> None:
    embed = diagnostics(errors=None, today=None, month=None)
    assert field(embed, "Recent errors") == "unknown (ledger unavailable)"
    assert field(embed, "402s and retries") == "today: unknown\nthis month: unknown"
