"""The whole bot on one machine, as `make dev` and `make demo` run it: real processes, real HTTP.

Every request to the interactions endpoint is signed with the key pair the stack generated; the
stack's parts (moto, the OpenRouter simulator, the Discord sink, the four functions) talk over
loopback HTTP exactly as they do for a person at the terminal.
"""

from __future__ import annotations

import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO, StackProcess, launch, start_stack, subprocess_env
from tools.client import DevClient, ping_interaction

pytestmark = pytest.mark.e2e


def port_is_free(port: int) -> bool:
    """Nothing listens on it. SO_REUSEADDR as the servers use it: closed connections in TIME_WAIT
    do not stop a restart on the same port, only a listener does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.timeout(30)
def test_given_the_dev_stack_when_a_signed_ping_arrives_then_it_answers_pong(dev_client: DevClient) -> None:
    answer = dev_client.post(ping_interaction(dev_client.keys.application_id))

    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"type": 1}


@pytest.mark.timeout(30)
def test_given_the_dev_stack_when_the_signature_is_wrong_then_401(dev_client: DevClient) -> None:
    answer = dev_client.post(ping_interaction(dev_client.keys.application_id), bad_signature=True)

    assert answer.status_code == 401


@pytest.mark.timeout(30)
def test_given_the_dev_stack_when_the_timestamp_is_stale_then_401(dev_client: DevClient) -> None:
    stale = str(int(time.time()) - 301)

    answer = dev_client.post(ping_interaction(dev_client.keys.application_id), timestamp=stale)

    assert answer.status_code == 401


@pytest.mark.timeout(30)
def test_given_the_dev_stack_when_ask_then_deferred_and_the_answer_is_edited_in(
    dev_client: DevClient,
) -> None:
    exchange = dev_client.ask("what is a lambda?", wait=15)

    assert exchange.response == {"type": 5}
    assert exchange.followup is not None
    assert exchange.followup["outcome"]["result"] == "answered"
    [answer] = exchange.shown
    assert "You asked: what is a lambda?" in answer["content"]
    assert answer["content"].splitlines()[-1].startswith("-# 🤖 openai/gpt-4o-mini")


@pytest.mark.timeout(30)
def test_given_the_dev_stack_when_nexus_credits_then_an_ephemeral_embed_at_once(
    dev_client: DevClient,
) -> None:
    exchange = dev_client.nexus("credits")

    assert exchange.response["type"] == 4
    assert exchange.response["data"]["flags"] & 64
    assert exchange.response["data"]["embeds"][0]["title"].endswith("Credits: healthy")


@pytest.mark.timeout(30)
def test_given_the_dev_stack_when_running_then_the_private_key_file_is_private(
    running_stack: StackProcess,
) -> None:
    mode = stat.S_IMODE((running_stack.state_dir / "keys.json").stat().st_mode)

    assert mode == 0o600


@pytest.mark.timeout(40)
def test_given_a_running_stack_when_ctrl_c_then_it_exits_cleanly_and_frees_every_port(tmp_path: Path) -> None:
    stack = start_stack(tmp_path / "state")
    ports = stack.ports

    code = stack.interrupt(signal.SIGINT)
    farewell = stack.wait_for_line("dev stack stopped", 5)

    assert len(ports) == 4  # moto, simulator, sink, interactions
    assert code == 0
    assert farewell is not None
    assert all(port_is_free(port) for port in ports)
    assert not (tmp_path / "state" / "keys.json").exists()


@pytest.mark.timeout(40)
def test_given_a_port_in_use_when_the_stack_starts_then_one_line_names_the_port_and_its_flag(
    tmp_path: Path,
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        stack = launch(
            tmp_path,
            "--moto-port", "0", "--openrouter-port", "0", "--discord-port", str(port),
            "--interactions-port", "0", "--state-dir", str(tmp_path), "--simulate",
        )  # fmt: skip
        code = stack.process.wait(timeout=30)

    error = (tmp_path / "stderr.log").read_text().strip()
    assert code == 2
    assert error.splitlines() == [error]
    assert f"port {port} on 127.0.0.1 is already in use" in error
    assert "--discord-port" in error


@pytest.mark.timeout(60)
def test_given_a_fresh_stack_when_make_demo_runs_then_every_step_of_the_story_happens() -> None:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "tools.demo"],
        cwd=REPO,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=55,
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for claim in (
        "a full answer from openai/gpt-4o-mini",
        "the low escalation alert reaches the alert webhook",
        "the emergency escalation alert reaches the alert webhook",
        "the critical escalation alert reaches the alert webhook",
        "the footer says the answer was trimmed by the credit cap",
        "the footer says a free fallback model answered",
        "it says the bot is out of credits and names the top-up page",
        "the healthy recovery alert reaches the alert webhook",
        "exactly one recovery alert",
        "The whole story happened as told",
    ):
        assert claim in result.stdout
    assert time.monotonic() - started < 55
