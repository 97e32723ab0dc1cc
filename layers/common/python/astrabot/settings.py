"""Settings: one frozen object built from the environment once per cold start.

Each function names the settings it needs; a missing or malformed value stops it with one line
naming the variable. Secrets come from the plain variable when set (local runs), otherwise from SSM
Parameter Store via Powertools Parameters (decrypted, cached) named by `<NAME>_PARAM`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal, InvalidOperation
from typing import Any

from astrabot.errors import ConfigError

DEFAULT_OPENROUTER_BASE_URL = "https://openrouter.ai/api/v1"
DEFAULT_DISCORD_API_BASE_URL = "https://discord.com/api/v10"
TOPUP_URL = "https://openrouter.ai/settings/credits"
SECRET_TTL_SECONDS = 300

SECRET_NAMES = (
    "OPENROUTER_API_KEY",
    "OPENROUTER_MANAGEMENT_KEY",
    "DISCORD_BOT_TOKEN",
    "DISCORD_ALERT_WEBHOOK_URL",
)


class Secret:
    """A secret value that never prints itself: repr/str/format all give a mask."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('****')" if self._value else "Secret('')"

    __str__ = __repr__

    def masked(self) -> str:
        """A hint an operator can match against their key without revealing it."""
        if not self._value:
            return "(not set)"
        return f"****{self._value[-4:]}" if len(self._value) >= 16 else "****"


