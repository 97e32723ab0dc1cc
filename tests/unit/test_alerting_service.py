"""Alert publishing: exactly once through SNS (moto, read back through an SQS subscription)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest
import respx

from astrabot.adapters.alert_state import AlertStateConflict, AlertStateStore, Claim
from astrabot.adapters.ledger import BalanceSnapshot, Ledger
from astrabot.adapters.sns import AlertPublisher
from astrabot.domain.alerts import Alert, AlertState
from astrabot.domain.credit import ModelPrice, status_for
from astrabot.errors import AlertPublishFailed
from astrabot.service.alerting import CLAIM_LEASE, make_alert_hook, publish_test_alert
from astrabot.service.poller import BalanceHook
from astrabot.settings import Settings
from functions.credit_poller import app as poller_app
from tests.unit.conftest import TABLE
from tests.unit.test_credit_poller import BASE, MODELS, Context, key_body

MODEL = "openai/gpt-4o-mini"
PRICE = Decimal("0.00003")
T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
POLL = timedelta(minutes=5)


@dataclass
class Topic:
    sns: Any
    sqs: Any
    arn: str
    queue_url: str

    def received(self) -> list[dict[str, Any]]:
        """Every message published so far: the alert body plus its `severity` attribute."""
        out: list[dict[str, Any]] = []
        while batch := self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            for message in batch:
                envelope = json.loads(message["Body"])
                alert = json.loads(envelope["Message"])
                alert["severity"] = envelope["MessageAttributes"]["severity"]["Value"]
                alert["kind_attribute"] = envelope["MessageAttributes"]["kind"]["Value"]
                out.append(alert)
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return out

    def kinds(self) -> list[tuple[str, str]]:
        return [(alert["kind"], alert["status"]) for alert in self.received()]


@pytest.fixture
def topic(aws: None) -> Topic:
    sns = boto3.client("sns", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    arn = sns.create_topic(Name="astrabot-alerts")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="alert-tap")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=attributes["Attributes"]["QueueArn"])
    return Topic(sns, sqs, arn, queue_url)


@pytest.fixture
def settings(topic: Topic) -> Settings:
    return Settings(table_name=TABLE, alert_topic_arn=topic.arn, default_model=MODEL)


@pytest.fixture
def store(ddb: Any) -> AlertStateStore:
    return AlertStateStore(ddb, TABLE)


@pytest.fixture
def publisher(topic: Topic) -> AlertPublisher:
    return AlertPublisher(topic.sns, topic.arn)


def snapshot(tokens: int | None, *, stale: bool = False) -> BalanceSnapshot:
    usd = None if tokens is None else PRICE * tokens
    return BalanceSnapshot(
        remaining_usd=usd,
        available_usd=usd,
        status=status_for(tokens),
        affordable_tokens=tokens,
        default_model=MODEL,
        prices={MODEL: ModelPrice(MODEL, completion=PRICE)},
        fetched_at=T0,
        stale=stale,
    )


class FlakyPublisher:
    """Fails the first `failures` publishes the way SNS does (a real moto error), then publishes."""

    def __init__(self, topic: Topic, failures: int) -> None:
        self._broken = AlertPublisher(topic.sns, topic.arn + "-deleted")
        self._working = AlertPublisher(topic.sns, topic.arn)
        self.failures = failures
        self.attempts: list[str] = []

    def publish(self, alert: Alert) -> str:
        self.attempts.append(alert.alert_id)
        if self.failures > 0:
            self.failures -= 1
            return self._broken.publish(alert)
        return self._working.publish(alert)


class InterleavingStore(AlertStateStore):
    """Runs `meanwhile` (another poller run) between this run's read/decide and its write."""

    def __init__(self, client: Any, meanwhile: Callable[[], None]) -> None:
        super().__init__(client, TABLE)
        self._meanwhile = meanwhile

    def save(self, state: AlertState, added: Sequence[Alert], at: datetime) -> AlertState:
        self._meanwhile()
        return super().save(state, added, at)


class InterleavingPublisher:
    """Runs `meanwhile` (another poller run) just before this run publishes."""

    def __init__(self, inner: AlertPublisher, meanwhile: Callable[[], None]) -> None:
        self._inner = inner
        self._meanwhile = meanwhile

    def publish(self, alert: Alert) -> str:
        self._meanwhile()
        return self._inner.publish(alert)


