"""Every CloudWatch metric name the code emits, in one place shared by the code and the template test.

Metrics live in the POWERTOOLS_METRICS_NAMESPACE namespace ("AstraBotNexus") with one dimension,
`service` (each function's POWERTOOLS_SERVICE_NAME). The dashboard and alarms in
`infra/template.yaml` may reference only names listed in ALL_METRICS; a unit test holds them to it.
"""

from __future__ import annotations

# --- credit_poller -------------------------------------------------------------------------------
# Emitted once for every poll that obtained a known balance: the "poller stale" alarm counts these.
CREDITS_REMAINING_USD = "CreditsRemainingUSD"
AFFORDABLE_TOKENS = "AffordableTokens"
# 0 healthy, 1 low, 2 emergency, 3 critical, -1 unknown (the "status critical" alarm watches >= 3).
CREDIT_STATUS_LEVEL = "CreditStatusLevel"
POLL_FAILURES = "PollFailures"
ALERTS_PUBLISHED = "AlertsPublished"
ALERT_PUBLISH_FAILURES = "AlertPublishFailures"
RESERVATIONS_RECLAIMED = "ReservationsReclaimed"

# --- llm_call ------------------------------------------------------------------------------------
TOKENS_REQUESTED = "TokensRequested"
TOKENS_GRANTED = "TokensGranted"
LLM_COST_USD = "LLMCostUSD"
LLM_LATENCY_MS = "LLMLatencyMs"
REQUESTS_402 = "Requests402"
RESERVATIONS_REJECTED = "ReservationsRejected"
CONSERVATIVE_MODE = "ConservativeMode"
LLM_FAILURES = "LLMFailures"
FALLBACKS = "Fallbacks"
REFUSALS = "Refusals"
DISCORD_REPLY_FAILURES = "DiscordReplyFailures"

# --- interactions --------------------------------------------------------------------------------
SIGNATURE_REJECTED = "SignatureRejected"
COMMANDS_HANDLED = "CommandsHandled"

# --- alert_notifier ------------------------------------------------------------------------------
ALERTS_DELIVERED = "AlertsDelivered"
ALERT_DELIVERY_FAILURES = "AlertDeliveryFailures"

ALL_METRICS: frozenset[str] = frozenset(
    {
        CREDITS_REMAINING_USD,
        AFFORDABLE_TOKENS,
        CREDIT_STATUS_LEVEL,
        POLL_FAILURES,
        ALERTS_PUBLISHED,
        ALERT_PUBLISH_FAILURES,
        RESERVATIONS_RECLAIMED,
        TOKENS_REQUESTED,
        TOKENS_GRANTED,
        LLM_COST_USD,
        LLM_LATENCY_MS,
        REQUESTS_402,
        RESERVATIONS_REJECTED,
        CONSERVATIVE_MODE,
        LLM_FAILURES,
        FALLBACKS,
        REFUSALS,
        DISCORD_REPLY_FAILURES,
        SIGNATURE_REJECTED,
        COMMANDS_HANDLED,
        ALERTS_DELIVERED,
        ALERT_DELIVERY_FAILURES,
    }
)
