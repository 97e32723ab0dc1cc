"""The local OpenRouter simulator and Discord sink, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tools.simulators import PortInUse
from tools.simulators.discord_sink import DEFAULT_APPLICATION_ID, DiscordSink
from tools.simulators.openrouter_sim import OpenRouterSimulator, estimate_prompt_tokens

pytestmark = pytest.mark.integration

API = {"Authorization": "Bearer sk-or-sim"}
MGMT = {"Authorization": "Bearer sk-or-mgmt-sim"}
MINI = "openai/gpt-4o-mini"
FREE = "meta-llama/llama-3.3-70b-instruct:free"
REPO = Path(__file__).resolve().parents[2]


def chat(
    model: str = MINI, max_tokens: int | None = 50, text: str = "what is a lambda?"
) -> dict[str, object]:
    body: dict[str, object] = {"model": model, "messages": [{"role": "user", "content": text}]}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return body


@pytest.fixture
def sim() -> Iterator[OpenRouterSimulator]:
    with OpenRouterSimulator(balance="5.00") as simulator:
        yield simulator


@pytest.fixture
def sink() -> Iterator[DiscordSink]:
    with DiscordSink() as discord:
        yield discord


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    # One client for the module: building an httpx client (its TLS context) costs ~50 ms.
    with httpx.Client(timeout=2.0) as client:
        yield client


def parse(response: httpx.Response) -> Any:
    """The body with exact Decimals, as the bot's client reads money."""
    return json.loads(response.content, parse_float=Decimal)


# --- OpenRouter: key, credits, models -------------------------------------------------------------
def test_given_api_key_and_no_key_limit_when_get_key_then_openrouter_shape_with_null_limit(
    sim: OpenRouterSimulator, http: httpx.Client
) -> None:
    data = http.get(f"{sim.url}/key", headers=API).json()["data"]

    assert set(data) >= {
        "label",
        "limit",
        "limit_reset",
        "limit_remaining",
        "usage",
        "usage_daily",
        "usage_weekly",
        "usage_monthly",
        "is_free_tier",
        "rate_limit",
    }
    assert data["limit"] is None
    assert data["limit_remaining"] is None
    assert data["usage"] == 0


def test_given_key_limit_when_get_auth_key_alias_then_limit_remaining_is_limit_minus_usage(
    http: httpx.Client,
) -> None:
    with OpenRouterSimulator(balance="5", key_limit="1.50", limit_reset="monthly") as limited:
        http.post(f"{limited.url}/chat/completions", headers=API, json=chat())
        spent = limited.spent
        data = parse(http.get(f"{limited.url}/auth/key", headers=API))["data"]

    assert data["limit"] == Decimal("1.50")
    assert data["limit_remaining"] == Decimal("1.50") - spent
    assert data["limit_reset"] == "monthly"


def test_given_wrong_key_when_get_key_then_401_openrouter_error(
    sim: OpenRouterSimulator, http: httpx.Client
) -> None:
    response = http.get(f"{sim.url}/key", headers={"Authorization": "Bearer sk-or-wrong"})

    assert response.status_code == 401
    assert response.json() == {"error": {"code": 401, "message": "User not found."}}


def test_given_normal_key_when_get_credits_then_403_management_only(
    sim: OpenRouterSimulator, http: httpx.Client
) -> None:
    response = http.get(f"{sim.url}/credits", headers=API)

    assert response.status_code == 403
    assert response.json() == {
        "error": {"code": 403, "message": "Only management keys can perform this operation"}
    }


def test_given_management_key_after_a_paid_answer_when_get_credits_then_totals_differ_by_usage(
    sim: OpenRouterSimulator, http: httpx.Client
) -> None:
    cost = parse(http.post(f"{sim.url}/chat/completions", headers=API, json=chat()))["usage"]["cost"]

    data = parse(http.get(f"{sim.url}/credits", headers=MGMT))["data"]

    assert data == {"total_credits": Decimal("5.00"), "total_usage": cost}


