"""The llm_call test world: constants, event builders and the World that a `world` fixture yields
(tests/unit/conftest.py builds it: llm_call's handler inside moto, OpenRouter and Discord on respx)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from types import ModuleType
from typing import Any

import respx

from astrabot.adapters.ledger import BalanceUpdate, Ledger
from astrabot.domain.credit import CreditStatus, ModelPrice

OR_BASE = "https://openrouter.test/api/v1"
DISCORD = "https://discord.test/api/v10"
APP_ID = "1100000000000000001"
TOKEN = "interaction-token-secret-abc"
MODEL = "openai/gpt-4o-mini"
FREE = "meta-llama/llama-3.3-70b-instruct:free"
PAID = ModelPrice(MODEL, Decimal(0), Decimal("0.00003"))
FREE_PRICE = ModelPrice(FREE)
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
EDIT = f"/webhooks/{APP_ID}/{TOKEN}/messages/@original"
FOLLOWUP = f"/webhooks/{APP_ID}/{TOKEN}"


def snowflake(at: datetime) -> str:
    return str((int(at.timestamp() * 1000) - 1420070400000) << 22)


def interaction(
    prompt: str = "what is a lambda?", *, at: datetime = NOW, iid: str | None = None
) -> dict[str, Any]:
    return {
        "id": iid or snowflake(at),
        "application_id": APP_ID,
        "type": 2,
        "token": TOKEN,
        "guild_id": "900",
        "member": {"user": {"id": "42", "username": "ada"}, "permissions": "0"},
        "data": {
            "id": "1",
            "name": "ask",
            "type": 1,
            "options": [{"name": "prompt", "type": 3, "value": prompt}],
        },
    }


def completion(
    text: str = "A Lambda is a function.",
    *,
    tokens: int = 50,
    cost: str = "0.0015",
    model: str = MODEL,
    finish: str = "stop",
) -> dict[str, Any]:
    return {
        "id": "gen-1",
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": 20,
            "completion_tokens": tokens,
            "total_tokens": 20 + tokens,
            "cost": float(cost),
        },
    }


ERROR_402 = {
    "error": {
        "code": 402,
        "message": "This request requires more credits, or fewer max_tokens. You requested up to 621 tokens, "
        "but can only afford 300. To increase, visit https://openrouter.ai/settings/credits and upgrade to a "
        "paid account",
        "metadata": {"limit_source": "openrouter_credits"},
    }
}


@dataclass
class World:
    app: ModuleType
    ledger: Ledger
    openrouter: respx.Route
    edit: respx.Route
    followup: respx.Route
    sleeps: list[float]

    def balance(self, usd: str, *, at: datetime = NOW) -> None:
        current = self.ledger.get_balance()
        self.ledger.write_balance(
            BalanceUpdate(
                remaining_usd=Decimal(usd),
                status=CreditStatus.HEALTHY,
                affordable_tokens=0,
                default_model=MODEL,
                prices={MODEL: PAID, FREE: FREE_PRICE},
                fetched_at=at,
                source="key",
            ),
            expected_version=current.version if current else None,
        )

    def run(self, event: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.app.lambda_handler(event or {"interaction": interaction()}, Context())  # type: ignore[no-any-return]

    def sent_bodies(self) -> list[dict[str, Any]]:
        """Edits of @original first, then follow-ups, each in the order sent."""
        return [json.loads(c.request.content) for c in self.edit.calls] + [
            json.loads(c.request.content) for c in self.followup.calls
        ]

    def chat_bodies(self) -> list[dict[str, Any]]:
        return [json.loads(c.request.content) for c in self.openrouter.calls]


class Context:
    function_name = "llm_call"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:llm_call"
    aws_request_id = "req-1"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000
