"""OpenRouter adapter: key limits, credits, model prices and chat completions over httpx.

Wire failures become `astrabot.errors`: HTTP 402 is `InsufficientCredits` (with the "can only
afford N" figure), transient failures (timeouts, transport errors, 408, 429, 5xx) are retried a
bounded number of times with capped, fully jittered backoff and then raise `OpenRouterUnavailable`,
anything else is a non-retryable `OpenRouterError`. Messages are short, name what an operator can
do, and never carry a key.
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import httpx

from astrabot.domain.credit import ModelPrice, parse_usd
from astrabot.errors import InsufficientCredits, OpenRouterError, OpenRouterUnavailable
from astrabot.observability import logger

DEFAULT_BASE_URL = "https://openrouter.ai/api/v1"
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
CONNECT_TIMEOUT = 5.0
# All attempts of one call, backoff included, stay within this many times the per-attempt timeout.
RETRY_BUDGET_FACTOR = 1.5
MESSAGE_LIMIT = 300
# Tolerant of wording variants and thousands separators: "can only afford 1,234", "requested up to 2000".
_AFFORDABLE = re.compile(r"afford\s+(?:only\s+)?(?:up\s+to\s+)?(\d[\d,]*)", re.IGNORECASE)
_REQUESTED = re.compile(r"requested\s+(?:up\s+to\s+)?(\d[\d,]*)", re.IGNORECASE)

Auth = Literal["api", "management", "none"]
_KEY_VARIABLE: dict[Auth, str] = {"api": "OPENROUTER_API_KEY", "management": "OPENROUTER_MANAGEMENT_KEY"}


@dataclass(frozen=True)
class KeyInfo:
    """`GET /key`: the API key's own limit and usage (USD). `limit` None means unlimited."""

    label: str | None
    limit: Decimal | None
    limit_remaining: Decimal | None
    limit_reset: str | None
    usage: Decimal | None
    usage_daily: Decimal | None
    usage_weekly: Decimal | None
    usage_monthly: Decimal | None
    is_free_tier: bool


@dataclass(frozen=True)
class Credits:
    """`GET /credits` (management key only): the account's purchased credits and spend (USD)."""

    total_credits: Decimal
    total_usage: Decimal

    @property
    def remaining(self) -> Decimal:
        return self.total_credits - self.total_usage


@dataclass(frozen=True)
class ChatResult:
    """One chat completion. `model` is the model that answered (and is billed); `cost` is
    OpenRouter's `usage.cost` in USD, None when it did not report one."""

    text: str
    model: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal | None
    response_id: str | None


