"""The Discord interactions endpoint: verify, then PING, defer a chat command, or render a /nexus embed.

Order matters. Nothing is parsed and no AWS client is touched until the Ed25519 signature over the
raw bytes has passed (Discord sends forged requests on purpose). After that, a malformed request is
a 400, and any failure of ours is a polite ephemeral 200 so Discord never shows "interaction failed"
without a word. Chat commands are answered by llm_call, invoked asynchronously; this function only
refuses early when the cached balance already says nothing is affordable.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from astrabot import __version__
from astrabot import metric_names as m
from astrabot.adapters.ledger import BalanceSnapshot, ErrorRecord, Ledger, UsageTotals
from astrabot.adapters.signature import SignatureVerifier
from astrabot.domain import commands, dashboards, replies
from astrabot.domain.credit import Refusal
from astrabot.domain.interaction import (
    APPLICATION_COMMAND,
    CHAT_INPUT,
    MESSAGE_COMMAND,
    ChatRequest,
    InvalidInteraction,
    parse_chat_request,
    user_of,
)
from astrabot.domain.messages import safe_message
from astrabot.errors import AlertPublishFailed, LedgerUnavailable
from astrabot.http import HttpError, error_response, json_response, read_request
from astrabot.observability import MetricUnit, logger, metrics
from astrabot.service.grants import decide_grant
from astrabot.settings import Settings

if TYPE_CHECKING:
    from astrabot.adapters.sns import AlertPublisher

SIGNATURE_HEADER: Final = "x-signature-ed25519"
TIMESTAMP_HEADER: Final = "x-signature-timestamp"
PING: Final = 1
PONG: Final = 1
CHANNEL_MESSAGE: Final = 4
DEFERRED_CHANNEL_MESSAGE: Final = 5
EVENT_INVOKE_ACCEPTED: Final = 202

NOT_ADMIN_TEXT: Final = (
    "🔒 `/nexus` is for server managers (Manage Server or Administrator). "
    "An operator can also add you to NEXUS_ADMIN_USER_IDS or NEXUS_ADMIN_ROLE_IDS."
)
EMPTY_PROMPT_TEXT: Final = (
    "🤔 There is no text to answer: give a prompt, or pick a message that has text in it."
)
COULD_NOT_START_TEXT: Final = (
    "⚠️ AstraBot could not start on your question just now. Nothing was charged; please try again."
)
SOMETHING_WENT_WRONG_TEXT: Final = (
    "⚠️ Something went wrong on our side. Nothing was charged; please try again in a moment."
)
LEDGER_DOWN_TEXT: Final = (
    "⚠️ The ledger (DynamoDB) could not be read just now. `/nexus status` shows which component is down."
)


class BadInteraction(ValueError):
    """A validly signed request that is not an interaction we serve: answered with 400."""


@dataclass(frozen=True)
class InteractionDeps:
    """Everything the endpoint needs. Clients come from factories so a PING or a forged request
    never builds one; the handler memoises them per container."""

    settings: Settings
    verifier: SignatureVerifier
    ledger: Callable[[], Ledger]
    lambda_client: Callable[[], Any]
    publisher: Callable[[], AlertPublisher]


def handle(event: Any, deps: InteractionDeps, now: datetime) -> dict[str, Any]:
    """A Function URL event in, a Function URL response out. Never raises."""
    try:
        request = read_request(event)
    except HttpError as exc:
        return error_response(exc.status, str(exc))
    signature, timestamp = request.header(SIGNATURE_HEADER), request.header(TIMESTAMP_HEADER)
    if not deps.verifier.verify(signature, timestamp, request.body, now.timestamp()):
        _count(m.SIGNATURE_REJECTED)
        logger.info("signature rejected", extra={"has_signature": signature is not None})
        return error_response(401, "invalid request signature")
    interaction = _parse(request.body)
    kind = interaction.get("type") if interaction is not None else None
    if interaction is None or isinstance(kind, bool):
        return error_response(400, "not an interaction")
    if kind == PING:
        return json_response(200, {"type": PONG})
    if kind != APPLICATION_COMMAND:
        return error_response(400, "unsupported interaction type")
    try:
        return json_response(200, route_command(interaction, deps, now))
    except BadInteraction as exc:
        logger.info("bad interaction", extra={"reason": str(exc)})
        return error_response(400, str(exc))
    except Exception:
        logger.exception("interaction failed")
        return json_response(200, ephemeral(SOMETHING_WENT_WRONG_TEXT))


MAX_JSON_DEPTH: Final = 32  # Discord's deepest payloads nest about 8 levels


def _parse(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):  # bad UTF-8 is a ValueError too
        return None
    if not isinstance(value, dict) or _depth_exceeds(value, MAX_JSON_DEPTH):
        # Deep nesting that json.loads still accepts would overflow json.dumps a frame later.
        return None
    return value


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether `value` nests deeper than `limit` containers (iterative: no recursion to overflow)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _count(name: str) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)


def ephemeral(content: str | None = None, *, embeds: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """An immediate reply only the caller sees, that pings nobody."""
    return {"type": CHANNEL_MESSAGE, "data": safe_message(content, embeds=embeds, ephemeral=True)}


def route_command(interaction: dict[str, Any], deps: InteractionDeps, now: datetime) -> dict[str, Any]:
    data = interaction.get("data")
    if not isinstance(data, dict):
        raise BadInteraction("missing data")
    name, kind = data.get("name"), data.get("type", CHAT_INPUT)
    if (name, kind) in ((commands.ASK, CHAT_INPUT), (commands.ASK_MESSAGE, MESSAGE_COMMAND)):
        response = _chat(interaction, deps, now)
    elif (name, kind) == (commands.NEXUS, CHAT_INPUT):
        response = _nexus(interaction, data, deps, now)
    else:
        raise BadInteraction("unknown command")
    _count(m.COMMANDS_HANDLED)
    logger.info(
        "command handled",
        extra={
            "command": name,
            "response_type": response["type"],
            "user_id": user_of(interaction).get("id"),
            "guild_id": interaction.get("guild_id"),
        },
    )
    return response


# --- chat -----------------------------------------------------------------------------------------
def _chat(interaction: dict[str, Any], deps: InteractionDeps, now: datetime) -> dict[str, Any]:
    settings = deps.settings
    try:
        request = parse_chat_request(interaction)
    except InvalidInteraction as exc:
        if str(exc) == "empty prompt":
            return ephemeral(EMPTY_PROMPT_TEXT)
        raise BadInteraction(str(exc)) from None
    if len(request.prompt) > settings.max_prompt_chars:
        return ephemeral(
            f"✂️ That prompt is {len(request.prompt):,} characters; the limit is "
            f"{settings.max_prompt_chars:,}. Please shorten it and ask again."
        )
    offered = commands.model_choices(settings)
    if request.model is not None and request.model not in offered:
        return ephemeral(f"That model is not offered here. Choose one of: {', '.join(offered)}.")
    refusal = _precheck(request, deps, now)
    if refusal is not None:
        _count(m.REFUSALS)
        logger.info("refused before deferring: nothing affordable", extra={"model": refusal.model})
        return ephemeral(replies.refusal_text(refusal))
    return _start_llm_call(interaction, deps)


def _precheck(request: ChatRequest, deps: InteractionDeps, now: datetime) -> Refusal | None:
    """One cached-balance read. Refuse only when the balance item exists and rules everything out;
    with no item or no ledger, defer and let llm_call decide with its own read."""
    try:
        snapshot = deps.ledger().get_balance()
    except LedgerUnavailable as exc:
        logger.warning("precheck skipped: ledger unavailable", extra={"error": str(exc)})
        return None
    if snapshot is None:
        return None
    decision = decide_grant(
        deps.settings, snapshot, model=request.model, prompt=request.prompt, requested=None, now=now
    )
    return decision.plan if isinstance(decision.plan, Refusal) else None


def _start_llm_call(interaction: dict[str, Any], deps: InteractionDeps) -> dict[str, Any]:
    payload = json.dumps({"interaction": interaction}, separators=(",", ":")).encode()
    try:
        answer = deps.lambda_client().invoke(
            FunctionName=deps.settings.llm_function_name, InvocationType="Event", Payload=payload
        )
    except (ClientError, BotoCoreError):
        logger.exception("could not invoke llm_call", extra={"function": deps.settings.llm_function_name})
        return ephemeral(COULD_NOT_START_TEXT)
    status = answer.get("StatusCode") if isinstance(answer, Mapping) else None
    if status != EVENT_INVOKE_ACCEPTED:
        logger.error("llm_call invoke not accepted", extra={"status": status})
        return ephemeral(COULD_NOT_START_TEXT)
    return {"type": DEFERRED_CHANNEL_MESSAGE}


# --- /nexus ---------------------------------------------------------------------------------------
def _nexus(
    interaction: dict[str, Any], data: dict[str, Any], deps: InteractionDeps, now: datetime
) -> dict[str, Any]:
    settings = deps.settings
    if not commands.is_nexus_admin(
        interaction, user_ids=settings.nexus_admin_user_ids, role_ids=settings.nexus_admin_role_ids
    ):
        logger.info("nexus refused: not an admin", extra={"user_id": user_of(interaction).get("id")})
        return ephemeral(NOT_ADMIN_TEXT)
    subcommand, options = commands.subcommand_of(data)
    if subcommand == commands.NEXUS_CREDITS:
        return _credits(deps, now)
    if subcommand == commands.NEXUS_STATUS:
        return _status(deps, now)
    if subcommand == commands.NEXUS_DIAGNOSTICS:
        return _diagnostics(deps, now, test_alert=options.get(commands.TEST_ALERT_OPTION) is True)
    raise BadInteraction("unknown subcommand")


def _credits(deps: InteractionDeps, now: datetime) -> dict[str, Any]:
    ledger = deps.ledger()
    try:
        snapshot = ledger.get_balance()
        today, month = ledger.usage_for_day(now), ledger.usage_for_month(now)
        history = ledger.balance_history(now - dashboards.HISTORY_WINDOW)
    except LedgerUnavailable:
        logger.exception("nexus credits: ledger unavailable")
        return ephemeral(LEDGER_DOWN_TEXT)
    decision = decide_grant(deps.settings, snapshot, model=None, prompt="", requested=None, now=now)
    embed = dashboards.credits_embed(
        deps.settings,
        snapshot,
        plan=decision.plan,
        conservative=decision.conservative,
        today=today,
        month=month,
        history=history,
        now=now,
    )
    return ephemeral(embeds=[embed])


def _status(deps: InteractionDeps, now: datetime) -> dict[str, Any]:
    ledger = deps.ledger()
    snapshot: BalanceSnapshot | None = None
    heartbeats: dict[str, dict[str, Any]] = {}
    today: UsageTotals | None = None
    errors: list[ErrorRecord] = []
    try:
        ledger.ping()
        snapshot, heartbeats = ledger.get_balance(), ledger.heartbeats()
        today, errors = ledger.usage_for_day(now), ledger.recent_errors(1)
        ledger_ok = True
    except LedgerUnavailable:
        logger.exception("nexus status: ledger unavailable")
        ledger_ok = False
    embed = dashboards.status_embed(
        deps.settings,
        ledger_ok=ledger_ok,
        snapshot=snapshot,
        heartbeats=heartbeats,
        today=today,
        last_error=errors[0] if errors else None,
        now=now,
    )
    return ephemeral(embeds=[embed])


def versions() -> dict[str, str]:
    from aws_lambda_powertools.shared.version import VERSION

    return {"astrabot": __version__, "Python": platform.python_version(), "Powertools": VERSION}


def _diagnostics(deps: InteractionDeps, now: datetime, *, test_alert: bool) -> dict[str, Any]:
    ledger = deps.ledger()
    errors: list[ErrorRecord] | None = None
    today: UsageTotals | None = None
    month: UsageTotals | None = None
    snapshot: BalanceSnapshot | None = None
    try:
        errors = ledger.recent_errors(5)
        today, month = ledger.usage_for_day(now), ledger.usage_for_month(now)
        snapshot = ledger.get_balance()
    except LedgerUnavailable:
        logger.exception("nexus diagnostics: ledger unavailable")
    embed = dashboards.diagnostics_embed(
        deps.settings,
        errors=errors,
        today=today,
        month=month,
        versions=versions(),
        test_alert=_send_test_alert(deps, snapshot, now) if test_alert else None,
        now=now,
    )
    return ephemeral(embeds=[embed])


def _send_test_alert(deps: InteractionDeps, snapshot: BalanceSnapshot | None, now: datetime) -> str:
    if not deps.settings.alert_topic_arn:
        return "not sent: ALERT_TOPIC_ARN is not set"
    # Imported here: only this rare path pays for the alerting module at cold start.
    from astrabot.service.alerting import publish_test_alert

    try:
        message_id = publish_test_alert(deps.settings, deps.publisher(), snapshot, now)
    except AlertPublishFailed as exc:
        logger.exception("test alert failed")
        return f"❌ SNS did not accept the test alert: {exc}"
    return f"✅ Sent through SNS (message id `{message_id}`); alert_notifier posts it to the alert webhook."
