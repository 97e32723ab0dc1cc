"""`make dev`: the whole bot on this machine, on embedded AWS and simulators, everything on 127.0.0.1.

    python -m tools.devstack [--interactions-port 8789] [--poll-interval 10] [--balance 5.00] ...

Starts moto (the table and topic from infra/template.yaml), the OpenRouter simulator (or the real
OpenRouter when OPENROUTER_API_KEY is set), the Discord API sink, and the interactions endpoint,
with llm_call invoked asynchronously in-process, credit_poller on a short schedule and alerts
flowing SNS -> alert_notifier -> the sink's webhook. A key pair is generated per run; talk to the
bot with `python -m tools.client`. Ctrl-C (or SIGTERM) stops everything. See docs/LOCAL_DEV.md.

One stack per process: the functions read their settings from this process's environment.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

from nacl.signing import SigningKey

from astrabot.errors import ConfigError
from tools import render
from tools.devstack_aws import AlertPump, AwsResources, MotoServer, PortBusy, create_resources
from tools.devstack_control import DevControl
from tools.devstack_lambda import FunctionUrlServer, InProcessLambda, Invocation, call, load_function
from tools.simulators import PortInUse
from tools.simulators.discord_sink import DiscordSink, SinkCall
from tools.simulators.openrouter_sim import OpenRouterSimulator

LLM_FUNCTION_NAME = "llm_call"
KEYS_FILE = "keys.json"
LOG_FILE = "functions.log"
MAX_TRACKED_INVOCATIONS = 500

# name -> (flag, environment variable, default port)
PORTS: dict[str, tuple[str, str, int]] = {
    "moto": ("--moto-port", "ASTRABOT_MOTO_PORT", 4566),
    "openrouter": ("--openrouter-port", "ASTRABOT_OPENROUTER_PORT", 8787),
    "discord": ("--discord-port", "ASTRABOT_DISCORD_PORT", 8788),
    "interactions": ("--interactions-port", "ASTRABOT_INTERACTIONS_PORT", 8789),
}
_DESCRIPTIONS = {
    "moto": "embedded AWS, moto",
    "openrouter": "OpenRouter simulator",
    "discord": "Discord API sink",
    "interactions": "interactions endpoint",
}


class StackError(Exception):
    """The stack cannot start; the message is one line an operator can act on."""


@dataclass(frozen=True)
class DevConfig:
    moto_port: int = 4566
    openrouter_port: int = 8787
    discord_port: int = 8788
    interactions_port: int = 8789
    poll_interval: int = 10
    balance: Decimal = Decimal("5.00")
    state_dir: Path = Path(".devstack")
    real_openrouter: bool = False
    verbose: bool = False  # function logs (and EMF metrics) on the terminal instead of the log file
    feed: bool = True  # print Discord traffic (alerts, replies) as it reaches the sink
    table_name: str = "astrabot-dev"
    topic_name: str = "astrabot-dev-alerts"


def port_taken(name: str, port: int) -> StackError:
    flag, variable, _ = PORTS[name]
    return StackError(
        f"port {port} on 127.0.0.1 is already in use ({_DESCRIPTIONS[name]}); "
        f"choose another with {flag} or {variable}"
    )


def write_private(path: Path, payload: dict[str, Any]) -> None:
    """JSON readable by this user only (0600), whatever the umask or an older file said."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)
        json.dump(payload, fh, indent=2)


