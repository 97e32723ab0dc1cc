"""The interactions endpoint under test, with spies where its AWS clients would be.

`Endpoint` installs InteractionDeps into functions/interactions/app.py (the `runtime` seam the unit
tests use) whose ledger, Lambda and SNS clients only record what is asked of them, and whose
verifier counts verdicts. So a test can say "401, and not one AWS call" for any request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from astrabot.adapters.ledger import Ledger
from astrabot.adapters.signature import SignatureVerifier
from astrabot.service.interactions import InteractionDeps
from astrabot.settings import Settings
from functions.interactions import app
from tests.reliability.support import FREE, LLM_FUNCTION, MODEL, PUBLIC_KEY, TABLE, Context


class SpyDynamo:
    """A DynamoDB client with an empty table: every call recorded."""

    def __init__(self, calls: list[str]) -> None:
        self._calls = calls

    def get_item(self, **_: Any) -> dict[str, Any]:
        self._calls.append("dynamodb:GetItem")
        return {}

    def query(self, **_: Any) -> dict[str, Any]:
        self._calls.append("dynamodb:Query")
        return {"Items": []}

    def __getattr__(self, name: str) -> Any:
        def call(**_: Any) -> dict[str, Any]:
            self._calls.append(f"dynamodb:{name}")
            return {}

        return call


class SpyLambda:
    def __init__(self, calls: list[str]) -> None:
        self._calls = calls
        self.payloads: list[bytes] = []

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        self._calls.append("lambda:Invoke")
        self.payloads.append(kwargs["Payload"])
        return {"StatusCode": 202}


class SpyPublisher:
    def __init__(self, calls: list[str]) -> None:
        self._calls = calls

    def publish(self, alert: Any) -> str:
        self._calls.append("sns:Publish")
        return "message-1"


class CountingVerifier(SignatureVerifier):
    def __init__(self, public_key_hex: str) -> None:
        super().__init__(public_key_hex)
        self.verdicts: list[bool] = []

    def verify(self, signature_hex: str | None, timestamp: str | None, body: bytes, now: float) -> bool:
        verdict = super().verify(signature_hex, timestamp, body, now)
        self.verdicts.append(verdict)
        return verdict


def endpoint_settings(**overrides: Any) -> Settings:
    base = Settings(
        table_name=TABLE,
        llm_function_name=LLM_FUNCTION,
        discord_public_key=PUBLIC_KEY,
        alert_topic_arn="arn:aws:sns:us-east-1:123456789012:astrabot-alerts",
        default_model=MODEL,
        fallback_models=(FREE,),
    )
    return replace(base, **overrides)


@dataclass
class Response:
    status: int
    body: dict[str, Any]
    content_type: str


@dataclass
class Endpoint:
    settings: Settings = field(default_factory=endpoint_settings)
    aws: list[str] = field(default_factory=list)  # every AWS call the handler made, in order
    served: int = 0

    def __post_init__(self) -> None:
        self.verifier = CountingVerifier(self.settings.discord_public_key)
        self.lambda_client = SpyLambda(self.aws)
        self.deps = InteractionDeps(
            settings=self.settings,
            verifier=self.verifier,
            ledger=lambda: Ledger(SpyDynamo(self.aws), TABLE),
            lambda_client=lambda: self.lambda_client,
            publisher=lambda: SpyPublisher(self.aws),  # type: ignore[arg-type,return-value]
        )

    def call(self, event: Any) -> Response:
        raw = app.lambda_handler(event, Context("interactions"))
        self.served += 1
        return Response(raw["statusCode"], json.loads(raw["body"]), raw["headers"]["Content-Type"])

    def reset(self) -> None:
        self.aws.clear()
        self.verifier.verdicts.clear()


def at(now: datetime) -> Any:
    """A replacement for the handler's clock."""
    return lambda: now
