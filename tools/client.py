"""Talk to the dev stack as Discord does: signed interactions, and what Discord would then show.

    python -m tools.client ask "what is a lambda?" [--model M]
    python -m tools.client nexus credits | status | diagnostics [--test-alert]
    python -m tools.client ping [--bad-signature]
    python -m tools.client poll | balance [USD] | topup USD | alerts      (dev stack controls)
    python -m tools.client shell                                          (interactive)

Each interaction is signed like Discord signs it: Ed25519 over `timestamp + body`, hex in the
X-Signature-Ed25519 and X-Signature-Timestamp headers, with the private key `make dev` wrote to
.devstack/keys.json. The immediate response (deferred or ephemeral) is printed, then, for /ask, the
edited answer and follow-ups as they reached the Discord sink, then any alert posted meanwhile.
"""

from __future__ import annotations

import argparse
import itertools
import json
import secrets
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from nacl.signing import SigningKey

from tools import render

DEFAULT_URL = "http://127.0.0.1:8789/"
DEFAULT_KEYS = Path(".devstack/keys.json")
DISCORD_EPOCH_MS = 1420070400000
GUILD_ID = "1100000000000000001"
CHANNEL_ID = "1100000000000000002"
ADMINISTRATOR = "8"
_increment = itertools.count()


class ClientError(Exception):
    """The client cannot do what was asked; the message is one line."""


@dataclass(frozen=True)
class DevKeys:
    private_key: str
    public_key: str
    application_id: str
    interactions_url: str

    @property
    def signing_key(self) -> SigningKey:
        return SigningKey(bytes.fromhex(self.private_key))


def load_keys(path: Path = DEFAULT_KEYS) -> DevKeys:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ClientError(f"no key file at {path}: is `make dev` running (or pass --keys)?") from None
    except ValueError:
        raise ClientError(f"{path} is not the JSON `make dev` writes") from None
    try:
        return DevKeys(
            data["private_key"], data["public_key"], str(data["application_id"]), data["interactions_url"]
        )
    except KeyError as exc:
        raise ClientError(f"{path} has no {exc.args[0]!r}: restart `make dev`") from None


def snowflake(at: float | None = None) -> str:
    """A Discord id made now (the bot reads the interaction's age from it), unique in this process."""
    millis = int((time.time() if at is None else at) * 1000)
    return str(((millis - DISCORD_EPOCH_MS) << 22) | (next(_increment) & 0x3FFFFF))


def sign(key: SigningKey, timestamp: str, body: bytes) -> dict[str, str]:
    signature = key.sign(timestamp.encode() + body).signature.hex()
    return {"X-Signature-Ed25519": signature, "X-Signature-Timestamp": timestamp}


# --- interactions as Discord sends them ----------------------------------------------------------
@dataclass(frozen=True)
class Member:
    user_id: str = "100000000000000042"
    username: str = "ada"
    permissions: str = ADMINISTRATOR

    def as_member(self) -> dict[str, Any]:
        return {
            "user": {"id": self.user_id, "username": self.username, "global_name": self.username.title()},
            "roles": [],
            "permissions": self.permissions,
            "nick": None,
        }


def _interaction(
    application_id: str, kind: int, data: dict[str, Any] | None, member: Member
) -> dict[str, Any]:
    interaction: dict[str, Any] = {
        "id": snowflake(),
        "application_id": application_id,
        "type": kind,
        "token": "devtoken-" + secrets.token_urlsafe(24),
        "version": 1,
    }
    if kind != 1:
        interaction |= {
            "guild_id": GUILD_ID,
            "channel_id": CHANNEL_ID,
            "locale": "en-US",
            "member": member.as_member(),
            "data": data,
        }
    return interaction


def ping_interaction(application_id: str) -> dict[str, Any]:
    return _interaction(application_id, 1, None, Member())


def ask_interaction(
    application_id: str, prompt: str, model: str | None = None, member: Member = Member()
) -> dict[str, Any]:
    options = [{"name": "prompt", "type": 3, "value": prompt}]
    if model:
        options.append({"name": "model", "type": 3, "value": model})
    data = {"id": "1200000000000000001", "name": "ask", "type": 1, "options": options}
    return _interaction(application_id, 2, data, member)


def nexus_interaction(
    application_id: str, subcommand: str, *, test_alert: bool = False, member: Member = Member()
) -> dict[str, Any]:
    options = [{"name": "test_alert", "type": 5, "value": True}] if test_alert else []
    data = {
        "id": "1200000000000000003",
        "name": "nexus",
        "type": 1,
        "options": [{"name": subcommand, "type": 1, "options": options}],
    }
    return _interaction(application_id, 2, data, member)


