"""`make demo`: the credit story, told on a fresh dev stack and checked step by step.

    python -m tools.demo [--verbose]

A healthy answer; usage drains the credits; the low, emergency and critical alerts arrive once
each; an answer trimmed to what the balance affords; a free-model fallback; a clear refusal; a
top-up and the recovery alert; `/nexus credits` at each stage. Every interaction is signed and
sent over HTTP exactly as `python -m tools.client` sends it. The stack runs on free ports, so a
`make dev` can keep running. Exits 1 with the failing step's name when something does not happen
as told, 2 when the stack cannot start.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from tools import render
from tools.client import DevClient, Exchange, load_keys

DEADLINE_SECONDS = 55.0
ALERT_WAIT_SECONDS = 10.0
DRAIN_MAX_ASKS = 12
CREDIT_FIELDS = ("Remaining", "Status", "Affordable", "/ask max_tokens now")
TOPUP_URL = "openrouter.ai/settings/credits"


class StoryFailed(AssertionError):
    """A step of the story did not happen as told."""


@dataclass
class Story:
    client: DevClient
    out: Callable[[str], None] = print
    started: float = field(default_factory=time.monotonic)
    step_title: str = ""
    steps: int = 0
    alerts: list[dict[str, Any]] = field(default_factory=list)
    alert_cursor: int = 0
    default_model: str = ""
    completion_price: Decimal = Decimal(0)

    # --- telling -------------------------------------------------------------------------------
    def step(self, title: str, *lines: str) -> None:
        if time.monotonic() - self.started > DEADLINE_SECONDS:
            raise StoryFailed(f"the story took longer than {DEADLINE_SECONDS:.0f} s")
        self.steps += 1
        self.step_title = title
        self.out("")
        self.out(f"━━ {self.steps}. {title} " + "━" * max(3, 70 - len(title)))
        for line in lines:
            self.out(f"   {line}")

    def expect(self, condition: bool, claim: str, seen: Any = None) -> None:
        if not condition:
            detail = f" (saw: {render.shorten(str(seen), 300)})" if seen is not None else ""
            raise StoryFailed(f"step {self.steps} ({self.step_title}): expected {claim}{detail}")
        self.out(f"   ✓ {claim}")

    # --- acting --------------------------------------------------------------------------------
    def usd_for(self, tokens: int) -> Decimal:
        return self.completion_price * tokens

    def set_balance(self, tokens: int | None = None, usd: Decimal | None = None) -> None:
        amount = usd if usd is not None else self.usd_for(tokens or 0)
        self.client.simulator(balance=amount)
        self.out(f"   (simulator) OpenRouter balance is now ${amount}")

    def poll(self, expected_status: str | None = None) -> dict[str, Any]:
        result = self.client.poll()
        tokens = result.get("affordable_tokens")
        self.out(
            f"   credit_poller: status {result.get('status')}, ${result.get('remaining_usd')} left, "
            f"{tokens:,} tokens affordable"
            if isinstance(tokens, int)
            else f"   credit_poller: {result}"
        )
        if expected_status is not None:
            self.expect(
                result.get("status") == expected_status, f"the poller sees '{expected_status}'", result
            )
        return result

    def ask(self, prompt: str, *, show: bool = True) -> Exchange:
        self.out(f"   → /ask prompt: {prompt}")
        exchange = self.client.ask(prompt, wait=15)
        if show:
            self.out(render.interaction_response(exchange.response, indent=5))
            if exchange.deferred and exchange.shown:
                self.out(render.messages([compact(m) for m in exchange.shown], indent=5))
        return exchange

    def answered(self, exchange: Exchange) -> str:
        """The answer's footer line (the `-# ...` line), after checking that an answer arrived."""
        outcome = (exchange.followup or {}).get("outcome") or {}
        lines = [
            line for message in exchange.shown for line in str(message.get("content") or "").splitlines()
        ]
        footer = next((line for line in reversed(lines) if line.startswith("-# ")), "")
        self.expect(
            exchange.status == 200
            and exchange.deferred
            and outcome.get("result") == "answered"
            and bool(footer),
            f"deferred in {exchange.seconds * 1000:.0f} ms, then answered by llm_call (async invoke)",
            {"response": exchange.response, "followup": exchange.followup},
        )
        return footer

    def credits(self, status: str, *, full: bool = False) -> None:
        self.out("   → /nexus credits")
        exchange = self.client.nexus("credits")
        embeds = (exchange.response.get("data") or {}).get("embeds") or []
        self.expect(
            exchange.status == 200 and exchange.response.get("type") == 4 and bool(embeds),
            "/nexus credits answers at once with an embed",
            exchange.response,
        )
        embed = embeds[0]
        if not full:
            fields = [f for f in embed.get("fields", []) if f.get("name") in CREDIT_FIELDS]
            embed = {"title": embed.get("title"), "color": embed.get("color"), "fields": fields}
        self.out(render.message({"embeds": [embed]}, indent=5))
        self.expect(status in str(embed.get("title", "")).lower(), f"/nexus credits says '{status}'", embed)

    def expect_alert(self, kind: str, status: str) -> None:
        """Wait for the alert `kind:status` on the webhook; show every alert that came with it."""
        deadline = time.monotonic() + ALERT_WAIT_SECONDS
        while not any(alert_key(a) == (kind, status) for a in self.alerts):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            new, self.alert_cursor = self.client.alerts(self.alert_cursor, wait=min(left, 2.0))
            for alert in new:
                self.alerts.append(alert)
                self.out("   📣 on the alert webhook:")
                self.out(render.message(alert, indent=5))
        self.expect(
            any(alert_key(a) == (kind, status) for a in self.alerts),
            f"the {status} {kind} alert reaches the alert webhook",
            [alert_key(a) for a in self.alerts],
        )