def test_when_get_models_then_prices_are_strings_and_max_completion_is_listed(
    sim: OpenRouterSimulator, http: httpx.Client
) -> None:
    models = {m["id"]: m for m in http.get(f"{sim.url}/models").json()["data"]}

    mini = models[MINI]
    assert mini["pricing"]["prompt"] == "0.00000015"
    assert mini["pricing"]["completion"] == "0.0000006"
    assert mini["top_provider"]["max_completion_tokens"] == 16384
    assert mini["context_length"] > 0
    assert models[FREE]["pricing"]["completion"] == "0"


# --- OpenRouter: chat completions and the balance -------------------------------------------------
@pytest.mark.parametrize(
    ("prompt_price", "affordable"),
    [
        ("0", 710),  # 0.0213 / 0.00003 is exactly 710 (a float says 709.99999)
        ("0.000001", 709),  # 4 prompt tokens cost 0.000004: floor(0.021296 / 0.00003) = 709
    ],
)
def test_given_balance_short_of_worst_case_when_chat_then_402_with_openrouters_exact_text(
    http: httpx.Client, prompt_price: str, affordable: int
) -> None:
    prices = {"test/model": (prompt_price, "0.00003")}
    with OpenRouterSimulator(balance="0.0213", prices=prices) as short:
        response = http.post(
            f"{short.url}/chat/completions", headers=API, json=chat("test/model", 1000, "hi")
        )
        balance_after = short.balance

    assert estimate_prompt_tokens([{"role": "user", "content": "hi"}]) == 4
    assert response.status_code == 402
    assert response.json() == {
        "error": {
            "code": 402,
            "message": "This request requires more credits, or fewer max_tokens. You requested up to 1000 "
            f"tokens, but can only afford {affordable}. To increase, visit "
            "https://openrouter.ai/settings/credits and upgrade to a paid account",
            "metadata": {"limit_source": "openrouter_credits"},
        }
    }
    assert balance_after == Decimal("0.0213")


def test_given_no_max_tokens_when_chat_then_balance_is_checked_against_the_models_full_output(
    http: httpx.Client,
) -> None:
    with OpenRouterSimulator(balance="0.001") as poor:  # affords ~1666 tokens of gpt-4o-mini, not 16384
        response = http.post(f"{poor.url}/chat/completions", headers=API, json=chat(max_tokens=None))

    assert response.status_code == 402
    assert "You requested up to 16384 tokens" in response.json()["error"]["message"]


def test_given_key_limit_below_credits_when_chat_then_402_names_the_key_limit(http: httpx.Client) -> None:
    with OpenRouterSimulator(balance="5", key_limit="0.0001") as limited:
        response = http.post(f"{limited.url}/chat/completions", headers=API, json=chat(max_tokens=1000))

    assert response.status_code == 402
    assert response.json()["error"]["metadata"] == {"limit_source": "openrouter_key_limit"}


def test_given_paid_chat_when_answered_then_usage_cost_is_exact_and_deducted(
    sim: OpenRouterSimulator, http: httpx.Client
) -> None:
    before = sim.balance

    answer = parse(http.post(f"{sim.url}/chat/completions", headers=API, json=chat(max_tokens=500)))

    usage = answer["usage"]
    expected = usage["prompt_tokens"] * Decimal("0.00000015") + usage["completion_tokens"] * Decimal(
        "0.0000006"
    )
    assert usage["cost"] == expected
    assert usage["completion_tokens"] == 120
    assert usage["total_tokens"] == usage["prompt_tokens"] + 120
    assert sim.balance == before - expected
    assert answer["choices"][0]["finish_reason"] == "stop"


