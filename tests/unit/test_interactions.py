"""The interactions endpoint driven through lambda_handler with Function URL events signed in the test."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import ANY, Stubber
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from astrabot.adapters.ledger import BalanceUpdate, Ledger
from astrabot.adapters.signature import SignatureVerifier
from astrabot.adapters.sns import AlertPublisher
from astrabot.domain.credit import CreditStatus, ModelPrice
from astrabot.errors import LedgerUnavailable
from astrabot.service import interactions
from astrabot.service.interactions import InteractionDeps
from astrabot.settings import TOPUP_URL, Settings
from functions.interactions import app

KEY = SigningKey(b"\x07" * 32)
WRONG_KEY = SigningKey(b"\x08" * 32)
PUBLIC_KEY = KEY.verify_key.encode().hex()
TABLE = "astrabot-test"
LLM_FUNCTION = "astrabot-llm-call"
TOPIC = "astrabot-alerts"
TOPIC_ARN = f"arn:aws:sns:us-east-1:123456789012:{TOPIC}"
MODEL = "openai/gpt-4o-mini"
PAID_FALLBACK = "mistralai/mistral-small"
FREE = "meta-llama/llama-3.3-70b-instruct:free"
PRICES = {
    MODEL: ModelPrice(MODEL, Decimal("0.00000015"), Decimal("0.0000006")),
    PAID_FALLBACK: ModelPrice(PAID_FALLBACK, Decimal("0.0000001"), Decimal("0.0000003")),
}
EVENTS = Path(__file__).resolve().parents[2] / "events"
ASKER, OPERATOR, LISTED_USER, LISTED_ROLE = "1100000000000000004", "1100000000000000003", "1199", "1555"


# --- building signed Function URL events ----------------------------------------------------------
def function_url_event(
    body: bytes,
    *,
    key: SigningKey = KEY,
    timestamp: str | None = None,
    base64_body: bool | None = None,
    header_case: Callable[[str], str] = str.lower,
    extra_headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    timestamp = timestamp or str(int(time.time()))
    if base64_body is None:  # as Function URLs do: binary bodies arrive base64-encoded
        try:
            body.decode()
            base64_body = False
        except UnicodeDecodeError:
            base64_body = True
    signature = key.sign(timestamp.encode() + body).signature.hex()
    headers = {
        header_case("Content-Type"): "application/json",
        header_case("X-Signature-Ed25519"): signature,
        header_case("X-Signature-Timestamp"): timestamp,
        **(extra_headers or {}),
    }
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "headers": headers,
        "requestContext": {"http": {"method": "POST", "path": "/"}},
        "body": base64.b64encode(body).decode() if base64_body else body.decode(),
        "isBase64Encoded": base64_body,
    }


def encode(interaction: dict[str, Any]) -> bytes:
    return json.dumps(interaction, separators=(",", ":")).encode()


def member(user_id: str = ASKER, permissions: str = "0", roles: list[str] | None = None) -> dict[str, Any]:
    return {"user": {"id": user_id, "username": "someone"}, "roles": roles or [], "permissions": permissions}


def command(
    data: dict[str, Any], *, who: dict[str, Any] | None = None, dm_user: str | None = None
) -> dict[str, Any]:
    interaction: dict[str, Any] = {
        "id": "1300000000000000002",
        "application_id": "1234567890123456789",
        "type": 2,
        "version": 1,
        "token": "interaction-token-secret",
        "data": data,
    }
    if dm_user is not None:
        interaction["user"] = {"id": dm_user, "username": "dm"}
    else:
        interaction.update(guild_id="1100000000000000001", member=who or member())
    return interaction


def ask(prompt: str, model: str | None = None) -> dict[str, Any]:
    options = [{"name": "prompt", "type": 3, "value": prompt}]
    if model:
        options.append({"name": "model", "type": 3, "value": model})
    return command({"id": "1", "name": "ask", "type": 1, "options": options})


def ask_message(content: str) -> dict[str, Any]:
    target = "1400000000000000001"
    return command(
        {
            "id": "2",
            "name": "Ask AstraBot",
            "type": 3,
            "target_id": target,
            "resolved": {"messages": {target: {"id": target, "content": content}}},
        }
    )


def nexus(
    sub: str, *, who: dict[str, Any] | None = None, dm_user: str | None = None, **options: Any
) -> dict[str, Any]:
    sub_options = [{"name": k, "type": 5, "value": v} for k, v in options.items()]
    data = {
        "id": "3",
        "name": "nexus",
        "type": 1,
        "options": [{"name": sub, "type": 1, "options": sub_options}],
    }
    return command(data, who=who, dm_user=dm_user)


ADMIN = member(OPERATOR, permissions=str(1 << 5))


# --- fakes and deps -------------------------------------------------------------------------------
class Context:
    function_name = "interactions"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:interactions"
    aws_request_id = "req-1"


class FakeLambda:
    """Records async invokes (moto cannot run Lambda without Docker)."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.error = error

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        if self.error:
            raise self.error
        return {"StatusCode": 202}