@dataclass(frozen=True)
class Settings:
    table_name: str = ""
    alert_topic_arn: str = ""
    llm_function_name: str = ""
    discord_public_key: str = ""
    discord_application_id: str = ""
    openrouter_base_url: str = DEFAULT_OPENROUTER_BASE_URL
    discord_api_base_url: str = DEFAULT_DISCORD_API_BASE_URL
    default_model: str = "openai/gpt-4o-mini"
    fallback_models: tuple[str, ...] = ("meta-llama/llama-3.3-70b-instruct:free",)
    default_max_tokens: int = 1000
    token_safety_buffer: int = 100
    min_grant_tokens: int = 100
    credit_low_tokens: int = 2000
    credit_emergency_tokens: int = 500
    credit_critical_tokens: int = 100
    poll_interval_seconds: int = 300
    alert_reminder_hours: float = 6.0
    user_daily_token_quota: int = 0
    monthly_budget_usd: Decimal = Decimal(0)
    nexus_admin_user_ids: frozenset[str] = frozenset()
    nexus_admin_role_ids: frozenset[str] = frozenset()
    max_prompt_chars: int = 4000
    alert_mention_role_id: str = ""
    openrouter_api_key: Secret = field(default_factory=lambda: Secret(""))
    openrouter_management_key: Secret = field(default_factory=lambda: Secret(""))
    discord_bot_token: Secret = field(default_factory=lambda: Secret(""))
    discord_alert_webhook_url: Secret = field(default_factory=lambda: Secret(""))

    @property
    def stale_after_seconds(self) -> int:
        """A balance older than three poll intervals is stale (DESIGN.md section 3)."""
        return 3 * self.poll_interval_seconds

    @property
    def conservative_max_tokens(self) -> int:
        return self.min_grant_tokens * 5

    def describe(self) -> dict[str, str]:
        """Effective configuration for /nexus diagnostics: every value as text, secrets masked."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Secret):
                text = value.masked()
            elif isinstance(value, tuple | frozenset):
                text = ", ".join(sorted(value) if isinstance(value, frozenset) else value) or "(none)"
            else:
                text = str(value) if value != "" else "(not set)"
            out[f.name.upper()] = text
        return out


# --- parsing -------------------------------------------------------------------------------------
def _int(name: str, raw: str, *, minimum: int = 0) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _float(name: str, raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be > 0, got {raw!r}")
    return value


def _decimal(name: str, raw: str) -> Decimal:
    try:
        value = Decimal(raw.strip())
    except InvalidOperation:
        raise ConfigError(f"{name} must be a number of USD, got {raw!r}") from None
    if not value.is_finite() or value < 0:
        raise ConfigError(f"{name} must be a non-negative number of USD, got {raw!r}")
    return value


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _ids(name: str, raw: str) -> frozenset[str]:
    ids = _csv(raw)
    for snowflake in ids:
        if not snowflake.isdigit():
            raise ConfigError(f"{name} must be a comma list of Discord ids, got {snowflake!r}")
    return frozenset(ids)


def _url(name: str, raw: str) -> str:
    value = raw.strip().rstrip("/")
    if not value.startswith(("https://", "http://")):
        raise ConfigError(f"{name} must be an http(s) URL, got {value!r}")
    return value


def _public_key(name: str, raw: str) -> str:
    value = raw.strip().lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ConfigError(f"{name} must be 64 hex characters (the application's public key)")
    return value


_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "TABLE_NAME": lambda n, v: v.strip(),
    "ALERT_TOPIC_ARN": lambda n, v: v.strip(),
    "LLM_FUNCTION_NAME": lambda n, v: v.strip(),
    "DISCORD_PUBLIC_KEY": _public_key,
    "DISCORD_APPLICATION_ID": lambda n, v: next(iter(_ids(n, v)), ""),
    "OPENROUTER_BASE_URL": _url,
    "DISCORD_API_BASE_URL": _url,
    "DEFAULT_MODEL": lambda n, v: v.strip(),
    "FALLBACK_MODELS": lambda n, v: _csv(v),
    "DEFAULT_MAX_TOKENS": lambda n, v: _int(n, v, minimum=1),
    "TOKEN_SAFETY_BUFFER": _int,
    "MIN_GRANT_TOKENS": lambda n, v: _int(n, v, minimum=1),
    "CREDIT_LOW_TOKENS": _int,
    "CREDIT_EMERGENCY_TOKENS": _int,
    "CREDIT_CRITICAL_TOKENS": _int,
    "POLL_INTERVAL_SECONDS": lambda n, v: _int(n, v, minimum=1),
    "ALERT_REMINDER_HOURS": _float,
    "USER_DAILY_TOKEN_QUOTA": _int,
    "MONTHLY_BUDGET_USD": _decimal,
    "NEXUS_ADMIN_USER_IDS": _ids,
    "NEXUS_ADMIN_ROLE_IDS": _ids,
    "MAX_PROMPT_CHARS": lambda n, v: _int(n, v, minimum=1),
    "ALERT_MENTION_ROLE_ID": lambda n, v: next(iter(_ids(n, v)), ""),
}

SecretFetcher = Callable[[str], str]


def _ssm_fetch(parameter_name: str) -> str:
    # Imported lazily: only deployed functions that read a secret from SSM pay for it.
    from aws_lambda_powertools.utilities import parameters

    value = parameters.get_parameter(parameter_name, decrypt=True, max_age=SECRET_TTL_SECONDS)
    return str(value)


def _read_secret(name: str, env: Mapping[str, str], fetch: SecretFetcher) -> Secret:
    plain = env.get(name, "").strip()
    if plain:
        return Secret(plain)
    parameter_name = env.get(f"{name}_PARAM", "").strip()
    if not parameter_name:
        return Secret("")
    try:
        return Secret(fetch(parameter_name).strip())
    except Exception as exc:  # any SSM failure becomes one line naming the setting
        raise ConfigError(
            f"{name}: could not read SSM parameter {parameter_name!r} ({type(exc).__name__})"
        ) from None


def load_settings(
    required: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
    fetch_secret: SecretFetcher | None = None,
) -> Settings:
    """Build Settings from `env` (default os.environ); every name in `required` must be non-empty."""
    env = os.environ if env is None else env
    fetch = fetch_secret or _ssm_fetch
    values: dict[str, Any] = {}
    for name, parse in _PARSERS.items():
        raw = env.get(name)
        if raw is not None and raw.strip() != "":
            values[name.lower()] = parse(name, raw)
    for name in SECRET_NAMES:
        if name in required or env.get(name) or env.get(f"{name}_PARAM"):
            values[name.lower()] = _read_secret(name, env, fetch)
    settings = Settings(**values)
    for name in required:
        if not getattr(settings, name.lower()):
            hint = f" (or {name}_PARAM naming an SSM parameter)" if name in SECRET_NAMES else ""
            raise ConfigError(f"{name} is not set{hint}")
    thresholds = (
        settings.credit_critical_tokens,
        settings.credit_emergency_tokens,
        settings.credit_low_tokens,
    )
    if not thresholds[0] <= thresholds[1] <= thresholds[2]:
        raise ConfigError(
            "CREDIT_CRITICAL_TOKENS <= CREDIT_EMERGENCY_TOKENS <= CREDIT_LOW_TOKENS must hold, "
            f"got {thresholds[0]}, {thresholds[1]}, {thresholds[2]}"
        )
    return settings
