"""Shared building blocks of the reliability suite: signed requests, interactions, fault injection.

Faults are injected where the product meets the wire: botocore's `before-send` event (the request
is never applied, and botocore parses and retries the fault as it would a real one), the local
simulators' `fail_next`, or a wrapper around an adapter. Secrets used anywhere in the suite are
distinctive values listed in SECRETS, so the autouse scan in conftest can look for them in every
log record and every line printed.
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError
from nacl.signing import SigningKey

# --- keys and secrets ------------------------------------------------------------------------------
KEY = SigningKey(b"\x11" * 32)
PUBLIC_KEY = KEY.verify_key.encode().hex()
WRONG_KEYS = [SigningKey(bytes([n]) * 32) for n in range(0x20, 0x28)]
APP_ID = "900000000000000001"  # the Discord sink's default application id
GUILD_ID = "1100000000000000001"
ADMIN_USER, MEMBER_USER = "1100000000000000003", "1100000000000000004"
TABLE = "astrabot-reliability"
LLM_FUNCTION = "astrabot-llm-call"
MODEL = "openai/gpt-4o-mini"
FREE = "meta-llama/llama-3.3-70b-instruct:free"
# Prices whose products never need exponent notation (moto stores numbers as text).
PRICES = {MODEL: ("0.000001", "0.00003"), FREE: ("0", "0")}

OPENROUTER_API_KEY = "sk-or-v1-RELIABILITY-api-key-7f3c9e1d2b4a6c8e"
OPENROUTER_MANAGEMENT_KEY = "sk-or-v1-RELIABILITY-mgmt-key-5e7a9c1b3d"
DISCORD_BOT_TOKEN = "RELIABILITY.bot-token.Zq8Wv3Ks9Lp2Xm4Nb6"
WEBHOOK_TOKEN = "RELIABILITY-webhook-token-Hs72kLq9Pz"
INTERACTION_TOKEN_PREFIX = "RELIABILITY-interaction-token-"
SECRETS: tuple[str, ...] = (
    OPENROUTER_API_KEY,
    OPENROUTER_MANAGEMENT_KEY,
    DISCORD_BOT_TOKEN,
    WEBHOOK_TOKEN,
    INTERACTION_TOKEN_PREFIX,
    KEY.encode().hex(),  # the signing key stands in for Discord's private key
)

ADMINISTRATOR, MANAGE_GUILD, SEND_MESSAGES = 1 << 3, 1 << 5, 1 << 11
DISCORD_EPOCH_MS = 1420070400000
_ids = itertools.count(1)


# --- Lambda context ---------------------------------------------------------------------------------
@dataclass
class Context:
    """What Powertools reads from a Lambda context; `remaining_ms` drives idempotency's in-progress expiry."""

    function_name: str = "function"
    remaining_ms: int = 60_000
    memory_limit_in_mb: int = 256
    aws_request_id: str = "req-reliability"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


# --- interactions -----------------------------------------------------------------------------------
def snowflake(at: datetime | None = None) -> str:
    """A Discord id created at `at` (default now), unique in this process."""
    when = at or datetime.now(UTC)
    millis = int(when.timestamp() * 1000) - DISCORD_EPOCH_MS
    return str((millis << 22) | (next(_ids) & 0x3FFFFF))


def interaction_token() -> str:
    return f"{INTERACTION_TOKEN_PREFIX}{next(_ids):06d}"


def member(
    user_id: str = MEMBER_USER, permissions: int | str = 0, roles: list[str] | None = None
) -> dict[str, Any]:
    return {
        "user": {"id": user_id, "username": "someone"},
        "roles": roles or [],
        "permissions": str(permissions),
    }


def command(
    data: dict[str, Any], *, who: dict[str, Any] | None = None, at: datetime | None = None
) -> dict[str, Any]:
    return {
        "id": snowflake(at),
        "application_id": APP_ID,
        "type": 2,
        "version": 1,
        "token": interaction_token(),
        "guild_id": GUILD_ID,
        "member": who if who is not None else member(),
        "data": data,
    }


def ask(prompt: str, *, who: dict[str, Any] | None = None, at: datetime | None = None) -> dict[str, Any]:
    options = [{"name": "prompt", "type": 3, "value": prompt}]
    return command({"id": "1", "name": "ask", "type": 1, "options": options}, who=who, at=at)


