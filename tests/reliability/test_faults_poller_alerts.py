"""Faults around credit_poller and the alert path: DynamoDB (before-send), SNS publish failures, and
Discord webhook failures in alert_notifier (the sink's fail_next).

The poller runs through its lambda_handler against the OpenRouter simulator and moto (table, topic,
and an SQS queue subscribed to the topic that counts what SNS delivered). Invariants: a poll either
raises (the schedule retries it, the Errors alarm fires) or records cleanly; it never writes a zero
it did not read; every alert reaches SNS exactly once, however the runs fail in between.
"""

from __future__ import annotations

import functools
import json
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest

from astrabot.adapters.discord import DiscordClient
from astrabot.adapters.ledger import Ledger, ReservationRequest
from astrabot.errors import LedgerUnavailable
from astrabot.runtime import utcnow
from astrabot.service import alerting
from astrabot.service.notifier import AlertDeliveryFailed
from functions.alert_notifier import app as notifier_app
from functions.credit_poller import app as poller_app
from tests.reliability.conftest import BUILD_CLIENT, Observe, Printed, llm_env
from tests.reliability.support import (
    MODEL,
    SNS_THROTTLED,
    THROTTLED,
    UNAVAILABLE,
    WEBHOOK_TOKEN,
    Context,
    FaultPlan,
    emf_metrics,
    log_messages,
)
from tools.cfn import load_template
from tools.simulators.discord_sink import DiscordSink
from tools.simulators.openrouter_sim import OpenRouterSimulator

POLL = timedelta(minutes=5)
EMERGENCY_USD = "0.012"  # 400 affordable tokens at $0.00003: below 500, above 100


@dataclass
class Stack:
    ledger: Ledger
    sim: OpenRouterSimulator
    plan: FaultPlan
    sqs: Any
    queue_url: str
    now: datetime
    run: Callable[[datetime], dict[str, Any]]

    def poll(self) -> dict[str, Any]:
        self.now += POLL
        return self.run(self.now)

    def received(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while batch := self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get(
            "Messages"
        ):
            for message in batch:
                out.append(json.loads(json.loads(message["Body"])["Message"]))
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return out

    def remaining(self) -> Decimal | None:
        snapshot = self.ledger.get_balance()
        return None if snapshot is None else snapshot.remaining_usd


@pytest.fixture
def stack(
    ledger: Ledger, faults: FaultPlan, sim: OpenRouterSimulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Stack]:
    sns, sqs = boto3.client("sns", region_name="us-east-1"), boto3.client("sqs", region_name="us-east-1")
    topic = sns.create_topic(Name="astrabot-alerts")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="alerts")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    llm_env(monkeypatch, sim.url, "http://127.0.0.1:9")
    monkeypatch.setenv("ALERT_TOPIC_ARN", topic)
    # The alert path's own clients carry the label "alerts", so a fault can pick them out.
    labelled = types.SimpleNamespace(
        client=lambda service, **kw: faults.attach(BUILD_CLIENT(service, **kw), "alerts")
    )
    monkeypatch.setattr(alerting, "aws", labelled)
    poller_app._runtime.cache_clear()

    def run(at: datetime) -> dict[str, Any]:
        monkeypatch.setattr(poller_app, "utcnow", lambda: at)
        result: dict[str, Any] = poller_app.lambda_handler({}, Context("credit_poller"))
        return result

    yield Stack(ledger, sim, faults, sqs, queue_url, utcnow(), run)
    poller_app._runtime.cache_clear()


def errors_alarm_for(function_logical_id: str) -> str:
    """The alarm watching AWS/Lambda Errors of a function (what the operator is paged by)."""
    for name, resource in load_template()["Resources"].items():
        props = resource.get("Properties", {})
        dimensions = [d["Value"] for d in props.get("Dimensions", [])]
        is_alarm = resource["Type"] == "AWS::CloudWatch::Alarm" and props.get("MetricName") == "Errors"
        if is_alarm and {"Ref": function_logical_id} in dimensions:
            return str(name)
    raise AssertionError(f"no Errors alarm for {function_logical_id}")


