"""Register AstraBot's application commands with Discord (`make register ARGS="..."`).

    python -m tools.register_commands [--guild ID] [--dry-run]

The definitions are built from the same settings the bot runs with (the /ask model choices come
from DEFAULT_MODEL and FALLBACK_MODELS). `--guild` registers in one server, where changes apply at
once; without it the commands are global. `--dry-run` prints the JSON and needs no token.
Rate limits (429 with `retry_after`) are waited out by the Discord client.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TextIO

import httpx

from astrabot.adapters.discord import DiscordClient
from astrabot.domain.commands import command_definitions
from astrabot.errors import ConfigError, DiscordError
from astrabot.settings import load_settings

REQUIRED = ("DISCORD_APPLICATION_ID", "DISCORD_BOT_TOKEN")


def _snowflake(value: str) -> str:
    if not value.isascii() or not value.isdigit():
        raise argparse.ArgumentTypeError(f"a guild id is a number, got {value!r}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.register_commands", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--guild", type=_snowflake, help="register in this guild only (applies at once)")
    parser.add_argument("--dry-run", action="store_true", help="print the command JSON and exit")
    return parser.parse_args(argv)


def main(
    argv: Sequence[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    http: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    args = parse_args(argv)
    try:
        settings = load_settings(() if args.dry_run else REQUIRED, env=env)
    except ConfigError as exc:
        print(f"register_commands: {exc}", file=err)
        return 2
    definitions = command_definitions(settings)
    if args.dry_run:
        print(json.dumps(definitions, indent=2, ensure_ascii=False), file=out)
        return 0
    client = DiscordClient(
        application_id=settings.discord_application_id,
        base_url=settings.discord_api_base_url,
        bot_token=settings.discord_bot_token.reveal(),
        http=http,
        sleep=sleep,
        max_wait=60.0,  # an operator can wait out a minute-long rate limit; a Lambda could not
    )
    try:
        registered = client.put_commands(definitions, guild_id=args.guild)
    except DiscordError as exc:  # the message names the route, never the token
        print(f"register_commands: Discord refused the commands: {exc}", file=err)
        return 1
    scope = f"in guild {args.guild}" if args.guild else "globally"
    names = ", ".join(str(command.get("name")) for command in registered)
    print(f"Registered {len(registered)} commands {scope}: {names}", file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