class DevStack:
    def __init__(self, config: DevConfig, *, log: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.log = log or (lambda line: print(line, flush=True))
        self.signing_key = SigningKey.generate()
        self.public_key = self.signing_key.verify_key.encode().hex()
        self.moto = MotoServer(config.moto_port)
        self.simulator: OpenRouterSimulator | None = None
        self.sink = DiscordSink(port=config.discord_port, on_call=self._on_sink_call)
        self.resources: AwsResources | None = None
        self.endpoint: FunctionUrlServer | None = None
        self.lambda_client: InProcessLambda | None = None
        self._functions: dict[str, ModuleType] = {}
        self._pump: AlertPump | None = None
        self._poll_lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._invocations: OrderedDict[str, Invocation] = OrderedDict()
        self._invocations_lock = threading.Lock()
        self._log_file: Any = None
        self._wrote_keys = False
        self.polls = 0

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        self.config.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            self.moto.start()
        except PortBusy as exc:
            raise port_taken("moto", exc.port) from None
        if not self.config.real_openrouter:
            self.simulator = OpenRouterSimulator(
                balance=self.config.balance, port=self.config.openrouter_port
            )
            self._start_server(self.simulator, "openrouter")
        self._start_server(self.sink, "discord")
        self.resources = create_resources(
            self.moto.url, table_name=self.config.table_name, topic_name=self.config.topic_name
        )
        os.environ.update(self.environment())
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            os.environ.pop(name, None)
        self._route_function_logs()
        self._load_functions()
        self.endpoint = FunctionUrlServer(
            "interactions",
            self._functions["interactions"].lambda_handler,
            DevControl(self),
            port=self.config.interactions_port,
        )
        self._start_server(self.endpoint, "interactions")
        self.poll_now()  # the balance is known before the first question
        self._pump = AlertPump(self.moto.url, self.resources, self._deliver_alert, self.log)
        self._pump.start()
        self._poller = threading.Thread(target=self._poll_loop, name="credit-poller", daemon=True)
        self._poller.start()
        write_private(self.keys_path, self.keys())
        self._wrote_keys = True

    def _start_server(self, server: Any, name: str) -> None:
        try:
            server.start()
        except PortInUse as exc:
            raise port_taken(name, exc.port) from None

    def stop(self) -> None:
        """Stop every thread and server this stack started; safe to call more than once."""
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=5)  # a daemon: a poll stuck on the network cannot hold the exit
        if self._pump is not None:
            self._pump.stop()
        if self.lambda_client is not None:
            self.lambda_client.shutdown(timeout=5)
        for server in (self.endpoint, self.sink, self.simulator):
            if server is not None:
                server.stop()
        self.moto.stop()
        if self._wrote_keys:
            self.keys_path.unlink(missing_ok=True)  # the key pair lives as long as the stack
            self._wrote_keys = False
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> DevStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- wiring --------------------------------------------------------------------------------
    @property
    def keys_path(self) -> Path:
        return self.config.state_dir / KEYS_FILE

    @property
    def log_path(self) -> Path:
        return self.config.state_dir / LOG_FILE

    @property
    def interactions_url(self) -> str:
        assert self.endpoint is not None, "start() first"
        return self.endpoint.origin + "/"

    def keys(self) -> dict[str, Any]:
        return {
            "public_key": self.public_key,
            "private_key": self.signing_key.encode().hex(),
            "application_id": self.sink.application_id,
            "interactions_url": self.interactions_url,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def environment(self) -> dict[str, str]:
        """What the functions see: the stack's endpoints, fake AWS credentials, dev-sized intervals."""
        assert self.resources is not None
        env = {
            "AWS_ENDPOINT_URL": self.moto.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "TABLE_NAME": self.resources.table_name,
            "ALERT_TOPIC_ARN": self.resources.topic_arn,
            "LLM_FUNCTION_NAME": LLM_FUNCTION_NAME,
            "DISCORD_PUBLIC_KEY": self.public_key,
            "DISCORD_APPLICATION_ID": self.sink.application_id,
            "DISCORD_API_BASE_URL": self.sink.url,
            "DISCORD_ALERT_WEBHOOK_URL": self.sink.webhook_url(),
            "POLL_INTERVAL_SECONDS": str(self.config.poll_interval),
            "POWERTOOLS_SERVICE_NAME": "astrabot-dev",
            "POWERTOOLS_METRICS_NAMESPACE": "AstraBotNexus",
            "POWERTOOLS_METRICS_DISABLED": "false" if self.config.verbose else "true",
            "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "INFO"),
        }
        if self.simulator is not None:
            env |= {
                "OPENROUTER_BASE_URL": self.simulator.url,
                "OPENROUTER_API_KEY": self.simulator.api_key,
                "OPENROUTER_MANAGEMENT_KEY": self.simulator.management_key,
            }
        return env

    def _route_function_logs(self) -> None:
        """Function logs go to .devstack/functions.log so the terminal stays readable (--verbose: not)."""
        from astrabot.observability import logger

        if self.config.verbose:
            return
        self._log_file = self.log_path.open("a", buffering=1, encoding="utf-8")
        handler = logger.registered_handler
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(self._log_file)

    def _load_functions(self) -> None:
        for name in ("credit_poller", "llm_call", "alert_notifier", "interactions"):
            self._functions[name] = load_function(name)
        self.lambda_client = InProcessLambda(
            {LLM_FUNCTION_NAME: (self._functions["llm_call"].lambda_handler, 120.0)},
            log=self.log,
            on_invocation=self._track,
        )
        # The seam the interactions tests use: `runtime()` builds the deps, we swap the lambda client.
        interactions = self._functions["interactions"]
        deps = dataclasses.replace(interactions.runtime(), lambda_client=lambda: self.lambda_client)
        setattr(interactions, "runtime", lambda: deps)  # noqa: B010 - a module attribute, on purpose

    # --- running the functions -----------------------------------------------------------------
    def poll_now(self) -> dict[str, Any]:
        """One credit_poller run (serialised: the schedule and on-demand polls never overlap here)."""
        event = {
            "version": "0",
            "id": f"devstack-poll-{self.polls + 1}",
            "detail-type": "Scheduled Event",
            "source": "aws.scheduler",
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
            "detail": {},
        }
        with self._poll_lock:
            self.polls += 1
            result: dict[str, Any] = call(
                "credit_poller", self._functions["credit_poller"].lambda_handler, event
            )
        return result

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.config.poll_interval):
            try:
                result = self.poll_now()
            except Exception as exc:
                self.log(f"credit_poller raised {type(exc).__name__}: {exc}")
                continue
            if not result.get("ok"):
                self.log(f"credit_poller: {result.get('error')}")

    def _deliver_alert(self, event: dict[str, Any]) -> Any:
        return call("alert_notifier", self._functions["alert_notifier"].lambda_handler, event)

    def _track(self, invocation: Invocation) -> None:
        interaction = invocation.event.get("interaction") or {}
        key = str(interaction.get("id") or id(invocation))
        with self._invocations_lock:
            self._invocations[key] = invocation
            while len(self._invocations) > MAX_TRACKED_INVOCATIONS:
                self._invocations.popitem(last=False)

    def invocation(self, interaction_id: str) -> Invocation | None:
        with self._invocations_lock:
            return self._invocations.get(interaction_id)

    @property
    def alerts_delivered(self) -> int:
        return self._pump.delivered if self._pump else 0

    # --- what a person sees --------------------------------------------------------------------
    def _on_sink_call(self, sink_call: SinkCall) -> None:
        if not self.config.feed or not sink_call.accepted:
            return
        if sink_call.kind == "webhook":
            self.log("📣 alert webhook:\n" + render.message(sink_call.body or {}, indent=3))
        elif sink_call.kind in ("edit_original", "followup"):
            first = (sink_call.content or "").strip().splitlines() or ["(embeds)"]
            self.log(f"💬 {sink_call.kind.replace('_', ' ')}: {render.shorten(first[0], 100)}")

    def banner(self) -> list[str]:
        assert self.resources is not None
        openrouter = (
            f"OpenRouter simulator   {self.simulator.url}  (balance ${self.simulator.balance})"
            if self.simulator is not None
            else f"OpenRouter (real)      {os.environ.get('OPENROUTER_BASE_URL', 'https://openrouter.ai/api/v1')}"
        )
        logs = "on this terminal (--verbose)" if self.config.verbose else str(self.log_path)
        warnings = []
        if self.simulator is None and not os.environ.get("OPENROUTER_MANAGEMENT_KEY"):
            warnings.append(
                "  note: without OPENROUTER_MANAGEMENT_KEY the balance is known only if the key has a limit; "
                "otherwise answers run in conservative mode"
            )
        return [
            "AstraBot Nexus dev stack: everything on 127.0.0.1. Ctrl-C stops it.",
            f"  interactions endpoint  {self.interactions_url}  (Function URL events -> interactions)",
            f"  embedded AWS (moto)    {self.moto.url}  table {self.resources.table_name}",
            f"                         topic {self.resources.topic_arn}",
            f"  {openrouter}",
            f"  Discord API sink       {self.sink.url}  (application id {self.sink.application_id})",
            f"  credit_poller          every {self.config.poll_interval} s; "
            "alerts: SNS -> alert_notifier -> the sink's webhook",
            f"  public key             {self.public_key}",
            f"  private key            {self.keys_path} (mode 0600)",
            f"  function logs          {logs}",
            "Try:  .venv/bin/python -m tools.client ask 'what is a lambda?'",
            "      .venv/bin/python -m tools.client nexus credits",
            *warnings,
        ]