class Untouchable:
    """A client whose every method fails the test: proves no AWS call was made."""

    def __getattr__(self, name: str) -> Any:
        pytest.fail(f"AWS client used before the signature was verified: {name}")


class BrokenLedger:
    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise LedgerUnavailable("DynamoDB read balance failed: ProvisionedThroughputExceededException")

        return fail


def make_settings(**overrides: Any) -> Settings:
    base = Settings(
        table_name=TABLE,
        llm_function_name=LLM_FUNCTION,
        discord_public_key=PUBLIC_KEY,
        default_model=MODEL,
        fallback_models=(FREE,),
        max_prompt_chars=200,
        nexus_admin_user_ids=frozenset({LISTED_USER}),
        nexus_admin_role_ids=frozenset({LISTED_ROLE}),
    )
    return replace(base, **overrides)


def make_deps(
    settings: Settings | None = None, *, ledger: Any = None, lambda_client: Any = None, publisher: Any = None
) -> InteractionDeps:
    s = settings or make_settings()
    return InteractionDeps(
        settings=s,
        verifier=SignatureVerifier(s.discord_public_key),
        ledger=lambda: ledger if ledger is not None else Ledger(Untouchable(), TABLE),
        lambda_client=lambda: lambda_client if lambda_client is not None else Untouchable(),
        publisher=lambda: publisher if publisher is not None else AlertPublisher(Untouchable(), "arn"),
    )


@pytest.fixture
def use(monkeypatch: pytest.MonkeyPatch) -> Callable[[InteractionDeps], InteractionDeps]:
    def install(deps: InteractionDeps) -> InteractionDeps:
        monkeypatch.setattr(app, "runtime", lambda: deps)
        return deps

    return install


@pytest.fixture
def untouchable(use: Callable[[InteractionDeps], InteractionDeps]) -> InteractionDeps:
    return use(make_deps())


@pytest.fixture
def lambda_client() -> FakeLambda:
    return FakeLambda()


@pytest.fixture
def chat(
    use: Callable[[InteractionDeps], InteractionDeps], ledger: Ledger, lambda_client: FakeLambda
) -> InteractionDeps:
    return use(make_deps(ledger=ledger, lambda_client=lambda_client))