def test_given_max_tokens_below_the_answer_when_chat_then_cut_with_finish_reason_length(
    sim: OpenRouterSimulator, http: httpx.Client
) -> None:
    answer = http.post(f"{sim.url}/chat/completions", headers=API, json=chat(max_tokens=10)).json()

    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] == 10
    assert (
        "what is a lambda?"
        in http.post(f"{sim.url}/chat/completions", headers=API, json=chat(max_tokens=100)).json()["choices"][
            0
        ]["message"]["content"]
    )


def test_given_free_model_and_negative_balance_when_chat_then_402(http: httpx.Client) -> None:
    with OpenRouterSimulator(balance="-0.01") as negative:
        response = http.post(f"{negative.url}/chat/completions", headers=API, json=chat(FREE))

    assert response.status_code == 402
    assert "can only afford 0" in response.json()["error"]["message"]


def test_given_free_model_and_zero_balance_when_chat_then_answered_at_no_cost(http: httpx.Client) -> None:
    with OpenRouterSimulator(balance="0") as empty:
        response = http.post(f"{empty.url}/chat/completions", headers=API, json=chat(FREE))

    assert response.status_code == 200
    assert response.json()["usage"]["cost"] == 0


def test_given_refused_for_credits_when_topped_up_then_answered(
    sim: OpenRouterSimulator, http: httpx.Client
) -> None:
    sim.set_balance("0")
    refused = http.post(f"{sim.url}/chat/completions", headers=API, json=chat())

    sim.top_up("1.00")

    assert refused.status_code == 402
    assert http.post(f"{sim.url}/chat/completions", headers=API, json=chat()).status_code == 200


def test_given_twenty_concurrent_chats_when_balance_affords_five_then_exactly_five_are_answered(
    http: httpx.Client,
) -> None:
    # httpx.Client is thread-safe; its pool opens one connection per concurrent request.
    # A 120-token request's worst case and its real cost are both 120 * 0.001 = 0.12 (prompt is free).
    with OpenRouterSimulator(balance="0.60", prices={"test/model": ("0", "0.001")}) as sim:
        statuses: list[int] = []

        def ask() -> None:
            r = http.post(f"{sim.url}/chat/completions", headers=API, json=chat("test/model", 120, "hi"))
            statuses.append(r.status_code)

        threads = [threading.Thread(target=ask) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=5)

        assert sorted(statuses) == [200] * 5 + [402] * 15
        assert sim.balance == Decimal(0)


# --- OpenRouter: fault injection, log, lifecycle --------------------------------------------------
def test_given_one_scripted_429_when_chat_twice_then_429_with_retry_after_then_200(
    sim: OpenRouterSimulator, http: httpx.Client
) -> None:
    sim.fail_next(429, retry_after=2)

    first = http.post(f"{sim.url}/chat/completions", headers=API, json=chat())
    second = http.post(f"{sim.url}/chat/completions", headers=API, json=chat())

    assert first.status_code == 429
    assert first.headers["Retry-After"] == "2"
    assert first.json()["error"]["code"] == 429
    assert second.status_code == 200


def test_given_fault_scoped_to_chat_when_get_key_then_key_is_not_affected(
    sim: OpenRouterSimulator, http: httpx.Client
) -> None:
    sim.fail_next(503)

    assert http.get(f"{sim.url}/key", headers=API).status_code == 200
    assert http.post(f"{sim.url}/chat/completions", headers=API, json=chat()).status_code == 503


def test_given_malformed_fault_when_chat_then_200_with_invalid_json(
    sim: OpenRouterSimulator, http: httpx.Client
) -> None:
    sim.fail_next("malformed")

    response = http.post(f"{sim.url}/chat/completions", headers=API, json=chat())

    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_given_error_in_200_fault_when_chat_then_200_with_error_body_and_no_charge(
    sim: OpenRouterSimulator, http: httpx.Client
) -> None:
    sim.fail_next("error_in_200", code=502, message="Provider returned error")

    response = http.post(f"{sim.url}/chat/completions", headers=API, json=chat())

    assert response.status_code == 200
    assert response.json() == {"error": {"code": 502, "message": "Provider returned error"}}
    assert sim.balance == Decimal("5.00")


