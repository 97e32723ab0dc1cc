"""Discord's interactions endpoint (Lambda Function URL, payload v2). Must answer within 3 s.

Cold start is kept small: no pydantic, no Powertools utilities beyond Logger/Metrics. The settings
and the verify key are built on the first call; each AWS client only when a request first needs
it, so PINGs and forged requests never build one. Tests replace `runtime` with their own deps.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from botocore.config import Config

from astrabot.adapters import aws
from astrabot.adapters.signature import SignatureVerifier
from astrabot.observability import logger, metrics
from astrabot.runtime import ledger_for, settings_for, utcnow
from astrabot.service.interactions import InteractionDeps, handle

REQUIRED = ("DISCORD_PUBLIC_KEY", "LLM_FUNCTION_NAME", "TABLE_NAME")
# Discord waits 3 s for the whole answer: fail fast rather than retry into a timeout. Two attempts
# in all (`total_max_attempts`; botocore's `max_attempts` counts retries) of at most 0.8 s each keep
# a hung DynamoDB precheck under 2 s, leaving time for the llm_call invoke.
FAST = Config(connect_timeout=0.5, read_timeout=0.8, retries={"total_max_attempts": 2, "mode": "standard"})


@cache
def runtime() -> InteractionDeps:
    settings = settings_for("interactions", REQUIRED)

    @cache
    def publisher() -> Any:
        from astrabot.adapters.sns import AlertPublisher

        return AlertPublisher(aws.client("sns", config=FAST), settings.alert_topic_arn)

    return InteractionDeps(
        settings=settings,
        verifier=SignatureVerifier(settings.discord_public_key),
        ledger=cache(lambda: ledger_for(settings, aws.client("dynamodb", config=FAST))),
        lambda_client=cache(lambda: aws.client("lambda", config=FAST)),
        publisher=publisher,
    )


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle(event, runtime(), utcnow())