def call(event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = app.lambda_handler(event, Context())
    assert response["headers"]["Content-Type"] == "application/json"
    return response["statusCode"], json.loads(response["body"])


def write_balance(
    ledger: Ledger, remaining: str, *, status: CreditStatus = CreditStatus.HEALTHY, tokens: int = 100_000
) -> None:
    ledger.write_balance(
        BalanceUpdate(
            remaining_usd=Decimal(remaining),
            status=status,
            affordable_tokens=tokens,
            default_model=MODEL,
            prices=PRICES,
            fetched_at=datetime.now(UTC),
            source="key",
            limit_usd=Decimal(10),
            usage_usd=Decimal(9),
        ),
        expected_version=None,
    )


def invoked_interaction(client: FakeLambda) -> dict[str, Any]:
    (invoke,) = client.calls
    assert (invoke["FunctionName"], invoke["InvocationType"]) == (LLM_FUNCTION, "Event")
    payload: dict[str, Any] = json.loads(invoke["Payload"])
    assert set(payload) == {"interaction"}
    return payload["interaction"]  # type: ignore[no-any-return]


def ephemeral_text(body: dict[str, Any]) -> str:
    assert body["type"] == 4
    assert body["data"]["flags"] == 64
    assert body["data"]["allowed_mentions"] == {"parse": []}
    return str(body["data"].get("content", ""))


def only_embed(body: dict[str, Any]) -> dict[str, Any]:
    ephemeral_text(body)
    (embed,) = body["data"]["embeds"]
    return embed  # type: ignore[no-any-return]


# --- PING and the transport ----------------------------------------------------------------------
def test_given_signed_ping_when_handled_then_pong_as_json(untouchable: InteractionDeps) -> None:
    assert call(function_url_event(b'{"type":1}')) == (200, {"type": 1})


@pytest.mark.parametrize("case", [str.lower, str.upper, str.title])
def test_given_header_names_in_any_case_when_handled_then_ping_verified(
    untouchable: InteractionDeps, case: Callable[[str], str]
) -> None:
    assert call(function_url_event(b'{"type":1}', header_case=case))[0] == 200


def test_given_base64_body_when_handled_then_decoded_bytes_are_verified(untouchable: InteractionDeps) -> None:
    assert call(function_url_event(b'{"type": 1}', base64_body=True)) == (200, {"type": 1})


def test_given_invalid_base64_when_handled_then_400(untouchable: InteractionDeps) -> None:
    event = function_url_event(b'{"type":1}')
    event.update(body="not*base64!", isBase64Encoded=True)
    assert call(event)[0] == 400


def test_given_body_over_the_cap_when_handled_then_413_without_verifying(
    untouchable: InteractionDeps,
) -> None:
    big = b'{"type":1,"pad":"' + b"x" * (64 * 1024) + b'"}'
    assert call(function_url_event(big))[0] == 413
    assert call(function_url_event(big, base64_body=True))[0] == 413


# --- rejections: 401 before anything else --------------------------------------------------------
def test_given_signature_by_wrong_key_when_handled_then_401_and_metric(
    untouchable: InteractionDeps, capsys: pytest.CaptureFixture[str]
) -> None:
    status, body = call(function_url_event(b'{"type":1}', key=WRONG_KEY))
    assert (status, body) == (401, {"error": "invalid request signature"})
    assert '"SignatureRejected"' in capsys.readouterr().out


def test_given_forged_admin_permissions_signed_by_wrong_key_then_401_and_no_aws_call(
    untouchable: InteractionDeps,
) -> None:
    forged = nexus("credits", who=member(permissions=str(1 << 3)))
    assert call(function_url_event(encode(forged), key=WRONG_KEY))[0] == 401


@pytest.mark.parametrize("skew", [-301, 301])
def test_given_stale_or_future_timestamp_when_handled_then_401(
    untouchable: InteractionDeps, skew: int
) -> None:
    timestamp = str(int(time.time()) + skew)
    assert call(function_url_event(b'{"type":1}', timestamp=timestamp))[0] == 401


@pytest.mark.parametrize("missing", ["x-signature-ed25519", "x-signature-timestamp"])
def test_given_missing_signature_header_when_handled_then_401(
    untouchable: InteractionDeps, missing: str
) -> None:
    event = function_url_event(b'{"type":1}')
    del event["headers"][missing]
    assert call(event)[0] == 401


def test_given_signature_header_twice_when_comma_joined_then_401(untouchable: InteractionDeps) -> None:
    event = function_url_event(b'{"type":1}')
    event["headers"]["X-Signature-Ed25519"] = event["headers"]["x-signature-ed25519"]
    assert call(event)[0] == 401


def test_given_body_changed_after_signing_when_handled_then_401(untouchable: InteractionDeps) -> None:
    event = function_url_event(encode(nexus("credits", who=member())))
    event["body"] = event["body"].replace('"permissions":"0"', '"permissions":"8"')
    assert call(event)[0] == 401


# --- validly signed but not ours: 400, never 500 -------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe garbage",
        b"[1,2,3]",
        b'"type"',
        b'{"type":true}',
        b'{"type":3,"data":{"custom_id":"x"}}',
        b'{"type":4}',
        b'{"type":2}',
        b"[" * 5000 + b"]" * 5000,
    ],
)
def test_given_validly_signed_garbage_or_unknown_type_then_400(
    untouchable: InteractionDeps, body: bytes
) -> None:
    assert call(function_url_event(body))[0] == 400


