"""alert_notifier: SNS alert -> Discord embed on the webhook (respx), retries and secrecy."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx

from astrabot.adapters.discord import DiscordClient
from astrabot.domain.alert_embed import render_alert
from astrabot.domain.credit import CreditStatus
from astrabot.domain.messages import EMBED_FIELD_VALUE_LIMIT, EMBED_TOTAL_LIMIT, embed_size
from astrabot.errors import ConfigError
from astrabot.service.notifier import AlertDeliveryFailed
from functions.alert_notifier import app

TOKEN = "s3cr3t-webhook-token-DO-NOT-LOG"
WEBHOOK = f"https://discord.test/api/webhooks/112233/{TOKEN}"
WEBHOOK_PATH = f"/api/webhooks/112233/{TOKEN}"
ROLE = "987654321098765432"


def alert(kind: str = "escalation", status: str = "emergency", **overrides: Any) -> dict[str, Any]:
    message = {
        "type": "credit_alert",
        "alert_id": f"{kind}:{status}:e1:2",
        "kind": kind,
        "status": status,
        "previous_status": "low",
        "remaining_usd": "0.0100",
        "affordable_tokens": 333,
        "model": "openai/gpt-4o-mini",
        "burn_usd_per_day": "0.240000",
        "hours_to_empty": 1.0,
        "topup_url": "https://openrouter.ai/settings/credits",
        "at": "2025-03-01T08:00:00Z",
    }
    return {**message, **overrides}


def sns_event(*messages: Any) -> dict[str, Any]:
    bodies = [m if isinstance(m, str) else json.dumps(m) for m in messages]
    return {"Records": [{"EventSource": "aws:sns", "Sns": {"Message": body}} for body in bodies]}


class Context:
    function_name = "alert_notifier"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:alert_notifier"
    aws_request_id = "req-1"


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    recorded: list[float] = []
    monkeypatch.setenv("DISCORD_ALERT_WEBHOOK_URL", WEBHOOK)
    monkeypatch.setenv("ALERT_MENTION_ROLE_ID", ROLE)
    monkeypatch.setattr(app, "DiscordClient", functools.partial(DiscordClient, sleep=recorded.append))
    app._runtime.cache_clear()
    yield recorded
    app._runtime.cache_clear()


@pytest.fixture
def webhook(sleeps: list[float]) -> Iterator[respx.Route]:
    with respx.mock(assert_all_called=False) as router:
        yield router.post(host="discord.test", path=WEBHOOK_PATH)


def posted(route: respx.Route) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(route.calls.last.request.content)
    return body


# --- rendering -----------------------------------------------------------------------------------
def test_given_emergency_and_a_role_then_content_mentions_only_that_role() -> None:
    message = render_alert(alert(status="emergency"), mention_role_id=ROLE)
    assert message["content"].startswith(f"<@&{ROLE}> ")
    assert message["allowed_mentions"] == {"parse": [], "roles": [ROLE]}


@pytest.mark.parametrize(
    ("kind", "status"), [("escalation", "low"), ("recovery", "healthy"), ("test", "critical")]
)
def test_given_no_emergency_or_a_test_then_nobody_is_pinged(kind: str, status: str) -> None:
    message = render_alert(alert(kind=kind, status=status), mention_role_id=ROLE)
    assert "<@&" not in message["content"]
    assert message["allowed_mentions"] == {"parse": []}


def test_given_critical_without_a_role_then_nobody_is_pinged() -> None:
    message = render_alert(alert(status="critical"))
    assert (message["allowed_mentions"], "<@&" in message["content"]) == ({"parse": []}, False)


@pytest.mark.parametrize("status", ["healthy", "low", "emergency", "critical", "unknown"])
def test_given_a_status_then_embed_colour_and_title_emoji_follow_it(status: str) -> None:
    (embed,) = render_alert(alert(status=status, kind="reminder"))["embeds"]
    assert embed["color"] == CreditStatus(status).colour
    assert embed["title"].startswith(CreditStatus(status).emoji)


def test_given_an_alert_then_embed_shows_the_figures_and_the_topup_link() -> None:
    (embed,) = render_alert(alert())["embeds"]
    fields = {field["name"]: field["value"] for field in embed["fields"]}
    assert fields["Remaining"] == "$0.0100"
    assert fields["Affordable tokens"] == "333 on `openai/gpt-4o-mini`"
    assert fields["Burn rate"] == "$0.2400 / day"
    assert fields["Hours to empty"] == "about 1.0 h"
    assert "(https://openrouter.ai/settings/credits)" in fields["Top up"]
    assert embed["description"] == "Status: low → **emergency**"


@pytest.mark.parametrize(
    ("kind", "status", "advice"),
    [
        ("escalation", "low", "Top up soon"),
        ("reminder", "emergency", "Top up now"),
        ("escalation", "critical", "Top up immediately"),
        ("recovery", "healthy", "healthy again"),
        ("forecast", "low", "within a day"),
        ("unknown", "unknown", "cannot read the balance"),
        ("test", "low", "test from `/nexus diagnostics`"),
    ],
)
def test_given_a_kind_then_what_to_do_fits_it(kind: str, status: str, advice: str) -> None:
    (embed,) = render_alert(alert(kind=kind, status=status))["embeds"]
    assert advice in embed["fields"][-1]["value"]


def test_given_huge_values_then_embed_stays_within_discord_limits() -> None:
    message = render_alert(alert(model="m" * 7000, alert_id="x" * 3000), mention_role_id=ROLE)
    (embed,) = message["embeds"]
    assert embed_size(embed) <= EMBED_TOTAL_LIMIT
    assert all(len(field["value"]) <= EMBED_FIELD_VALUE_LIMIT for field in embed["fields"])
    assert len(message["content"]) <= 2000


# --- delivery ------------------------------------------------------------------------------------
def test_given_an_alert_when_delivered_then_posted_once_with_wait_and_counted(
    webhook: respx.Route, capsys: pytest.CaptureFixture[str]
) -> None:
    webhook.respond(200, json={"id": "1"})
    result = app.lambda_handler(sns_event(alert()), Context())
    assert result == {"delivered": 1}
    assert webhook.calls.last.request.url.params["wait"] == "true"
    assert posted(webhook)["embeds"][0]["color"] == CreditStatus.EMERGENCY.colour
    assert '"AlertsDelivered"' in capsys.readouterr().out


def test_given_429_with_retry_after_when_delivering_then_waits_and_succeeds(
    webhook: respx.Route, sleeps: list[float]
) -> None:
    webhook.side_effect = [
        httpx.Response(
            429, json={"message": "You are being rate limited.", "retry_after": 1.5, "global": False}
        ),
        httpx.Response(200, json={"id": "1"}),
    ]
    assert app.lambda_handler(sns_event(alert()), Context()) == {"delivered": 1}
    assert (webhook.call_count, sleeps) == (2, [1.5])


def test_given_deleted_webhook_when_delivering_then_no_raise_no_retry_and_failure_metric(
    webhook: respx.Route, capsys: pytest.CaptureFixture[str]
) -> None:
    webhook.respond(404, json={"message": "Unknown Webhook", "code": 10015})
    assert app.lambda_handler(sns_event(alert()), Context()) == {"delivered": 0}
    assert webhook.call_count == 1
    assert '"AlertDeliveryFailures"' in capsys.readouterr().out


def test_given_discord_500_when_delivering_then_raises_so_sns_retries(webhook: respx.Route) -> None:
    webhook.respond(500, json={"message": "500: Internal Server Error", "code": 0})
    with pytest.raises(AlertDeliveryFailed, match="HTTP 500"):
        app.lambda_handler(sns_event(alert()), Context())
    assert webhook.call_count == 3  # the client's own bounded retries, then SNS's


def test_given_malformed_records_then_skipped_and_the_good_one_delivered(
    webhook: respx.Route, caplog: pytest.LogCaptureFixture
) -> None:
    webhook.respond(200, json={"id": "1"})
    event = sns_event("not json {", {"type": "something_else"}, alert(kind="party"), alert())
    event["Records"].append({"EventSource": "aws:sns"})
    assert app.lambda_handler(event, Context()) == {"delivered": 1}
    assert caplog.text.count("skipped") == 4


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (404, {"message": f"Unknown Webhook {TOKEN}", "code": 10015}),
        (403, {"message": "Missing Access", "code": 50001}),
        (503, {"message": f"upstream {WEBHOOK} failed"}),
    ],
)
def test_given_a_failure_then_the_webhook_url_is_in_no_log_or_error(
    webhook: respx.Route,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    status: int,
    body: dict[str, Any],
) -> None:
    webhook.respond(status, json=body)
    error = ""
    try:
        app.lambda_handler(sns_event(alert()), Context())
    except AlertDeliveryFailed as exc:
        error = f"{exc!r} {exc.__cause__!r} {exc.__context__!r}"
    # Every log record with its structured extras, stdout (EMF, JSON logs) and the error chain.
    seen = " ".join(str(record.__dict__) for record in caplog.records) + capsys.readouterr().out + error
    assert any(getattr(record, "status", None) == status for record in caplog.records)
    assert TOKEN not in seen


def test_given_no_webhook_url_then_one_line_naming_it(
    sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DISCORD_ALERT_WEBHOOK_URL")
    app._runtime.cache_clear()
    with pytest.raises(ConfigError, match=r"^DISCORD_ALERT_WEBHOOK_URL is not set"):
        app.lambda_handler(sns_event(alert()), Context())


# --- CloudWatch alarms and the heartbeat -----------------------------------------------------------
ALARM = {
    "AlarmName": "astrabot-credit-status-critical",
    "AlarmDescription": "Credit status is critical: top up OpenRouter now.",
    "NewStateValue": "ALARM",
    "OldStateValue": "OK",
    "NewStateReason": "Threshold Crossed: 1 datapoint [3.0] was >= the threshold (3.0).",
    "StateChangeTime": "2026-12-04T12:00:00.000+0000",
}


def test_given_a_cloudwatch_alarm_when_delivered_then_rendered_not_skipped(webhook: respx.Route) -> None:
    webhook.respond(200, json={"id": "1"})
    assert app.lambda_handler(sns_event(ALARM), Context()) == {"delivered": 1}
    embed = posted(webhook)["embeds"][0]
    assert embed["title"] == "⏰ CloudWatch alarm astrabot-credit-status-critical: ALARM"
    assert embed["color"] == 0xE74C3C
    assert posted(webhook)["allowed_mentions"] == {"parse": []}


def test_given_a_table_when_delivered_then_heartbeat_recorded(
    webhook: respx.Route, ledger: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TABLE_NAME", ledger.table_name)
    app._runtime.cache_clear()
    webhook.respond(200, json={"id": "1"})
    app.lambda_handler(sns_event(alert()), Context())
    beat = ledger.heartbeats()["alert_notifier"]
    assert (beat["ok"], beat["delivered"]) == (True, 1)


def test_given_a_table_when_delivery_fails_then_heartbeat_says_so_and_sns_retries(
    webhook: respx.Route, ledger: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TABLE_NAME", ledger.table_name)
    app._runtime.cache_clear()
    webhook.respond(500, json={"message": "oops"})
    with pytest.raises(AlertDeliveryFailed):
        app.lambda_handler(sns_event(alert()), Context())
    assert ledger.heartbeats()["alert_notifier"]["ok"] is False


@pytest.mark.parametrize(
    ("amount", "shown"),
    [("-0.5", "-$0.5000"), ("-12.5", "-$12.50"), ("0.0213", "$0.0213"), (None, "unknown")],
)
def test_given_an_amount_then_usd_puts_the_sign_before_the_dollar(amount: str | None, shown: str) -> None:
    from astrabot.domain.alert_embed import usd

    assert usd(amount) == shown