# --- the client --------------------------------------------------------------------------------------
@dataclass
class Exchange:
    """One interaction: what was sent, the endpoint's immediate answer, and (for deferred ones) the rest."""

    interaction: dict[str, Any]
    status: int
    response: dict[str, Any]
    seconds: float
    followup: dict[str, Any] | None = None  # the dev stack's record of llm_call's work
    alerts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def deferred(self) -> bool:
        return self.response.get("type") == 5

    @property
    def shown(self) -> list[dict[str, Any]]:
        """What Discord shows now: the immediate message or the edited original, then follow-ups."""
        if not self.deferred:
            data = self.response.get("data")
            return [data] if isinstance(data, dict) else []
        if not self.followup:
            return []
        shown = [self.followup["original"]] if self.followup.get("original") else []
        shown += [m["body"] for m in self.followup.get("messages", []) if m["kind"] == "followup"]
        return shown

    @property
    def text(self) -> str:
        """Every content and embed text shown, joined (what assertions search)."""
        return json.dumps(self.shown, ensure_ascii=False)


class DevClient:
    def __init__(
        self, keys: DevKeys, url: str | None = None, *, member: Member = Member(), timeout: float = 10.0
    ) -> None:
        self.keys = keys
        self.url = url or keys.interactions_url
        self.member = member
        self._key = keys.signing_key
        self._http = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def _control_url(self, path: str) -> str:
        return str(httpx.URL(self.url).join(f"/_dev/{path}"))

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, url, **kwargs)
        except httpx.ConnectError:
            raise ClientError(f"cannot reach {self.url}: is `make dev` running?") from None
        except httpx.TimeoutException:
            raise ClientError(f"{url} did not answer in time") from None

    def post(
        self, interaction: dict[str, Any], *, bad_signature: bool = False, timestamp: str | None = None
    ) -> httpx.Response:
        """POST one interaction signed as Discord signs it (or, with bad_signature, as a forger would)."""
        body = json.dumps(interaction, separators=(",", ":")).encode()
        stamp = timestamp or str(int(time.time()))
        headers = sign(self._key, stamp, body) | {
            "Content-Type": "application/json",
            "User-Agent": "Discord-Interactions/1.0 (+https://discord.com)",
        }
        if bad_signature:  # flip one bit of the signature: exactly what Discord's endpoint check sends
            signature = bytearray(bytes.fromhex(headers["X-Signature-Ed25519"]))
            signature[0] ^= 1
            headers["X-Signature-Ed25519"] = signature.hex()
        return self._request("POST", self.url, content=body, headers=headers)

    def exchange(
        self, interaction: dict[str, Any], *, wait: float = 60.0, alert_wait: float = 0.0
    ) -> Exchange:
        alerts_before = self.alerts()[1]
        started = time.monotonic()
        answer = self.post(interaction)
        seconds = time.monotonic() - started
        try:
            response = answer.json()
        except ValueError:
            response = {"error": answer.text}
        exchange = Exchange(interaction, answer.status_code, response, seconds)
        if exchange.deferred:
            exchange.followup = self.wait_for_answer(interaction["id"], wait)
        exchange.alerts = self.alerts(alerts_before, wait=alert_wait)[0]
        return exchange

    def ping(self) -> Exchange:
        return self.exchange(ping_interaction(self.keys.application_id))

    def ask(self, prompt: str, model: str | None = None, *, wait: float = 60.0) -> Exchange:
        return self.exchange(ask_interaction(self.keys.application_id, prompt, model, self.member), wait=wait)

    def nexus(self, subcommand: str, *, test_alert: bool = False) -> Exchange:
        interaction = nexus_interaction(
            self.keys.application_id, subcommand, test_alert=test_alert, member=self.member
        )
        # A test alert travels SNS -> alert_notifier -> webhook after the reply: give it a moment.
        return self.exchange(interaction, alert_wait=3.0 if test_alert else 0.0)

    # --- dev stack controls (/_dev on the interactions server) ---------------------------------
    def _control(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        answer = self._request(method, self._control_url(path), **kwargs)
        try:
            result: dict[str, Any] = json.loads(answer.content, parse_float=Decimal)  # money stays exact
        except ValueError:
            result = {"error": answer.text}
        if answer.status_code != 200:
            raise ClientError(f"dev stack: {result.get('error', answer.text)}")
        return result

    def wait_for_answer(self, interaction_id: str, wait: float) -> dict[str, Any]:
        timeout = httpx.Timeout(10.0, read=wait + 5)
        return self._control("GET", f"interactions/{interaction_id}", params={"wait": wait}, timeout=timeout)

    def poll(self) -> dict[str, Any]:
        return self._control("POST", "poll", timeout=40.0)["poll"]  # type: ignore[no-any-return]

    def simulator(self, **change: Any) -> dict[str, Any]:
        if not change:
            return self._control("GET", "simulator")
        return self._control("POST", "simulator", json={k: str(v) for k, v in change.items()})

    def alerts(self, after: int = 0, wait: float = 0.0) -> tuple[list[dict[str, Any]], int]:
        timeout = httpx.Timeout(10.0, read=wait + 5)
        answer = self._control("GET", "alerts", params={"after": after, "wait": wait}, timeout=timeout)
        return answer["alerts"], answer["next"]

    def info(self) -> dict[str, Any]:
        return self._control("GET", "info")


# --- printing --------------------------------------------------------------------------------------
def show_exchange(exchange: Exchange, out: Callable[[str], None] = print) -> None:
    ms = exchange.seconds * 1000
    if exchange.status != 200:
        out(f"  ← HTTP {exchange.status} in {ms:.0f} ms: {exchange.response}")
        return
    out(f"  ← HTTP 200 in {ms:.0f} ms")
    out(render.interaction_response(exchange.response, indent=4))
    if exchange.deferred:
        followup = exchange.followup or {}
        if not followup.get("done"):
            out("    (no answer yet: llm_call is still running; see .devstack/functions.log)")
        elif exchange.shown:
            out("  ← the deferred message, edited by llm_call:")
            out(render.messages(exchange.shown, indent=4))
        else:
            out(f"    (llm_call finished without a Discord message: {followup.get('outcome')})")
    for alert in exchange.alerts:
        out("  📣 meanwhile on the alert webhook:")
        out(render.message(alert, indent=4))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.client",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", help="interactions endpoint (default: the one in the key file)")
    parser.add_argument("--keys", type=Path, default=DEFAULT_KEYS, help="key file written by make dev")
    parser.add_argument("--no-admin", action="store_true", help="ask as a member without Manage Server")
    commands = parser.add_subparsers(dest="command", required=True)
    ping = commands.add_parser("ping", help="a signed PING")
    ping.add_argument("--bad-signature", action="store_true", help="sign wrongly: expect 401")
    ask = commands.add_parser("ask", help="/ask prompt:<text>")
    ask.add_argument("prompt", nargs="+")
    ask.add_argument("--model")
    ask.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the answer")
    nexus = commands.add_parser("nexus", help="/nexus credits|status|diagnostics")
    nexus.add_argument("subcommand", choices=["credits", "status", "diagnostics"])
    nexus.add_argument("--test-alert", action="store_true", help="diagnostics: send a test alert")
    commands.add_parser("poll", help="run credit_poller now")
    balance = commands.add_parser("balance", help="show, or set, the simulator's balance (USD)")
    balance.add_argument("usd", nargs="?")
    topup = commands.add_parser("topup", help="add USD to the simulator's balance")
    topup.add_argument("usd")
    alerts = commands.add_parser("alerts", help="every alert the webhook received")
    alerts.add_argument("--wait", type=float, default=0.0, dest="alert_wait")
    commands.add_parser("shell", help="interactive: type the commands above")
    return parser