def test_given_unknown_command_when_handled_then_400(untouchable: InteractionDeps) -> None:
    interaction = command({"id": "9", "name": "dance", "type": 1})
    assert call(function_url_event(encode(interaction)))[0] == 400


def test_given_unknown_nexus_subcommand_when_handled_then_400(untouchable: InteractionDeps) -> None:
    assert call(function_url_event(encode(nexus("selfdestruct", who=ADMIN))))[0] == 400


# --- chat commands -------------------------------------------------------------------------------
def test_given_ask_when_handled_then_llm_call_invoked_async_and_deferred(
    chat: InteractionDeps, ledger: Ledger, lambda_client: FakeLambda, capsys: pytest.CaptureFixture[str]
) -> None:
    write_balance(ledger, "5.00")
    interaction = ask("What is a Lambda layer?")
    assert call(function_url_event(encode(interaction))) == (200, {"type": 5})
    assert invoked_interaction(lambda_client) == interaction
    assert '"CommandsHandled"' in capsys.readouterr().out


def test_given_unicode_escapes_in_body_when_asked_then_raw_bytes_verified_and_text_decoded(
    chat: InteractionDeps, lambda_client: FakeLambda
) -> None:
    raw = encode(ask("PLACEHOLDER")).replace(b"PLACEHOLDER", b"caf\\u00e9 \\ud83d\\ude00 \\u0040everyone")
    assert call(function_url_event(raw)) == (200, {"type": 5})
    assert invoked_interaction(lambda_client)["data"]["options"][0]["value"] == "café 😀 @everyone"


def test_given_ask_with_offered_model_when_handled_then_deferred(
    chat: InteractionDeps, lambda_client: FakeLambda
) -> None:
    assert call(function_url_event(encode(ask("hi", model=FREE)))) == (200, {"type": 5})
    assert len(lambda_client.calls) == 1


def test_given_ask_with_model_not_offered_then_ephemeral_refusal_and_no_invoke(
    chat: InteractionDeps, lambda_client: FakeLambda
) -> None:
    status, body = call(function_url_event(encode(ask("hi", model="openai/o1-pro"))))
    assert status == 200
    assert "not offered" in ephemeral_text(body)
    assert lambda_client.calls == []


def test_given_message_command_when_handled_then_deferred_with_verbatim_interaction(
    chat: InteractionDeps, lambda_client: FakeLambda
) -> None:
    interaction = ask_message("Is this claim true?")
    assert call(function_url_event(encode(interaction))) == (200, {"type": 5})
    assert invoked_interaction(lambda_client) == interaction


def test_given_message_without_text_when_asked_then_ephemeral_hint(
    chat: InteractionDeps, lambda_client: FakeLambda
) -> None:
    status, body = call(function_url_event(encode(ask_message("   "))))
    assert status == 200
    assert ephemeral_text(body) == interactions.EMPTY_PROMPT_TEXT
    assert lambda_client.calls == []


def test_given_prompt_over_the_limit_when_asked_then_ephemeral_refusal(
    chat: InteractionDeps, lambda_client: FakeLambda
) -> None:
    status, body = call(function_url_event(encode(ask("x" * 201))))
    assert status == 200
    assert "201 characters; the limit is 200" in ephemeral_text(body)
    assert lambda_client.calls == []


def test_given_near_zero_balance_when_asked_then_refused_at_once_naming_the_top_up_page(
    use: Callable[[InteractionDeps], InteractionDeps], ledger: Ledger, lambda_client: FakeLambda
) -> None:
    use(
        make_deps(make_settings(fallback_models=(PAID_FALLBACK,)), ledger=ledger, lambda_client=lambda_client)
    )
    write_balance(ledger, "0.00001", status=CreditStatus.CRITICAL, tokens=16)
    status, body = call(function_url_event(encode(ask("hello"))))
    assert status == 200
    assert TOPUP_URL in ephemeral_text(body)
    assert lambda_client.calls == []


