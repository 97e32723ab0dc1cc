"""Domain errors. Adapters turn wire errors (botocore, httpx) into these; logic never sees the wire."""

from __future__ import annotations


class AstraBotError(Exception):
    """Base of every error the bot raises on purpose."""


class ConfigError(AstraBotError):
    """A setting is missing or malformed. The message is one line that names the variable."""


# --- ledger (DynamoDB) -------------------------------------------------------------------------
class LedgerUnavailable(AstraBotError):
    """DynamoDB could not be reached, throttled us past our retries, or answered an error."""


class LedgerBusy(LedgerUnavailable):
    """DynamoDB kept cancelling a transaction for conflicts with concurrent ones (hot balance item)."""


class BalanceConflict(AstraBotError):
    """A conditional write of the balance item lost a race (version or freshness check)."""


class ReservationRejected(AstraBotError):
    """A reservation could not be made; `reason` is one of the REASON_* constants."""

    BALANCE = "balance"
    USER_QUOTA = "user_quota"
    MONTHLY_BUDGET = "monthly_budget"
    DUPLICATE = "duplicate"

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message or f"reservation rejected: {reason}")
        self.reason = reason


# --- OpenRouter ---------------------------------------------------------------------------------
class OpenRouterError(AstraBotError):
    """OpenRouter answered with an error we could not recover from by retrying."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class InsufficientCredits(OpenRouterError):
    """HTTP 402. `affordable_tokens` is the "can only afford N" figure when OpenRouter gave one."""

    def __init__(
        self,
        message: str,
        *,
        affordable_tokens: int | None = None,
        requested_tokens: int | None = None,
        limit_source: str | None = None,
    ) -> None:
        super().__init__(message, status=402, retryable=False)
        self.affordable_tokens = affordable_tokens
        self.requested_tokens = requested_tokens
        self.limit_source = limit_source


class OpenRouterUnavailable(OpenRouterError):
    """Timeouts, 408, 429, 5xx after the bounded retries; worth trying again later."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        maybe_billed: bool = False,
    ) -> None:
        super().__init__(message, status=status, retryable=True)
        self.retry_after = retry_after
        # True when the request reached OpenRouter and may have been generated (and billed): a read
        # timeout on chat, an unreadable 200. Such a call is never repeated automatically.
        self.maybe_billed = maybe_billed


# --- Discord -----------------------------------------------------------------------------------
class DiscordError(AstraBotError):
    """Discord refused or failed a request. `permanent` errors must not be retried."""

    def __init__(
        self, message: str, *, status: int | None = None, code: int | None = None, permanent: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.permanent = permanent


# --- SNS ---------------------------------------------------------------------------------------
class AlertPublishFailed(AstraBotError):
    """SNS did not accept an alert; the alert state stays pending so the next run retries it."""
