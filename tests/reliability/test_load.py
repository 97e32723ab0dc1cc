"""Load on the local stack: 500 signed requests over loopback from 20 concurrent clients.

The stack is `make dev` itself (`python -m tools.devstack` in its own process, free ports, the
simulators): the interactions endpoint over HTTP, llm_call invoked asynchronously in-process, moto
as AWS, the OpenRouter simulator and the Discord sink. Every valid request must be answered
correctly, every forged one refused with 401, nothing may answer 5xx, and every /ask's answer must
reach the Discord sink (the stack's /_dev/interactions route reports what the sink received).
Throughput and p99 latency are printed and reported, never asserted.
"""

from __future__ import annotations

import json
import os
import queue
import random
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from nacl.signing import SigningKey

from astrabot.adapters.ledger import Ledger
from astrabot.runtime import utcnow
from tests.reliability.conftest import Observe, leaked
from tests.reliability.figures import FIGURES
from tests.reliability.support import ADMIN, WRONG_KEYS, ask, encode, nexus, signed_headers

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
REQUESTS = 500
CLIENTS = 20
MIX = {"ping": 0.35, "ask": 0.2, "nexus": 0.2, "forged": 0.25}
START_SECONDS = 30.0
RUN_SECONDS = 90.0  # the whole load stops here, finished or not
ANSWER_SECONDS = 60.0  # every llm_call must have answered by then
STACK_SECRETS = ("sk-or-sim", "sk-or-mgmt-sim", "sink-token")  # the simulators' default keys


@dataclass
class Stack:
    process: subprocess.Popen[str]
    state_dir: Path
    url: str
    moto_url: str
    table: str
    key: SigningKey


def _wait_for_banner(process: subprocess.Popen[str], seconds: float) -> list[str]:
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        if line == "ready":
            return seen
    raise AssertionError("the dev stack did not come up:\n" + "\n".join(seen))


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENROUTER_", "AWS_ENDPOINT"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "layers" / "common" / "python"), str(REPO)])
    env["PYTHONUNBUFFERED"] = "1"
    ports = ["--moto-port", "0", "--openrouter-port", "0", "--discord-port", "0", "--interactions-port", "0"]
    with (tmp_path / "stderr.log").open("w") as stderr:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tools.devstack",
                *ports,
                "--state-dir",
                str(tmp_path),
                "--simulate",
                "--quiet",
                "--balance",
                "50",
                "--poll-interval",
                "60",
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        banner = "\n".join(_wait_for_banner(process, START_SECONDS))
        keys = json.loads((tmp_path / "keys.json").read_text())
        moto = re.search(r"embedded AWS \(moto\)\s+(\S+)\s+table (\S+)", banner)
        assert moto is not None
        yield Stack(
            process,
            tmp_path,
            keys["interactions_url"],
            moto.group(1),
            moto.group(2),
            SigningKey(bytes.fromhex(keys["private_key"])),
        )
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@dataclass
class Result:
    kind: str
    status: int
    body: Any
    seconds: float
    interaction_id: str | None = None


def plan(seed: int = 8) -> list[str]:
    kinds = [kind for kind, share in MIX.items() for _ in range(round(REQUESTS * share))]
    random.Random(seed).shuffle(kinds)
    return kinds[:REQUESTS]


def send(client: httpx.Client, stack: Stack, kind: str, n: int) -> Result:
    interaction: dict[str, Any]
    if kind == "ping":
        interaction, key = {"type": 1}, stack.key
    elif kind == "ask":
        interaction, key = ask(f"load question {n}"), stack.key
    elif kind == "nexus":
        interaction, key = nexus("credits" if n % 2 else "status", who=ADMIN), stack.key
    else:
        interaction, key = ask(f"forged {n}"), WRONG_KEYS[n % len(WRONG_KEYS)]
    body = encode(interaction)
    headers = {"content-type": "application/json", **signed_headers(body, key=key)}
    started = time.perf_counter()
    response = client.post(stack.url, content=body, headers=headers)
    seconds = time.perf_counter() - started
    return Result(kind, response.status_code, response.json(), seconds, interaction.get("id"))


