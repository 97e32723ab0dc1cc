"""Unit fixtures: moto-backed DynamoDB table built from infra/template.yaml, and the llm_call world."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import respx
from moto import mock_aws

from astrabot.adapters.discord import DiscordClient
from astrabot.adapters.ledger import Ledger
from astrabot.adapters.openrouter import OpenRouterClient
from astrabot.service.chat import ChatDeps
from tests.unit.llm_world import APP_ID, DISCORD, EDIT, FOLLOWUP, FREE, MODEL, NOW, OR_BASE, World
from tools import moto_fidelity
from tools.cfn import create_table_from_template

TABLE = "astrabot-test"


@pytest.fixture
def aws() -> Iterator[None]:
    moto_fidelity.apply()  # DynamoDB's number handling, which moto lacks
    with mock_aws():
        yield


@pytest.fixture
def ddb(aws: None) -> Any:
    client = boto3.client("dynamodb", region_name="us-east-1")
    create_table_from_template(client, TABLE)
    return client


@pytest.fixture
def ledger(ddb: Any) -> Ledger:
    return Ledger(ddb, TABLE)


@pytest.fixture
def world(aws: None, ddb: Any, ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    for name, value in {
        "TABLE_NAME": ledger.table_name,
        "OPENROUTER_API_KEY": "sk-or-v1-test-secret-0001",
        "DISCORD_APPLICATION_ID": APP_ID,
        "OPENROUTER_BASE_URL": OR_BASE,
        "DISCORD_API_BASE_URL": DISCORD,
        "DEFAULT_MODEL": MODEL,
        "FALLBACK_MODELS": FREE,
    }.items():
        monkeypatch.setenv(name, value)
    import functions.llm_call.app as module

    app = importlib.reload(module)  # built inside the mock, like a cold start
    sleeps: list[float] = []
    deps = ChatDeps(
        settings=app._settings,
        ledger=ledger,
        openrouter=OpenRouterClient("sk-or-v1-test-secret-0001", base_url=OR_BASE, sleep=sleeps.append),
        discord=DiscordClient(application_id=APP_ID, base_url=DISCORD, sleep=sleeps.append),
        clock=lambda: NOW,
    )
    monkeypatch.setattr(app, "_deps", lambda: deps)
    with respx.mock(assert_all_called=False) as router:
        chat = router.post(f"{OR_BASE}/chat/completions")
        edit = router.patch(f"{DISCORD}{EDIT}").respond(json={"id": "m1"})
        followup = router.post(url__startswith=f"{DISCORD}{FOLLOWUP}").respond(json={"id": "m2"})
        yield World(app, ledger, chat, edit, followup, sleeps)
