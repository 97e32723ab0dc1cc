"""Local stand-ins for OpenRouter and Discord, for `make dev`, `make demo`, e2e tests and benchmarks.

Standard library only, so a server is up in milliseconds: a ThreadingHTTPServer on 127.0.0.1 in a
background thread. This module holds what both simulators share (binding, request plumbing, fault
queue, exact Decimal JSON, the `python -m` runner); the simulators live in their own modules:

    from tools.simulators.openrouter_sim import OpenRouterSimulator
    from tools.simulators.discord_sink import DiscordSink

(`from tools.simulators import OpenRouterSimulator, DiscordSink` works too; the import is lazy so that
`python -m tools.simulators.openrouter_sim` does not load the module twice.)
"""

from __future__ import annotations

import contextlib
import errno
import json
import signal
import socket
import threading
import traceback
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from tools.simulators.discord_sink import DiscordSink
    from tools.simulators.openrouter_sim import OpenRouterSimulator

__all__ = [
    "DiscordSink",
    "Fault",
    "FaultQueue",
    "OpenRouterSimulator",
    "PortInUse",
    "Request",
    "Response",
    "SimulatorError",
    "SimulatorServer",
    "json_bytes",
    "run_until_interrupted",
]

HOST = "127.0.0.1"  # loopback only: nothing here may be reachable from another machine


class SimulatorError(Exception):
    """A simulator could not start or was used wrongly."""


class PortInUse(SimulatorError):
    """The requested port is taken. The message is one line that names it."""

    def __init__(self, name: str, port: int) -> None:
        super().__init__(f"{name}: port {port} on {HOST} is already in use (choose another with --port)")
        self.port = port


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # relative to the server's base path, e.g. "/chat/completions"
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        """The body as JSON (floats as Decimal, money is never a float here); raises ValueError."""
        return json.loads(self.body or b"null", parse_float=Decimal)


@dataclass
class Response:
    status: int
    body: Any = None  # JSON-able (Decimal allowed) or raw bytes
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to hold the answer back (the "timeout" fault)