def correct(result: Result) -> bool:
    if result.kind == "forged":
        return result.status == 401
    if result.status != 200:
        return False
    if result.kind == "ping":
        return bool(result.body == {"type": 1})
    if result.kind == "ask":
        return bool(result.body == {"type": 5})
    data = result.body.get("data", {})
    return bool(result.body.get("type") == 4 and data.get("flags") == 64 and data.get("embeds"))


def answer_of(client: httpx.Client, stack: Stack, interaction_id: str, deadline: float) -> dict[str, Any]:
    """What llm_call did for one interaction and what reached the Discord sink (the stack's record)."""
    wait = max(0.0, min(30.0, deadline - time.monotonic()))
    response = client.get(
        f"{stack.url}_dev/interactions/{interaction_id}", params={"wait": wait}, timeout=wait + 5
    )
    return dict(response.json())


def test_given_500_signed_requests_from_20_clients_then_all_answered_right_and_no_reply_lost(
    stack: Stack, observe: Observe
) -> None:
    kinds = plan()
    clients = [httpx.Client(timeout=10.0) for _ in range(CLIENTS)]
    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            futures = [
                pool.submit(send, clients[n % CLIENTS], stack, kind, n) for n, kind in enumerate(kinds)
            ]
            results = [
                f.result(timeout=max(0.1, RUN_SECONDS - (time.perf_counter() - started))) for f in futures
            ]
        wall = time.perf_counter() - started
        deadline = time.monotonic() + ANSWER_SECONDS
        asks = [r for r in results if r.kind == "ask"]
        answers = [answer_of(clients[0], stack, r.interaction_id or "", deadline) for r in asks]
    finally:
        for client in clients:
            client.close()

    latencies = sorted(r.seconds for r in results)
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    throughput = len(results) / wall
    print(
        f"load: {len(results)} requests in {wall:.2f} s = {throughput:.0f} req/s, "
        f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"
    )
    FIGURES.set("load_requests", len(results))
    FIGURES.set("load_throughput_rps", round(throughput, 1))
    FIGURES.set("load_p50_ms", round(p50 * 1000, 1))
    FIGURES.set("load_p99_ms", round(p99 * 1000, 1))

    statuses = Counter(r.status for r in results)
    answered = [a for a in answers if a["outcome"] and a["outcome"]["result"] == "answered"]
    shown = [m for a in answers for m in a["messages"]]
    ledger = Ledger(
        boto3.client("dynamodb", region_name="us-east-1", endpoint_url=stack.moto_url), stack.table
    )
    function_log = (stack.state_dir / "functions.log").read_text()
    assert len(results) == REQUESTS
    assert not [s for s in statuses if s >= 500]
    assert [r for r in results if not correct(r)] == []
    assert all(a["invoked"] and a["done"] and a["attempts"] == 1 and a["error"] is None for a in answers)
    assert len(answered) == len(asks)
    assert all(any(m["kind"] == "edit_original" for m in a["messages"]) for a in answers)
    assert all(m["body"]["allowed_mentions"] == {"parse": []} for m in shown)
    assert ledger.open_reservations() == []
    assert ledger.usage_for_day(utcnow()).requests == len(asks)
    assert leaked(function_log, STACK_SECRETS) == []  # the stack's own log file, scanned like ours
    by_kind = Counter(r.kind for r in results)
    observe(
        f"Load: {REQUESTS} signed requests over loopback to `make dev`, {CLIENTS} concurrent clients",
        f"{', '.join(f'{k} ×{n}' for k, n in sorted(by_kind.items()))}; statuses "
        f"{', '.join(f'{s} ×{n}' for s, n in sorted(statuses.items()))}; 0 wrong answers, 0 5xx; "
        f"{len(answered)}/{len(asks)} /ask answers reached the Discord sink ({len(shown)} messages, none "
        f"can ping); open reservations 0; {throughput:.0f} req/s, p50 {p50 * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms (2 cores, reported, not asserted)",
        inputs=by_kind["forged"],
        requests=len(results),
        lost=len(asks) - len(answered),
    )