# --- credit_poller: DynamoDB ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("error", "operation"),
    [
        (THROTTLED, "GetItem"),
        (UNAVAILABLE, "GetItem"),
        (THROTTLED, "UpdateItem"),
        (THROTTLED, "PutItem"),
        (THROTTLED, "Query"),
        (THROTTLED, "TransactWriteItems"),
    ],
)
def test_given_dynamodb_failing_in_the_poller_then_it_raises_and_never_writes_zero(
    stack: Stack, error: str, operation: str, observe: Observe
) -> None:
    assert stack.poll()["ok"] is True
    good = stack.remaining()
    stale = ReservationRequest(
        "crashed#0", Decimal("0.03"), 1000, "42", MODEL, stack.now - timedelta(hours=1)
    )
    stack.ledger.reserve(stale, balance_known=True)  # a crashed llm_call's hold, past its deadline
    stack.sim.set_balance("4.00")
    stack.plan.add("dynamodb", error, operations={operation})
    with pytest.raises(LedgerUnavailable) as raised:
        stack.poll()
    injected = stack.plan.injected
    stack.plan.clear()
    after = stack.remaining()
    assert str(raised.value).startswith("DynamoDB ")  # one line naming the call, for the Lambda log
    assert after in (good, Decimal("4.00"))  # the last good figure or the new one: never zero, never unknown
    assert stack.poll()["ok"] is True  # the next scheduled run repairs everything
    assert (stack.remaining(), stack.ledger.open_reservations()) == (Decimal("4.00"), [])
    observe(
        f"DynamoDB {error} on {operation} in credit_poller",
        f"raised '{raised.value}' (Errors alarm {errors_alarm_for('CreditPollerFunction')}, scheduler "
        f"retry); stored balance ${after} (last good ${good}, never 0); next run ok, expired "
        "reservation reclaimed",
        faults=injected,
    )


# --- alerts: SNS and the alert state ------------------------------------------------------------
def escalate(stack: Stack) -> None:
    assert stack.poll()["ok"] is True  # healthy: the alert state is created, nothing to say
    assert stack.received() == []
    stack.sim.set_balance(EMERGENCY_USD)


def test_given_sns_publish_failing_then_the_alert_stays_pending_and_is_published_once_next_run(
    stack: Stack, caplog: pytest.LogCaptureFixture, printed: Printed, observe: Observe
) -> None:
    escalate(stack)
    stack.plan.add("sns", SNS_THROTTLED, operations={"Publish"})
    assert stack.poll()["status"] == "emergency"
    injected = stack.plan.injected
    stack.plan.clear()
    metrics = emf_metrics(printed.out())
    assert stack.received() == []
    assert "AlertPublishFailures" in metrics
    assert "alert publish failed; it stays pending" in log_messages(caplog.records)
    assert stack.ledger.recent_errors(1)[0].source == "alerting"
    stack.poll()
    first = stack.received()
    stack.poll()
    stack.poll()
    later = stack.received()
    assert [(a["kind"], a["status"]) for a in first] == [("escalation", "emergency")]
    assert later == []
    observe(
        "SNS publish throttled during an escalation",
        "run 1: 0 published, metric AlertPublishFailures, log 'alert publish failed; it stays "
        "pending', error recorded; run 2: escalation published once; runs 3-4: nothing more "
        f"(SNS got {len(first + later)})",
        faults=injected,
        lost=1 - len(first + later),
    )


def test_given_the_alert_state_write_throttled_then_the_next_run_publishes_the_alert_once(
    stack: Stack, observe: Observe
) -> None:
    escalate(stack)
    stack.plan.add("dynamodb", THROTTLED, clients={"alerts"}, operations={"PutItem", "UpdateItem"})
    with pytest.raises(LedgerUnavailable):
        stack.poll()
    injected = stack.plan.injected
    stack.plan.clear()
    assert stack.received() == []
    assert stack.remaining() == Decimal(EMERGENCY_USD)  # the balance itself was stored
    stack.poll()
    stack.poll()
    published = stack.received()
    assert [(a["kind"], a["status"]) for a in published] == [("escalation", "emergency")]
    observe(
        "DynamoDB throttled on the alert state during an escalation",
        f"poll raised after storing the balance (Errors alarm {errors_alarm_for('CreditPollerFunction')}); "
        f"next run decided again and published the escalation once (SNS got {len(published)})",
        faults=injected,
        lost=1 - len(published),
    )