def json_bytes(payload: Any) -> bytes:
    """JSON with Decimals written as exact numbers ("0.00000015", never 1.4999999e-07)."""
    nonce = uuid.uuid4().hex  # the marker cannot collide with text a user typed
    numbers: list[str] = []

    def swap(value: Any) -> Any:
        if isinstance(value, Decimal):
            numbers.append(format(value, "f"))
            return f"@{nonce}:{len(numbers) - 1}@"
        if isinstance(value, dict):
            return {key: swap(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [swap(item) for item in value]
        return value

    text = json.dumps(swap(payload), separators=(",", ":"))
    for index, number in enumerate(numbers):
        text = text.replace(f'"@{nonce}:{index}@"', number)
    return text.encode()


@dataclass
class Fault:
    """A scripted failure for the next `remaining` requests whose scope matches (None = any)."""

    kind: int | str
    remaining: int
    scope: str | None
    details: dict[str, Any]


class FaultQueue:
    """Faults are consumed in the order they were added; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, kind: int | str, times: int, scope: str | None, details: dict[str, Any]) -> None:
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._faults.append(Fault(kind, times, scope, dict(details)))

    def take(self, scope: str) -> Fault | None:
        """The first pending fault for this scope, counted as used; None when the request may pass."""
        with self._lock:
            for fault in self._faults:
                if fault.scope is None or fault.scope == scope:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return Fault(fault.kind, 1, fault.scope, dict(fault.details))
        return None

    def pending(self) -> int:
        with self._lock:
            return sum(fault.remaining for fault in self._faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # 200 simultaneous clients (the concurrency benchmark) must not overflow the listen backlog.
    request_queue_size = 512


class SimulatorServer(ABC):
    """An HTTP server on 127.0.0.1 in a background thread. Subclasses implement `handle`."""

    name = "simulator"
    base_path = ""

    def __init__(self, *, port: int = 0, latency: float = 0.0) -> None:
        self.port = port
        self.latency = latency  # seconds added to every request, like a network round trip
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> str:
        if self._httpd is not None:
            raise SimulatorError(f"{self.name} is already running at {self.url}")
        try:
            httpd = _Server((HOST, self.port), self._handler_class())
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(self.name, self.port) from None
            raise SimulatorError(
                f"{self.name}: cannot listen on {HOST}:{self.port}: {exc.strerror}"
            ) from None
        self._stopping.clear()
        self._httpd = httpd
        self.port = int(httpd.server_address[1])
        # A short poll interval keeps stop() quick (shutdown waits for the loop to notice).
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=self.name, daemon=True
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()  # wakes requests held back by latency or a timeout fault
        httpd.shutdown()
        httpd.server_close()
        with self._connections_lock:
            for conn in list(self._connections):
                with contextlib.suppress(OSError):  # already closed by the client
                    conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=2)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def origin(self) -> str:
        if self._httpd is None:
            raise SimulatorError(f"{self.name} is not running; call start() first")
        return f"http://{HOST}:{self.port}"

    @property
    def url(self) -> str:
        """The base URL clients are configured with (origin + base path)."""
        return self.origin + self.base_path

    # --- request plumbing ----------------------------------------------------------------------
    @abstractmethod
    def handle(self, request: Request) -> Response:
        """Answer one request (each simulator routes its own API)."""

    def _pause(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _respond(self, request: Request) -> Response:
        self._pause(self.latency)
        try:
            return self.handle(request)
        except Exception as exc:  # a simulator bug must show up as a 500, not a hung client
            traceback.print_exc()
            return Response(500, {"error": {"code": 500, "message": f"simulator bug: {type(exc).__name__}"}})

    def _track(self, conn: socket.socket, alive: bool) -> None:
        with self._connections_lock:
            if alive:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like the real APIs
            disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms stall

            def setup(self) -> None:
                super().setup()
                server._track(self.connection, alive=True)

            def finish(self) -> None:
                server._track(self.connection, alive=False)
                super().finish()

            def log_message(self, format: str, *args: Any) -> None:
                """Silent: request lines carry webhook and interaction tokens, which must not be logged."""

            def _dispatch(self) -> None:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    self.close_connection = True
                    self._write(Response(411, {"message": "send a Content-Length"}))
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                path, base = parts.path, server.base_path
                if base and not (path == base or path.startswith(base + "/")):
                    self._write(Response(404, {"message": f"not under {base}"}))
                    return
                path = path[len(base) :] or "/"
                headers = {name.lower(): value for name, value in self.headers.items()}
                request = Request(self.command, path, parse_qs(parts.query), headers, body)
                response = server._respond(request)
                server._pause(response.delay)
                self._write(response)

            def _write(self, response: Response) -> None:
                if isinstance(response.body, bytes):
                    payload = response.body
                elif response.body is None:
                    payload = b""
                else:
                    payload = json_bytes(response.body)
                try:
                    self.send_response(response.status)
                    if payload or response.status != 204:
                        self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in response.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    self.close_connection = True  # the client gave up (e.g. after a timeout fault)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

        return Handler


def run_until_interrupted(server: SimulatorServer, describe: Callable[[], Iterator[str]]) -> int:
    """The `python -m` entry: start, print the URL (and `describe` lines), serve until Ctrl-C or SIGTERM."""
    import sys

    try:
        server.start()
    except SimulatorError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(server.url, flush=True)
    for line in describe():
        print(line, flush=True)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    print(f"{server.name} stopped", flush=True)
    return 0


def __getattr__(name: str) -> Any:
    if name == "OpenRouterSimulator":
        from tools.simulators.openrouter_sim import OpenRouterSimulator

        return OpenRouterSimulator
    if name == "DiscordSink":
        from tools.simulators.discord_sink import DiscordSink

        return DiscordSink
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
