"""tools/register_commands: the definitions as JSON (--dry-run) and the PUT to a guild or globally."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx

from tools import register_commands

APP_ID = "1234567890123456789"
GUILD = "1100000000000000001"
TOKEN = "MTIzNDU2Nzg5.bot-token-secret"
API = "https://discord.com/api/v10"
GLOBAL_URL = f"{API}/applications/{APP_ID}/commands"
GUILD_URL = f"{API}/applications/{APP_ID}/guilds/{GUILD}/commands"
ENV = {
    "DISCORD_APPLICATION_ID": APP_ID,
    "DISCORD_BOT_TOKEN": TOKEN,
    "DEFAULT_MODEL": "openai/gpt-4o-mini",
    "FALLBACK_MODELS": "meta-llama/llama-3.3-70b-instruct:free",
}


def run(argv: list[str], env: dict[str, str] | None = None, **kw: Any) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = register_commands.main(argv, env=ENV if env is None else env, out=out, err=err, **kw)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def discord() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


def registered(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json=[{"id": str(i), **c} for i, c in enumerate(json.loads(request.content))])


def test_given_dry_run_without_token_then_prints_the_three_definitions(discord: respx.MockRouter) -> None:
    code, out, _ = run(["--dry-run"], env={"FALLBACK_MODELS": "a/b:free,c/d"})
    commands = json.loads(out)
    assert code == 0
    assert [(c["name"], c["type"]) for c in commands] == [("ask", 1), ("Ask AstraBot", 3), ("nexus", 1)]
    assert not discord.calls


def test_given_dry_run_then_ask_offers_the_configured_models_and_limits_the_prompt() -> None:
    ask = json.loads(
        run(["--dry-run"], env={"FALLBACK_MODELS": "a/b:free,c/d", "MAX_PROMPT_CHARS": "1500"})[1]
    )[0]
    prompt, model = ask["options"]
    assert (prompt["required"], prompt["max_length"]) == (True, 1500)
    assert [choice["value"] for choice in model["choices"]] == ["openai/gpt-4o-mini", "a/b:free", "c/d"]


def test_given_dry_run_then_nexus_is_for_managers_outside_dms_with_three_subcommands() -> None:
    nexus = json.loads(run(["--dry-run"])[1])[2]
    assert (nexus["default_member_permissions"], nexus["dm_permission"]) == (str(1 << 5), False)
    assert [sub["name"] for sub in nexus["options"]] == ["credits", "status", "diagnostics"]
    assert nexus["options"][2]["options"][0] == {
        "type": 5,
        "name": "test_alert",
        "description": "Also send a test alert through the real alert path",
        "required": False,
    }


def test_given_guild_when_registering_then_put_to_the_guild_url_with_bot_auth(
    discord: respx.MockRouter,
) -> None:
    route = discord.put(GUILD_URL).mock(side_effect=registered)
    code, out, _ = run(["--guild", GUILD])
    assert code == 0
    assert route.call_count == 1
    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Bot {TOKEN}"
    assert [c["name"] for c in json.loads(request.content)] == ["ask", "Ask AstraBot", "nexus"]
    assert out == f"Registered 3 commands in guild {GUILD}: ask, Ask AstraBot, nexus\n"


def test_given_no_guild_when_registering_then_put_globally(discord: respx.MockRouter) -> None:
    route = discord.put(GLOBAL_URL).mock(side_effect=registered)
    code, out, _ = run([])
    assert (code, route.call_count) == (0, 1)
    assert out.startswith("Registered 3 commands globally")


def test_given_rate_limit_when_registering_then_waits_retry_after_and_succeeds(
    discord: respx.MockRouter,
) -> None:
    limited = httpx.Response(
        429, json={"message": "You are being rate limited.", "retry_after": 1.5, "global": False}
    )
    route = discord.put(GLOBAL_URL).mock(side_effect=[limited, registered])
    waits: list[float] = []
    code, _, _ = run([], sleep=waits.append)
    assert (code, route.call_count, waits) == (0, 2, [1.5])


@pytest.mark.parametrize("missing", ["DISCORD_BOT_TOKEN", "DISCORD_APPLICATION_ID"])
def test_given_missing_credentials_when_registering_then_one_line_naming_it_and_no_call(
    discord: respx.MockRouter, missing: str
) -> None:
    env = {k: v for k, v in ENV.items() if k != missing}
    code, out, err = run([], env=env)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1
    assert missing in err
    assert not discord.calls


def test_given_discord_rejects_the_token_then_exit_1_without_echoing_it(discord: respx.MockRouter) -> None:
    discord.put(GLOBAL_URL).respond(401, json={"message": f"401: Unauthorized {TOKEN}", "code": 0})
    code, out, err = run([])
    assert (code, out) == (1, "")
    assert "HTTP 401" in err
    assert TOKEN not in err


def test_given_non_numeric_guild_then_argparse_refuses() -> None:
    with pytest.raises(SystemExit) as exit_info:
        register_commands.parse_args(["--guild", "my-server"])
    assert exit_info.value.code == 2
