"""e2e fixtures: `python -m tools.devstack` as a real process on free ports, stopped like Ctrl-C stops it."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tools.client import DevClient, load_keys

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
FREE_PORTS = ["--moto-port", "0", "--openrouter-port", "0", "--discord-port", "0", "--interactions-port", "0"]


def subprocess_env() -> dict[str, str]:
    """This environment without anything that would reach a real service (a developer's OpenRouter key)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENROUTER_", "AWS_ENDPOINT"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "layers" / "common" / "python"), str(REPO)])
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class StackProcess:
    process: subprocess.Popen[str]
    state_dir: Path
    lines: list[str] = field(default_factory=list)
    _queue: queue.Queue[str | None] = field(default_factory=queue.Queue)

    def start_reading(self) -> None:
        def pump() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                self._queue.put(line.rstrip("\n"))
            self._queue.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def wait_for_line(self, text: str, timeout: float) -> str | None:
        """The first output line containing `text`; None if the process ended or time ran out."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                return None
            if line is None:
                return None
            self.lines.append(line)
            if text in line:
                return line
        return None

    @property
    def ports(self) -> set[int]:
        return {int(port) for port in re.findall(r"http://127\.0\.0\.1:(\d+)", "\n".join(self.lines))}

    def interrupt(self, signum: int = signal.SIGTERM) -> int:
        """Send `signum`, wait for the exit; the exit code (kills and fails on a hang)."""
        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
            pytest.fail(f"the dev stack did not stop within {STOP_TIMEOUT} s of signal {signum}")


def launch(state_dir: Path, *args: str) -> StackProcess:
    """`python -m tools.devstack *args`; stderr goes to <state_dir>/stderr.log (a pipe could fill up)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / "stderr.log").open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "tools.devstack", *args],
            cwd=REPO,
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    stack = StackProcess(process, state_dir)
    stack.start_reading()
    return stack


def start_stack(state_dir: Path) -> StackProcess:
    stack = launch(state_dir, *FREE_PORTS, "--state-dir", str(state_dir), "--simulate", "--quiet")
    if stack.wait_for_line("ready", START_TIMEOUT) is None:
        stack.process.kill()
        stack.process.wait(timeout=5)
        err = (state_dir / "stderr.log").read_text()
        pytest.fail(f"the dev stack did not come up in {START_TIMEOUT} s:\n" + "\n".join(stack.lines) + err)
    return stack


@pytest.fixture(scope="module")
def running_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    stack = start_stack(tmp_path_factory.mktemp("devstack"))
    try:
        yield stack
    finally:
        if stack.process.poll() is None:
            stack.interrupt()


@pytest.fixture
def dev_client(running_stack: StackProcess) -> Iterator[DevClient]:
    client = DevClient(load_keys(running_stack.state_dir / "keys.json"))
    try:
        yield client
    finally:
        client.close()
