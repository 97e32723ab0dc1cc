"""5. Concurrency drain: 200 simultaneous chat requests against a balance that affords about 50 replies.

- ours: the real llm_call path (`service.chat.answer_interaction`): ledger on moto_server, the
  OpenRouter simulator, replies to the Discord sink; the balance item comes from a real poll.
- naive: `GET /key`, and when the remaining credit covers the request, call with the full
  `max_tokens` (a generous naive design: it does check, it just does not reserve).

The simulator charges a reply only when its generation ends (`generation_seconds`), as OpenRouter
does, so checks and charges interleave like the real thing. Every reply runs to its `max_tokens`,
the worst case for overspend. Ground truth is the simulator's own books.
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import httpx

from astrabot.adapters.discord import DiscordClient
from astrabot.adapters.ledger import Ledger
from astrabot.adapters.openrouter import OpenRouterClient
from astrabot.domain.interaction import ChatRequest
from astrabot.errors import InsufficientCredits, OpenRouterError
from astrabot.service.chat import SYSTEM_PROMPT, ChatDeps, answer_interaction
from astrabot.service.poller import poll_once
from astrabot.settings import Secret, Settings
from benchmarks.common import MODEL, Row, Section, Stack, model_price
from tools.simulators.discord_sink import DEFAULT_APPLICATION_ID, DiscordSink
from tools.simulators.openrouter_sim import (
    DEFAULT_API_KEY,
    DEFAULT_MANAGEMENT_KEY,
    OpenRouterSimulator,
    estimate_prompt_tokens,
)

PROMPT = "Explain how a Bloom filter works, with an example."
MAX_TOKENS = 1000  # DEFAULT_MAX_TOKENS: what both designs ask for
MESSAGES = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": PROMPT}]
NETWORK_DELAY_S = 0.02


@dataclass(frozen=True)
class Scale:
    requests: int
    affordable_replies: int
    generation_seconds: float
    repetitions: int


FULL = Scale(requests=200, affordable_replies=50, generation_seconds=1.0, repetitions=3)
QUICK = Scale(requests=12, affordable_replies=3, generation_seconds=0.05, repetitions=1)


@dataclass(frozen=True)
class Drain:
    """One run of one design, from the simulator's books."""

    outcomes: Counter[str]
    seen_402: int
    spent: Decimal
    budget: Decimal

    @property
    def overspend(self) -> Decimal:
        return max(self.spent - self.budget, Decimal(0))

    @property
    def share_granted(self) -> float:
        return float(min(self.spent, self.budget) / self.budget)


def reply_cost() -> Decimal:
    """What one reply of MAX_TOKENS costs as the simulator bills it."""
    price = model_price()
    return estimate_prompt_tokens(MESSAGES) * price.prompt + MAX_TOKENS * price.completion


def _simultaneously(count: int, work: Callable[[int], str], timeout: float) -> Counter[str]:
    """Start `count` threads, release them together, collect their outcomes (bounded wait)."""
    gate = threading.Barrier(count)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def worker(index: int) -> None:
        try:
            gate.wait(timeout=30)
            outcome = work(index)
        except Exception as exc:  # a crash is a result too, not a hang
            outcome = f"crashed: {type(exc).__name__}"
        with lock:
            outcomes[outcome] += 1

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    unfinished = sum(thread.is_alive() for thread in threads)
    if unfinished:
        outcomes["unfinished"] += unfinished
    return outcomes


def _http(count: int) -> httpx.Client:
    return httpx.Client(limits=httpx.Limits(max_connections=count + 8, max_keepalive_connections=count + 8))


def _simulator(scale: Scale, budget: Decimal) -> OpenRouterSimulator:
    """Not started: enter it (`with`) to start and stop it."""
    return OpenRouterSimulator(
        balance=budget,
        key_limit=budget,
        latency=NETWORK_DELAY_S,
        generation_seconds=scale.generation_seconds,
        answer_tokens=MAX_TOKENS * 2,  # every reply runs to its max_tokens
    )