def test_given_near_zero_balance_but_free_fallback_when_asked_then_deferred(
    chat: InteractionDeps, ledger: Ledger, lambda_client: FakeLambda
) -> None:
    write_balance(ledger, "0.00001", status=CreditStatus.CRITICAL, tokens=16)
    assert call(function_url_event(encode(ask("hello")))) == (200, {"type": 5})


def test_given_no_balance_item_yet_when_asked_then_deferred_for_llm_call_to_decide(
    chat: InteractionDeps, lambda_client: FakeLambda
) -> None:
    assert call(function_url_event(encode(ask("hello")))) == (200, {"type": 5})
    assert len(lambda_client.calls) == 1


def test_given_ledger_unavailable_when_asked_then_deferred_anyway(
    use: Callable[[InteractionDeps], InteractionDeps], lambda_client: FakeLambda
) -> None:
    use(make_deps(ledger=BrokenLedger(), lambda_client=lambda_client))
    assert call(function_url_event(encode(ask("hello")))) == (200, {"type": 5})
    assert len(lambda_client.calls) == 1


def test_given_invoke_fails_when_asked_then_ephemeral_could_not_start_and_logged(
    use: Callable[[InteractionDeps], InteractionDeps], ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    throttled = ClientError(
        {"Error": {"Code": "TooManyRequestsException", "Message": "Rate exceeded"}}, "Invoke"
    )
    use(make_deps(ledger=ledger, lambda_client=FakeLambda(error=throttled)))
    status, body = call(function_url_event(encode(ask("hello"))))
    assert status == 200
    assert ephemeral_text(body) == interactions.COULD_NOT_START_TEXT
    assert "could not invoke llm_call" in caplog.text


def test_given_real_lambda_client_when_asked_then_invoke_matches_the_api_model(
    use: Callable[[InteractionDeps], InteractionDeps], ledger: Ledger
) -> None:
    client = boto3.client("lambda", region_name="us-east-1")
    with Stubber(client) as stub:
        stub.add_response(
            "invoke",
            {"StatusCode": 202},
            {"FunctionName": LLM_FUNCTION, "InvocationType": "Event", "Payload": ANY},
        )
        use(make_deps(ledger=ledger, lambda_client=client))
        assert call(function_url_event(encode(ask("hello")))) == (200, {"type": 5})
        stub.assert_no_pending_responses()


# --- /nexus ---------------------------------------------------------------------------------------
@pytest.fixture
def admin_deps(use: Callable[[InteractionDeps], InteractionDeps], ledger: Ledger) -> InteractionDeps:
    return use(make_deps(make_settings(alert_topic_arn=TOPIC_ARN), ledger=ledger))


def test_given_admin_when_nexus_credits_then_ephemeral_embed_with_the_balance(
    admin_deps: InteractionDeps, ledger: Ledger
) -> None:
    write_balance(ledger, "1.25")
    status, body = call(function_url_event(encode(nexus("credits", who=ADMIN))))
    embed = only_embed(body)
    assert status == 200
    assert embed["title"] == "🟢 Credits: healthy"
    assert "$1.25" in json.dumps(embed, ensure_ascii=False)


def test_given_admin_when_nexus_status_then_one_verdict_over_components(
    admin_deps: InteractionDeps, ledger: Ledger
) -> None:
    write_balance(ledger, "1.25")
    ledger.put_heartbeat("credit_poller", datetime.now(UTC), ok=True)
    embed = only_embed(call(function_url_event(encode(nexus("status", who=ADMIN))))[1])
    assert embed["title"] == "🟢 All systems go"
    assert any(f["name"] == "🟢 DynamoDB" for f in embed["fields"])


def test_given_ledger_down_when_nexus_status_then_dynamodb_reported_down(
    use: Callable[[InteractionDeps], InteractionDeps],
) -> None:
    use(make_deps(ledger=BrokenLedger()))
    embed = only_embed(call(function_url_event(encode(nexus("status", who=ADMIN))))[1])
    assert embed["title"].startswith("🔴 Action needed: DynamoDB")


def test_given_admin_when_nexus_diagnostics_then_masked_config_and_versions(
    use: Callable[[InteractionDeps], InteractionDeps], ledger: Ledger
) -> None:
    from astrabot.settings import Secret

    use(make_deps(make_settings(openrouter_api_key=Secret("sk-or-v1-supersecretvalue-1234")), ledger=ledger))
    embed = only_embed(call(function_url_event(encode(nexus("diagnostics", who=ADMIN))))[1])
    text = json.dumps(embed)
    assert "supersecretvalue" not in text
    assert "OPENROUTER_API_KEY = ****1234" in embed["description"]
    assert any(f["name"] == "Versions" and "astrabot" in f["value"] for f in embed["fields"])


def test_given_test_alert_when_nexus_diagnostics_then_published_through_sns(
    use: Callable[[InteractionDeps], InteractionDeps], ledger: Ledger
) -> None:
    sns = boto3.client("sns", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    topic = sns.create_topic(Name=TOPIC)["TopicArn"]
    queue = sqs.create_queue(QueueName="alerts")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"}
    )
    settings = make_settings(alert_topic_arn=topic)
    use(make_deps(settings, ledger=ledger, publisher=AlertPublisher(sns, topic)))
    embed = only_embed(call(function_url_event(encode(nexus("diagnostics", who=ADMIN, test_alert=True))))[1])
    (field,) = [f for f in embed["fields"] if f["name"] == "Test alert"]
    assert field["value"].startswith("✅ Sent through SNS")
    (message,) = sqs.receive_message(QueueUrl=queue)["Messages"]
    assert json.loads(message["Body"])["kind"] == "test"


@pytest.mark.parametrize(
    "who",
    [member(permissions="0"), member(permissions=str(1 << 11)), member(roles=["1999"])],
    ids=["no-permissions", "send-messages-only", "unlisted-role"],
)
def test_given_non_admin_when_nexus_then_polite_ephemeral_refusal_without_reading_the_ledger(
    untouchable: InteractionDeps, who: dict[str, Any]
) -> None:
    status, body = call(function_url_event(encode(nexus("credits", who=who))))
    assert status == 200
    assert ephemeral_text(body) == interactions.NOT_ADMIN_TEXT


@pytest.mark.parametrize(
    ("who", "dm_user"),
    [
        (member(permissions=str(1 << 3)), None),
        (member(permissions=str((1 << 5) | (1 << 11))), None),
        (member(roles=[LISTED_ROLE]), None),
        (member(user_id=LISTED_USER), None),
        (None, LISTED_USER),
    ],
    ids=["administrator", "manage-guild", "listed-role", "listed-user", "listed-user-in-dm"],
)
def test_given_admin_by_permission_role_or_listing_when_nexus_then_embed(
    admin_deps: InteractionDeps, who: dict[str, Any] | None, dm_user: str | None
) -> None:
    body = call(function_url_event(encode(nexus("credits", who=who, dm_user=dm_user))))[1]
    assert only_embed(body)["title"].startswith("⚪ Credits")


def test_given_unlisted_user_in_dm_when_nexus_then_refused(untouchable: InteractionDeps) -> None:
    body = call(function_url_event(encode(nexus("credits", dm_user=ASKER))))[1]
    assert ephemeral_text(body) == interactions.NOT_ADMIN_TEXT


def test_given_unexpected_failure_after_verification_then_generic_ephemeral_200_and_logged(
    use: Callable[[InteractionDeps], InteractionDeps], caplog: pytest.LogCaptureFixture
) -> None:
    class Exploding:
        def get_balance(self) -> Any:
            raise RuntimeError("bug")

    use(make_deps(ledger=Exploding()))
    status, body = call(function_url_event(encode(nexus("credits", who=ADMIN))))
    assert status == 200
    assert ephemeral_text(body) == interactions.SOMETHING_WENT_WRONG_TEXT
    assert "interaction failed" in caplog.text


# --- sample events and the real runtime ----------------------------------------------------------
@pytest.mark.parametrize(("sample", "expected_type"), [("ping", 1), ("ask", 5), ("nexus_credits", 4)])
def test_given_sample_event_signed_here_when_handled_then_expected_response(
    chat: InteractionDeps, sample: str, expected_type: int
) -> None:
    stored = json.loads((EVENTS / f"{sample}.json").read_text())
    event = function_url_event(stored["body"].encode())
    event["requestContext"] = stored["requestContext"]
    assert call(event)[1]["type"] == expected_type


def test_given_sample_event_unsigned_when_handled_then_401(untouchable: InteractionDeps) -> None:
    assert call(json.loads((EVENTS / "ping.json").read_text()))[0] == 401


@pytest.fixture
def real_runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "DISCORD_PUBLIC_KEY": PUBLIC_KEY,
        "LLM_FUNCTION_NAME": LLM_FUNCTION,
        "TABLE_NAME": TABLE,
    }.items():
        monkeypatch.setenv(name, value)
    app.runtime.cache_clear()
    yield
    app.runtime.cache_clear()