def compact(message: dict[str, Any], limit: int = 160) -> dict[str, Any]:
    """The answer shortened for the story (the simulator's answers are long and repetitive); the
    footer line stays whole, it is the point."""
    lines = str(message.get("content") or "").splitlines()
    text = render.shorten(" ".join(line for line in lines if not line.startswith("-# ")), limit)
    footer = [line for line in lines if line.startswith("-# ")]
    return {**message, "content": "\n".join([text, *footer])}


def alert_key(alert: dict[str, Any]) -> tuple[str, str] | None:
    """(kind, status) of an alert webhook post, read from its embed footer (`kind · kind:status:...`)."""
    for embed in alert.get("embeds") or []:
        footer = str((embed.get("footer") or {}).get("text", ""))
        alert_id = footer.rpartition(" · ")[2]
        kind, _, rest = alert_id.partition(":")
        if rest:
            return kind, rest.partition(":")[0]
    return None


# --- the story ---------------------------------------------------------------------------------------
def run_story(client: DevClient, out: Callable[[str], None] = print) -> Story:
    story = Story(client, out)
    info = client.info()
    story.default_model = info["default_model"]
    simulator = client.simulator()
    story.completion_price = Decimal(str(simulator["prices"][story.default_model]["completion"]))
    healthy(story)
    drained(story)
    emergency_and_trimmed(story)
    critical_and_fallback(story)
    refused(story)
    recovered(story)
    summary(story)
    return story


def healthy(story: Story) -> None:
    story.step(
        "A healthy bot",
        f"OpenRouter holds $5.00; {story.default_model} costs "
        f"${story.completion_price * 1_000_000:.2f} per million output tokens.",
    )
    story.poll("healthy")
    story.credits("healthy", full=True)
    footer = story.answered(story.ask("what is a lambda?"))
    story.expect(
        story.default_model in footer and "trimmed" not in footer and "fallback" not in footer,
        f"a full answer from {story.default_model}",
        footer,
    )


def drained(story: Story) -> None:
    story.step(
        "Usage drains the credits",
        "Someone else spent most of the balance on this key; about 2,300 tokens are left.",
        "Each answer below spends a little more, until the poller sees the status drop to low.",
    )
    story.set_balance(tokens=2300)
    story.poll("healthy")
    status = "healthy"
    for number in range(1, DRAIN_MAX_ASKS + 1):
        story.answered(story.ask(f"question {number}: what is a cold start?", show=False))
        status = story.poll()["status"]
        if status != "healthy":
            break
    story.expect(
        status == "low", f"answers drain the balance to 'low' within {DRAIN_MAX_ASKS} questions", status
    )
    story.expect_alert("escalation", "low")
    story.credits("low")


