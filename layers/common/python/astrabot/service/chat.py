"""llm_call: answer one chat interaction without ever sending a request the balance cannot pay for.

Flow: one balance read -> grant -> atomic reservation (balance, user quota, monthly budget) ->
chat completion with `max_tokens` always set -> settle with the real `usage.cost` (release on
failure) -> usage records and metrics -> the Discord reply (edit @original, then follow-ups).
Money is booked before Discord is told, so a Discord outage never loses a usage record.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from astrabot import metric_names as m
from astrabot.adapters.ledger import BalanceSnapshot, Ledger, Reservation, ReservationRequest
from astrabot.adapters.openrouter import ChatResult
from astrabot.domain import replies
from astrabot.domain.credit import (
    Grant,
    ModelPrice,
    Refusal,
    affordable_tokens,
    estimate_prompt_tokens,
    status_for,
)
from astrabot.domain.interaction import ChatRequest
from astrabot.domain.messages import MESSAGE_CONTENT_LIMIT, safe_message, split_reply
from astrabot.errors import (
    DiscordError,
    InsufficientCredits,
    LedgerUnavailable,
    OpenRouterError,
    OpenRouterUnavailable,
    ReservationRejected,
)
from astrabot.observability import MetricUnit, logger, metrics
from astrabot.service.grants import decide_grant
from astrabot.service.poller import thresholds_of
from astrabot.settings import Settings

SYSTEM_PROMPT = (
    "You are AstraBot, a helpful assistant in a Discord server. Answer clearly and concisely; "
    "use Markdown that Discord renders."
)
MAX_RESERVE_ATTEMPTS = 3


class ChatModel(Protocol):
    def chat(
        self, *, model: str, messages: list[dict[str, str]], max_tokens: int, user: str | None = None
    ) -> ChatResult: ...


class Replier(Protocol):
    def edit_original(self, interaction_token: str, message: dict[str, Any]) -> dict[str, Any]: ...

    def create_followup(self, interaction_token: str, message: dict[str, Any]) -> dict[str, Any]: ...


@dataclass
class ChatDeps:
    settings: Settings
    ledger: Ledger
    openrouter: ChatModel
    discord: Replier
    clock: Callable[[], datetime]


@dataclass
class ChatOutcome:
    """What happened, for the handler's return value and the tests."""

    result: str  # answered | refused | quota | budget | failed | expired | ledger_down
    model: str | None = None
    max_tokens: int | None = None
    cost_usd: Decimal | None = None
    messages_sent: int = 0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "model": self.model,
            "max_tokens": self.max_tokens,
            "cost_usd": None if self.cost_usd is None else str(self.cost_usd),
            "messages_sent": self.messages_sent,
            "notes": self.notes,
        }


def _metric(name: str, value: float, unit: MetricUnit = MetricUnit.Count) -> None:
    metrics.add_metric(name=name, unit=unit, value=value)


