"""DiscordClient against respx routes: payloads, retries, permanent errors and secret hygiene."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx

from astrabot.adapters import discord
from astrabot.adapters.discord import USER_AGENT, DiscordClient, DiscordRateLimited
from astrabot.errors import ConfigError, DiscordError

BASE = "https://discord.test/api/v10"
APP_ID = "111222333"
INTERACTION_TOKEN = "aW50ZXJhY3Rpb24tdG9rZW4tc2VjcmV0"
BOT_TOKEN = "Bot.token.very-secret"
WEBHOOK_TOKEN = "webhook-token-super-secret"
WEBHOOK_URL = f"https://discord.test/api/webhooks/987654/{WEBHOOK_TOKEN}"
ORIGINAL = f"{BASE}/webhooks/{APP_ID}/{INTERACTION_TOKEN}/messages/@original"
FOLLOWUP = f"{BASE}/webhooks/{APP_ID}/{INTERACTION_TOKEN}"
SECRETS = (INTERACTION_TOKEN, BOT_TOKEN, WEBHOOK_TOKEN, WEBHOOK_URL)

UNKNOWN_WEBHOOK = httpx.Response(404, json={"message": "Unknown Webhook", "code": 10015})
SERVER_ERROR = httpx.Response(500, json={"message": "Internal Server Error", "code": 0})
MESSAGE = httpx.Response(200, json={"id": "42", "content": "hi"})


class RecordingLogger:
    """Stands in for the Powertools logger so tests can read every log call."""

    def __init__(self) -> None:
        self.records: list[str] = []

    def _record(self, message: str, *args: Any, **kwargs: Any) -> None:
        self.records.append(f"{message} {args!r} {kwargs!r}")

    debug = info = warning = error = exception = _record


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as mock:
        yield mock


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> RecordingLogger:
    recorder = RecordingLogger()
    monkeypatch.setattr(discord, "logger", recorder)
    return recorder


@pytest.fixture
def client(sleeps: list[float], log: RecordingLogger) -> Iterator[DiscordClient]:
    with httpx.Client() as http:
        yield DiscordClient(
            application_id=APP_ID, base_url=BASE, bot_token=BOT_TOKEN, http=http, sleep=sleeps.append
        )


def sent_json(route: respx.Route, call: int = -1) -> Any:
    return json.loads(route.calls[call].request.content)


def assert_no_secrets(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


# --- success paths ------------------------------------------------------------------------------
def test_given_deferred_interaction_when_editing_original_then_patch_returns_the_message(
    router: respx.MockRouter, client: DiscordClient
) -> None:
    route = router.patch(ORIGINAL).mock(return_value=MESSAGE)

    result = client.edit_original(INTERACTION_TOKEN, {"content": "@everyone hi"})

    assert result == {"id": "42", "content": "hi"}
    assert sent_json(route) == {"content": "@everyone hi", "allowed_mentions": {"parse": []}}


def test_given_any_call_when_sent_then_user_agent_names_the_bot(
    router: respx.MockRouter, client: DiscordClient
) -> None:
    route = router.patch(ORIGINAL).mock(return_value=MESSAGE)

    client.edit_original(INTERACTION_TOKEN, {"content": "x"})

    assert route.calls[0].request.headers["User-Agent"] == USER_AGENT


def test_given_caller_allowed_mentions_when_sending_then_they_are_not_overridden(
    router: respx.MockRouter, client: DiscordClient
) -> None:
    route = router.patch(ORIGINAL).mock(return_value=MESSAGE)

    client.edit_original(INTERACTION_TOKEN, {"content": "<@1>", "allowed_mentions": {"users": ["1"]}})

    assert sent_json(route)["allowed_mentions"] == {"users": ["1"]}


def test_given_long_reply_when_creating_followup_then_post_waits_for_the_message(
    router: respx.MockRouter, client: DiscordClient
) -> None:
    route = router.post(FOLLOWUP, params={"wait": "true"}).mock(return_value=MESSAGE)

    result = client.create_followup(INTERACTION_TOKEN, {"content": "part 2"})

    assert result["id"] == "42"
    assert sent_json(route) == {"content": "part 2", "allowed_mentions": {"parse": []}}


def test_given_webhook_url_with_thread_when_executing_then_query_is_kept_and_wait_added(
    router: respx.MockRouter, client: DiscordClient
) -> None:
    route = router.post(url__startswith=WEBHOOK_URL).mock(return_value=MESSAGE)

    client.execute_webhook(f"{WEBHOOK_URL}?thread_id=55", {"embeds": [{"title": "Low credits"}]})

    assert dict(route.calls[0].request.url.params) == {"thread_id": "55", "wait": "true"}
    assert sent_json(route)["allowed_mentions"] == {"parse": []}


def test_given_guild_id_when_putting_commands_then_guild_route_with_bot_auth(
    router: respx.MockRouter, client: DiscordClient
) -> None:
    route = router.put(f"{BASE}/applications/{APP_ID}/guilds/777/commands").mock(
        return_value=httpx.Response(200, json=[{"id": "1", "name": "ask"}])
    )

    result = client.put_commands([{"name": "ask", "type": 1}], guild_id="777")

    assert result == [{"id": "1", "name": "ask"}]
    assert route.calls[0].request.headers["Authorization"] == f"Bot {BOT_TOKEN}"
    assert sent_json(route) == [{"name": "ask", "type": 1}]


def test_given_no_guild_when_putting_commands_then_global_route_is_used(
    router: respx.MockRouter, client: DiscordClient
) -> None:
    route = router.put(f"{BASE}/applications/{APP_ID}/commands").mock(
        return_value=httpx.Response(200, json=[])
    )

    client.put_commands([{"name": "nexus"}])

    assert route.call_count == 1
    assert route.calls[0].request.headers["Authorization"] == f"Bot {BOT_TOKEN}"


def test_given_no_bot_token_when_putting_commands_then_config_error_names_the_variable(
    router: respx.MockRouter,
) -> None:
    client = DiscordClient(application_id=APP_ID, base_url=BASE, http=httpx.Client())

    with pytest.raises(ConfigError, match="DISCORD_BOT_TOKEN"):
        client.put_commands([])


def test_given_webhook_call_when_sent_then_no_authorization_header_leaks_the_bot_token(
    router: respx.MockRouter, client: DiscordClient
) -> None:
    route = router.patch(ORIGINAL).mock(return_value=MESSAGE)

    client.edit_original(INTERACTION_TOKEN, {"content": "x"})

    assert "Authorization" not in route.calls[0].request.headers


@pytest.mark.parametrize(
    "webhook_url", ["", "not a url", f"discord.test/api/webhooks/987654/{WEBHOOK_TOKEN}"]
)
def test_given_malformed_webhook_url_when_executing_then_config_error_without_the_url(
    router: respx.MockRouter, client: DiscordClient, webhook_url: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        client.execute_webhook(webhook_url, {"content": "alert"})

    assert_no_secrets(str(caught.value))
    assert len(router.calls) == 0


# --- unknown webhook right after deferring ------------------------------------------------------
def test_given_unknown_webhook_once_when_editing_original_then_retried_after_half_a_second(
    router: respx.MockRouter, client: DiscordClient, sleeps: list[float]
) -> None:
    route = router.patch(ORIGINAL).mock(side_effect=[UNKNOWN_WEBHOOK, MESSAGE])

    result = client.edit_original(INTERACTION_TOKEN, {"content": "x"})

    assert result["id"] == "42"
    assert route.call_count == 2
    assert sleeps == [0.5]


def test_given_unknown_webhook_forever_when_creating_followup_then_permanent_error_after_bounded_tries(
    router: respx.MockRouter, client: DiscordClient, sleeps: list[float]
) -> None:
    route = router.post(url__startswith=FOLLOWUP).mock(return_value=UNKNOWN_WEBHOOK)

    with pytest.raises(DiscordError) as caught:
        client.create_followup(INTERACTION_TOKEN, {"content": "x"})

    assert (caught.value.permanent, caught.value.status, caught.value.code) == (True, 404, 10015)
    assert route.call_count == 4
    assert sleeps == [0.5, 1.0, 2.0]


def test_given_deleted_channel_webhook_when_executing_then_permanent_error_without_retry(
    router: respx.MockRouter, client: DiscordClient, sleeps: list[float]
) -> None:
    route = router.post(url__startswith=WEBHOOK_URL).mock(return_value=UNKNOWN_WEBHOOK)

    with pytest.raises(DiscordError) as caught:
        client.execute_webhook(WEBHOOK_URL, {"content": "alert"})

    assert caught.value.permanent is True
    assert route.call_count == 1
    assert sleeps == []


# --- rate limits --------------------------------------------------------------------------------
def test_given_429_with_short_retry_after_when_posting_then_waits_that_long_and_succeeds(
    router: respx.MockRouter, client: DiscordClient, sleeps: list[float]
) -> None:
    limited = httpx.Response(
        429, json={"message": "You are being rate limited.", "retry_after": 0.5, "global": False}
    )
    router.post(url__startswith=WEBHOOK_URL).mock(side_effect=[limited, MESSAGE])

    result = client.execute_webhook(WEBHOOK_URL, {"content": "alert"})

    assert result["id"] == "42"
    assert sleeps == [0.5]


def test_given_429_with_only_retry_after_header_when_posting_then_header_sets_the_wait(
    router: respx.MockRouter, client: DiscordClient, sleeps: list[float]
) -> None:
    limited = httpx.Response(429, headers={"Retry-After": "2"}, text="slow down")
    router.post(url__startswith=WEBHOOK_URL).mock(side_effect=[limited, MESSAGE])

    client.execute_webhook(WEBHOOK_URL, {"content": "alert"})

    assert sleeps == [2.0]


def test_given_429_with_retry_after_beyond_max_wait_when_posting_then_raises_without_waiting(
    router: respx.MockRouter, client: DiscordClient, sleeps: list[float]
) -> None:
    limited = httpx.Response(429, json={"message": "You are being rate limited.", "retry_after": 60.0})
    route = router.post(url__startswith=WEBHOOK_URL).mock(return_value=limited)

    with pytest.raises(DiscordRateLimited) as caught:
        client.execute_webhook(WEBHOOK_URL, {"content": "alert"})

    assert (caught.value.retry_after, caught.value.permanent) == (60.0, False)
    assert route.call_count == 1
    assert sleeps == []


def test_given_429_every_time_when_posting_then_rate_limit_counts_against_max_retries(
    router: respx.MockRouter, client: DiscordClient, sleeps: list[float]
) -> None:
    limited = httpx.Response(429, json={"retry_after": 0.1})
    route = router.post(url__startswith=WEBHOOK_URL).mock(return_value=limited)

    with pytest.raises(DiscordRateLimited):
        client.execute_webhook(WEBHOOK_URL, {"content": "alert"})

    assert route.call_count == 4
    assert sleeps == [0.1, 0.1, 0.1]


# --- server and transport errors ----------------------------------------------------------------
def test_given_500_once_when_editing_original_then_retried_with_backoff_and_succeeds(
    router: respx.MockRouter, client: DiscordClient, sleeps: list[float]
) -> None:
    router.patch(ORIGINAL).mock(side_effect=[SERVER_ERROR, MESSAGE])

    result = client.edit_original(INTERACTION_TOKEN, {"content": "x"})

    assert result["id"] == "42"
    assert sleeps == [0.5]


def test_given_500_forever_when_editing_original_then_non_permanent_error_after_max_retries(
    router: respx.MockRouter, client: DiscordClient, sleeps: list[float]
) -> None:
    route = router.patch(ORIGINAL).mock(return_value=SERVER_ERROR)

    with pytest.raises(DiscordError) as caught:
        client.edit_original(INTERACTION_TOKEN, {"content": "x"})

    assert (caught.value.permanent, caught.value.status) == (False, 500)
    assert route.call_count == 4
    assert sleeps == [0.5, 1.0, 2.0]


def test_given_timeout_once_when_creating_followup_then_retried_and_succeeds(
    router: respx.MockRouter, client: DiscordClient, sleeps: list[float]
) -> None:
    route = router.post(url__startswith=FOLLOWUP).mock(side_effect=[httpx.ReadTimeout("timed out"), MESSAGE])

    client.create_followup(INTERACTION_TOKEN, {"content": "x"})

    assert route.call_count == 2
    assert sleeps == [0.5]


def test_given_connection_refused_forever_when_posting_then_non_permanent_error(
    router: respx.MockRouter, client: DiscordClient
) -> None:
    router.post(url__startswith=WEBHOOK_URL).mock(side_effect=httpx.ConnectError("refused"))

    with pytest.raises(DiscordError) as caught:
        client.execute_webhook(WEBHOOK_URL, {"content": "alert"})

    assert caught.value.permanent is False
    assert "ConnectError" in str(caught.value)


# --- permanent client errors --------------------------------------------------------------------
@pytest.mark.parametrize(("status", "code"), [(400, 50035), (401, 50027), (403, 50013), (404, 10008)])
def test_given_client_error_when_editing_original_then_permanent_error_raised_at_once(
    router: respx.MockRouter, client: DiscordClient, sleeps: list[float], status: int, code: int
) -> None:
    route = router.patch(ORIGINAL).mock(
        return_value=httpx.Response(status, json={"message": "no", "code": code})
    )

    with pytest.raises(DiscordError) as caught:
        client.edit_original(INTERACTION_TOKEN, {"content": "x"})

    assert (caught.value.permanent, caught.value.status, caught.value.code) == (True, status, code)
    assert route.call_count == 1
    assert sleeps == []


# --- secrets ------------------------------------------------------------------------------------
def test_given_discord_echoes_the_token_when_call_fails_then_error_is_redacted(
    router: respx.MockRouter, client: DiscordClient
) -> None:
    echo = httpx.Response(400, json={"message": f"Invalid Webhook Token {INTERACTION_TOKEN}", "code": 50027})
    router.patch(ORIGINAL).mock(return_value=echo)

    with pytest.raises(DiscordError) as caught:
        client.edit_original(INTERACTION_TOKEN, {"content": "x"})

    assert_no_secrets(str(caught.value))
    assert f"PATCH webhooks/{APP_ID}/****/messages/@original" in str(caught.value)


@pytest.mark.parametrize(
    "response",
    [UNKNOWN_WEBHOOK, SERVER_ERROR, httpx.Response(429, json={"retry_after": 99}), httpx.ConnectError("x")],
)
def test_given_failing_webhook_when_executing_then_neither_error_nor_logs_contain_secrets(
    router: respx.MockRouter, client: DiscordClient, log: RecordingLogger, response: Any
) -> None:
    route = router.post(url__startswith=WEBHOOK_URL)
    if isinstance(response, httpx.Response):
        route.mock(return_value=response)
    else:
        route.mock(side_effect=response)

    with pytest.raises(DiscordError) as caught:
        client.execute_webhook(WEBHOOK_URL, {"content": "alert"})

    assert_no_secrets(str(caught.value))
    assert "webhooks/987654/****" in str(caught.value)
    assert_no_secrets("\n".join(log.records))


def test_given_retries_when_interaction_call_fails_then_logs_name_only_the_redacted_route(
    router: respx.MockRouter, client: DiscordClient, log: RecordingLogger
) -> None:
    router.patch(ORIGINAL).mock(side_effect=[UNKNOWN_WEBHOOK, SERVER_ERROR, MESSAGE])

    client.edit_original(INTERACTION_TOKEN, {"content": "x"})

    assert len(log.records) == 2
    assert all(f"webhooks/{APP_ID}/****" in record for record in log.records)
    assert_no_secrets("\n".join(log.records))


def test_given_failing_command_registration_when_forbidden_then_bot_token_is_not_in_error(
    router: respx.MockRouter, client: DiscordClient
) -> None:
    router.put(f"{BASE}/applications/{APP_ID}/commands").mock(
        return_value=httpx.Response(401, json={"message": f"401: Unauthorized {BOT_TOKEN}", "code": 0})
    )

    with pytest.raises(DiscordError) as caught:
        client.put_commands([])

    assert caught.value.permanent is True
    assert_no_secrets(str(caught.value))
