"""Security: secrets never reach a log line or a reply, and /nexus refuses every non-admin.

Every test in this directory is also scanned by conftest's autouse fixture (no value of
support.SECRETS in any log record or printed line). Here the flows that are most likely to leak
run on purpose: OpenRouter and Discord echoing secrets back in errors, a failing webhook, the
diagnostics embed that prints the configuration, and the exceptions each handler raises.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from astrabot.adapters.discord import DiscordClient
from astrabot.errors import AstraBotError
from astrabot.service.interactions import NOT_ADMIN_TEXT
from astrabot.settings import Secret
from functions.alert_notifier import app as notifier_app
from functions.credit_poller import app as poller_app
from functions.interactions import app as interactions_app
from tests.reliability.conftest import LlmWorld, Observe, Printed, leaked, record_text
from tests.reliability.endpoint import Endpoint, endpoint_settings
from tests.reliability.support import (
    ADMIN,
    ADMIN_USER,
    ADMINISTRATOR,
    DISCORD_BOT_TOKEN,
    MANAGE_GUILD,
    OPENROUTER_API_KEY,
    OPENROUTER_MANAGEMENT_KEY,
    SEND_MESSAGES,
    WEBHOOK_TOKEN,
    Context,
    encode,
    member,
    nexus,
    signed_event,
)
from tools.simulators.discord_sink import DiscordSink

ALERT = {
    "type": "credit_alert",
    "alert_id": "escalation:critical:e1:3",
    "kind": "escalation",
    "status": "critical",
    "previous_status": "emergency",
    "remaining_usd": "0.0020",
    "affordable_tokens": 66,
    "model": "openai/gpt-4o-mini",
    "topup_url": "https://openrouter.ai/settings/credits",
    "at": "2026-12-04T12:00:00Z",
}


SECRET_NAMES = (
    "OPENROUTER_API_KEY",
    "OPENROUTER_MANAGEMENT_KEY",
    "DISCORD_BOT_TOKEN",
    "DISCORD_ALERT_WEBHOOK_URL",
)


def sns(message: dict[str, Any]) -> dict[str, Any]:
    return {"Records": [{"EventSource": "aws:sns", "Sns": {"Message": json.dumps(message)}}]}


@pytest.fixture
def notifier(sink: DiscordSink, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = sink.webhook_url("777", WEBHOOK_TOKEN)
    monkeypatch.setenv("DISCORD_ALERT_WEBHOOK_URL", url)
    monkeypatch.setattr(notifier_app, "DiscordClient", functools.partial(DiscordClient, sleep=lambda s: None))
    notifier_app._runtime.cache_clear()
    yield url
    notifier_app._runtime.cache_clear()


def test_given_failures_that_echo_secrets_when_every_function_runs_then_no_secret_in_logs_or_replies(
    llm: LlmWorld,
    notifier: str,
    caplog: pytest.LogCaptureFixture,
    printed: Printed,
    monkeypatch: pytest.MonkeyPatch,
    observe: Observe,
) -> None:
    replies: list[str] = []
    # llm_call: an answer, then OpenRouter failing with the API key in its error text, then Discord failing.
    llm.balance("5.00")
    for fault in (None, "echo", "discord"):
        interaction = llm.interaction()
        if fault == "echo":
            llm.sim.fail_next(500, times=3, message=f"upstream rejected key {OPENROUTER_API_KEY}")
        if fault == "discord":
            llm.sink.fail_next(404, times=4, kind="edit_original")
        replies.append(json.dumps(llm.run(interaction)))
    replies += [json.dumps(c.body) for c in llm.sink.calls]
    # credit_poller: a good poll, then /credits answering 401 with the management key echoed.
    poller_app._runtime.cache_clear()
    replies.append(json.dumps(poller_app.lambda_handler({}, Context("credit_poller"))))
    llm.sim.fail_next(401, path="/credits", message=f"bad key {OPENROUTER_MANAGEMENT_KEY}")
    replies.append(json.dumps(poller_app.lambda_handler({}, Context("credit_poller"))))
    poller_app._runtime.cache_clear()
    # alert_notifier: delivered, then the webhook failing (500 every try: raises for SNS to retry).
    replies.append(json.dumps(notifier_app.lambda_handler(sns(ALERT), Context("alert_notifier"))))
    llm.sink.fail_next(500, times=4, kind="webhook")
    with pytest.raises(AstraBotError) as failed:
        notifier_app.lambda_handler(sns(ALERT), Context("alert_notifier"))
    replies.append(f"{failed.value!r} {failed.value}")
    # interactions: /nexus diagnostics prints the configuration, secrets included (masked).
    settings = endpoint_settings(
        openrouter_api_key=Secret(OPENROUTER_API_KEY),
        openrouter_management_key=Secret(OPENROUTER_MANAGEMENT_KEY),
        discord_bot_token=Secret(DISCORD_BOT_TOKEN),
        discord_alert_webhook_url=Secret(notifier),
    )
    served = Endpoint(settings=settings)
    monkeypatch.setattr(interactions_app, "runtime", lambda: served.deps)
    diagnostics = served.call(signed_event(encode(nexus("diagnostics", who=ADMIN))))
    replies.append(json.dumps(diagnostics.body, ensure_ascii=False))
    assert "****" in replies[-1]  # the configuration is there, masked

    records = caplog.records
    out = printed.out()
    found = leaked("\n".join(replies) + out + "\n".join(r.getMessage() + str(vars(r)) for r in records))
    assert found == []
    observe(
        "Secrets echoed back by OpenRouter and Discord, failing webhook, /nexus diagnostics",
        f"{len(SECRET_NAMES)} configured secrets (+ interaction tokens) found in 0 of {len(records)} log "
        f"records, {out.count(chr(10))} printed lines and {len(replies)} replies/exceptions",
        faults=6,
        requests=1,
    )


def test_given_a_secret_only_in_an_extra_field_then_the_scan_finds_it() -> None:
    record = logging.LogRecord("astrabot", logging.INFO, __file__, 1, "webhook call failed", None, None)
    record.url = f"https://discord.test/api/webhooks/1/{WEBHOOK_TOKEN}?wait=true"
    assert leaked(record_text(record)) == [WEBHOOK_TOKEN]


def test_given_the_root_logger_at_info_when_an_alert_is_delivered_then_the_webhook_url_is_not_logged(
    notifier: str, observe: Observe
) -> None:
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    # A root logger at INFO (as Lambda's ApplicationLogLevel INFO sets it), with httpx's records
    # collected away from caplog so only this test sees them.
    root, httpx_logger, collect = logging.getLogger(), logging.getLogger("httpx"), Collect()
    root_level, propagate = root.level, httpx_logger.propagate
    httpx_logger.addHandler(collect)
    httpx_logger.propagate = False
    root.setLevel(logging.INFO)  # setLevel also resets logging's cache of enabled levels
    try:
        delivered = notifier_app.lambda_handler(sns(ALERT), Context("alert_notifier"))
    finally:
        httpx_logger.removeHandler(collect)
        httpx_logger.propagate = propagate
        root.setLevel(root_level)
    assert delivered == {"delivered": 1}
    found = [line for line in lines if WEBHOOK_TOKEN in line]
    observe(
        "httpx request logging with the root logger at INFO",
        f"{len(found)} of {len(lines)} httpx INFO lines carry the alert webhook URL",
        requests=1,
    )
    assert found == []


# --- /nexus for non-admins, whatever default_member_permissions says ------------------------------
NON_ADMIN_BITS = [bit for bit in range(50) if (1 << bit) not in (ADMINISTRATOR, MANAGE_GUILD)]
MALFORMED_PERMISSIONS = ["8.0", "0x8", "-8", " 8", "8 ", "+8", "８", "٨", "1e3", "", "null", "32" * 21]


def non_admins() -> list[dict[str, Any]]:
    everyone_else = sum(1 << bit for bit in NON_ADMIN_BITS)
    return (
        [member(permissions=1 << bit) for bit in NON_ADMIN_BITS]
        + [member(permissions=everyone_else), member(permissions=SEND_MESSAGES, roles=["1999", "2000"])]
        + [member(permissions=text) for text in MALFORMED_PERMISSIONS]
        + [
            {**member(), "permissions": 8},
            {**member(), "permissions": [8]},
        ]  # not the decimal string Discord sends
    )


def test_given_validly_signed_nexus_from_non_admins_then_refused_without_reading_or_publishing(
    observe: Observe, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = Endpoint(settings=endpoint_settings(nexus_admin_user_ids=frozenset({ADMIN_USER})))
    monkeypatch.setattr(interactions_app, "runtime", lambda: served.deps)
    interactions = [
        nexus(sub, who=who, **({"test_alert": True} if sub == "diagnostics" else {}))
        for who in non_admins()
        for sub in ("credits", "status", "diagnostics")
    ]
    spoofed = {
        **nexus("credits", who=member(permissions=0)),
        "user": {"id": ADMIN_USER},
    }  # a listed id, top level
    interactions.append(spoofed)
    answers = [served.call(signed_event(encode(i))) for i in interactions]
    refused = [a for a in answers if (a.status, a.body["data"].get("content")) == (200, NOT_ADMIN_TEXT)]
    assert len(refused) == len(interactions)
    assert all(
        a.body["data"]["flags"] == 64 and a.body["data"]["allowed_mentions"] == {"parse": []} for a in answers
    )
    assert served.aws == []  # no ledger read, no test alert published
    admitted = served.call(signed_event(encode(nexus("credits", who=replace_user(ADMIN_USER)))))
    assert admitted.body["data"].get("embeds")  # the listed user is admitted: the refusals are not blanket
    observe(
        "Validly signed /nexus from non-admins (default_member_permissions bypassed)",
        f"{len(refused)}/{len(interactions)} refused ephemerally ({len(NON_ADMIN_BITS)} single non-admin "
        f"bits, all of them at once, unlisted roles, {len(MALFORMED_PERMISSIONS) + 2} malformed permission "
        "values, a spoofed top-level user; × credits/status/diagnostics+test_alert); AWS calls 0, "
        "SNS publishes 0",
        inputs=len(interactions),
        requests=len(interactions) + 1,
    )


def replace_user(user_id: str) -> dict[str, Any]:
    return {**member(permissions=0), "user": {"id": user_id, "username": "listed"}}


def test_given_ephemeral_replies_from_every_route_then_none_can_ping(
    endpoint: Endpoint, observe: Observe
) -> None:
    from tests.reliability.support import ask

    interactions = [
        ask("x" * 5000),  # too long
        ask("   "),  # empty
        {
            **ask("hi"),
            "data": {
                **ask("hi")["data"],
                "options": [
                    {"name": "prompt", "type": 3, "value": "@everyone hi"},
                    {"name": "model", "type": 3, "value": "@everyone/model"},
                ],
            },
        },
        nexus("credits", who=member(permissions=0)),
        nexus("credits", who=ADMIN),
        nexus("status", who=ADMIN),
        nexus("diagnostics", who=ADMIN),
    ]
    answers = [endpoint.call(signed_event(encode(i))) for i in interactions]
    assert all(a.body["type"] == 4 and a.body["data"]["allowed_mentions"] == {"parse": []} for a in answers)
    observe(
        "Immediate replies (prompt too long, empty, unknown model, /nexus refusals and embeds)",
        f"{len(answers)} ephemeral replies, all with allowed_mentions {{'parse': []}}",
        inputs=len(answers),
        requests=len(answers),
    )