def run(args: argparse.Namespace, client: DevClient, out: Callable[[str], None] = print) -> int:
    """One command; 0 when it did what it says, 1 when the bot did not."""
    if args.command == "ping":
        answer = client.post(ping_interaction(client.keys.application_id), bad_signature=args.bad_signature)
        out(f"  ← HTTP {answer.status_code}: {answer.text}")
        return 0 if answer.status_code == (401 if args.bad_signature else 200) else 1
    if args.command in ("ask", "nexus"):
        if args.command == "ask":
            prompt = " ".join(args.prompt)
            out(f"→ /ask prompt: {prompt}" + (f" model: {args.model}" if args.model else ""))
            exchange = client.ask(prompt, args.model, wait=args.wait)
        else:
            out(f"→ /nexus {args.subcommand}" + (" test_alert: True" if args.test_alert else ""))
            exchange = client.nexus(args.subcommand, test_alert=args.test_alert)
        show_exchange(exchange, out)
        return 0 if exchange.status == 200 and exchange.shown else 1
    if args.command == "poll":
        before = client.alerts()[1]
        out(f"  credit_poller: {client.poll()}")
        for alert in client.alerts(before, wait=1.5)[0]:
            out("  📣 alert webhook:")
            out(render.message(alert, indent=4))
        return 0
    if args.command in ("balance", "topup"):
        if args.command == "topup":
            state = client.simulator(top_up=args.usd)
        else:
            state = client.simulator(balance=args.usd) if args.usd else client.simulator()
        out(
            f"  simulator balance ${state['balance']} (spent ${state['spent']}); `poll` to let the bot see it"
        )
        return 0
    if args.command == "alerts":
        posts = client.alerts(0, wait=args.alert_wait)[0]
        out(f"  {len(posts)} alert(s) on the webhook")
        for alert in posts:
            out(render.message(alert, indent=4))
        return 0
    return shell(client, out)


def shell(client: DevClient, out: Callable[[str], None] = print) -> int:
    parser = _parser()
    out("Type a command (ask ..., nexus credits, ping, poll, balance, topup 5, alerts); Ctrl-D quits.")
    while True:
        try:
            line = input("astrabot> ").strip()
        except (EOFError, KeyboardInterrupt):
            out("")
            return 0
        if not line:
            continue
        try:
            args = parser.parse_args(shlex.split(line))
        except (SystemExit, ValueError):
            continue  # argparse printed the usage
        if args.command == "shell":
            continue
        try:
            run(args, client, out)
        except ClientError as exc:
            out(f"  {exc}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        keys = load_keys(args.keys)
        member = Member(permissions="0") if args.no_admin else Member()
        client = DevClient(keys, args.url, member=member)
        try:
            return run(args, client)
        finally:
            client.close()
    except ClientError as exc:
        print(f"client: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
