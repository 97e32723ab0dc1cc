"""IAM least privilege per function: what each function's code really calls, against what
infra/template.yaml grants it.

tests/unit/test_template.py already rules out wildcards, unscoped policy templates and foreign
secrets. What it cannot see is the code: here each handler runs its representative flows (success
and failure paths) on moto while every AWS API call is recorded below the clients, and each call is
mapped to the IAM action it needs (a transaction needs the action of each item in it). Then:
every action used is granted (or the function fails in production with AccessDenied), and nothing
is granted for a service the function never calls (KMS for the encrypted topic and SSM for
secrets excepted: those are implied by SNS publishing and by `<NAME>_PARAM`).
"""

from __future__ import annotations

import io
import json
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient

from astrabot.adapters.ledger import ReservationRequest
from functions.alert_notifier import app as notifier_app
from functions.credit_poller import app as poller_app
from functions.interactions import app as interactions_app
from tests.reliability.conftest import LlmWorld, Observe
from tests.reliability.support import (
    ADMIN,
    LLM_FUNCTION,
    PUBLIC_KEY,
    WEBHOOK_TOKEN,
    Context,
    ask,
    encode,
    nexus,
    signed_event,
)
from tools.cfn import load_template

# samtranslator/policy_templates_data/policy_templates.json (the SAM CLI pinned in constraints-sam.txt)
SAM_POLICY_TEMPLATES: dict[str, frozenset[str]] = {
    "DynamoDBReadPolicy": frozenset(
        {
            "dynamodb:GetItem",
            "dynamodb:Scan",
            "dynamodb:Query",
            "dynamodb:BatchGetItem",
            "dynamodb:DescribeTable",
        }
    ),
    "DynamoDBCrudPolicy": frozenset(
        {
            "dynamodb:GetItem",
            "dynamodb:DeleteItem",
            "dynamodb:PutItem",
            "dynamodb:Scan",
            "dynamodb:Query",
            "dynamodb:UpdateItem",
            "dynamodb:BatchWriteItem",
            "dynamodb:BatchGetItem",
            "dynamodb:DescribeTable",
            "dynamodb:ConditionCheckItem",
        }
    ),
    "SNSPublishMessagePolicy": frozenset({"sns:Publish"}),
}
DYNAMODB_WRITES = frozenset(
    {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}
)
TRANSACT_ITEM_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}
IMPLIED_SERVICES = {"ssm", "kms"}  # secrets via <NAME>_PARAM; the KMS-encrypted alert topic
FUNCTIONS = {
    "interactions": "InteractionsFunction",
    "llm_call": "LlmCallFunction",
    "credit_poller": "CreditPollerFunction",
    "alert_notifier": "AlertNotifierFunction",
}


ALERT = {
    "type": "credit_alert",
    "alert_id": "escalation:critical:e1:1",
    "kind": "escalation",
    "status": "critical",
    "previous_status": "healthy",
    "remaining_usd": "0.003",
    "affordable_tokens": 100,
    "model": "openai/gpt-4o-mini",
    "topup_url": "https://openrouter.ai/settings/credits",
    "at": "2026-12-04T12:00:00Z",
}


def iam_actions(service: str, operation: str, params: dict[str, Any]) -> set[str]:
    if (service, operation) == ("dynamodb", "TransactWriteItems"):
        return {
            f"dynamodb:{TRANSACT_ITEM_ACTIONS[kind]}" for item in params["TransactItems"] for kind in item
        }
    if (service, operation) == ("dynamodb", "TransactGetItems"):
        return {"dynamodb:GetItem"}
    if (service, operation) == ("lambda", "Invoke"):
        return {"lambda:InvokeFunction"}
    return {f"{service}:{operation}"}


def leading_keys(operation: str, params: dict[str, Any]) -> set[str]:
    items = [params.get("Item"), params.get("Key")]
    for entry in params.get("TransactItems", []):
        for body in entry.values():
            items += [body.get("Item"), body.get("Key")]
    if "KeyConditionExpression" in params:
        items.append({"pk": params["ExpressionAttributeValues"][":pk"]})
    return {item["pk"]["S"] for item in items if item}