class OpenRouterClient:
    """The one OpenRouter client. Synchronous: a Lambda handles one event at a time."""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        management_key: str = "",
        http: httpx.Client | None = None,
        timeout: float = 10.0,
        chat_timeout: float = 60.0,
        max_retries: int = 2,
        backoff_base: float = 0.5,
        max_backoff: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = random.random,
        monotonic: Callable[[], float] = time.monotonic,
        app_title: str = "AstraBot Nexus",
        app_url: str = "https://github.com/astrabot/nexus",
    ) -> None:
        self._keys: dict[Auth, str] = {"api": api_key, "management": management_key}
        self._base_url = base_url.rstrip("/")
        self._http = http or httpx.Client()
        self._timeout = timeout
        self._chat_timeout = chat_timeout
        self._max_retries = max(max_retries, 0)
        self._backoff_base = backoff_base
        self._max_backoff = max_backoff
        self._sleep = sleep
        self._random = random
        self._monotonic = monotonic
        self._attribution = {"HTTP-Referer": app_url, "X-Title": app_title}
        self._prices: dict[str, ModelPrice] | None = None
        self._prices_at = 0.0

    # --- public API ------------------------------------------------------------------------------
    def get_key(self) -> KeyInfo:
        try:
            payload = self._call("GET", "/key", auth="api")
        except OpenRouterError as exc:
            if exc.status != 404:
                raise
            payload = self._call("GET", "/auth/key", auth="api")  # the older alias
        data = _object(payload.get("data"), "/key data")
        return KeyInfo(
            label=_text(data.get("label")),
            limit=parse_usd(data.get("limit")),
            limit_remaining=parse_usd(data.get("limit_remaining")),
            limit_reset=_text(data.get("limit_reset")),
            usage=parse_usd(data.get("usage")),
            usage_daily=parse_usd(data.get("usage_daily")),
            usage_weekly=parse_usd(data.get("usage_weekly")),
            usage_monthly=parse_usd(data.get("usage_monthly")),
            is_free_tier=data.get("is_free_tier") is True,
        )

    def get_credits(self) -> Credits | None:
        """The account balance, or None when it cannot be known (never a made-up zero)."""
        if not self._keys["management"]:
            return None
        try:
            payload = self._call("GET", "/credits", auth="management")
        except OpenRouterError as exc:
            if exc.status != 403:
                raise
            logger.info("OpenRouter /credits refused the key: it is not a management key")
            return None
        data = _object(payload.get("data"), "/credits data")
        total_credits = parse_usd(data.get("total_credits"))
        total_usage = parse_usd(data.get("total_usage"))
        if total_credits is None or total_usage is None:
            raise _malformed("/credits without total_credits or total_usage")
        if total_credits == 0 and total_usage == 0:
            # Non-management keys have been seen to get 200 with both zero: unknown, not empty.
            return None
        return Credits(total_credits=total_credits, total_usage=total_usage)

    def model_prices(
        self, models: Iterable[str] | None = None, *, max_age: float = 3600.0
    ) -> dict[str, ModelPrice]:
        """USD-per-token prices from `GET /models`, cached in this client for `max_age` seconds.
        Models without a usable price (missing, or "-1" for routers) are left out."""
        now = self._monotonic()
        if self._prices is None or now - self._prices_at >= max_age:
            self._prices = self._fetch_prices()
            self._prices_at = now
        if models is None:
            return dict(self._prices)
        return {model: self._prices[model] for model in models if model in self._prices}

    def chat(
        self,
        *,
        model: str,
        messages: list[dict[str, str]],
        max_tokens: int,
        user: str | None = None,
        timeout: float | None = None,
    ) -> ChatResult:
        if max_tokens < 1:
            # Without a positive max_tokens OpenRouter budgets the model's full output length.
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
        body: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "max_tokens": max_tokens,
            "usage": {"include": True},
        }
        if user:
            body["user"] = user
        payload = self._call(
            "POST", "/chat/completions", auth="api", body=body, timeout=timeout or self._chat_timeout
        )
        return _chat_result(payload, requested_model=model)

    # --- transport -------------------------------------------------------------------------------
    def _fetch_prices(self) -> dict[str, ModelPrice]:
        # /models needs no auth: the key is not sent where it is not needed.
        payload = self._call("GET", "/models", auth="none")
        entries = payload.get("data")
        if not isinstance(entries, list):
            raise _malformed("/models without a data list")
        prices: dict[str, ModelPrice] = {}
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
                continue
            pricing = entry.get("pricing")
            price = ModelPrice.from_pricing(entry["id"], pricing) if isinstance(pricing, dict) else None
            if price is not None:
                prices[price.model] = price
        return prices

    def _call(
        self, method: str, path: str, *, auth: Auth, body: Any = None, timeout: float | None = None
    ) -> dict[str, Any]:
        """One logical call: bounded retries of transient failures, then a domain error."""
        seconds = timeout or self._timeout
        headers = {"Accept": "application/json", **self._attribution}
        if auth != "none" and self._keys[auth]:
            headers["Authorization"] = f"Bearer {self._keys[auth]}"
        # Connecting is quick or hopeless; only reading may take the whole `seconds`.
        limits = httpx.Timeout(seconds, connect=min(seconds, CONNECT_TIMEOUT))
        started = self._monotonic()
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    method, self._base_url + path, headers=headers, json=body, timeout=limits
                )
                return self._read(response, auth)
            except (httpx.ReadTimeout, httpx.WriteTimeout) as exc:
                if method == "POST":
                    # The request reached OpenRouter and may be generating (and billing): never repeat it.
                    raise OpenRouterUnavailable(
                        f"OpenRouter did not answer {path} within {seconds:g} s", maybe_billed=True
                    ) from exc
                failure = OpenRouterUnavailable(f"OpenRouter did not answer {path} within {seconds:g} s")
            except httpx.TimeoutException:
                failure = OpenRouterUnavailable(f"OpenRouter did not answer {path} within {seconds:g} s")
            except httpx.TransportError as exc:
                failure = OpenRouterUnavailable(
                    f"could not reach OpenRouter for {path} ({type(exc).__name__})"
                )
            except OpenRouterUnavailable as exc:
                if not _is_transient(exc.status):
                    raise
                failure = exc
            if failure.retry_after is not None and failure.retry_after > self._max_backoff:
                raise failure  # a long Retry-After: waiting would eat the Lambda's time; tell the caller
            if attempt >= self._max_retries:
                raise OpenRouterUnavailable(
                    f"{failure} (gave up after {attempt + 1} attempts)",
                    status=failure.status,
                    retry_after=failure.retry_after,
                ) from failure
            wait = self._backoff(attempt, failure.retry_after)
            if self._monotonic() - started + wait + seconds > seconds * RETRY_BUDGET_FACTOR:
                # Another full attempt could outlast the caller (llm_call has 120 s for 60 s calls).
                raise OpenRouterUnavailable(
                    f"{failure} (no time left for another attempt)",
                    status=failure.status,
                    retry_after=failure.retry_after,
                ) from failure
            attempt += 1
            logger.warning(
                "OpenRouter call failed; retrying",
                extra={"path": path, "status": failure.status, "attempt": attempt, "wait_seconds": wait},
            )
            self._sleep(wait)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Retry-After when given, else full jitter: uniform in [0, min(max_backoff, base * 2^n)]."""
        if retry_after is not None:
            return retry_after
        ceiling = min(self._max_backoff, self._backoff_base * 2.0**attempt)
        return min(self._random(), 1.0) * ceiling

    def _read(self, response: httpx.Response, auth: Auth) -> dict[str, Any]:
        """The JSON body of a success, or the domain error its status (or error body) stands for."""
        status = response.status_code
        if not 200 <= status < 300:
            raise self._error(
                status,
                _error_object(_json_or_none(response)),
                retry_after=_retry_after(response.headers.get("Retry-After")),
                auth=auth,
            )
        payload = _json_or_none(response)
        if not isinstance(payload, dict):
            # Not retried: a chat reply may already be billed, and a retry would pay for it twice.
            raise _malformed(f"{response.request.url.path} answered without a JSON object", status=status)
        # Errors after generation started arrive as HTTP 200 with an error body or choice.
        carried = payload.get("error")
        if isinstance(carried, dict):
            raise self._error(_status_code(carried.get("code")), carried, retry_after=None, auth=auth)
        for choice in payload.get("choices") or []:
            if isinstance(choice, dict) and choice.get("finish_reason") == "error":
                failed = _error_object({"error": choice.get("error")})
                raise self._error(_status_code(failed.get("code")), failed, retry_after=None, auth=auth)
        return payload

    def _error(
        self, status: int, error: Mapping[str, Any], *, retry_after: float | None, auth: Auth
    ) -> OpenRouterError:
        detail = self._safe(error.get("message"))
        suffix = f": {detail}" if detail else ""
        if status == 402:
            metadata = error.get("metadata")
            limit_source = metadata.get("limit_source") if isinstance(metadata, dict) else None
            return InsufficientCredits(
                f"OpenRouter needs more credits for this request (402){suffix}",
                affordable_tokens=_figure(_AFFORDABLE, detail),
                requested_tokens=_figure(_REQUESTED, detail),
                limit_source=limit_source if isinstance(limit_source, str) else None,
            )
        if _is_transient(status):
            wait = f"; retry after {retry_after:g} s" if retry_after is not None else ""
            return OpenRouterUnavailable(
                f"OpenRouter is unavailable ({status}){wait}{suffix}", status=status, retry_after=retry_after
            )
        if status == 401:
            variable = _KEY_VARIABLE.get(auth, "OPENROUTER_API_KEY")
            message = f"OpenRouter rejected the API key (401); check {variable}{suffix}"
        elif status == 403:
            message = f"OpenRouter refused the request (403: moderation or key permissions){suffix}"
        elif status == 400:
            message = f"OpenRouter rejected the request as invalid (400){suffix}"
        elif status == 404:
            message = f"OpenRouter does not know this endpoint or model (404){suffix}"
        else:
            message = f"OpenRouter answered HTTP {status}{suffix}"
        return OpenRouterError(message, status=status, retryable=False)

    def _safe(self, message: Any) -> str:
        """OpenRouter's own message, one line, at most MESSAGE_LIMIT chars, with any key masked."""
        if not isinstance(message, str):
            return ""
        text = " ".join(message.split())
        for key in self._keys.values():
            if key:
                text = text.replace(key, "***")
        return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"


