"""Settings: one frozen object, validated once, secrets masked and read from SSM when deployed."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import boto3
import pytest

from astrabot.errors import ConfigError
from astrabot.settings import Secret, load_settings

KEY = "a" * 64


def test_given_defaults_then_design_values() -> None:
    s = load_settings(env={})
    assert (s.default_max_tokens, s.token_safety_buffer, s.min_grant_tokens) == (1000, 100, 100)
    assert (s.credit_low_tokens, s.credit_emergency_tokens, s.credit_critical_tokens) == (2000, 500, 100)
    assert s.openrouter_base_url == "https://openrouter.ai/api/v1"
    assert s.discord_api_base_url == "https://discord.com/api/v10"
    assert s.stale_after_seconds == 900
    assert s.conservative_max_tokens == 500


def test_given_values_then_parsed_and_frozen() -> None:
    s = load_settings(
        env={
            "FALLBACK_MODELS": " a/b , c/d:free ,",
            "MONTHLY_BUDGET_USD": "12.50",
            "NEXUS_ADMIN_ROLE_IDS": "123,456",
            "OPENROUTER_BASE_URL": "http://127.0.0.1:8787/api/v1/",
            "DISCORD_PUBLIC_KEY": KEY.upper(),
        }
    )
    assert s.fallback_models == ("a/b", "c/d:free")
    assert s.monthly_budget_usd == Decimal("12.50")
    assert s.nexus_admin_role_ids == frozenset({"123", "456"})
    assert s.openrouter_base_url == "http://127.0.0.1:8787/api/v1"
    assert s.discord_public_key == KEY
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.table_name = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DEFAULT_MAX_TOKENS": "lots"}, r"^DEFAULT_MAX_TOKENS must be a whole number, got 'lots'$"),
        ({"MIN_GRANT_TOKENS": "0"}, r"^MIN_GRANT_TOKENS must be >= 1"),
        ({"MONTHLY_BUDGET_USD": "-3"}, r"^MONTHLY_BUDGET_USD must be a non-negative"),
        ({"DISCORD_PUBLIC_KEY": "xyz"}, r"^DISCORD_PUBLIC_KEY must be 64 hex"),
        ({"OPENROUTER_BASE_URL": "openrouter.ai"}, r"^OPENROUTER_BASE_URL must be an http"),
        ({"NEXUS_ADMIN_USER_IDS": "12,bob"}, r"^NEXUS_ADMIN_USER_IDS must be a comma list"),
        ({"ALERT_REMINDER_HOURS": "0"}, r"^ALERT_REMINDER_HOURS must be > 0"),
        (
            {"CREDIT_LOW_TOKENS": "50"},
            r"^CREDIT_CRITICAL_TOKENS <= CREDIT_EMERGENCY_TOKENS <= CREDIT_LOW_TOKENS",
        ),
    ],
)
def test_given_malformed_value_then_one_line_naming_it(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(env=env)
    assert "\n" not in str(info.value)


def test_given_required_missing_then_it_is_named() -> None:
    with pytest.raises(ConfigError, match=r"^TABLE_NAME is not set$"):
        load_settings(["TABLE_NAME"], env={})
    with pytest.raises(ConfigError, match=r"^DISCORD_BOT_TOKEN is not set \(or DISCORD_BOT_TOKEN_PARAM"):
        load_settings(["DISCORD_BOT_TOKEN"], env={})


def test_given_plain_secret_then_it_wins_over_ssm() -> None:
    calls: list[str] = []
    s = load_settings(
        ["OPENROUTER_API_KEY"],
        env={"OPENROUTER_API_KEY": "sk-or-local", "OPENROUTER_API_KEY_PARAM": "/x"},
        fetch_secret=lambda name: calls.append(name) or "sk-from-ssm",
    )
    assert s.openrouter_api_key.reveal() == "sk-or-local"
    assert calls == []


def test_given_param_name_then_secret_read_from_ssm(aws: None) -> None:
    boto3.client("ssm").put_parameter(
        Name="/astrabot/or-key", Value="sk-or-v1-from-ssm-1234", Type="SecureString"
    )
    s = load_settings(["OPENROUTER_API_KEY"], env={"OPENROUTER_API_KEY_PARAM": "/astrabot/or-key"})
    assert s.openrouter_api_key.reveal() == "sk-or-v1-from-ssm-1234"


def test_given_missing_ssm_parameter_then_one_line_naming_setting(aws: None) -> None:
    with pytest.raises(ConfigError, match=r"^OPENROUTER_API_KEY: could not read SSM parameter '/nope'"):
        load_settings(["OPENROUTER_API_KEY"], env={"OPENROUTER_API_KEY_PARAM": "/nope"})


def test_given_secrets_then_never_printed() -> None:
    s = load_settings(env={"OPENROUTER_API_KEY": "sk-or-v1-supersecretvalue9876", "DISCORD_BOT_TOKEN": "tok"})
    text = repr(s) + str(s.describe()) + f"{s.openrouter_api_key}"
    assert "supersecret" not in text
    assert "tok'" not in repr(s.discord_bot_token)
    assert s.describe()["OPENROUTER_API_KEY"] == "****9876"
    assert Secret("").masked() == "(not set)"