def emergency_and_trimmed(story: Story) -> None:
    story.step("Emergency: answers are trimmed to what is left", "Only about 450 tokens are affordable now.")
    story.set_balance(tokens=450)
    story.poll("emergency")
    story.expect_alert("escalation", "emergency")
    story.credits("emergency")
    story.client.simulator(answer_tokens=1500)  # a question whose full answer would not fit
    try:
        footer = story.answered(story.ask("explain AWS Lambda in depth, with examples"))
    finally:
        story.client.simulator(answer_tokens=120)
    story.expect("trimmed" in footer, "the footer says the answer was trimmed by the credit cap", footer)


def critical_and_fallback(story: Story) -> None:
    story.step(
        "Critical: a free model answers instead",
        f"About 60 tokens are left: too few for {story.default_model}.",
    )
    story.set_balance(tokens=60)
    story.poll("critical")
    story.expect_alert("escalation", "critical")
    story.credits("critical")
    footer = story.answered(story.ask("what is a lambda?"))
    story.expect(
        ":free" in footer and "fallback" in footer, "the footer says a free fallback model answered", footer
    )


def refused(story: Story) -> None:
    story.step(
        "Out of credits: a clear refusal",
        "The balance went negative (OpenRouter allows that): not even free models answer now.",
    )
    story.set_balance(usd=Decimal("-0.0001"))
    story.poll("critical")
    exchange = story.ask("what is a lambda?")
    story.expect(
        exchange.status == 200 and exchange.response.get("type") == 4 and not exchange.deferred,
        "an immediate reply, no LLM call",
        exchange.response,
    )
    flags = int((exchange.response.get("data") or {}).get("flags") or 0)
    story.expect(
        bool(flags & render.EPHEMERAL_FLAG), "the refusal is ephemeral (only the asker sees it)", flags
    )
    story.expect(
        "out of credits" in exchange.text and TOPUP_URL in exchange.text,
        "it says the bot is out of credits and names the top-up page",
        exchange.text,
    )
    story.credits("critical")


def recovered(story: Story) -> None:
    story.step("A top-up, and the bot recovers", "An admin adds $5.00 on openrouter.ai/settings/credits.")
    story.client.simulator(top_up=Decimal("5.00"))
    story.out("   (simulator) +$5.00")
    story.poll("healthy")
    story.expect_alert("recovery", "healthy")
    story.credits("healthy")
    footer = story.answered(story.ask("what is a lambda?"))
    story.expect("fallback" not in footer and "trimmed" not in footer, "full answers are back", footer)


def summary(story: Story) -> None:
    story.step("What the operators' channel received")
    # Late alerts (a poll racing the last step) must show up here too.
    new, story.alert_cursor = story.client.alerts(story.alert_cursor, wait=0.5)
    story.alerts.extend(new)
    keys = [alert_key(a) for a in story.alerts]
    for key in keys:
        story.out(f"   • {key[0]} → {key[1]}" if key else "   • (not a credit alert)")
    for status in ("low", "emergency", "critical"):
        count = keys.count(("escalation", status))
        story.expect(count == 1, f"exactly one {status} alert", count)
    story.expect(keys.count(("recovery", "healthy")) == 1, "exactly one recovery alert", keys)
    seconds = time.monotonic() - story.started
    story.out("")
    story.out(f"The whole story happened as told in {seconds:.1f} s.")


# --- command line ----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--verbose", action="store_true", help="function logs on the terminal")
    args = parser.parse_args(argv)
    # Imported here: the dev stack sets the environment the functions read at import.
    from tools.devstack import DevConfig, DevStack, StackError

    with tempfile.TemporaryDirectory(prefix="astrabot-demo-") as state:
        config = DevConfig(
            moto_port=0,
            openrouter_port=0,
            discord_port=0,
            interactions_port=0,
            poll_interval=5,
            state_dir=Path(state),
            verbose=args.verbose,
            feed=False,
            table_name="astrabot-demo",
            topic_name="astrabot-demo-alerts",
        )
        stack = DevStack(config)
        print("Starting a fresh dev stack (moto, OpenRouter simulator, Discord sink) on free ports...")
        try:
            stack.start()
        except StackError as exc:
            print(f"make demo: {exc}", file=sys.stderr)
            return 2
        client = DevClient(load_keys(stack.keys_path))
        try:
            run_story(client)
        except StoryFailed as exc:
            print(f"\n✗ {exc}", file=sys.stderr)
            return 1
        finally:
            client.close()
            stack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
