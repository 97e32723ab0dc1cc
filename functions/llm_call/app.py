"""Async target of interactions: answer one chat interaction, credit-aware, exactly once.

Exactly-once rests on Powertools Idempotency (DynamoDB, same table, keyed by the interaction id):
an async retry or a duplicate delivery returns the stored outcome without calling OpenRouter or
Discord again. The Lambda context is registered so an in-progress record expires with the
invocation's remaining time (a timed-out run can be retried).
"""

from __future__ import annotations

from contextvars import ContextVar
from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyPersistenceLayerError

from astrabot import metric_names as m
from astrabot.adapters import aws
from astrabot.adapters.discord import DiscordClient
from astrabot.adapters.openrouter import OpenRouterClient
from astrabot.domain.interaction import InvalidInteraction, parse_chat_request
from astrabot.observability import MetricUnit, logger, metrics
from astrabot.runtime import ledger_for, settings_for, utcnow
from astrabot.service.chat import ChatDeps, answer_interaction, tell_ledger_down

REQUIRED = ("TABLE_NAME", "OPENROUTER_API_KEY", "DISCORD_APPLICATION_ID")
IDEMPOTENCY_TTL_SECONDS = 24 * 3600

_settings = settings_for("llm_call", REQUIRED)
_dynamodb = aws.client("dynamodb")
idempotency_config = IdempotencyConfig(
    event_key_jmespath="interaction.id",
    raise_on_no_idempotency_key=True,
    expires_after_seconds=IDEMPOTENCY_TTL_SECONDS,
)
persistence = DynamoDBPersistenceLayer(
    table_name=_settings.table_name,
    key_attr="pk",
    sort_key_attr="sk",
    static_pk_value="IDEMPOTENCY#llm_call",
    expiry_attr="expires_at",
    boto3_client=_dynamodb,
)


@cache
def _deps() -> ChatDeps:
    s = _settings
    return ChatDeps(
        settings=s,
        ledger=ledger_for(s, _dynamodb),
        openrouter=OpenRouterClient(s.openrouter_api_key.reveal(), base_url=s.openrouter_base_url),
        discord=DiscordClient(application_id=s.discord_application_id, base_url=s.discord_api_base_url),
        clock=utcnow,
    )


# The outcome of this invocation's turn, once it has one: Powertools can still fail *after* the turn
# (saving the COMPLETED record), and that must neither overwrite the answer nor trigger a paid retry.
_turn_outcome: ContextVar[dict[str, Any] | None] = ContextVar("turn_outcome", default=None)


@idempotent(config=idempotency_config, persistence_store=persistence)
def _answer(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        request = parse_chat_request(event.get("interaction"))  # type: ignore[arg-type]
    except InvalidInteraction as exc:
        logger.error("llm_call got an event it cannot answer", extra={"reason": str(exc)})
        return {"result": "invalid", "reason": str(exc)}
    logger.append_keys(interaction_id=request.interaction_id, user_id=request.user_id)
    outcome = answer_interaction(_deps(), request).as_dict()
    _turn_outcome.set(outcome)
    return outcome


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    idempotency_config.register_lambda_context(context)
    interaction = event.get("interaction") if isinstance(event, dict) else None
    if not isinstance(interaction, dict) or not interaction.get("id"):
        logger.error("llm_call event has no interaction id; dropped", extra={"keys": sorted(event or {})})
        return {"result": "invalid", "reason": "no interaction id"}
    _turn_outcome.set(None)
    try:
        return _answer(event, context)
    except IdempotencyPersistenceLayerError:
        finished = _turn_outcome.get()
        if finished is not None:
            # The answer was delivered and booked; only marking the record COMPLETED failed.
            logger.error("answered, but the idempotency record could not be completed", exc_info=True)
            return finished
        # The table (ledger and idempotency store) is down before anything was reserved or called.
        # Tell the user now instead of leaving "thinking…" (the edit is safe to repeat), then raise
        # so Lambda's async retry can still answer: its reply replaces this one.
        logger.exception("llm_call: DynamoDB unavailable before the answer started; Lambda will retry")
        metrics.add_metric(name=m.LLM_FAILURES, unit=MetricUnit.Count, value=1)
        tell_ledger_down(_deps().discord, interaction)
        raise