def hook(settings: Settings, ledger: Ledger, store: AlertStateStore, publisher: Any) -> BalanceHook:
    return make_alert_hook(settings, ledger, store, publisher)


# --- one run -------------------------------------------------------------------------------------
def test_given_escalation_when_hook_runs_then_one_sns_message_in_the_design_shape(
    settings: Settings, ledger: Ledger, store: AlertStateStore, publisher: AlertPublisher, topic: Topic
) -> None:
    hook(settings, ledger, store, publisher)(None, snapshot(1500), T0)
    (message,) = topic.received()
    assert message == {
        "type": "credit_alert",
        "alert_id": "escalation:low:e1:1",
        "kind": "escalation",
        "status": "low",
        "previous_status": "healthy",
        "remaining_usd": "0.04500",
        "affordable_tokens": 1500,
        "model": MODEL,
        "burn_usd_per_day": None,
        "hours_to_empty": None,
        "topup_url": "https://openrouter.ai/settings/credits",
        "at": "2025-03-01T08:00:00Z",
        "severity": "warning",
        "kind_attribute": "escalation",
    }


def test_given_published_then_pending_cleared_and_metric_emitted(
    settings: Settings,
    ledger: Ledger,
    store: AlertStateStore,
    publisher: AlertPublisher,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from astrabot.observability import metrics

    hook(settings, ledger, store, publisher)(None, snapshot(50), T0)
    metrics.flush_metrics()
    state = store.load()
    assert (state.pending, state.version, state.last_status.value) == ((), 1, "critical")
    assert '"AlertsPublished"' in capsys.readouterr().out


def test_given_a_retried_run_when_nothing_changed_then_nothing_published_twice(
    settings: Settings, ledger: Ledger, store: AlertStateStore, publisher: AlertPublisher, topic: Topic
) -> None:
    on_balance = hook(settings, ledger, store, publisher)
    on_balance(None, snapshot(400), T0)
    on_balance(None, snapshot(400), T0)  # the scheduler retried the same invocation
    on_balance(None, snapshot(400), T0 + POLL)
    assert topic.kinds() == [("escalation", "emergency")]


# --- overlapping runs ----------------------------------------------------------------------------
def test_given_two_runs_interleaving_read_and_write_then_one_alert_published(
    settings: Settings,
    ledger: Ledger,
    ddb: Any,
    store: AlertStateStore,
    publisher: AlertPublisher,
    topic: Topic,
    caplog: pytest.LogCaptureFixture,
) -> None:
    other = hook(settings, ledger, store, publisher)
    overlapped = InterleavingStore(ddb, lambda: other(None, snapshot(1500), T0 + timedelta(seconds=5)))
    hook(settings, ledger, overlapped, publisher)(None, snapshot(1500), T0)
    assert topic.kinds() == [("escalation", "low")]
    assert "overlapping poller run" in caplog.text


def test_given_a_run_publishing_when_another_run_finds_the_same_pending_alert_then_it_is_published_once(
    settings: Settings,
    ledger: Ledger,
    store: AlertStateStore,
    publisher: AlertPublisher,
    topic: Topic,
) -> None:
    other = hook(settings, ledger, store, publisher)
    slow = InterleavingPublisher(publisher, lambda: other(None, snapshot(1500), T0 + timedelta(seconds=20)))
    hook(settings, ledger, store, slow)(None, snapshot(1500), T0)
    assert topic.kinds() == [("escalation", "low")]


# --- publish failures ----------------------------------------------------------------------------
def test_given_publish_fails_then_alert_stays_pending_and_error_recorded(
    settings: Settings, ledger: Ledger, store: AlertStateStore, topic: Topic
) -> None:
    hook(settings, ledger, store, FlakyPublisher(topic, failures=1))(None, snapshot(400), T0)
    assert topic.received() == []
    assert [a.alert_id for a in store.load().pending] == ["escalation:emergency:e1:1"]
    assert ledger.recent_errors()[0].source == "alerting"


def test_given_publish_failed_when_next_run_then_published_exactly_once(
    settings: Settings, ledger: Ledger, store: AlertStateStore, topic: Topic
) -> None:
    flaky = FlakyPublisher(topic, failures=1)
    on_balance = hook(settings, ledger, store, flaky)
    for step in range(4):
        on_balance(None, snapshot(400), T0 + step * POLL)
    assert topic.kinds() == [("escalation", "emergency")]
    assert flaky.attempts == ["escalation:emergency:e1:1"] * 2


def test_given_an_old_pending_alert_when_a_new_one_is_decided_then_the_old_one_goes_first(
    settings: Settings, ledger: Ledger, store: AlertStateStore, topic: Topic
) -> None:
    on_balance = hook(settings, ledger, store, FlakyPublisher(topic, failures=1))
    on_balance(None, snapshot(1500), T0)
    on_balance(None, snapshot(50), T0 + POLL)
    assert topic.kinds() == [("escalation", "low"), ("escalation", "critical")]


def test_given_two_alerts_when_the_first_publish_fails_then_the_second_waits_behind_it(
    settings: Settings, ledger: Ledger, store: AlertStateStore, topic: Topic
) -> None:
    # $0.10 spent in the last hour: the emergency floor is minutes away, so low + forecast at once.
    ledger.add_history_point(T0 - timedelta(hours=1), PRICE * 1900 + Decimal("0.1"))
    ledger.add_history_point(T0, PRICE * 1900)
    flaky = FlakyPublisher(topic, failures=1)
    on_balance = hook(settings, ledger, store, flaky)
    on_balance(None, snapshot(1900), T0)
    assert flaky.attempts == ["escalation:low:e1:1"]
    on_balance(None, snapshot(1900), T0 + POLL)
    assert topic.kinds() == [("escalation", "low"), ("forecast", "low")]


def test_given_a_run_died_after_claiming_when_retried_within_the_lease_then_not_republished(
    settings: Settings, ledger: Ledger, store: AlertStateStore, publisher: AlertPublisher, topic: Topic
) -> None:
    def crash(alert: Alert) -> str:
        raise TimeoutError("the Lambda timed out mid-publish")

    dying = type("Dying", (), {"publish": staticmethod(crash)})()
    with pytest.raises(TimeoutError):
        hook(settings, ledger, store, dying)(None, snapshot(400), T0)
    on_balance = hook(settings, ledger, store, publisher)
    on_balance(None, snapshot(400), T0 + timedelta(seconds=30))
    assert topic.received() == []
    on_balance(None, snapshot(400), T0 + CLAIM_LEASE + timedelta(seconds=1))
    assert topic.kinds() == [("escalation", "emergency")]


def test_given_sns_rejects_then_publisher_raises_alert_publish_failed(topic: Topic) -> None:
    from astrabot.domain.alerts import AlertPolicy, diagnostic_alert
    from astrabot.service.alerting import balance_view

    alert = diagnostic_alert(balance_view(Settings(), snapshot(50)), status_for(50), T0, AlertPolicy())
    with pytest.raises(AlertPublishFailed, match="NotFound"):
        AlertPublisher(topic.sns, topic.arn + "-gone").publish(alert)


# --- the state store ------------------------------------------------------------------------------
def test_given_a_stale_version_when_saving_then_conflict(store: AlertStateStore) -> None:
    store.save(AlertState(unknown_polls=1), [], T0)
    with pytest.raises(AlertStateConflict):
        store.save(AlertState(unknown_polls=2), [], T0)


def test_given_saved_state_when_loaded_then_same_fields(store: AlertStateStore) -> None:
    state = AlertState(
        next_reminder_at=T0, last_alert_at=T0, episode=2, sequence=5, forecast_episode_open=True
    )
    saved = store.save(state, [], T0)
    assert store.load() == saved
    cleared = store.save(AlertState(episode=2, sequence=5, version=1), [], T0)
    assert store.load() == cleared


def test_given_a_claimed_alert_then_no_second_claim_until_released(
    store: AlertStateStore, settings: Settings, ledger: Ledger
) -> None:
    from astrabot.domain.alerts import decide_alerts
    from astrabot.domain.forecast import Forecast
    from astrabot.service.alerting import alert_policy, balance_view

    state, alerts = decide_alerts(
        AlertState(),
        balance_view(settings, snapshot(50)),
        Forecast(None, None, 0),
        T0,
        alert_policy(settings),
    )
    store.save(state, alerts, T0)
    alert_id = alerts[0].alert_id
    assert store.claim(alert_id, T0, CLAIM_LEASE) is Claim.CLAIMED
    assert store.claim(alert_id, T0, CLAIM_LEASE) is Claim.HELD
    assert store.release(alert_id)
    assert store.claim(alert_id, T0, CLAIM_LEASE) is Claim.CLAIMED
    assert store.mark_published(alert_id)
    assert store.claim(alert_id, T0 + timedelta(hours=1), CLAIM_LEASE) is Claim.GONE
    assert not store.mark_published(alert_id)


# --- the /nexus diagnostics test alert -----------------------------------------------------------
def test_given_diagnostics_when_test_alert_published_then_kind_test_severity_info(
    settings: Settings, publisher: AlertPublisher, topic: Topic
) -> None:
    message_id = publish_test_alert(settings, publisher, snapshot(50), T0)
    (message,) = topic.received()
    assert message_id
    assert (message["kind"], message["status"], message["severity"]) == ("test", "critical", "info")


def test_given_no_balance_yet_when_test_alert_published_then_status_unknown(
    settings: Settings, publisher: AlertPublisher, topic: Topic
) -> None:
    publish_test_alert(settings, publisher, None, T0)
    (message,) = topic.received()
    assert (message["status"], message["remaining_usd"]) == ("unknown", None)


# --- the poller, end to end ----------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def poller(
    monkeypatch: pytest.MonkeyPatch, ledger: Ledger, topic: Topic
) -> Iterator[tuple[respx.Route, Clock]]:
    for name, value in {
        "TABLE_NAME": ledger.table_name,
        "ALERT_TOPIC_ARN": topic.arn,
        "OPENROUTER_API_KEY": "sk-or-v1-test-secret-key-0000",
        "OPENROUTER_BASE_URL": BASE,
        "DEFAULT_MODEL": MODEL,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("OPENROUTER_MANAGEMENT_KEY", raising=False)
    clock = Clock()
    monkeypatch.setattr(poller_app, "utcnow", clock)
    poller_app._runtime.cache_clear()
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        router.get("/models").respond(json=MODELS)
        yield router.get("/key"), clock
    poller_app._runtime.cache_clear()


def test_given_a_whole_episode_when_the_poller_runs_hourly_then_sns_gets_each_alert_once_in_order(
    poller: tuple[respx.Route, Clock], topic: Topic
) -> None:
    key, clock = poller
    # USD left per hourly poll: a fast burn, low, emergency (held 7 h), critical (held 7 h), top-up.
    balances = [1.0, 0.9, 0.05, 0.012, *[0.012] * 6, *[0.0015] * 7, 10.0, 10.0]
    for remaining in balances:
        key.respond(json=key_body(remaining))
        poller_app.lambda_handler({}, Context())
        clock.now += timedelta(hours=1)
    messages = topic.received()
    assert [(m["kind"], m["status"], m["severity"]) for m in messages] == [
        ("forecast", "healthy", "warning"),
        ("escalation", "low", "warning"),
        ("escalation", "emergency", "critical"),
        ("reminder", "emergency", "critical"),
        ("escalation", "critical", "critical"),
        ("reminder", "critical", "critical"),
        ("recovery", "healthy", "info"),
    ]
    assert len({m["alert_id"] for m in messages}) == len(messages)
    assert messages[0]["burn_usd_per_day"] == "2.400000"


def test_given_no_alert_topic_then_poller_runs_without_alerts(
    poller: tuple[respx.Route, Clock], monkeypatch: pytest.MonkeyPatch, topic: Topic
) -> None:
    monkeypatch.delenv("ALERT_TOPIC_ARN")
    poller_app._runtime.cache_clear()
    key, _ = poller
    key.respond(json=key_body(0.001))
    result = poller_app.lambda_handler({}, Context())
    assert (result["status"], topic.received()) == ("critical", [])