def test_given_timeout_fault_when_client_deadline_is_shorter_then_client_times_out(
    sim: OpenRouterSimulator, http: httpx.Client
) -> None:
    sim.fail_next("timeout", delay=0.5)

    with pytest.raises(httpx.ReadTimeout):
        http.post(f"{sim.url}/chat/completions", headers=API, json=chat(), timeout=0.05)


def test_when_requests_are_logged_then_authorization_is_redacted(
    sim: OpenRouterSimulator, http: httpx.Client
) -> None:
    http.post(f"{sim.url}/chat/completions", headers=API, json=chat())

    [logged] = sim.requests
    assert logged.headers["authorization"] == "[redacted]"
    assert logged.body["max_tokens"] == 50
    assert (logged.method, logged.path, logged.status) == ("POST", "/chat/completions", 200)
    assert sim.count("/chat/completions", status=200) == 1


def test_given_port_taken_when_second_simulator_starts_then_port_in_use_names_the_port(
    sim: OpenRouterSimulator,
) -> None:
    with pytest.raises(PortInUse, match=rf"port {sim.port} on 127\.0\.0\.1 is already in use"):
        OpenRouterSimulator(port=sim.port).start()


def test_given_module_run_when_interrupted_then_url_printed_and_clean_exit() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.simulators.openrouter_sim", "--port", "0", "--balance", "2.50"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        with httpx.Client(timeout=2.0) as http:
            data = http.get(f"{url}/key", headers=API).json()["data"]
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=5)
    finally:
        if process.poll() is None:
            process.kill()

    assert url.startswith("http://127.0.0.1:")
    assert url.endswith("/api/v1")
    assert data["limit"] is None
    assert process.returncode == 0
    assert "openrouter-sim stopped" in out


# --- Discord sink ---------------------------------------------------------------------------------
def interaction_url(sink: DiscordSink, token: str) -> str:
    return f"{sink.url}/webhooks/{DEFAULT_APPLICATION_ID}/{token}"


def test_given_edit_and_followup_when_sent_then_recorded_in_order_for_the_token(
    sink: DiscordSink, http: httpx.Client
) -> None:
    edited = http.patch(f"{interaction_url(sink, 'tok-1')}/messages/@original", json={"content": "part 1"})
    http.post(interaction_url(sink, "tok-1"), json={"content": "part 2"})
    http.post(interaction_url(sink, "other"), json={"content": "elsewhere"})

    calls = sink.messages_for("tok-1")

    assert edited.json()["content"] == "part 1"
    assert [(c.kind, c.content) for c in calls] == [("edit_original", "part 1"), ("followup", "part 2")]
    original = sink.original_message("tok-1")
    assert original is not None
    assert original["content"] == "part 1"


def test_given_alert_webhook_when_posted_with_wait_then_recorded_and_message_returned(
    sink: DiscordSink, http: httpx.Client
) -> None:
    embed = {"title": "Credits low", "description": "$0.42 left"}

    response = http.post(sink.webhook_url(), params={"wait": "true"}, json={"embeds": [embed]})

    assert response.status_code == 200
    assert response.json()["embeds"] == [embed]
    [post] = sink.webhook_posts()
    assert (post.kind, post.webhook_id, post.token, post.embeds) == ("webhook", "1", "sink-token", [embed])


def test_given_alert_webhook_when_posted_without_wait_then_204(sink: DiscordSink, http: httpx.Client) -> None:
    assert http.post(sink.webhook_url(), json={"content": "hi"}).status_code == 204


def test_given_a_post_from_another_thread_when_wait_for_then_it_returns_that_call(
    sink: DiscordSink, http: httpx.Client
) -> None:
    timer = threading.Timer(0.05, lambda: http.post(sink.webhook_url(), json={"content": "late alert"}))
    timer.start()

    call = sink.wait_for(lambda c: c.kind == "webhook", timeout=2.0)

    timer.join()
    assert call.content == "late alert"