# --- parsing helpers --------------------------------------------------------------------------------
def _chat_result(payload: Mapping[str, Any], *, requested_model: str) -> ChatResult:
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise _malformed("chat completion without choices")
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(message, dict) or not isinstance(content, str | None):
        raise _malformed("chat completion without a message")
    usage = payload.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    answered_by = payload.get("model")
    return ChatResult(
        text=content or "",
        model=answered_by if isinstance(answered_by, str) and answered_by else requested_model,
        finish_reason=_text(choices[0].get("finish_reason")),
        prompt_tokens=_count(usage.get("prompt_tokens")),
        completion_tokens=_count(usage.get("completion_tokens")),
        cost=parse_usd(usage.get("cost")),
        response_id=_text(payload.get("id")),
    )


def _json_or_none(response: httpx.Response) -> Any:
    try:
        # Decimal keeps "cost": 0.000123 and the credit totals exact.
        return json.loads(response.content, parse_float=Decimal)
    except ValueError:
        return None


def _error_object(payload: Any) -> dict[str, Any]:
    error = payload.get("error") if isinstance(payload, dict) else None
    return error if isinstance(error, dict) else {}


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds from now; it may be a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(seconds, 0.0) if math.isfinite(seconds) else None


def _is_transient(status: int | None) -> bool:
    """None is a timeout or transport error; any 5xx counts, not only the usual four."""
    return status is None or status in TRANSIENT_STATUSES or status >= 500


def _status_code(code: Any) -> int:
    """An error body's `code` as an HTTP status; unknown codes count as a provider failure (502)."""
    if isinstance(code, int) and not isinstance(code, bool) and 400 <= code <= 599:
        return code
    if isinstance(code, str) and code.isdigit() and 400 <= int(code) <= 599:
        return int(code)
    return 502


def _figure(pattern: re.Pattern[str], text: str) -> int | None:
    match = pattern.search(text)
    return int(match.group(1).replace(",", "")) if match else None


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _malformed(f"{what} missing")
    return value


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _malformed(what: str, *, status: int | None = 200) -> OpenRouterUnavailable:
    """Retryable for the caller, but `status` 200 keeps `_call` from repeating a paid request."""
    return OpenRouterUnavailable(
        f"OpenRouter sent a malformed response: {what}", status=status, maybe_billed=status == 200
    )