# --- command line ----------------------------------------------------------------------------------
def _port(name: str) -> int:
    _, variable, default = PORTS[name]
    raw = os.environ.get(variable, "").strip()
    return int(raw) if raw.isdigit() else default


def parse_args(argv: list[str] | None = None) -> DevConfig:
    parser = argparse.ArgumentParser(
        prog="python -m tools.devstack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for name, (flag, variable, _) in PORTS.items():
        parser.add_argument(
            flag, type=int, default=_port(name), help=f"{_DESCRIPTIONS[name]} (env {variable})"
        )
    parser.add_argument("--poll-interval", type=int, default=10, help="seconds between credit polls")
    parser.add_argument("--balance", type=Decimal, default=Decimal("5.00"), help="simulator's starting USD")
    parser.add_argument("--state-dir", type=Path, default=Path(".devstack"), help="keys and logs")
    parser.add_argument(
        "--simulate", action="store_true", help="use the simulator even when OPENROUTER_API_KEY is set"
    )
    parser.add_argument("--verbose", action="store_true", help="function logs on the terminal")
    parser.add_argument("--quiet", action="store_true", help="do not print Discord traffic as it arrives")
    args = parser.parse_args(argv)
    if args.poll_interval < 1:
        parser.error("--poll-interval must be at least 1 second")
    real = bool(os.environ.get("OPENROUTER_API_KEY", "").strip()) and not args.simulate
    return DevConfig(
        moto_port=args.moto_port,
        openrouter_port=args.openrouter_port,
        discord_port=args.discord_port,
        interactions_port=args.interactions_port,
        poll_interval=args.poll_interval,
        balance=args.balance,
        state_dir=args.state_dir,
        real_openrouter=real,
        verbose=args.verbose,
        feed=not args.quiet,
    )


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            os._exit(130)  # a second Ctrl-C: do not wait for a hung handler
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    stack = DevStack(config)
    try:
        stack.start()
    except (StackError, ConfigError) as exc:
        print(f"make dev: {exc}", file=sys.stderr, flush=True)
        return 2
    try:
        for line in stack.banner():
            print(line, flush=True)
        print("ready", flush=True)
        while not stop.wait(0.5):
            pass
        print("stopping...", flush=True)
    finally:
        stack.stop()
    print("dev stack stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
