"""What the Discord user reads: refusals, failures and the footer under an answer (pure)."""

from __future__ import annotations

from decimal import Decimal

from astrabot.domain.credit import Grant, GrantReason, Refusal
from astrabot.settings import TOPUP_URL


def refusal_text(refusal: Refusal) -> str:
    return (
        "🪫 **AstraBot is out of credits right now.** Even the fallback models cannot be afforded, so no "
        "answer was generated (nothing was charged). A server admin can top up at "
        f"<{TOPUP_URL}> — answers resume automatically within a few minutes."
    )


def quota_text(quota: int) -> str:
    return (
        f"⏳ You have used your daily allowance of {quota:,} tokens. It resets at 00:00 UTC — "
        "please try again tomorrow."
    )


def budget_text(budget_usd: Decimal) -> str:
    return (
        f"📉 This server's monthly AI budget (${budget_usd:.2f}) is used up. "
        "A server admin can raise MONTHLY_BUDGET_USD; otherwise answers resume next month."
    )


def unavailable_text(status: int | None, *, retry_soon: bool, maybe_billed: bool = False) -> str:
    advice = "Please try again in a minute." if retry_soon else "Please try again later."
    if maybe_billed:
        # The request reached the provider: it may have generated (and billed) an answer we never got.
        if status == 200:
            return f"⚠️ The AI provider's answer arrived unreadable, so there is nothing to show. {advice}"
        return f"⚠️ The AI provider took too long to answer, so there is nothing to show. {advice}"
    what = f" (HTTP {status})" if status else ""
    return f"⚠️ The AI provider could not answer{what}. Nothing was charged. {advice}"


def rejected_text(status: int | None) -> str:
    if status == 403:
        return "🚫 The AI provider declined this request (content moderation). Please rephrase it."
    if status in (401, 402):
        return (
            "⚠️ AstraBot is misconfigured right now; the server admins have been told. Please try again later."
        )
    return "⚠️ The AI provider rejected this request. Please rephrase it or try a shorter prompt."


def ledger_down_text() -> str:
    return (
        "⚠️ AstraBot could not check its credit balance just now. Nothing was charged. "
        "Please try again in a minute."
    )


def footer(
    grant: Grant,
    *,
    answered_by: str,
    tokens: int,
    cost_usd: Decimal | None,
    cut_by_cap: bool,
    retried_after_402: bool = False,
) -> str:
    """One subtext line under the answer: model, tokens, cost, and why the answer is what it is."""
    parts = [f"🤖 {answered_by}", f"{tokens:,} tokens"]
    if cost_usd is not None:
        parts.append(f"${cost_usd:.6f}".rstrip("0").rstrip(".") if cost_usd else "$0")
    if grant.is_fallback:
        parts.append(f"↪️ fallback: {grant.original_model} cannot be afforded right now")
    if cut_by_cap:
        if grant.reason is GrantReason.CONSERVATIVE:
            parts.append(f"✂️ capped at {grant.max_tokens} tokens while the balance is being re-checked")
        else:
            parts.append(f"✂️ trimmed at {grant.max_tokens} tokens by the credit cap")
    if retried_after_402:
        parts.append("🔁 retried with fewer tokens after a credit check")
    return "-# " + " · ".join(parts)