def test_given_nothing_arrives_when_wait_for_then_timeout_error(sink: DiscordSink) -> None:
    with pytest.raises(TimeoutError, match="no matching Discord call"):
        sink.wait_for(lambda c: True, timeout=0.05)


def test_given_scripted_429_when_webhook_posted_twice_then_rate_limited_then_accepted(
    sink: DiscordSink, http: httpx.Client
) -> None:
    sink.fail_next(429, retry_after=0.2)

    first = http.post(sink.webhook_url(), json={"content": "alert"})
    second = http.post(sink.webhook_url(), json={"content": "alert"})

    assert first.status_code == 429
    assert first.json() == {"message": "You are being rate limited.", "retry_after": 0.2, "global": False}
    assert first.headers["Retry-After"] == "1"
    assert second.status_code == 204
    assert len(sink.webhook_posts()) == 1


def test_given_scripted_404_for_edits_when_edit_then_unknown_webhook_and_followups_unaffected(
    sink: DiscordSink, http: httpx.Client
) -> None:
    sink.fail_next(404, kind="edit_original")

    followup = http.post(interaction_url(sink, "tok"), json={"content": "x"})
    edit = http.patch(f"{interaction_url(sink, 'tok')}/messages/@original", json={"content": "x"})

    assert followup.status_code == 200
    assert edit.status_code == 404
    assert edit.json() == {"message": "Unknown Webhook", "code": 10015}


def test_given_content_over_2000_chars_when_followup_then_400_and_not_shown(
    sink: DiscordSink, http: httpx.Client
) -> None:
    response = http.post(interaction_url(sink, "tok"), json={"content": "x" * 2001})

    assert response.status_code == 400
    assert response.json()["code"] == 50035
    assert sink.messages_for("tok") == []
    assert sink.calls[0].status == 400


def test_given_bot_token_when_commands_put_then_recorded_and_registered(
    sink: DiscordSink, http: httpx.Client
) -> None:
    commands = [{"name": "ask", "description": "Ask AstraBot", "type": 1}]
    url = f"{sink.url}/applications/{DEFAULT_APPLICATION_ID}/guilds/42/commands"

    response = http.put(url, json=commands, headers={"Authorization": "Bot fake-token"})

    assert response.status_code == 200
    assert response.json()[0]["guild_id"] == "42"
    assert sink.calls[0].kind == "commands"
    assert [c["name"] for c in sink.registered_commands("42")] == ["ask"]


def test_given_no_authorization_when_commands_put_then_401(sink: DiscordSink, http: httpx.Client) -> None:
    response = http.put(f"{sink.url}/applications/{DEFAULT_APPLICATION_ID}/commands", json=[{"name": "ask"}])

    assert response.status_code == 401


def test_given_recorded_calls_when_clear_then_nothing_is_left(sink: DiscordSink, http: httpx.Client) -> None:
    http.post(sink.webhook_url(), json={"content": "alert"})

    sink.clear()

    assert sink.calls == []
    assert sink.webhook_posts() == []


def test_given_generation_time_when_concurrent_chats_then_balance_can_be_overspent_like_openrouter(
    http: httpx.Client,
) -> None:
    # OpenRouter checks credits when a request starts and charges when it ends: a naive client racing
    # itself overspends. The simulator models that window with generation_seconds.
    prices = {"test/model": ("0", "0.001")}
    with OpenRouterSimulator(balance="0.12", prices=prices, generation_seconds=0.2) as sim:
        barrier = threading.Barrier(4)

        def ask() -> None:
            barrier.wait(timeout=2)
            http.post(f"{sim.url}/chat/completions", headers=API, json=chat("test/model", 120, "hi"))

        threads = [threading.Thread(target=ask) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=5)

        assert sim.balance < 0
