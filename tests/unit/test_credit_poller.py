"""The poller's lambda_handler against a respx-served OpenRouter and a moto table."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx

from astrabot.adapters.ledger import Ledger
from astrabot.domain.credit import CreditStatus
from functions.credit_poller import app

BASE = "https://openrouter.test/api/v1"
MODEL = "openai/gpt-4o-mini"
FREE = "meta-llama/llama-3.3-70b-instruct:free"


def key_body(limit_remaining: float | None, limit: float | None = 10.0) -> dict[str, Any]:
    return {
        "data": {
            "label": "sk-or-v1-abc...xyz",
            "limit": limit,
            "limit_reset": None,
            "limit_remaining": limit_remaining,
            "usage": 9.98,
            "usage_daily": 0.5,
            "usage_weekly": 2.0,
            "usage_monthly": 9.98,
            "is_free_tier": False,
            "rate_limit": {"requests": -1, "interval": "10s"},
        }
    }


MODELS = {
    "data": [
        {
            "id": MODEL,
            "context_length": 128000,
            "top_provider": {"max_completion_tokens": 16384},
            "pricing": {"prompt": "0.00000015", "completion": "0.00003", "request": "0"},
        },
        {"id": FREE, "context_length": 8192, "pricing": {"prompt": "0", "completion": "0"}},
    ]
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, ledger: Ledger) -> Iterator[None]:
    for name, value in {
        "TABLE_NAME": ledger.table_name,
        "OPENROUTER_API_KEY": "sk-or-v1-test-secret-key-0000",
        "OPENROUTER_BASE_URL": BASE,
        "DEFAULT_MODEL": MODEL,
        "FALLBACK_MODELS": FREE,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("OPENROUTER_MANAGEMENT_KEY", raising=False)
    app._runtime.cache_clear()
    yield
    app._runtime.cache_clear()


@pytest.fixture
def openrouter() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        router.get("/models").respond(json=MODELS)
        yield router


class Context:
    function_name = "credit_poller"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:credit_poller"
    aws_request_id = "req-1"


@pytest.mark.parametrize(
    ("remaining", "tokens", "status"),
    [
        (0.0213, 710, CreditStatus.LOW),
        (0.01, 333, CreditStatus.EMERGENCY),
        (25.0, 833333, CreditStatus.HEALTHY),
    ],
)
def test_given_key_balance_when_polled_then_affordable_tokens_and_status_stored(
    env: None,
    openrouter: respx.MockRouter,
    ledger: Ledger,
    remaining: float,
    tokens: int,
    status: CreditStatus,
) -> None:
    openrouter.get("/key").respond(json=key_body(remaining))
    result = app.lambda_handler({}, Context())
    snap = ledger.get_balance()
    assert snap is not None
    assert (snap.affordable_tokens, snap.status) == (tokens, status)
    assert snap.remaining_usd == Decimal(str(remaining))
    assert result["status"] == status.value
    assert len(ledger.balance_history(snap.fetched_at.replace(hour=0))) == 1  # type: ignore[union-attr]


def test_given_poll_when_done_then_metrics_and_one_log_line(
    env: None,
    openrouter: respx.MockRouter,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    openrouter.get("/key").respond(json=key_body(0.0213))
    app.lambda_handler({}, Context())
    out = capsys.readouterr().out
    for metric in ("CreditsRemainingUSD", "AffordableTokens", "CreditStatusLevel"):
        assert f'"{metric}"' in out
    lines = [r for r in caplog.records if r.getMessage() == "credit poll"]
    assert len(lines) == 1
    assert lines[0].__dict__["affordable_tokens"] == 710
    assert "sk-or-v1-test-secret-key-0000" not in out + caplog.text


def test_given_unpolled_spend_when_polled_then_it_resets(
    env: None, openrouter: respx.MockRouter, ledger: Ledger
) -> None:
    openrouter.get("/key").respond(json=key_body(1.0))
    app.lambda_handler({}, Context())
    ledger.correct_available(Decimal("0.5"))
    app.lambda_handler({}, Context())
    snap = ledger.get_balance()
    assert snap is not None
    assert (snap.spent_since_poll, snap.available_usd, snap.version) == (0, Decimal("1.0"), 2)


def test_given_management_key_when_credits_lower_than_key_then_smaller_figure_wins(
    env: None, openrouter: respx.MockRouter, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENROUTER_MANAGEMENT_KEY", "sk-or-mgmt-test-0000000000")
    app._runtime.cache_clear()
    openrouter.get("/key").respond(json=key_body(5.0))
    openrouter.get("/credits").respond(json={"data": {"total_credits": 100.5, "total_usage": 98.5}})
    app.lambda_handler({}, Context())
    snap = ledger.get_balance()
    assert snap is not None
    assert (snap.remaining_usd, snap.source) == (Decimal("2.0"), "credits+key")


def test_given_unlimited_key_and_all_zero_credits_then_unknown_never_zero(
    env: None, openrouter: respx.MockRouter, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENROUTER_MANAGEMENT_KEY", "sk-or-mgmt-test-0000000000")
    app._runtime.cache_clear()
    openrouter.get("/key").respond(json=key_body(None, limit=None))
    openrouter.get("/credits").respond(json={"data": {"total_credits": 0, "total_usage": 0}})
    result = app.lambda_handler({}, Context())
    snap = ledger.get_balance()
    assert snap is not None
    assert snap.remaining_usd is None
    assert snap.status is CreditStatus.UNKNOWN
    assert result["ok"] is False


def test_given_outage_after_good_poll_then_last_balance_kept_and_marked_stale(
    env: None, openrouter: respx.MockRouter, ledger: Ledger
) -> None:
    route = openrouter.get("/key")
    route.respond(json=key_body(0.0213))
    app.lambda_handler({}, Context())
    route.respond(status_code=503, json={"error": {"code": 503, "message": "No available provider"}})
    result = app.lambda_handler({}, Context())
    snap = ledger.get_balance()
    assert snap is not None
    assert result["ok"] is False
    assert snap.remaining_usd == Decimal("0.0213")
    assert (snap.stale, snap.status, snap.consecutive_failures) == (True, CreditStatus.LOW, 1)
    assert ledger.recent_errors()[0].source == "credit_poller"


def test_given_timeout_then_outage_recorded(env: None, openrouter: respx.MockRouter, ledger: Ledger) -> None:
    openrouter.get("/key").mock(side_effect=httpx.ConnectTimeout("timed out"))
    result = app.lambda_handler({}, Context())
    assert result["ok"] is False
    assert ledger.recent_errors()[0].message.startswith("OpenRouter")


def test_given_default_model_missing_from_models_then_outage_not_a_guess(
    env: None, openrouter: respx.MockRouter, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEFAULT_MODEL", "vendor/unknown-model")
    app._runtime.cache_clear()
    openrouter.get("/key").respond(json=key_body(1.0))
    result = app.lambda_handler({}, Context())
    assert result["ok"] is False
    assert "DEFAULT_MODEL" in (result["error"] or "")


def test_given_missing_api_key_then_one_line_naming_it(env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENROUTER_API_KEY")
    app._runtime.cache_clear()
    from astrabot.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^OPENROUTER_API_KEY is not set"):
        app.lambda_handler({}, Context())