class ChatTurn:
    """One interaction's answer. Kept as an object so each step reads as one short method."""

    def __init__(self, deps: ChatDeps, request: ChatRequest) -> None:
        self.deps = deps
        self.s = deps.settings
        self.request = request
        self.now = deps.clock()
        self.snapshot: BalanceSnapshot | None = None

    # --- the flow -------------------------------------------------------------------------------
    def run(self) -> ChatOutcome:
        if self.request.token_expired(self.now):
            logger.warning("interaction token expired before llm_call ran; no answer can be delivered")
            return ChatOutcome("expired")
        try:
            planned = self._reserve()
        except LedgerUnavailable as exc:
            logger.error(
                "ledger unavailable; refusing to answer without a reservation", extra={"error": str(exc)}
            )
            _metric(m.LLM_FAILURES, 1)
            return self._reply_only("ledger_down", replies.ledger_down_text())
        if isinstance(planned, ChatOutcome):
            return planned
        grant, reservation = planned
        return self._call_and_settle(grant, reservation)

    def _reserve(self) -> tuple[Grant, Reservation] | ChatOutcome:
        """Plan and reserve; on a lost race for the balance, re-read and plan again (bounded)."""
        snapshot = self.snapshot = self.deps.ledger.get_balance()
        requested = self._quota_left()
        if requested is not None and requested < self.s.min_grant_tokens:
            return self._reply_only("quota", replies.quota_text(self.s.user_daily_token_quota))
        for attempt in range(MAX_RESERVE_ATTEMPTS):
            decision = decide_grant(
                self.s,
                snapshot,
                model=self.request.model,
                prompt=self.request.prompt,
                requested=requested,
                now=self.now,
            )
            if decision.conservative:
                _metric(m.CONSERVATIVE_MODE, 1)
                logger.warning(
                    "conservative mode: balance missing or stale",
                    extra={"cap": self.s.conservative_max_tokens},
                )
            if isinstance(decision.plan, Refusal):
                return self._refuse(decision.plan)
            grant = decision.plan
            balance_known = snapshot is not None and snapshot.available_usd is not None
            try:
                reservation = self.deps.ledger.reserve(
                    ReservationRequest(
                        reservation_id=f"{self.request.interaction_id}#{attempt}",
                        amount_usd=grant.reserve_usd,
                        tokens=grant.max_tokens + decision.prompt_tokens,
                        user_id=self.request.user_id,
                        model=grant.model,
                        at=self.now,
                        user_daily_quota=self.s.user_daily_token_quota,
                        monthly_budget_usd=self.s.monthly_budget_usd,
                    ),
                    balance_known=balance_known,
                )
            except ReservationRejected as exc:
                _metric(m.RESERVATIONS_REJECTED, 1)
                logger.info("reservation rejected", extra={"reason": exc.reason, "attempt": attempt})
                if exc.reason == ReservationRejected.USER_QUOTA:
                    return self._reply_only("quota", replies.quota_text(self.s.user_daily_token_quota))
                if exc.reason == ReservationRejected.MONTHLY_BUDGET:
                    return self._reply_only("budget", replies.budget_text(self.s.monthly_budget_usd))
                if exc.reason == ReservationRejected.DUPLICATE:
                    continue  # an earlier, crashed attempt of this interaction holds it: take the next id
                snapshot = self.snapshot = self.deps.ledger.get_balance()
                continue
            _metric(m.TOKENS_REQUESTED, grant.requested_tokens)
            _metric(m.TOKENS_GRANTED, grant.max_tokens)
            if grant.is_fallback:
                _metric(m.FALLBACKS, 1)
            return grant, reservation
        return self._refuse(Refusal(self.request.model or self.s.default_model, 0, self.s.min_grant_tokens))

    def _quota_left(self) -> int | None:
        """With a daily quota, the completion tokens this user may still be granted today (the
        prompt counts against the quota too); None when there is no quota."""
        quota = self.s.user_daily_token_quota
        if not quota:
            return None
        used = self.deps.ledger.user_tokens_today(self.request.user_id, self.now)
        return min(self.s.default_max_tokens, quota - used - estimate_prompt_tokens(self.request.prompt))

    def _call_and_settle(self, grant: Grant, reservation: Reservation) -> ChatOutcome:
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": self.request.prompt},
        ]
        max_tokens, retried = grant.max_tokens, False
        started = time.perf_counter()
        while True:
            try:
                result = self.deps.openrouter.chat(
                    model=grant.model, messages=messages, max_tokens=max_tokens, user=self.request.user_id
                )
                break
            except InsufficientCredits as exc:
                retry_tokens = self._after_402(exc, grant.price)
                if retried or retry_tokens is None:
                    self._book_quietly("release", self.deps.ledger.release, reservation)
                    return self._refuse(Refusal(grant.model, exc.affordable_tokens, self.s.min_grant_tokens))
                max_tokens, retried = min(retry_tokens, max_tokens), True
            except OpenRouterError as exc:
                self._book_quietly("release", self.deps.ledger.release, reservation)
                return self._provider_failed(exc)
        _metric(m.LLM_LATENCY_MS, (time.perf_counter() - started) * 1000, MetricUnit.Milliseconds)
        cost = (
            result.cost
            if result.cost is not None
            else grant.price.worst_case_cost(result.prompt_tokens, result.completion_tokens)
        )
        self._book(reservation, result, cost, grant.model)
        _metric(m.LLM_COST_USD, float(cost), MetricUnit.NoUnit)
        cut = result.finish_reason == "length" and max_tokens < grant.requested_tokens
        line = replies.footer(
            grant,
            answered_by=result.model or grant.model,
            tokens=result.prompt_tokens + result.completion_tokens,
            cost_usd=cost,
            cut_by_cap=cut,
            retried_after_402=retried,
        )
        sent = self._send_answer(result.text, line)
        self._book_quietly(
            "heartbeat",
            self.deps.ledger.put_heartbeat,
            "llm_call",
            self.now,
            ok=True,
            model=result.model or grant.model,
        )
        logger.info(
            "answered",
            extra={
                "model": result.model,
                "granted": max_tokens,
                "requested": grant.requested_tokens,
                "reason": grant.reason.value,
                "completion_tokens": result.completion_tokens,
                "cost_usd": str(cost),
                "messages": sent,
            },
        )
        return ChatOutcome("answered", result.model or grant.model, max_tokens, cost, sent)

    def _book(self, reservation: Reservation, result: ChatResult, cost: Decimal, model: str) -> None:
        """Settle and record usage. A ledger outage here must not cost the user the answer they
        already paid for: log it; the poller reclaims the reservation and re-reads the real balance."""
        try:
            self.deps.ledger.settle(
                reservation, cost_usd=cost, tokens_used=result.prompt_tokens + result.completion_tokens
            )
            self.deps.ledger.record_usage(
                at=self.now,
                user_id=self.request.user_id,
                model=result.model or model,
                prompt_tokens=result.prompt_tokens,
                completion_tokens=result.completion_tokens,
                cost_usd=cost,
            )
        except LedgerUnavailable as exc:
            logger.error(
                "could not book usage; the next poll reconciles the balance",
                extra={
                    "error": str(exc),
                    "cost_usd": str(cost),
                    "model": result.model or model,
                    "prompt_tokens": result.prompt_tokens,
                    "completion_tokens": result.completion_tokens,
                    "user_id": self.request.user_id,
                    "reservation": reservation.reservation_id,
                },
            )

    def _book_quietly(self, what: str, write: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Bookkeeping that must never fail the turn: once OpenRouter may have been paid, raising would
        make Lambda retry the whole invocation and pay again. A lost write is logged; an unreleased
        reservation is reclaimed by the poller, and the next poll re-reads the real balance."""
        try:
            write(*args, **kwargs)
        except LedgerUnavailable as exc:
            logger.error(f"ledger write skipped: {what}", extra={"error": str(exc)})

    # --- failure paths --------------------------------------------------------------------------
    def _after_402(self, exc: InsufficientCredits, price: ModelPrice) -> int | None:
        """Correct the cached balance to OpenRouter's figure at once; the retry size or None."""
        _metric(m.REQUESTS_402, 1)
        self._book_quietly("count 402", self.deps.ledger.count_event, "402", self.now)
        affordable = exc.affordable_tokens
        logger.warning(
            "OpenRouter 402", extra={"affordable_tokens": affordable, "requested": exc.requested_tokens}
        )
        if affordable is None:
            return None
        default_price = self._default_price()
        affordable_usd = price.completion * affordable
        status_tokens = affordable_tokens(affordable_usd, default_price) if default_price else None
        self._book_quietly(
            "correct balance",
            self.deps.ledger.correct_available,
            affordable_usd,
            status=status_for(status_tokens, thresholds_of(self.s)) if status_tokens is not None else None,
            affordable_tokens=status_tokens,
        )
        return affordable if affordable >= self.s.min_grant_tokens else None

    def _default_price(self) -> ModelPrice | None:
        """From the balance item read for this turn: prices do not change within one answer."""
        return self.snapshot.prices.get(self.s.default_model) if self.snapshot else None

    def _provider_failed(self, exc: OpenRouterError) -> ChatOutcome:
        _metric(m.LLM_FAILURES, 1)
        self._book_quietly("count failure", self.deps.ledger.count_event, "failure", self.now)
        self._book_quietly(
            "record error", self.deps.ledger.record_error, "llm_call", f"OpenRouter: {exc}", self.now
        )
        self._book_quietly(
            "heartbeat", self.deps.ledger.put_heartbeat, "llm_call", self.now, ok=False, error=str(exc)[:300]
        )
        logger.error(
            "OpenRouter call failed",
            extra={"status": exc.status, "retryable": exc.retryable, "error": str(exc)},
        )
        if isinstance(exc, OpenRouterUnavailable):
            text = replies.unavailable_text(
                exc.status, retry_soon=(exc.retry_after or 0) <= 60, maybe_billed=exc.maybe_billed
            )
        else:
            text = replies.rejected_text(exc.status)
        return self._reply_only("failed", text)

    def _refuse(self, refusal: Refusal) -> ChatOutcome:
        _metric(m.REFUSALS, 1)
        self._book_quietly("count refusal", self.deps.ledger.count_event, "refusal", self.now)
        logger.warning(
            "refused: nothing affordable",
            extra={"model": refusal.model, "affordable": refusal.affordable_tokens},
        )
        return self._reply_only("refused", replies.refusal_text(refusal))

    # --- Discord --------------------------------------------------------------------------------
    def _reply_only(self, result: str, text: str) -> ChatOutcome:
        sent = self._deliver([safe_message(text)])
        return ChatOutcome(result, messages_sent=sent)

    def _send_answer(self, text: str, footer_line: str) -> int:
        chunks = split_reply(text, limit=MESSAGE_CONTENT_LIMIT)
        if len(chunks[-1]) + 1 + len(footer_line) <= MESSAGE_CONTENT_LIMIT:
            chunks[-1] = f"{chunks[-1]}\n{footer_line}"
        else:
            chunks.append(footer_line)
        return self._deliver([safe_message(chunk) for chunk in chunks])

    def _deliver(self, messages: list[dict[str, Any]]) -> int:
        """Edit @original with the first message, follow up with the rest. Returns how many arrived."""
        sent = 0
        try:
            for index, message in enumerate(messages):
                if index == 0:
                    self.deps.discord.edit_original(self.request.token, message)
                else:
                    self.deps.discord.create_followup(self.request.token, message)
                sent += 1
        except DiscordError as exc:
            # The answer (and its cost) is recorded; Discord just could not show it. Never retry
            # the whole invocation for this: that would pay OpenRouter twice.
            _metric(m.DISCORD_REPLY_FAILURES, 1)
            logger.error(
                "Discord reply failed",
                extra={"status": exc.status, "code": exc.code, "permanent": exc.permanent, "delivered": sent},
            )
            self._book_quietly(
                "record error",
                self.deps.ledger.record_error,
                "llm_call",
                f"Discord reply failed: {exc}",
                self.now,
            )
        return sent


def tell_ledger_down(discord: Replier, interaction: dict[str, Any]) -> None:
    """Replace the deferred "thinking…" with the ledger-down text (used when even the idempotency
    record could not be written). Never raises."""
    token = interaction.get("token")
    if not isinstance(token, str) or not token:
        return
    try:
        discord.edit_original(token, safe_message(replies.ledger_down_text()))
    except DiscordError as exc:
        logger.error("could not tell the user the ledger is down", extra={"status": exc.status})


def answer_interaction(deps: ChatDeps, request: ChatRequest) -> ChatOutcome:
    return ChatTurn(deps, request).run()