# --- alert_notifier: the Discord webhook --------------------------------------------------------
@pytest.fixture
def notifier(sink: DiscordSink, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[dict[str, Any]], Any]]:
    sleeps: list[float] = []
    monkeypatch.setenv("DISCORD_ALERT_WEBHOOK_URL", sink.webhook_url("777", WEBHOOK_TOKEN))
    monkeypatch.delenv("TABLE_NAME", raising=False)
    monkeypatch.setattr(notifier_app, "DiscordClient", functools.partial(DiscordClient, sleep=sleeps.append))
    notifier_app._runtime.cache_clear()

    def deliver(message: dict[str, Any]) -> Any:
        event = {"Records": [{"EventSource": "aws:sns", "Sns": {"Message": json.dumps(message)}}]}
        return notifier_app.lambda_handler(event, Context("alert_notifier"))

    yield deliver
    notifier_app._runtime.cache_clear()


ALERT = {
    "type": "credit_alert",
    "alert_id": "escalation:emergency:e1:2",
    "kind": "escalation",
    "status": "emergency",
    "previous_status": "healthy",
    "remaining_usd": "0.0120",
    "affordable_tokens": 400,
    "model": MODEL,
    "burn_usd_per_day": "0.24",
    "hours_to_empty": 1.2,
    "topup_url": "https://openrouter.ai/settings/credits",
    "at": "2026-12-04T12:00:00Z",
}


def test_given_the_webhook_rate_limited_then_the_alert_waits_and_is_delivered_once(
    notifier: Callable[[dict[str, Any]], Any], sink: DiscordSink, observe: Observe
) -> None:
    sink.fail_next(429, retry_after=0.05, kind="webhook")
    assert notifier(ALERT) == {"delivered": 1}
    assert len(sink.webhook_posts()) == 1
    observe("Discord 429 on the alert webhook", "waited retry_after 0.05 s; delivered once", faults=1)


def test_given_the_webhook_failing_with_500_then_sns_redelivery_posts_it_exactly_once(
    notifier: Callable[[dict[str, Any]], Any],
    sink: DiscordSink,
    caplog: pytest.LogCaptureFixture,
    observe: Observe,
) -> None:
    sink.fail_next(500, times=3, kind="webhook")  # every try of the first delivery
    with pytest.raises(AlertDeliveryFailed):
        notifier(ALERT)
    assert "alert delivery failed; SNS will retry" in log_messages(caplog.records)
    assert notifier(ALERT) == {"delivered": 1}  # SNS delivers the record again
    assert len(sink.webhook_posts()) == 1
    observe(
        "Discord 500 on the alert webhook (3 tries)",
        "first delivery raised AlertDeliveryFailed (SNS retries), log 'alert delivery failed; SNS "
        "will retry'; redelivery posted it: exactly 1 webhook message",
        faults=3,
    )


def test_given_the_webhook_deleted_then_no_retry_loop_and_the_failure_is_counted(
    notifier: Callable[[dict[str, Any]], Any], sink: DiscordSink, printed: Printed, observe: Observe
) -> None:
    sink.fail_next(404, kind="webhook")
    assert notifier(ALERT) == {"delivered": 0}
    assert (
        len([c for c in sink.calls if c.kind == "webhook"]) == 1
    )  # one try: a deleted webhook stays deleted
    assert "AlertDeliveryFailures" in emf_metrics(printed.out())
    observe(
        "Discord 404 on the alert webhook (deleted)",
        "1 try, not retried (invalid requests count towards Discord's IP ban); metric AlertDeliveryFailures; "
        "the alert still reached SNS's other subscribers",
        faults=1,
    )


@pytest.mark.parametrize("error", [THROTTLED, UNAVAILABLE], ids=["throttled", "unavailable"])
def test_given_dynamodb_down_in_the_notifier_then_the_alert_is_still_delivered(
    notifier: Callable[[dict[str, Any]], Any],
    sink: DiscordSink,
    ledger: Ledger,
    faults: FaultPlan,
    error: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    observe: Observe,
) -> None:
    monkeypatch.setenv("TABLE_NAME", ledger.table_name)  # deployed, it records a heartbeat there
    notifier_app._runtime.cache_clear()
    faults.add("dynamodb", error)
    assert notifier(ALERT) == {"delivered": 1}
    assert len(sink.webhook_posts()) == 1
    assert "could not record the notifier heartbeat" in log_messages(caplog.records)
    observe(
        f"DynamoDB {error} in alert_notifier (its heartbeat)",
        "alert delivered once; heartbeat skipped with log 'could not record the notifier heartbeat' "
        "(/nexus status shows the last good delivery)",
        faults=faults.injected,
    )
