"""OpenRouter adapter: real response shapes (API_FACTS.md) served by respx; sleeps are recorded, not slept."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx

from astrabot.adapters.openrouter import Credits, OpenRouterClient
from astrabot.domain.credit import ModelPrice
from astrabot.errors import InsufficientCredits, OpenRouterError, OpenRouterUnavailable

BASE = "https://openrouter.test/api/v1"
API_KEY = "sk-or-v1-secret-api-key-0123456789"
MANAGEMENT_KEY = "sk-or-v1-secret-management-key-9876"
REAL_402 = (
    "This request requires more credits, or fewer max_tokens. You requested up to 2000 tokens, but can only"
    " afford 721. To increase, visit https://openrouter.ai/settings/credits and upgrade to a paid account"
)
KEY_DATA = {
    "label": "sk-or-v1-abc...xyz",
    "limit": None,
    "limit_reset": None,
    "limit_remaining": None,
    "usage": 1.25,
    "usage_daily": 0.5,
    "usage_weekly": 1.0,
    "usage_monthly": 1.25,
    "is_free_tier": False,
    "rate_limit": {"requests": 10, "interval": "10s"},
}
CHAT_REPLY = {
    "id": "gen-1700000000-abc",
    "object": "chat.completion",
    "model": "openai/gpt-4o-mini",
    "choices": [
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hello there"}}
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15, "cost": 0.0000213},
}
MESSAGES = [{"role": "user", "content": "hi"}]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as mock:
        yield mock


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_client(sleeps: list[float], clock: Clock | None = None, **overrides: Any) -> OpenRouterClient:
    options: dict[str, Any] = {
        "base_url": BASE,
        "management_key": MANAGEMENT_KEY,
        "http": httpx.Client(),
        "sleep": sleeps.append,
        "random": lambda: 0.5,
        "monotonic": clock or Clock(),
    }
    options.update(overrides)
    return OpenRouterClient(API_KEY, **options)


@pytest.fixture
def client(sleeps: list[float], clock: Clock) -> OpenRouterClient:
    return make_client(sleeps, clock)


def sent_body(route: respx.Route, call: int = -1) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(route.calls[call].request.content)
    return body


# --- /key -------------------------------------------------------------------------------------------
def test_given_unlimited_key_when_get_key_then_limit_is_none_and_usage_exact(
    router: respx.MockRouter, client: OpenRouterClient
) -> None:
    router.get("/key").respond(200, json={"data": KEY_DATA})

    info = client.get_key()

    assert info.limit is None
    assert info.limit_remaining is None
    assert info.usage_monthly == Decimal("1.25")
    assert info.label == "sk-or-v1-abc...xyz"
    assert info.is_free_tier is False


def test_given_limited_key_when_get_key_then_limit_fields_parsed(
    router: respx.MockRouter, client: OpenRouterClient
) -> None:
    data = {**KEY_DATA, "limit": 10, "limit_remaining": 8.75, "limit_reset": "monthly", "is_free_tier": True}
    router.get("/key").respond(200, json={"data": data})

    info = client.get_key()

    assert (info.limit, info.limit_remaining, info.limit_reset) == (Decimal(10), Decimal("8.75"), "monthly")
    assert info.is_free_tier is True


def test_given_key_request_when_sent_then_carries_bearer_and_attribution_headers(
    router: respx.MockRouter, client: OpenRouterClient
) -> None:
    route = router.get("/key").respond(200, json={"data": KEY_DATA})

    client.get_key()

    headers = route.calls[0].request.headers
    assert headers["Authorization"] == f"Bearer {API_KEY}"
    assert headers["X-Title"] == "AstraBot Nexus"
    assert headers["HTTP-Referer"] == "https://github.com/astrabot/nexus"


def test_given_key_endpoint_404_when_get_key_then_falls_back_to_auth_key(
    router: respx.MockRouter, client: OpenRouterClient
) -> None:
    router.get("/key").respond(404, json={"error": {"code": 404, "message": "Not Found"}})
    legacy = router.get("/auth/key").respond(200, json={"data": {**KEY_DATA, "usage": 2}})

    info = client.get_key()

    assert legacy.call_count == 1
    assert info.usage == Decimal(2)


# --- /credits ---------------------------------------------------------------------------------------
def test_given_management_key_when_get_credits_then_remaining_is_credits_less_usage(
    router: respx.MockRouter, client: OpenRouterClient
) -> None:
    route = router.get("/credits").respond(200, json={"data": {"total_credits": 100.5, "total_usage": 25.75}})

    credits = client.get_credits()

    assert credits == Credits(total_credits=Decimal("100.5"), total_usage=Decimal("25.75"))
    assert credits.remaining == Decimal("74.75")
    assert route.calls[0].request.headers["Authorization"] == f"Bearer {MANAGEMENT_KEY}"


def test_given_credits_both_zero_when_get_credits_then_unknown_not_empty(
    router: respx.MockRouter, client: OpenRouterClient
) -> None:
    router.get("/credits").respond(200, json={"data": {"total_credits": 0, "total_usage": 0}})

    assert client.get_credits() is None


def test_given_non_management_key_403_when_get_credits_then_none(
    router: respx.MockRouter, client: OpenRouterClient
) -> None:
    body = {"error": {"code": 403, "message": "Only management keys can perform this operation"}}
    router.get("/credits").respond(403, json=body)

    assert client.get_credits() is None


def test_given_no_management_key_when_get_credits_then_none_without_http_call(
    router: respx.MockRouter, sleeps: list[float]
) -> None:
    route = router.get("/credits").respond(200, json={"data": {"total_credits": 5, "total_usage": 1}})
    client = make_client(sleeps, management_key="")

    assert client.get_credits() is None
    assert route.call_count == 0


# --- /models ----------------------------------------------------------------------------------------
MODELS = {
    "data": [
        {
            "id": "openai/gpt-4o-mini",
            "context_length": 128000,
            "top_provider": {"max_completion_tokens": 16384},
            "pricing": {"prompt": "0.00000015", "completion": "0.0000006", "request": "0"},
        },
        {
            "id": "anthropic/claude-3-opus",
            "context_length": 200000,
            "pricing": {"prompt": "0.000015", "completion": "0.00003"},
        },
        {"id": "openrouter/auto", "pricing": {"prompt": "-1", "completion": "-1"}},
        {"id": "meta-llama/llama-3.1-8b-instruct:free", "pricing": {"prompt": "0", "completion": "0"}},
    ]
}


def test_given_string_prices_when_model_prices_then_exact_decimals(
    router: respx.MockRouter, client: OpenRouterClient
) -> None:
    router.get("/models").respond(200, json=MODELS)

    prices = client.model_prices()

    assert prices["anthropic/claude-3-opus"] == ModelPrice(
        model="anthropic/claude-3-opus", prompt=Decimal("0.000015"), completion=Decimal("0.00003")
    )
    assert prices["anthropic/claude-3-opus"].completion == Decimal("0.00003")
    assert prices["meta-llama/llama-3.1-8b-instruct:free"].is_free


def test_given_router_model_priced_minus_one_when_model_prices_then_skipped(
    router: respx.MockRouter, client: OpenRouterClient
) -> None:
    router.get("/models").respond(200, json=MODELS)

    assert "openrouter/auto" not in client.model_prices()


def test_given_model_filter_when_model_prices_then_only_known_requested_models(
    router: respx.MockRouter, client: OpenRouterClient
) -> None:
    router.get("/models").respond(200, json=MODELS)

    prices = client.model_prices(["openai/gpt-4o-mini", "no/such-model"])

    assert list(prices) == ["openai/gpt-4o-mini"]


def test_given_models_request_when_sent_then_no_api_key_is_attached(
    router: respx.MockRouter, client: OpenRouterClient
) -> None:
    route = router.get("/models").respond(200, json=MODELS)

    client.model_prices()

    assert "Authorization" not in route.calls[0].request.headers


def test_given_prices_fetched_when_asked_again_within_max_age_then_served_from_cache(
    router: respx.MockRouter, client: OpenRouterClient, clock: Clock
) -> None:
    route = router.get("/models").respond(200, json=MODELS)
    client.model_prices(max_age=60)

    clock.now += 59
    prices = client.model_prices(max_age=60)

    assert route.call_count == 1
    assert "openai/gpt-4o-mini" in prices


def test_given_prices_older_than_max_age_when_asked_then_refetched(
    router: respx.MockRouter, client: OpenRouterClient, clock: Clock
) -> None:
    route = router.get("/models").respond(200, json=MODELS)
    client.model_prices(max_age=60)

    clock.now += 60
    client.model_prices(max_age=60)

    assert route.call_count == 2


# --- chat -------------------------------------------------------------------------------------------
def test_given_chat_reply_when_chat_then_text_model_tokens_and_exact_cost(
    router: respx.MockRouter, client: OpenRouterClient
) -> None:
    router.post("/chat/completions").respond(200, json=CHAT_REPLY)

    result = client.chat(model="openai/gpt-4o", messages=MESSAGES, max_tokens=200)

    assert result.text == "Hello there"
    assert result.model == "openai/gpt-4o-mini"  # the model that answered, not the one asked for
    assert (result.prompt_tokens, result.completion_tokens) == (12, 3)
    assert result.cost == Decimal("0.0000213")
    assert (result.finish_reason, result.response_id) == ("stop", "gen-1700000000-abc")


def test_given_chat_when_sent_then_body_always_carries_max_tokens_and_usage(
    router: respx.MockRouter, client: OpenRouterClient
) -> None:
    route = router.post("/chat/completions").respond(200, json=CHAT_REPLY)

    client.chat(model="openai/gpt-4o-mini", messages=MESSAGES, max_tokens=321, user="u-42")

    assert sent_body(route) == {
        "model": "openai/gpt-4o-mini",
        "messages": MESSAGES,
        "max_tokens": 321,
        "usage": {"include": True},
        "user": "u-42",
    }


def test_given_max_tokens_below_one_when_chat_then_value_error_without_http_call(
    router: respx.MockRouter, client: OpenRouterClient
) -> None:
    route = router.post("/chat/completions").respond(200, json=CHAT_REPLY)

    with pytest.raises(ValueError, match="max_tokens"):
        client.chat(model="openai/gpt-4o-mini", messages=MESSAGES, max_tokens=0)
    assert route.call_count == 0


def test_given_real_402_when_chat_then_insufficient_credits_with_figures(
    router: respx.MockRouter, client: OpenRouterClient, sleeps: list[float]
) -> None:
    error = {"code": 402, "message": REAL_402, "metadata": {"limit_source": "openrouter_credits"}}
    route = router.post("/chat/completions").respond(402, json={"error": error})

    with pytest.raises(InsufficientCredits) as caught:
        client.chat(model="openai/gpt-4o-mini", messages=MESSAGES, max_tokens=2000)

    assert (caught.value.affordable_tokens, caught.value.requested_tokens) == (721, 2000)
    assert caught.value.limit_source == "openrouter_credits"
    assert route.call_count == 1  # never retried
    assert sleeps == []


def test_given_402_with_thousands_separators_when_chat_then_figures_parsed(
    router: respx.MockRouter, client: OpenRouterClient
) -> None:
    message = "You requested up to 12,000 tokens, but can only afford 1,234."
    router.post("/chat/completions").respond(402, json={"error": {"code": 402, "message": message}})

    with pytest.raises(InsufficientCredits) as caught:
        client.chat(model="openai/gpt-4o-mini", messages=MESSAGES, max_tokens=12000)

    assert (caught.value.affordable_tokens, caught.value.requested_tokens) == (1234, 12000)


def test_given_402_without_figure_when_chat_then_figures_none(
    router: respx.MockRouter, client: OpenRouterClient
) -> None:
    body = {"error": {"code": 402, "message": "Insufficient credits. Add more using https://openrouter.ai"}}
    router.post("/chat/completions").respond(402, json=body)

    with pytest.raises(InsufficientCredits) as caught:
        client.chat(model="openai/gpt-4o-mini", messages=MESSAGES, max_tokens=100)

    assert caught.value.affordable_tokens is None
    assert caught.value.requested_tokens is None
    assert caught.value.limit_source is None


# --- retries ----------------------------------------------------------------------------------------
def rate_limited(retry_after: str) -> httpx.Response:
    body = {"error": {"code": 429, "message": "Rate limit exceeded"}}
    return httpx.Response(429, json=body, headers={"Retry-After": retry_after})


def test_given_429_with_short_retry_after_when_chat_then_waits_that_long_and_succeeds(
    router: respx.MockRouter, client: OpenRouterClient, sleeps: list[float]
) -> None:
    router.post("/chat/completions").mock(
        side_effect=[rate_limited("2"), httpx.Response(200, json=CHAT_REPLY)]
    )

    result = client.chat(model="openai/gpt-4o-mini", messages=MESSAGES, max_tokens=100)

    assert result.text == "Hello there"
    assert sleeps == [2.0]


def test_given_429_with_retry_after_beyond_max_backoff_when_chat_then_unavailable_at_once(
    router: respx.MockRouter, client: OpenRouterClient, sleeps: list[float]
) -> None:
    route = router.post("/chat/completions").mock(return_value=rate_limited("120"))

    with pytest.raises(OpenRouterUnavailable) as caught:
        client.chat(model="openai/gpt-4o-mini", messages=MESSAGES, max_tokens=100)

    assert (caught.value.status, caught.value.retry_after) == (429, 120.0)
    assert route.call_count == 1
    assert sleeps == []


def test_given_429_with_http_date_retry_after_in_the_past_when_chat_then_retries_without_waiting(
    router: respx.MockRouter, client: OpenRouterClient, sleeps: list[float]
) -> None:
    stale = rate_limited("Wed, 21 Oct 2015 07:28:00 GMT")
    router.post("/chat/completions").mock(side_effect=[stale, httpx.Response(200, json=CHAT_REPLY)])

    client.chat(model="openai/gpt-4o-mini", messages=MESSAGES, max_tokens=100)

    assert sleeps == [0.0]


def test_given_502_once_when_chat_then_retried_with_jittered_backoff_and_succeeds(
    router: respx.MockRouter, client: OpenRouterClient, sleeps: list[float]
) -> None:
    down = httpx.Response(502, json={"error": {"code": 502, "message": "Provider returned error"}})
    route = router.post("/chat/completions").mock(side_effect=[down, httpx.Response(200, json=CHAT_REPLY)])

    result = client.chat(model="openai/gpt-4o-mini", messages=MESSAGES, max_tokens=100)

    assert result.completion_tokens == 3
    assert route.call_count == 2
    assert sleeps == [0.25]  # random 0.5 x min(max_backoff, 0.5 * 2^0)


def test_given_503_every_time_when_get_key_then_unavailable_after_max_retries(
    router: respx.MockRouter, client: OpenRouterClient, sleeps: list[float]
) -> None:
    route = router.get("/key").respond(503, json={"error": {"code": 503, "message": "No available provider"}})

    with pytest.raises(OpenRouterUnavailable) as caught:
        client.get_key()

    assert caught.value.status == 503
    assert route.call_count == 3  # the first try and max_retries=2 retries
    assert len(sleeps) == 2


def test_given_connect_timeout_once_when_chat_then_retried_and_succeeds(
    router: respx.MockRouter, client: OpenRouterClient, sleeps: list[float]
) -> None:
    """A connect timeout means the request never left: safe to send again."""
    router.post("/chat/completions").mock(
        side_effect=[httpx.ConnectTimeout("connect timed out"), httpx.Response(200, json=CHAT_REPLY)]
    )

    result = client.chat(model="openai/gpt-4o-mini", messages=MESSAGES, max_tokens=100)

    assert result.text == "Hello there"
    assert len(sleeps) == 1


def test_given_read_timeout_when_chat_then_not_repeated_and_flagged_maybe_billed(
    router: respx.MockRouter, client: OpenRouterClient, sleeps: list[float]
) -> None:
    """A read timeout means OpenRouter got the request and may be generating (billing): never resend."""
    route = router.post("/chat/completions").mock(side_effect=httpx.ReadTimeout("read timed out"))

    with pytest.raises(OpenRouterUnavailable) as info:
        client.chat(model="openai/gpt-4o-mini", messages=MESSAGES, max_tokens=100)

    assert route.call_count == 1
    assert sleeps == []
    assert info.value.maybe_billed is True


def test_given_slow_failures_when_retrying_then_attempts_stay_within_the_budget(
    router: respx.MockRouter, sleeps: list[float]
) -> None:
    """Given each 502 arrives after most of the per-attempt timeout, then no attempt starts that could
    outlast 1.5 x that timeout in all (llm_call's Lambda timeout is 2 x the chat timeout)."""
    clock = iter([0.0, 50.0, 50.0])
    client = make_client(sleeps, chat_timeout=60.0, monotonic=lambda: next(clock))
    route = router.post("/chat/completions").respond(502, json={"error": {"code": 502, "message": "down"}})

    with pytest.raises(OpenRouterUnavailable, match="no time left"):
        client.chat(model="openai/gpt-4o-mini", messages=MESSAGES, max_tokens=100)

    assert route.call_count == 1


def test_given_timeouts_every_time_when_get_key_then_unavailable_without_status(
    router: respx.MockRouter, client: OpenRouterClient
) -> None:
    route = router.get("/key").mock(side_effect=httpx.ReadTimeout("read timed out"))

    with pytest.raises(OpenRouterUnavailable, match="did not answer") as caught:
        client.get_key()

    assert caught.value.status is None
    assert route.call_count == 3


def test_given_connection_error_every_time_when_get_key_then_unavailable(
    router: respx.MockRouter, client: OpenRouterClient
) -> None:
    router.get("/key").mock(side_effect=httpx.ConnectError("connection refused"))

    with pytest.raises(OpenRouterUnavailable, match="could not reach OpenRouter"):
        client.get_key()


def test_given_timeout_when_sent_then_request_carries_configured_timeout(
    router: respx.MockRouter, sleeps: list[float]
) -> None:
    route = router.post("/chat/completions").respond(200, json=CHAT_REPLY)
    client = make_client(sleeps, chat_timeout=42.0)

    client.chat(model="openai/gpt-4o-mini", messages=MESSAGES, max_tokens=100)

    assert route.calls[0].request.extensions["timeout"]["read"] == 42.0


def test_given_worst_case_jitter_when_many_retries_then_backoff_never_exceeds_max_backoff(
    router: respx.MockRouter, sleeps: list[float]
) -> None:
    router.get("/key").respond(500, json={"error": {"code": 500, "message": "Internal Server Error"}})
    client = make_client(sleeps, max_retries=8, backoff_base=1.0, max_backoff=3.0, random=lambda: 1.0)

    with pytest.raises(OpenRouterUnavailable):
        client.get_key()

    assert sleeps == [1.0, 2.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0]


# --- malformed and in-band errors -------------------------------------------------------------------
def test_given_non_json_200_when_get_key_then_malformed_unavailable_not_retried(
    router: respx.MockRouter, client: OpenRouterClient, sleeps: list[float]
) -> None:
    route = router.get("/key").respond(200, text="<html>gateway</html>")

    with pytest.raises(OpenRouterUnavailable, match="malformed response") as caught:
        client.get_key()

    assert caught.value.retryable is True
    assert route.call_count == 1


def test_given_key_reply_without_data_when_get_key_then_malformed(
    router: respx.MockRouter, client: OpenRouterClient
) -> None:
    router.get("/key").respond(200, json={"unexpected": True})

    with pytest.raises(OpenRouterUnavailable, match="malformed response"):
        client.get_key()


def test_given_chat_reply_without_choices_when_chat_then_unavailable(
    router: respx.MockRouter, client: OpenRouterClient
) -> None:
    router.post("/chat/completions").respond(200, json={**CHAT_REPLY, "choices": []})

    with pytest.raises(OpenRouterUnavailable, match="without choices"):
        client.chat(model="openai/gpt-4o-mini", messages=MESSAGES, max_tokens=100)


def test_given_error_body_inside_200_when_chat_then_retried_like_its_status(
    router: respx.MockRouter, client: OpenRouterClient, sleeps: list[float]
) -> None:
    in_band = httpx.Response(200, json={"error": {"code": 502, "message": "Provider disconnected"}})
    route = router.post("/chat/completions").mock(side_effect=[in_band, httpx.Response(200, json=CHAT_REPLY)])

    result = client.chat(model="openai/gpt-4o-mini", messages=MESSAGES, max_tokens=100)

    assert result.text == "Hello there"
    assert route.call_count == 2


def test_given_402_inside_200_when_chat_then_insufficient_credits(
    router: respx.MockRouter, client: OpenRouterClient
) -> None:
    router.post("/chat/completions").respond(200, json={"error": {"code": 402, "message": REAL_402}})

    with pytest.raises(InsufficientCredits) as caught:
        client.chat(model="openai/gpt-4o-mini", messages=MESSAGES, max_tokens=2000)

    assert caught.value.affordable_tokens == 721


def test_given_choice_finishing_with_error_when_chat_then_unavailable_after_retries(
    router: respx.MockRouter, client: OpenRouterClient
) -> None:
    choice = {"index": 0, "finish_reason": "error", "message": {"role": "assistant", "content": "Hel"}}
    route = router.post("/chat/completions").respond(200, json={**CHAT_REPLY, "choices": [choice]})

    with pytest.raises(OpenRouterUnavailable) as caught:
        client.chat(model="openai/gpt-4o-mini", messages=MESSAGES, max_tokens=100)

    assert caught.value.status == 502
    assert route.call_count == 3


# --- non-retryable 4xx ------------------------------------------------------------------------------
def test_given_401_when_get_key_then_actionable_error_without_the_key(
    router: respx.MockRouter, client: OpenRouterClient, sleeps: list[float]
) -> None:
    # OpenRouter echoing a key back is hypothetical; the adapter masks it anyway.
    body = {"error": {"code": 401, "message": f"No auth credentials found for {API_KEY}"}}
    router.get("/key").respond(401, json=body)

    with pytest.raises(OpenRouterError) as caught:
        client.get_key()

    text = str(caught.value)
    assert "OpenRouter rejected the API key" in text
    assert "OPENROUTER_API_KEY" in text
    assert API_KEY not in text
    assert (caught.value.status, caught.value.retryable) == (401, False)
    assert sleeps == []


def test_given_400_when_chat_then_non_retryable_error_with_short_message(
    router: respx.MockRouter, client: OpenRouterClient
) -> None:
    body = {"error": {"code": 400, "message": "x" * 5000}}
    route = router.post("/chat/completions").respond(400, json=body)

    with pytest.raises(OpenRouterError) as caught:
        client.chat(model="openai/gpt-4o-mini", messages=MESSAGES, max_tokens=100)

    assert not isinstance(caught.value, OpenRouterUnavailable)
    assert caught.value.status == 400
    assert len(str(caught.value)) < 400
    assert route.call_count == 1


def test_given_moderation_403_when_chat_then_non_retryable_error(
    router: respx.MockRouter, client: OpenRouterClient
) -> None:
    body = {"error": {"code": 403, "message": "Input flagged", "metadata": {"reasons": ["harassment"]}}}
    router.post("/chat/completions").respond(403, json=body)

    with pytest.raises(OpenRouterError, match="403") as caught:
        client.chat(model="openai/gpt-4o-mini", messages=MESSAGES, max_tokens=100)

    assert caught.value.retryable is False


def test_given_a_retry_when_logged_then_warning_has_status_attempt_and_wait_but_no_key(
    router: respx.MockRouter, client: OpenRouterClient, caplog: pytest.LogCaptureFixture
) -> None:
    down = httpx.Response(502, json={"error": {"code": 502, "message": "Provider returned error"}})
    router.post("/chat/completions").mock(side_effect=[down, httpx.Response(200, json=CHAT_REPLY)])

    with caplog.at_level(logging.WARNING):
        client.chat(model="openai/gpt-4o-mini", messages=MESSAGES, max_tokens=100)

    [retry] = [
        record for record in caplog.records if record.getMessage() == "OpenRouter call failed; retrying"
    ]
    assert retry.levelno == logging.WARNING
    fields = vars(retry)
    assert (fields["status"], fields["attempt"], fields["wait_seconds"]) == (502, 1, 0.25)
    assert API_KEY not in caplog.text
    assert all(API_KEY not in str(value) for value in fields.values())
