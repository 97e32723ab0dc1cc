"""llm_call on moto + respx: grants, reservations, fallbacks, 402 recovery, retries and replies."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from astrabot.adapters.discord import DiscordClient
from astrabot.adapters.openrouter import OpenRouterClient
from astrabot.domain.credit import estimate_prompt_tokens
from astrabot.service.chat import ChatDeps
from tests.unit.llm_world import (
    APP_ID,
    DISCORD,
    ERROR_402,
    FREE,
    NOW,
    OR_BASE,
    PAID,
    TOKEN,
    Context,
    World,
    completion,
    interaction,
    snowflake,
)


def test_given_healthy_balance_then_full_grant_answer_and_settlement(world: World) -> None:
    world.balance("5.00")
    world.openrouter.respond(json=completion())
    result = world.run()
    assert result["result"] == "answered"
    assert world.chat_bodies()[0]["max_tokens"] == 1000
    snap = world.ledger.get_balance()
    assert snap is not None
    assert (snap.reserved_usd, snap.spent_since_poll) == (0, Decimal("0.0015"))
    assert world.ledger.usage_for_day(NOW).requests == 1
    body = world.sent_bodies()[0]
    assert body["content"].startswith("A Lambda is a function.")
    assert "-# 🤖 openai/gpt-4o-mini" in body["content"]
    assert body["allowed_mentions"] == {"parse": []}


def test_given_721_affordable_when_1000_requested_then_621_granted_and_footer_says_trimmed(
    world: World,
) -> None:
    world.balance(str(PAID.completion * 721))  # this model's prompt tokens are free
    world.openrouter.respond(json=completion(tokens=621, finish="length", cost="0.01863"))
    result = world.run()
    assert world.chat_bodies()[0]["max_tokens"] == 621
    assert result["max_tokens"] == 621
    assert "trimmed at 621 tokens by the credit cap" in world.sent_bodies()[0]["content"]


def test_given_nothing_affordable_then_refusal_and_no_openrouter_call(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = replace(world.app._settings, fallback_models=())
    monkeypatch.setattr(world.app, "_deps", lambda: _deps_with(world, settings))
    world.balance(str(PAID.completion * 150))
    result = world.run()
    assert result["result"] == "refused"
    assert not world.openrouter.called
    text = world.sent_bodies()[0]["content"]
    assert "out of credits" in text
    assert "https://openrouter.ai/settings/credits" in text
    assert world.ledger.open_reservations() == []


def _deps_with(world: World, settings: Any) -> ChatDeps:
    return ChatDeps(
        settings=settings,
        ledger=world.ledger,
        openrouter=OpenRouterClient("sk-or-v1-test-secret-0001", base_url=OR_BASE, sleep=world.sleeps.append),
        discord=DiscordClient(application_id=APP_ID, base_url=DISCORD, sleep=world.sleeps.append),
        clock=lambda: NOW,
    )


def test_given_default_unaffordable_then_free_fallback_answers_and_footer_says_why(world: World) -> None:
    world.balance(str(PAID.completion * 150))
    world.openrouter.respond(json=completion(model=FREE, cost="0"))
    result = world.run()
    assert result["model"] == FREE
    assert world.chat_bodies()[0]["model"] == FREE
    assert "fallback: openai/gpt-4o-mini cannot be afforded" in world.sent_bodies()[0]["content"]


def test_given_402_then_balance_corrected_and_retry_at_affordable_figure_succeeds(world: World) -> None:
    world.balance("1.00")
    world.openrouter.side_effect = [
        httpx.Response(402, json=ERROR_402),
        httpx.Response(200, json=completion()),
    ]
    result = world.run()
    assert result["result"] == "answered"
    assert [b["max_tokens"] for b in world.chat_bodies()] == [1000, 300]
    snap = world.ledger.get_balance()
    assert snap is not None
    # OpenRouter's 300 tokens (0.009) less the 0.03 still reserved, then settled at the real 0.0015
    assert snap.available_usd == Decimal("0.0075")
    assert snap.reserved_usd == 0
    assert world.ledger.usage_for_day(NOW).events["402"] == 1
    assert "retried with fewer tokens" in world.sent_bodies()[0]["content"]


def test_given_402_with_nothing_affordable_then_clear_refusal_and_release(world: World) -> None:
    world.balance("1.00")
    body = json.loads(json.dumps(ERROR_402).replace("afford 300", "afford 40"))
    world.openrouter.respond(402, json=body)
    result = world.run()
    assert result["result"] == "refused"
    assert world.openrouter.call_count == 1
    assert world.ledger.open_reservations() == []
    assert "out of credits" in world.sent_bodies()[0]["content"]


def test_given_429_with_retry_after_then_waits_and_answers(world: World) -> None:
    world.balance("5.00")
    world.openrouter.side_effect = [
        httpx.Response(
            429, headers={"Retry-After": "2"}, json={"error": {"code": 429, "message": "slow down"}}
        ),
        httpx.Response(200, json=completion()),
    ]
    assert world.run()["result"] == "answered"
    assert 2.0 in world.sleeps


def test_given_502_then_success(world: World) -> None:
    world.balance("5.00")
    world.openrouter.side_effect = [
        httpx.Response(502, json={"error": {"code": 502, "message": "provider down"}}),
        httpx.Response(200, json=completion()),
    ]
    assert world.run()["result"] == "answered"


def test_given_connect_timeouts_then_user_told_to_retry_and_nothing_charged(world: World) -> None:
    world.balance("5.00")
    world.openrouter.side_effect = httpx.ConnectTimeout("unreachable")
    result = world.run()
    assert result["result"] == "failed"
    assert world.openrouter.call_count == 3  # first try + 2 bounded retries: nothing was sent
    text = world.sent_bodies()[0]["content"]
    assert "Nothing was charged" in text
    assert "try again" in text
    snap = world.ledger.get_balance()
    assert snap is not None
    assert (snap.reserved_usd, snap.spent_since_poll) == (0, 0)
    assert world.ledger.recent_errors()[0].source == "llm_call"


def test_given_read_timeout_then_not_resent_and_no_promise_about_charges(world: World) -> None:
    world.balance("5.00")
    world.openrouter.side_effect = httpx.ReadTimeout("slow")
    result = world.run()
    assert result["result"] == "failed"
    assert world.openrouter.call_count == 1  # it may be generating (and billing): never sent twice
    text = world.sent_bodies()[0]["content"]
    assert "took too long" in text
    assert "Nothing was charged" not in text
    assert world.ledger.open_reservations() == []


def test_given_stale_balance_then_conservative_cap(world: World, caplog: pytest.LogCaptureFixture) -> None:
    world.balance("5.00", at=NOW - timedelta(hours=1))
    world.openrouter.respond(json=completion())
    world.run()
    assert world.chat_bodies()[0]["max_tokens"] == 500
    assert any(r.getMessage().startswith("conservative mode") for r in caplog.records)


def test_given_no_balance_item_then_only_free_models_answer(world: World) -> None:
    world.openrouter.respond(json=completion(model=FREE, cost="0"))
    result = world.run()
    assert result["model"] == FREE
    assert world.chat_bodies()[0]["max_tokens"] == 500


def test_given_user_quota_used_then_polite_refusal(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = replace(world.app._settings, user_daily_token_quota=1100)
    monkeypatch.setattr(world.app, "_deps", lambda: _deps_with(world, settings))
    world.balance("5.00")
    world.openrouter.respond(json=completion(tokens=1000))  # 20 prompt + 1000 completion used
    assert world.run({"interaction": interaction(iid=snowflake(NOW))})["result"] == "answered"
    result = world.run({"interaction": interaction(iid=snowflake(NOW + timedelta(seconds=1)))})
    assert result["result"] == "quota"
    assert "daily allowance of 1,100 tokens" in world.sent_bodies()[-1]["content"]
    assert world.openrouter.call_count == 1


def test_given_part_of_the_quota_left_then_grant_fits_what_is_left(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = replace(world.app._settings, user_daily_token_quota=1500)
    monkeypatch.setattr(world.app, "_deps", lambda: _deps_with(world, settings))
    world.balance("5.00")
    world.openrouter.respond(json=completion(tokens=900))  # 20 prompt + 900 completion used
    world.run({"interaction": interaction(iid=snowflake(NOW))})
    world.run({"interaction": interaction(iid=snowflake(NOW + timedelta(seconds=1)))})
    prompt = estimate_prompt_tokens("what is a lambda?")
    assert [b["max_tokens"] for b in world.chat_bodies()] == [1000, 1500 - 920 - prompt]


def test_given_monthly_budget_spent_then_refusal(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = replace(world.app._settings, monthly_budget_usd=Decimal("0.02"))
    monkeypatch.setattr(world.app, "_deps", lambda: _deps_with(world, settings))
    world.balance("5.00")
    result = world.run()
    assert result["result"] == "budget"
    assert not world.openrouter.called
    assert "monthly AI budget ($0.02)" in world.sent_bodies()[0]["content"]


def test_given_duplicate_delivery_then_one_openrouter_call_and_one_reply(world: World) -> None:
    world.balance("5.00")
    world.openrouter.respond(json=completion())
    event = {"interaction": interaction()}
    first = world.run(event)
    second = world.run(json.loads(json.dumps(event)))
    assert first == second
    assert world.openrouter.call_count == 1
    assert world.edit.call_count == 1


def test_given_5000_char_answer_with_code_block_then_split_without_breaking_it(world: World) -> None:
    code = "```python\n" + "\n".join(f"print({i})  # line {i}" for i in range(120)) + "\n```"
    text = ("Intro paragraph. " * 60) + "\n\n" + code + "\n\n" + ("Outro words. " * 150)
    assert len(text) > 5000
    world.balance("5.00")
    world.openrouter.respond(json=completion(text=text, tokens=900))
    result = world.run()
    bodies = world.sent_bodies()
    assert result["messages_sent"] == len(bodies) >= 3
    for body in bodies:
        assert len(body["content"]) <= 2000
        assert body["content"].count("```") % 2 == 0
        assert body["allowed_mentions"] == {"parse": []}
    assert "-# 🤖" in bodies[-1]["content"]


def test_given_answer_with_everyone_then_no_ping(world: World) -> None:
    world.balance("5.00")
    world.openrouter.respond(json=completion(text="Hey @everyone and @here, <@&123> look!"))
    world.run()
    body = world.sent_bodies()[0]
    assert "@everyone" in body["content"]
    assert body["allowed_mentions"] == {"parse": []}


def test_given_unknown_webhook_right_after_defer_then_retried(world: World) -> None:
    world.balance("5.00")
    world.openrouter.respond(json=completion())
    world.edit.side_effect = [
        httpx.Response(404, json={"message": "Unknown Webhook", "code": 10015}),
        httpx.Response(200, json={"id": "m1"}),
    ]
    assert world.run()["messages_sent"] == 1


def test_given_expired_token_then_no_call_and_no_reply(world: World) -> None:
    world.balance("5.00")
    result = world.run({"interaction": interaction(at=NOW - timedelta(minutes=16))})
    assert result["result"] == "expired"
    assert not world.openrouter.called
    assert not world.edit.called


def test_given_discord_down_then_usage_still_recorded_and_failure_counted(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.balance("5.00")
    world.openrouter.respond(json=completion())
    world.edit.respond(500, json={"message": "oops"})
    result = world.run()
    assert result["result"] == "answered"
    assert result["messages_sent"] == 0
    assert world.ledger.usage_for_day(NOW).requests == 1
    assert '"DiscordReplyFailures"' in capsys.readouterr().out


def test_given_event_without_interaction_then_dropped_cleanly(world: World) -> None:
    assert world.app.lambda_handler({"nope": 1}, Context())["result"] == "invalid"


def test_given_secret_values_then_never_in_logs(world: World, caplog: pytest.LogCaptureFixture) -> None:
    world.balance("5.00")
    world.openrouter.side_effect = httpx.ReadTimeout("slow")
    world.run()
    assert "sk-or-v1-test-secret-0001" not in caplog.text
    assert TOKEN not in caplog.text
