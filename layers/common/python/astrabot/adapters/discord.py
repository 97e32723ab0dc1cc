"""Discord REST adapter: interaction responses, webhooks and command registration.

Wire failures become `DiscordError` so callers only decide "try again later" or "give up". The URLs
here carry secrets (interaction tokens, webhook tokens), so logs and errors name each call by a
redacted route such as "POST webhooks/123/****" and never by its URL.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx

from astrabot.domain.messages import no_mentions
from astrabot.errors import ConfigError, DiscordError
from astrabot.observability import logger

DEFAULT_BASE_URL: Final = "https://discord.com/api/v10"
USER_AGENT: Final = "DiscordBot (https://github.com/astrabot/nexus, 0.1)"
REDACTED: Final = "****"
UNKNOWN_WEBHOOK: Final = 10015
# Right after a deferred response Discord may not know the interaction webhook yet; it clears
# within seconds, so these waits are short and separate from the transient-error retries.
UNKNOWN_WEBHOOK_WAITS: Final = (0.5, 1.0, 2.0)
BACKOFF_BASE_SECONDS: Final = 0.5


class DiscordRateLimited(DiscordError):
    """429 with a wait longer than we may block, or retries used up; `retry_after` in seconds."""

    def __init__(self, message: str, *, retry_after: float | None, code: int | None = None) -> None:
        super().__init__(message, status=429, code=code, permanent=False)
        self.retry_after = retry_after


@dataclass(frozen=True)
class _Call:
    method: str
    url: httpx.URL
    route: str  # redacted: the only name of this call that may reach a log or an error
    secrets: tuple[str, ...]  # scrubbed from anything Discord echoes back
    retry_unknown_webhook: bool = False
    bot_auth: bool = False


class DiscordClient:
    """Synchronous Discord REST client with bounded, secret-safe retries."""

    def __init__(
        self,
        *,
        application_id: str = "",
        base_url: str = DEFAULT_BASE_URL,
        bot_token: str = "",
        http: httpx.Client | None = None,
        timeout: float = 10.0,
        max_retries: int = 3,
        sleep: Callable[[float], None] = time.sleep,
        max_wait: float = 10.0,
    ) -> None:
        self._application_id = application_id
        self._base_url = base_url.rstrip("/")
        self._bot_token = bot_token
        self._http = http or httpx.Client(timeout=timeout)
        self._timeout = timeout
        self._max_retries = max_retries
        self._sleep = sleep
        self._max_wait = max_wait

    # --- interaction webhooks (no auth: the interaction token is the credential) ----------------
    def edit_original(self, interaction_token: str, message: Mapping[str, Any]) -> dict[str, Any]:
        """PATCH the deferred response (`.../messages/@original`) with `message`."""
        call = self._interaction_call("PATCH", interaction_token, "/messages/@original")
        return _as_object(self._request(call, _without_pings(message)))

    def create_followup(self, interaction_token: str, message: Mapping[str, Any]) -> dict[str, Any]:
        """POST a follow-up message to the interaction; returns the created message."""
        call = self._interaction_call("POST", interaction_token, "", wait=True)
        return _as_object(self._request(call, _without_pings(message)))

    # --- channel webhooks --------------------------------------------------------------------
    def execute_webhook(self, webhook_url: str, message: Mapping[str, Any]) -> dict[str, Any]:
        """POST `message` to a webhook URL (its query, e.g. `thread_id`, is kept); 404 = deleted."""
        try:
            url = httpx.URL(webhook_url)
        except (httpx.InvalidURL, TypeError):
            url = httpx.URL()
        if url.scheme not in {"http", "https"} or not url.host:
            raise ConfigError(
                "the Discord webhook URL is malformed (expected https://.../webhooks/<id>/<token>)"
            )
        parts = [part for part in url.path.split("/") if part]
        index = parts.index("webhooks") if "webhooks" in parts else -1
        webhook_id = parts[index + 1] if 0 <= index < len(parts) - 1 else "?"
        secrets = (webhook_url, *(parts[index + 2 :] if index >= 0 else parts[-1:]))
        call = _Call(
            method="POST",
            url=url.copy_merge_params({"wait": "true"}),
            route=f"POST webhooks/{webhook_id}/{REDACTED}",
            secrets=secrets,
        )
        return _as_object(self._request(call, _without_pings(message)))

    # --- application commands ------------------------------------------------------------------
    def put_commands(
        self, commands: list[dict[str, Any]], guild_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Overwrite the global commands, or one guild's (which take effect at once)."""
        if not self._bot_token:
            raise ConfigError("DISCORD_BOT_TOKEN is required to register commands")
        scope = f"guilds/{guild_id}/" if guild_id else ""
        path = f"applications/{self._require_application_id()}/{scope}commands"
        call = _Call(
            method="PUT",
            url=httpx.URL(f"{self._base_url}/{path}"),
            route=f"PUT {path}",
            secrets=(self._bot_token,),
            bot_auth=True,
        )
        answer = self._request(call, commands)
        return (
            [command for command in answer if isinstance(command, dict)] if isinstance(answer, list) else []
        )

    # --- internals ---------------------------------------------------------------------------------
    def _require_application_id(self) -> str:
        if not self._application_id:
            raise ConfigError("DISCORD_APPLICATION_ID is required for Discord API calls")
        return self._application_id

    def _interaction_call(self, method: str, token: str, suffix: str, *, wait: bool = False) -> _Call:
        if not token:
            raise DiscordError("the interaction token is empty", permanent=True)
        app = self._require_application_id()
        url = httpx.URL(f"{self._base_url}/webhooks/{app}/{token}{suffix}")
        return _Call(
            method=method,
            url=url.copy_merge_params({"wait": "true"}) if wait else url,
            route=f"{method} webhooks/{app}/{REDACTED}{suffix}",
            secrets=(token,),
            retry_unknown_webhook=True,
        )

    def _request(self, call: _Call, body: Any) -> Any:
        """Send `call`; retry 429, 5xx and transport errors up to `max_retries` times in all."""
        headers = {"User-Agent": USER_AGENT}
        if call.bot_auth:
            headers["Authorization"] = f"Bot {self._bot_token}"
        unknown_webhook_waits = iter(UNKNOWN_WEBHOOK_WAITS if call.retry_unknown_webhook else ())
        retries = 0
        while True:
            try:
                response = self._http.request(
                    call.method, call.url, json=body, headers=headers, timeout=self._timeout
                )
            except httpx.TransportError as exc:
                # Only the type: an httpx error's text and request may carry the secret URL.
                failure = DiscordError(f"{call.route} failed: {type(exc).__name__}")
                delay = self._backoff(retries)
            else:
                if response.is_success:
                    return _json_or_none(response)
                failure, wait = self._failure(call, response, retries)
                if failure.code == UNKNOWN_WEBHOOK and failure.status == 404:
                    pause = next(unknown_webhook_waits, None)
                    if pause is not None:
                        self._pause(call, failure, pause, "unknown webhook right after deferring")
                        continue
                if failure.permanent or wait is None:
                    raise failure
                delay = wait
            if retries >= self._max_retries:
                raise failure
            retries += 1
            self._pause(call, failure, delay, f"retry {retries} of {self._max_retries}")

    def _failure(
        self, call: _Call, response: httpx.Response, retries: int
    ) -> tuple[DiscordError, float | None]:
        """The error this response means, and how long to wait before a retry (None: no retry)."""
        status = response.status_code
        payload = _error_payload(response)
        code = payload.get("code") if isinstance(payload.get("code"), int) else None
        detail = str(payload.get("message") or response.reason_phrase or "no detail")
        for secret in call.secrets:
            if secret:
                detail = detail.replace(secret, REDACTED)
        text = f"{call.route} failed: HTTP {status}{f' code {code}' if code else ''}: {detail[:200]}"
        if status == 429:
            wait = _retry_after(response, payload)
            limited = DiscordRateLimited(text, retry_after=wait, code=code)
            if wait is not None and wait > self._max_wait:
                return limited, None
            return limited, wait if wait is not None else self._backoff(retries)
        if status >= 500:
            return DiscordError(text, status=status, code=code), self._backoff(retries)
        # 400 (bad payload), 401/403 (token or permissions), 404 (expired or deleted): retrying
        # cannot help, and invalid requests count towards Discord's IP ban.
        return DiscordError(text, status=status, code=code, permanent=True), None

    def _backoff(self, retries: int) -> float:
        return float(min(BACKOFF_BASE_SECONDS * 2**retries, self._max_wait))

    def _pause(self, call: _Call, failure: DiscordError, delay: float, reason: str) -> None:
        delay = min(delay, self._max_wait)
        logger.warning(
            "Discord call failed, retrying",
            extra={
                "route": call.route,
                "status": failure.status,
                "code": failure.code,
                "reason": reason,
                "retry_in_s": delay,
            },
        )
        self._sleep(delay)


def _without_pings(message: Mapping[str, Any]) -> dict[str, Any]:
    """`message` with mentions disabled unless the caller chose its own `allowed_mentions`."""
    return {**message} if "allowed_mentions" in message else {**message, "allowed_mentions": no_mentions()}


def _json_or_none(response: httpx.Response) -> Any:
    if response.status_code == 204 or not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _error_payload(response: httpx.Response) -> dict[str, Any]:
    answer = _json_or_none(response)
    return answer if isinstance(answer, dict) else {}


def _as_object(answer: Any) -> dict[str, Any]:
    return answer if isinstance(answer, dict) else {}


def _retry_after(response: httpx.Response, payload: Mapping[str, Any]) -> float | None:
    """Seconds to wait from the JSON `retry_after` (a float), else the Retry-After header."""
    candidates = (payload.get("retry_after"), response.headers.get("Retry-After"))
    for candidate in candidates:
        if candidate is None or isinstance(candidate, bool):
            continue
        try:
            seconds = float(candidate)
        except (TypeError, ValueError):
            continue
        if math.isfinite(seconds):
            return max(seconds, 0.0)
    return None