def nexus(sub: str, *, who: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
    sub_options = [{"name": k, "type": 5, "value": v} for k, v in options.items()]
    data = {
        "id": "3",
        "name": "nexus",
        "type": 1,
        "options": [{"name": sub, "type": 1, "options": sub_options}],
    }
    return command(data, who=who)


ADMIN = member(ADMIN_USER, permissions=ADMINISTRATOR)


def encode(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def signed_headers(body: bytes, *, key: SigningKey = KEY, timestamp: str | None = None) -> dict[str, str]:
    timestamp = timestamp if timestamp is not None else str(int(time.time()))
    signature = key.sign(timestamp.encode() + body).signature.hex()
    return {"x-signature-ed25519": signature, "x-signature-timestamp": timestamp}


def function_url_event(
    body: bytes | None,
    *,
    headers: dict[str, str] | None = None,
    base64_body: bool = False,
) -> dict[str, Any]:
    """A Lambda Function URL (payload v2) event carrying exactly `body` and `headers`."""
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "headers": {"content-type": "application/json", **(headers or {})},
        "requestContext": {"http": {"method": "POST", "path": "/"}},
        "isBase64Encoded": base64_body,
    }
    if body is not None:
        event["body"] = base64.b64encode(body).decode() if base64_body else body.decode()
    return event


def signed_event(body: bytes, *, key: SigningKey = KEY, timestamp: str | None = None) -> dict[str, Any]:
    try:
        body.decode()
        binary = False
    except UnicodeDecodeError:  # as Function URLs do: bodies that are not text arrive base64-encoded
        binary = True
    return function_url_event(
        body, headers=signed_headers(body, key=key, timestamp=timestamp), base64_body=binary
    )


# --- observing the operator's view ---------------------------------------------------------------
def emf_metrics(stdout: str) -> list[str]:
    """Names of the CloudWatch EMF metrics printed to stdout, in order, one per emission."""
    names: list[str] = []
    for line in stdout.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        blob = json.loads(line)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            names += [metric["Name"] for metric in directive["Metrics"]]
    return names


def log_messages(records: Iterable[Any]) -> list[str]:
    return [record.getMessage() for record in records]


# --- AWS fault injection ------------------------------------------------------------------------
THROTTLED = "ProvisionedThroughputExceededException"
UNAVAILABLE = "EndpointConnectionError"
HUNG = "ReadTimeoutError"  # the endpoint accepted the connection and never answered
SNS_THROTTLED = "Throttling"
# A host moto's in-process stub does not serve, so a faulted request is never applied to the mock.
_NOWHERE = "http://fault-injected.invalid/"


@dataclass
class Fault:
    service: str
    error: str
    operations: frozenset[str] | None  # None: every operation of the service
    clients: frozenset[str] | None  # labels given to `attach`; None: every client
    times: int | None  # None: every matching call
    skip: int  # matching calls let through before the fault starts
    seen: int = 0
    injected: int = 0

    def takes(self, label: str, service: str, operation: str) -> bool:
        if service != self.service or (self.operations is not None and operation not in self.operations):
            return False
        if self.clients is not None and label not in self.clients:
            return False
        self.seen += 1
        if self.seen <= self.skip or (self.times is not None and self.injected >= self.times):
            return False
        self.injected += 1
        return True


class _Body:
    def __init__(self, payload: bytes) -> None:
        self._payload = payload

    def stream(self, **_: Any) -> Any:
        yield self._payload

    def read(self, *_: Any, **__: Any) -> bytes:
        return self._payload


@dataclass
class FaultPlan:
    """Faults for boto3 clients it is attached to, keyed by service and operation name."""

    faults: list[Fault] = field(default_factory=list)
    calls: list[tuple[str, str, str, bool]] = field(default_factory=list)  # client, service, op, faulted
    _retired: int = 0  # injections by faults already cleared
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(
        self,
        service: str,
        error: str,
        *,
        operations: Iterable[str] | None = None,
        clients: Iterable[str] | None = None,
        times: int | None = None,
        skip: int = 0,
    ) -> Fault:
        fault = Fault(
            service,
            error,
            None if operations is None else frozenset(operations),
            None if clients is None else frozenset(clients),
            times,
            skip,
        )
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        """Stop injecting (the outage is over); `injected` keeps counting what was injected."""
        with self._lock:
            self._retired += sum(f.injected for f in self.faults)
            self.faults.clear()

    @property
    def injected(self) -> int:
        """Faulted requests so far, cleared faults included."""
        with self._lock:
            return self._retired + sum(f.injected for f in self.faults)

    def attach(self, client: Any, label: str = "product") -> Any:
        """Fault `client`'s requests from now on; `label` lets a fault pick this client out."""
        service = client.meta.service_model.service_id.hyphenize()

        def before_send(request: Any, event_name: str, **_: Any) -> AWSResponse | None:
            return self._before_send(label, request, event_name)

        client.meta.events.register_first(f"before-send.{service}", before_send)
        return client

    def _before_send(self, label: str, request: Any, event_name: str) -> AWSResponse | None:
        _, service, operation = event_name.split(".", 2)
        with self._lock:
            fault = next((f for f in self.faults if f.takes(label, service, operation)), None)
            self.calls.append((label, service, operation, fault is not None))
        if fault is None:
            return None
        if fault.error == UNAVAILABLE:
            raise EndpointConnectionError(endpoint_url=request.url)
        if fault.error == HUNG:
            raise ReadTimeoutError(endpoint_url=request.url)
        request.url = _NOWHERE
        return _error_response(service, fault.error)


def _error_response(service: str, code: str) -> AWSResponse:
    status = 400 if "Throttl" in code or "Throughput" in code else 500
    if service == "sns":  # the query protocol answers errors in XML
        body = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>injected</Message></Error>"
            "<RequestId>fault</RequestId></ErrorResponse>"
        ).encode()
        headers = {"content-type": "text/xml"}
    else:
        body = json.dumps(
            {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": "injected"}
        ).encode()
        headers = {"content-type": "application/x-amz-json-1.0"}
    wire_headers = HTTPHeaders()
    for name, value in {"x-amzn-requestid": "fault", **headers}.items():
        wire_headers[name] = value
    return AWSResponse(_NOWHERE, status, wire_headers, _Body(body))


@dataclass
class AwsCalls:
    """Every AWS API call made in-process (service, operation), recorded below every client."""

    calls: list[tuple[str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, service: str, operation: str) -> None:
        with self._lock:
            self.calls.append((service, operation))

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self.calls)