class Recorder:
    """Every AWS call made inside `running(function)`, as IAM actions and DynamoDB leading keys."""

    def __init__(self) -> None:
        self.function: str | None = None
        self.actions: dict[str, set[str]] = defaultdict(set)
        self.keys: dict[str, set[str]] = defaultdict(set)
        self.calls: dict[str, int] = defaultdict(int)

    @contextmanager
    def running(self, function: str) -> Iterator[None]:
        self.function = function
        try:
            yield
        finally:
            self.function = None

    def record(self, service: str, operation: str, params: dict[str, Any]) -> None:
        if self.function is None:
            return  # the test's own setup
        self.actions[self.function] |= iam_actions(service, operation, params)
        self.calls[self.function] += 1
        if service == "dynamodb":
            self.keys[self.function] |= leading_keys(operation, params)


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    seen = Recorder()
    original = BaseClient._make_api_call  # type: ignore[attr-defined]

    def recording(self: Any, operation: str, params: dict[str, Any]) -> Any:
        service = self.meta.service_model.service_id.hyphenize()
        seen.record(service, operation, params)
        if (service, operation) == ("lambda", "Invoke"):  # moto cannot run Lambda code without Docker
            return {"StatusCode": 202, "Payload": io.BytesIO(b"")}
        return original(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", recording)
    return seen


def granted(logical_id: str) -> set[str]:
    actions: set[str] = set()
    for policy in load_template()["Resources"][logical_id]["Properties"].get("Policies", []):
        if "Statement" in policy:
            for statement in policy["Statement"]:
                if statement["Effect"] == "Allow":
                    action = statement["Action"]
                    actions |= set(action if isinstance(action, list) else [action])
        else:
            [(name, _)] = policy.items()
            actions |= SAM_POLICY_TEMPLATES[name]
    return actions


def leading_key_condition(logical_id: str) -> set[str] | None:
    """The dynamodb:LeadingKeys a function's own statements restrict it to, if any."""
    for policy in load_template()["Resources"][logical_id]["Properties"].get("Policies", []):
        for statement in policy.get("Statement", []):
            condition = statement.get("Condition", {}).get("ForAllValues:StringEquals", {})
            if "dynamodb:LeadingKeys" in condition:
                return set(condition["dynamodb:LeadingKeys"])
    return None


def services(actions: set[str]) -> set[str]:
    return {action.split(":")[0] for action in actions}


@pytest.fixture
def flows(llm: LlmWorld, recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    """Every function's representative flows, success and failure paths, on one local stack."""
    topic = boto3.client("sns", region_name="us-east-1").create_topic(Name="astrabot-alerts")["TopicArn"]
    for name, value in {
        "ALERT_TOPIC_ARN": topic,
        "DISCORD_PUBLIC_KEY": PUBLIC_KEY,
        "LLM_FUNCTION_NAME": LLM_FUNCTION,
        "DISCORD_ALERT_WEBHOOK_URL": llm.sink.webhook_url("777", WEBHOOK_TOKEN),
    }.items():
        monkeypatch.setenv(name, value)
    for cached in (interactions_app.runtime, poller_app._runtime, notifier_app._runtime):
        cached.cache_clear()

    with recorder.running("credit_poller"):
        poller_app.lambda_handler({}, Context("credit_poller"))  # healthy: balance, history, heartbeat
        llm.sim.set_balance("0.003")
        poller_app.lambda_handler({}, Context("credit_poller"))  # critical: alert state, SNS publish
        llm.sim.fail_next(503, times=3, path="/key")
        poller_app.lambda_handler({}, Context("credit_poller"))  # outage: stale mark, error record
    llm.sim.set_balance("5.00")
    with recorder.running("credit_poller"):
        poller_app.lambda_handler({}, Context("credit_poller"))
    with recorder.running("llm_call"):
        llm.run(llm.interaction())  # answered: reserve, settle, usage, heartbeat, idempotency
        llm.sim.fail_next(500, times=3)
        llm.run(llm.interaction())  # failed: release, error record, event count
        message = "You requested up to 1000 tokens, but can only afford 300."
        llm.sim.fail_next(402, message=message)
        llm.run(llm.interaction())  # 402: balance corrected, retried
        llm.sink.fail_next(404, times=4, kind="edit_original")
        llm.run(llm.interaction())  # Discord gone: error record
    with recorder.running("credit_poller"):
        poller_app.lambda_handler({}, Context("credit_poller"))  # re-reads the balance the 402 lowered
    crashed = ReservationRequest("crashed#0", Decimal("0.03"), 1000, "42", "m", llm.now - timedelta(hours=1))
    llm.ledger.reserve(crashed, balance_known=True)  # a dead call's hold, for the poller to reclaim
    with recorder.running("credit_poller"):
        poller_app.lambda_handler({}, Context("credit_poller"))
    with recorder.running("interactions"):
        for interaction in (
            {"type": 1},
            ask("hello"),
            nexus("credits", who=ADMIN),
            nexus("status", who=ADMIN),
            nexus("diagnostics", who=ADMIN, test_alert=True),
        ):
            interactions_app.lambda_handler(signed_event(encode(interaction)), Context("interactions"))
    with recorder.running("alert_notifier"):
        notifier_app.lambda_handler(
            {"Records": [{"Sns": {"Message": json.dumps(ALERT)}}]}, Context("alert_notifier")
        )
    yield recorder
    for cached in (interactions_app.runtime, poller_app._runtime, notifier_app._runtime):
        cached.cache_clear()


@pytest.mark.parametrize("function", FUNCTIONS)
def test_given_a_functions_real_calls_then_each_is_granted_and_no_unused_service_is(
    flows: Recorder, function: str, observe: Observe
) -> None:
    logical_id = FUNCTIONS[function]
    used, allowed = flows.actions[function], granted(logical_id)
    assert used - allowed == set(), f"{function} would get AccessDenied for {sorted(used - allowed)}"
    unused_services = services(allowed) - services(used) - IMPLIED_SERVICES
    assert unused_services == set(), f"{function} is granted {sorted(unused_services)} it never calls"
    if "kms" in services(allowed):
        assert "sns:Publish" in used  # the topic key is for publishing, nothing else
    if not used & DYNAMODB_WRITES:
        assert not allowed & DYNAMODB_WRITES, f"{function} only reads DynamoDB but may write it"
    restricted = leading_key_condition(logical_id)
    if restricted is not None:
        assert flows.keys[function] <= restricted
    unused = sorted(a.split(":")[1] for a in allowed - used if a.startswith("dynamodb:"))
    observe(
        f"IAM least privilege: {function}",
        f"{flows.calls[function]} AWS calls needing {len(used)} actions ({', '.join(sorted(used))}); "
        f"all granted; no unused service; granted but unused: {', '.join(unused) or 'none'} "
        "(from the SAM policy template)",
        requests=flows.calls[function],
    )