def run_ours(scale: Scale, stack: Stack) -> Drain:
    budget = scale.affordable_replies * reply_cost()
    client = stack.dynamodb(pool=scale.requests + 8)
    ledger = Ledger(client, stack.new_table(client))
    with contextlib.ExitStack() as cleanup:
        sim = cleanup.enter_context(_simulator(scale, budget))
        sink = cleanup.enter_context(DiscordSink())
        settings = Settings(
            table_name=ledger.table_name,
            openrouter_base_url=sim.url,
            discord_api_base_url=sink.url,
            discord_application_id=DEFAULT_APPLICATION_ID,
            default_model=MODEL,
            fallback_models=(),  # no free fallback: measure the paid budget alone, like naive
            default_max_tokens=MAX_TOKENS,
            openrouter_api_key=Secret(DEFAULT_API_KEY),
        )
        poller = OpenRouterClient(
            DEFAULT_API_KEY,
            base_url=sim.url,
            management_key=DEFAULT_MANAGEMENT_KEY,
            http=cleanup.enter_context(httpx.Client()),
            max_retries=0,
        )
        outcome = poll_once(settings, ledger, poller, datetime.now(UTC))
        if not outcome.ok:
            raise RuntimeError(f"seeding poll failed: {outcome.error}")
        deps = ChatDeps(
            settings=settings,
            ledger=ledger,
            openrouter=OpenRouterClient(
                DEFAULT_API_KEY,
                base_url=sim.url,
                http=cleanup.enter_context(_http(scale.requests)),
                max_retries=0,
            ),
            discord=DiscordClient(
                application_id=DEFAULT_APPLICATION_ID,
                base_url=sink.url,
                http=cleanup.enter_context(_http(scale.requests)),
            ),
            clock=lambda: datetime.now(UTC),
        )
        run_id = uuid.uuid4().hex[:6]

        def ask(index: int) -> str:
            request = ChatRequest(
                interaction_id=f"{run_id}-{index}",
                token=f"token-{run_id}-{index}",
                application_id=DEFAULT_APPLICATION_ID,
                user_id=str(1000 + index),
                guild_id="1",
                prompt=PROMPT,
                model=None,
                created_at=datetime.now(UTC),
            )
            return answer_interaction(deps, request).result

        outcomes = _simultaneously(scale.requests, ask, timeout=120)
        return Drain(outcomes, sim.count("/chat/completions", status=402), sim.spent, budget)


def run_naive(scale: Scale) -> Drain:
    budget = scale.affordable_replies * reply_cost()
    worst_case = reply_cost()
    with _simulator(scale, budget) as sim, _http(scale.requests) as http:
        openrouter = OpenRouterClient(DEFAULT_API_KEY, base_url=sim.url, http=http, max_retries=0)

        def ask(index: int) -> str:
            remaining = openrouter.get_key().limit_remaining
            if remaining is None or remaining < worst_case:
                return "refused"
            try:
                openrouter.chat(model=MODEL, messages=MESSAGES, max_tokens=MAX_TOKENS, user=str(index))
            except InsufficientCredits:
                return "402"
            except OpenRouterError:
                return "failed"
            return "answered"

        outcomes = _simultaneously(scale.requests, ask, timeout=120)
        return Drain(outcomes, sim.count("/chat/completions", status=402), sim.spent, budget)


def _median(runs: list[Drain], figure: Callable[[Drain], float]) -> float:
    return statistics.median(figure(run) for run in runs)


def run(quick: bool, stack: Stack) -> Section:
    scale = QUICK if quick else FULL
    ours: list[Drain] = []
    naive: list[Drain] = []
    for _ in range(scale.repetitions):  # alternate the designs so drift hits both
        ours.append(run_ours(scale, stack))
        naive.append(run_naive(scale))
    rows = [
        Row(
            "drain: 402s seen",
            "count",
            _median(ours, lambda d: d.seen_402),
            baseline=_median(naive, lambda d: d.seen_402),
            target="== 0",
        ),
        Row(
            "drain: overspend beyond the balance",
            "USD",
            _median(ours, lambda d: float(d.overspend)),
            baseline=_median(naive, lambda d: float(d.overspend)),
            target="== 0",
        ),
        Row(
            "drain: share of the affordable budget granted",
            "share",
            _median(ours, lambda d: d.share_granted),
            baseline=_median(naive, lambda d: d.share_granted),
            target=">= 0.9",
            higher_is_better=True,
        ),
    ]
    notes = [
        f"{scale.requests} simultaneous requests (one thread each, released together); budget "
        f"{ours[0].budget:.6f} USD = {scale.affordable_replies} replies of {MAX_TOKENS} tokens at "
        f"{MODEL} prices; each reply generates for {scale.generation_seconds:g} s and is charged when "
        f"it ends; {NETWORK_DELAY_S * 1000:.0f} ms simulated network delay. Medians of "
        f"{scale.repetitions} run(s) per design, alternating.",
        "Outcomes per run - ours: " + "; ".join(_outcomes(d) for d in ours),
        "Outcomes per run - naive: " + "; ".join(_outcomes(d) for d in naive),
        "Overspend per run (USD) - ours: "
        + ", ".join(f"{d.overspend:.6f}" for d in ours)
        + "; naive: "
        + ", ".join(f"{d.overspend:.6f}" for d in naive),
        "Ours runs with no free fallback model here so both designs spend the same paid budget; "
        "deployed, FALLBACK_MODELS would answer the refused requests with a :free model.",
    ]
    return Section("5. Concurrency drain", rows, notes)


def _outcomes(drain: Drain) -> str:
    return ", ".join(f"{count} {name}" for name, count in sorted(drain.outcomes.items()))