def test_given_env_when_ping_then_settings_loaded_and_no_aws_client_built(
    real_runtime: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app.aws, "client", lambda *a, **k: pytest.fail("an AWS client was built for a PING"))
    assert call(function_url_event(b'{"type":1}')) == (200, {"type": 1})


def test_given_missing_public_key_when_first_called_then_one_line_naming_it(
    real_runtime: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from astrabot.errors import ConfigError

    monkeypatch.delenv("DISCORD_PUBLIC_KEY")
    with pytest.raises(ConfigError, match="DISCORD_PUBLIC_KEY is not set"):
        app.lambda_handler(function_url_event(b'{"type":1}'), Context())


# --- property-based ------------------------------------------------------------------------------
HEADER_NAMES = st.sampled_from(
    [
        "x-signature-ed25519",
        "X-Signature-Ed25519",
        "x-signature-timestamp",
        "X-SIGNATURE-TIMESTAMP",
        "content-type",
    ]
)
HEADER_VALUES = st.one_of(
    st.text(max_size=140),
    st.from_regex(r"[0-9a-f]{128}", fullmatch=True),
    st.integers(0, 2**40).map(str),
)


@hypothesis_settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    headers=st.dictionaries(st.one_of(HEADER_NAMES, st.text(max_size=20)), HEADER_VALUES, max_size=6),
    body=st.one_of(
        st.none(), st.text(max_size=300), st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode())
    ),
    encoded=st.booleans(),
)
def test_given_arbitrary_headers_and_body_then_only_200_400_401_or_413_and_no_aws_call(
    untouchable: InteractionDeps, headers: dict[str, str], body: str | None, encoded: bool
) -> None:
    event = {"version": "2.0", "headers": headers, "body": body, "isBase64Encoded": encoded}
    response = app.lambda_handler(event, Context())
    assert response["statusCode"] in {200, 400, 401, 413}
    assert response["headers"]["Content-Type"] == "application/json"


JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20))
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
)
INTERACTION_LIKE = st.fixed_dictionaries(
    {"type": st.one_of(st.integers(0, 6), JSON_LEAVES)},
    optional={
        "data": st.one_of(
            JSON_VALUES,
            st.fixed_dictionaries(
                {"name": st.sampled_from(["ask", "nexus", "Ask AstraBot", "x"]), "type": st.integers(1, 3)},
                optional={"options": JSON_VALUES, "target_id": JSON_LEAVES, "resolved": JSON_VALUES},
            ),
        ),
        "member": JSON_VALUES,
        "user": JSON_VALUES,
        "id": JSON_LEAVES,
        "token": JSON_LEAVES,
    },
)


@hypothesis_settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(interaction=INTERACTION_LIKE)
def test_given_validly_signed_arbitrary_interaction_then_200_or_400_never_500(
    use: Callable[[InteractionDeps], InteractionDeps], interaction: dict[str, Any]
) -> None:
    use(make_deps(ledger=BrokenLedger(), lambda_client=FakeLambda()))
    response = app.lambda_handler(function_url_event(encode(interaction)), Context())
    assert response["statusCode"] in {200, 400}
