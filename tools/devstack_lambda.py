"""The dev stack's stand-ins for the Lambda service: contexts, async invoke, and the Function URL.

Each function's `lambda_handler` runs in this process. `InProcessLambda` is what interactions gets
as its lambda client: `invoke(InvocationType="Event")` queues the event on a thread pool and answers
202 at once, like Lambda; a handler that raises is retried twice (Lambda's default for async
invokes), a little sooner than Lambda would. `FunctionUrlServer` turns HTTP requests into Function
URL (payload v2) events.
"""

from __future__ import annotations

import base64
import importlib
import io
import json
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

from botocore.exceptions import ClientError

from tools.simulators import Request, Response, SimulatorServer

ACCOUNT_ID = "123456789012"
ASYNC_RETRIES = 2
RETRY_DELAY_SECONDS = 1.0
TEXT_TYPES = ("application/json", "text/", "application/x-www-form-urlencoded")

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class LambdaContext:
    """The attributes Powertools reads from a Lambda context."""

    function_name: str
    timeout_seconds: float = 30.0
    memory_limit_in_mb: int = 256
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:{ACCOUNT_ID}:function:{self.function_name}"

    @property
    def function_version(self) -> str:
        return "$LATEST"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return "devstack"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self.started)) * 1000))


def load_function(name: str) -> ModuleType:
    """functions/<name>/app.py. Import only after the environment is set: handlers read it at import."""
    return importlib.import_module(f"functions.{name}.app")


def call(name: str, handler: Handler, event: dict[str, Any], timeout: float = 30.0) -> Any:
    return handler(event, LambdaContext(name, timeout_seconds=timeout))


@dataclass
class Invocation:
    function: str
    event: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: str | None = None
    attempts: int = 0


class InProcessLambda:
    """The part of a boto3 Lambda client interactions uses, running handlers in this process."""

    def __init__(
        self,
        handlers: Mapping[str, tuple[Handler, float]],
        *,
        workers: int = 4,
        log: Callable[[str], None] = print,
        on_invocation: Callable[[Invocation], None] | None = None,
    ) -> None:
        self._handlers = dict(handlers)  # name -> (handler, timeout seconds)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lambda")
        self._log = log
        self._on_invocation = on_invocation
        self._stopping = threading.Event()
        self._running: set[Future[None]] = set()
        self._lock = threading.Lock()

    def invoke(
        self,
        *,
        FunctionName: str,
        InvocationType: str = "RequestResponse",
        Payload: bytes | str = b"",
        **_: Any,
    ) -> dict[str, Any]:
        if FunctionName not in self._handlers:
            error: Any = {
                "Error": {
                    "Code": "ResourceNotFoundException",
                    "Message": f"Function not found: {FunctionName}",
                },
                "ResponseMetadata": {"HTTPStatusCode": 404},
            }
            raise ClientError(error, "Invoke")
        event = json.loads(Payload or b"{}")
        invocation = Invocation(FunctionName, event)
        if self._on_invocation is not None:
            self._on_invocation(invocation)
        if InvocationType == "Event":
            future: Future[None] = self._pool.submit(self._run_async, invocation)
            with self._lock:
                self._running.add(future)
            future.add_done_callback(lambda done: self._finished(done, invocation))
            return {"StatusCode": 202, "Payload": io.BytesIO(b"")}
        handler, timeout = self._handlers[FunctionName]
        result = call(FunctionName, handler, event, timeout)
        return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(result).encode())}

    def _finished(self, future: Future[None], invocation: Invocation) -> None:
        with self._lock:
            self._running.discard(future)
        invocation.done.set()

    def _run_async(self, invocation: Invocation) -> None:
        handler, timeout = self._handlers[invocation.function]
        for attempt in range(1 + ASYNC_RETRIES):
            invocation.attempts = attempt + 1
            try:
                invocation.result = call(invocation.function, handler, invocation.event, timeout)
                invocation.error = None
                return
            except Exception as exc:
                invocation.error = f"{type(exc).__name__}: {exc}"
                self._log(f"{invocation.function} raised {invocation.error} (attempt {attempt + 1})")
                traceback.print_exc()
            if self._stopping.wait(RETRY_DELAY_SECONDS * (attempt + 1)):
                return

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop taking work; wait a bounded time for running handlers (threads are daemons)."""
        self._stopping.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            running = list(self._running)
        wait(running, timeout=timeout)


def function_url_event(request: Request, host: str, path: str, query: str) -> dict[str, Any]:
    """A Lambda Function URL (payload v2) event for one HTTP request, as AWS builds it."""
    headers = dict(request.headers)  # already lower-cased
    content_type = headers.get("content-type", "")
    text: str | None = None
    if content_type.startswith(TEXT_TYPES) or not request.body:
        try:
            text = request.body.decode("utf-8")
        except UnicodeDecodeError:
            text = None
    now = datetime.now(UTC)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "devstack",
            "domainName": host,
            "domainPrefix": "devstack",
            "http": {
                "method": request.method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": text is None,
    }
    if request.query:
        event["queryStringParameters"] = {k: ",".join(v) for k, v in request.query.items()}
    if request.body:
        event["body"] = text if text is not None else base64.b64encode(request.body).decode()
    return event


def http_response(result: Any) -> Response:
    """A Function URL handler's result as the HTTP response AWS would send."""
    if not isinstance(result, dict) or "statusCode" not in result:
        return Response(200, json.dumps(result).encode())  # Function URLs serialise a bare result
    headers = {k: str(v) for k, v in (result.get("headers") or {}).items() if k.lower() != "content-type"}
    body = result.get("body") or ""
    payload = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
    return Response(int(result["statusCode"]), payload, headers)


ControlHandler = Callable[[Request], Response | None]


class FunctionUrlServer(SimulatorServer):
    """HTTP on 127.0.0.1 -> a Function URL event -> `handler`; `/_dev/...` goes to `control` instead."""

    name = "interactions"
    base_path = ""

    def __init__(self, function: str, handler: Handler, control: ControlHandler, *, port: int = 0) -> None:
        super().__init__(port=port)
        self._function = function
        self._handler = handler
        self._control = control

    def handle(self, request: Request) -> Response:
        if request.path.startswith("/_dev/"):
            answer = self._control(request)
            return answer or Response(404, {"error": f"no dev control route {request.path}"})
        query = "&".join(f"{k}={v}" for k, values in request.query.items() for v in values)
        event = function_url_event(request, f"{self.origin.removeprefix('http://')}", request.path, query)
        return http_response(call(self._function, self._handler, event, timeout=10.0))
