"""2. The interactions handler, warm, in-process: PING, /ask deferral and /nexus credits.

The real `functions/interactions/app.py` `lambda_handler` runs with its own settings and verifier;
only its AWS clients are swapped through the module's `runtime` seam for real boto3 clients whose
calls `botocore.stub.Stubber` answers (request validation and serialisation still run, the network
does not). Every call is a signed Function URL event, checked for the right answer before timing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import ModuleType
from typing import Any

from boto3.dynamodb.types import TypeSerializer
from botocore.stub import Stubber
from nacl.signing import SigningKey

from astrabot.adapters import aws
from astrabot.adapters.ledger import Ledger
from benchmarks.common import MODEL, REGION, ROOT, Row, Section, Stack, median, model_price, p99
from benchmarks.events import signed_event

APP = ROOT / "functions" / "interactions" / "app.py"
UNREACHABLE = "http://127.0.0.1:9"  # the stubs answer first; nothing may leave this machine
TABLE = "bench-interactions"
LLM_FUNCTION = "astrabot-llm-call"
HISTORY_POINTS = 288  # 24 h of 5-minute polls, what /nexus credits charts


@dataclasses.dataclass(frozen=True)
class LambdaContext:
    function_name: str = "astrabot-interactions"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:123456789012:function:astrabot-interactions"
    aws_request_id: str = "bench-request"
    log_group_name: str = "/aws/lambda/astrabot-interactions"
    log_stream_name: str = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 3000


def load_app() -> ModuleType:
    """functions/interactions/app.py under its own name (every function module is called `app`)."""
    spec = importlib.util.spec_from_file_location("bench_interactions_app", APP)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {APP}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


_serializer = TypeSerializer()


def _item(values: dict[str, Any]) -> dict[str, Any]:
    return {key: _serializer.serialize(value) for key, value in values.items()}


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")


def balance_item(now: datetime) -> dict[str, Any]:
    price = model_price()
    return _item(
        {
            "pk": "BALANCE",
            "sk": "CURRENT",
            "remaining_usd": Decimal("4.25"),
            "available_usd": Decimal("4.2494"),
            "reserved_usd": Decimal("0.0006"),
            "spent_since_poll": Decimal(0),
            "limit_usd": Decimal(10),
            "usage_usd": Decimal("5.75"),
            "usage_daily_usd": Decimal("0.31"),
            "usage_weekly_usd": Decimal("1.9"),
            "usage_monthly_usd": Decimal("5.75"),
            "status": "healthy",
            "affordable_tokens": 7_082_333,
            "default_model": MODEL,
            "prices": {MODEL: price.to_item()},
            "fetched_at": _iso(now - timedelta(minutes=2)),
            "checked_at": _iso(now - timedelta(minutes=2)),
            "source": "key",
            "stale": False,
            "consecutive_failures": 0,
            "version": 812,
        }
    )


def usage_item(sk: str) -> dict[str, Any]:
    return _item(
        {
            "pk": "USAGE",
            "sk": sk,
            "requests": 412,
            "prompt_tokens": 31_200,
            "completion_tokens": 268_000,
            "cost_usd": Decimal("0.1654"),
            f"requests#{MODEL}": 412,
            f"cost#{MODEL}": Decimal("0.1654"),
            "events#402": 0,
        }
    )


def history_items(now: datetime) -> list[dict[str, Any]]:
    points = []
    for index in range(HISTORY_POINTS):
        at = now - timedelta(minutes=5 * (HISTORY_POINTS - index))
        remaining = Decimal("4.56") - Decimal("0.001") * index
        points.append(
            _item({"pk": "BALANCE", "sk": f"HIST#{_iso(at)}", "remaining_usd": remaining, "at": _iso(at)})
        )
    return points


@dataclasses.dataclass
class Case:
    event: dict[str, Any]
    stub: Callable[[], None]  # queues the AWS answers this call will consume
    check: Callable[[dict[str, Any]], None]


def _expect(kind: int, *, embeds: bool = False) -> Callable[[dict[str, Any]], None]:
    def check(response: dict[str, Any]) -> None:
        body = json.loads(response["body"])
        if response["statusCode"] != 200 or body.get("type") != kind:
            raise AssertionError(f"unexpected response {response['statusCode']}: {body}")
        if embeds and not body.get("data", {}).get("embeds"):
            raise AssertionError(f"expected an embed, got {body}")

    return check


def run(quick: bool, stack: Stack) -> Section:
    rounds = 10 if quick else 1500
    key = SigningKey.generate()
    with _environment(
        {
            "DISCORD_PUBLIC_KEY": key.verify_key.encode().hex(),
            "LLM_FUNCTION_NAME": LLM_FUNCTION,
            "TABLE_NAME": TABLE,
            "DEFAULT_MODEL": MODEL,
        }
    ):
        app = load_app()
        deps = app.runtime()  # real settings and verifier, built as on a cold start
    lambda_client = aws.client("lambda", config=app.FAST, region_name=REGION, endpoint_url=UNREACHABLE)
    dynamodb = aws.client("dynamodb", config=app.FAST, region_name=REGION, endpoint_url=UNREACHABLE)
    ledger = Ledger(dynamodb, TABLE)
    app.runtime = lambda: dataclasses.replace(  # type: ignore[attr-defined]  # the module's seam
        deps, ledger=lambda: ledger, lambda_client=lambda: lambda_client
    )

    now = datetime.now(UTC)
    balance = {"Item": balance_item(now)}
    history = history_items(now)
    today, month = f"DAY#{now.date().isoformat()}", f"MONTH#{now:%Y-%m}"
    invoke_stub, ddb_stub = Stubber(lambda_client), Stubber(dynamodb)

    def stub_ask() -> None:
        ddb_stub.add_response("get_item", balance)
        invoke_stub.add_response("invoke", {"StatusCode": 202})

    def stub_credits() -> None:
        ddb_stub.add_response("get_item", balance)
        ddb_stub.add_response("get_item", {"Item": usage_item(today)})
        ddb_stub.add_response("get_item", {"Item": usage_item(month)})
        ddb_stub.add_response(
            "query", {"Items": history, "Count": len(history), "ScannedCount": len(history)}
        )

    cases = {
        "PING": Case(signed_event("ping", key), lambda: None, _expect(1)),
        "/ask deferral": Case(signed_event("ask", key), stub_ask, _expect(5)),
        "/nexus credits": Case(signed_event("nexus_credits", key), stub_credits, _expect(4, embeds=True)),
    }
    context = LambdaContext()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    with invoke_stub, ddb_stub:
        for index in range(rounds + 5):  # the first 5 rounds warm up
            shift = index % len(names)
            for name in names[shift:] + names[:shift]:
                case = cases[name]
                case.stub()
                started = time.perf_counter_ns()
                response = app.lambda_handler(case.event, context)
                elapsed = (time.perf_counter_ns() - started) / 1000
                case.check(response)
                invoke_stub.assert_no_pending_responses()
                ddb_stub.assert_no_pending_responses()
                if index >= 5:
                    samples[name].append(elapsed)
    targets = {"PING": "<= 1000", "/ask deferral": "<= 3000", "/nexus credits": ""}
    rows = [
        Row(f"handler warm: {name}", "µs", median(values), p99=p99(values), target=targets[name])
        for name, values in samples.items()
    ]
    return Section(
        "2. Interactions handler, warm, in-process",
        rows,
        notes=[
            f"{rounds} signed Function URL events per case, interleaved, through the real lambda_handler "
            "(Powertools logger and metrics decorators included, output discarded). AWS calls answered "
            "by botocore Stubber after request validation and serialisation: the network is not in "
            "these figures. Deployed, /ask adds the async Invoke (about 10-30 ms) and the balance "
            "read (5-10 ms); /nexus credits adds 3 GetItem and 1 Query.",
            f"/nexus credits renders {HISTORY_POINTS} history points (24 h of 5-minute polls).",
        ],
    )
