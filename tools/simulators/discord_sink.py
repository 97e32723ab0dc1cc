"""A Discord API sink: records what the bot sends (edits, follow-ups, webhook posts, command registrations).

It answers like Discord's REST API (v10) and checks what Discord would reject (content over 2000
characters, more than 10 embeds, embed limits, empty messages), so a message too long for Discord
fails here too. A POST to /webhooks/{id}/{token} is a follow-up when `id` is the application id,
otherwise a webhook execution (the alert webhook).

    python -m tools.simulators.discord_sink --port 8788
"""

from __future__ import annotations

import argparse
import math
import re
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tools.simulators import FaultQueue, Request, Response, SimulatorServer, run_until_interrupted

DEFAULT_APPLICATION_ID = "900000000000000001"
KINDS = ("edit_original", "followup", "webhook", "commands")
_ORIGINAL = re.compile(r"^/webhooks/(?P<id>[^/]+)/(?P<token>[^/]+)/messages/@original$")
_EXECUTE = re.compile(r"^/webhooks/(?P<id>[^/]+)/(?P<token>[^/]+)$")
_COMMANDS = re.compile(r"^/applications/(?P<id>[^/]+)(?:/guilds/(?P<guild>[^/]+))?/commands$")
_FAULT_BODIES: dict[int, tuple[str, int]] = {
    401: ("401: Unauthorized", 0),
    403: ("Missing Access", 50001),
    404: ("Unknown Webhook", 10015),
    500: ("500: Internal Server Error", 0),
    502: ("502: Bad Gateway", 0),
    503: ("503: Service Unavailable", 0),
}
_FAULT_MESSAGES_BY_CODE = {10015: "Unknown Webhook", 10008: "Unknown Message", 10062: "Unknown interaction"}


@dataclass(frozen=True)
class SinkCall:
    kind: str  # one of KINDS, or "unknown" for a route Discord would not have
    method: str
    path: str
    webhook_id: str | None  # the application id for interaction calls, the webhook id otherwise
    token: str | None
    guild_id: str | None
    body: Any
    query: dict[str, list[str]]
    status: int
    at: float = field(default_factory=time.time)

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300

    @property
    def content(self) -> str | None:
        return self.body.get("content") if isinstance(self.body, dict) else None

    @property
    def embeds(self) -> list[dict[str, Any]]:
        embeds = self.body.get("embeds") if isinstance(self.body, dict) else None
        return embeds if isinstance(embeds, list) else []


def _invalid(field_name: str, message: str) -> Response:
    errors = {field_name: {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": message}]}}
    return Response(400, {"message": "Invalid Form Body", "code": 50035, "errors": errors})


def _embed_problem(embeds: list[Any]) -> Response | None:
    """Discord's embed limits: 10 embeds, title 256, description 4096, 25 fields, value 1024, total 6000."""
    if len(embeds) > 10:
        return _invalid("embeds", "Must be 10 or fewer in length.")
    total = 0
    for index, embed in enumerate(embeds):
        if not isinstance(embed, dict):
            return _invalid(f"embeds.{index}", "Must be an object.")
        title, description = str(embed.get("title", "")), str(embed.get("description", ""))
        fields = embed.get("fields") or []
        if len(title) > 256:
            return _invalid(f"embeds.{index}.title", "Must be 256 or fewer in length.")
        if len(description) > 4096:
            return _invalid(f"embeds.{index}.description", "Must be 4096 or fewer in length.")
        if len(fields) > 25:
            return _invalid(f"embeds.{index}.fields", "Must be 25 or fewer in length.")
        for number, item in enumerate(fields):
            if not isinstance(item, dict):
                return _invalid(f"embeds.{index}.fields.{number}", "Must be an object.")
            if len(str(item.get("value", ""))) > 1024:
                return _invalid(f"embeds.{index}.fields.{number}.value", "Must be 1024 or fewer in length.")
            total += len(str(item.get("name", ""))) + len(str(item.get("value", "")))
        total += len(title) + len(description)
        total += len(str((embed.get("footer") or {}).get("text", "")))
        total += len(str((embed.get("author") or {}).get("name", "")))
    if total > 6000:
        return _invalid("embeds", "Embed size exceeds maximum size of 6000")
    return None


def _message_problem(body: Any, creating: bool) -> Response | None:
    if not isinstance(body, dict):
        return Response(400, {"message": "The request body contains invalid JSON.", "code": 50109})
    content = body.get("content")
    if content is not None and len(str(content)) > 2000:
        return _invalid("content", "Must be 2000 or fewer in length.")
    embeds = body.get("embeds") or []
    if not isinstance(embeds, list):
        return _invalid("embeds", "Must be an array.")
    if creating and not content and not embeds and not body.get("components") and not body.get("attachments"):
        return Response(400, {"message": "Cannot send an empty message", "code": 50006})
    return _embed_problem(embeds)


class DiscordSink(SimulatorServer):
    name = "discord-sink"
    base_path = "/api/v10"

    def __init__(
        self,
        *,
        application_id: str = DEFAULT_APPLICATION_ID,
        bot_token: str | None = None,
        on_call: Callable[[SinkCall], None] | None = None,
        latency: float = 0.0,
        port: int = 0,
    ) -> None:
        super().__init__(port=port, latency=latency)
        self.application_id = application_id
        self.bot_token = bot_token  # None: any "Bot ..." authorization is accepted
        self.on_call = on_call  # e.g. the dev stack's terminal renderer; runs on the request thread
        self._changed = threading.Condition()
        self._calls: list[SinkCall] = []
        self._originals: dict[str, dict[str, Any]] = {}  # interaction token -> the message as shown
        self._commands: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
        self._faults = FaultQueue()
        self._next_id = 1_300_000_000_000_000_000

    # --- control and inspection ----------------------------------------------------------------
    def webhook_url(self, id: str = "1", token: str = "sink-token") -> str:  # noqa: S107 - a fake token on loopback
        """A full webhook URL on the sink (what DISCORD_ALERT_WEBHOOK_URL would hold)."""
        if id == self.application_id:
            raise ValueError("a webhook id equal to the application id would be recorded as a follow-up")
        return f"{self.url}/webhooks/{id}/{token}"

    def fail_next(
        self,
        status: int,
        times: int = 1,
        retry_after: float | None = None,
        code: int | None = None,
        *,
        kind: str | None = None,
    ) -> None:
        """Answer the next `times` calls (of `kind`, or any) with `status` the way Discord does.

        429 carries `retry_after` (default 0.2 s) in the body and a whole-second Retry-After header;
        404 is "Unknown Webhook" (10015) unless `code` names another.
        """
        if not 400 <= status <= 599:
            raise ValueError(f"status must be 4xx or 5xx, not {status}")
        if kind is not None and kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        self._faults.add(status, times, kind, {"retry_after": retry_after, "code": code})

    @property
    def calls(self) -> list[SinkCall]:
        """Every call, accepted or not, in arrival order."""
        with self._changed:
            return list(self._calls)

    def messages_for(self, token: str) -> list[SinkCall]:
        """The accepted edits and follow-ups of one interaction, in order."""
        return [
            c
            for c in self.calls
            if c.accepted and c.token == token and c.kind in ("edit_original", "followup")
        ]

    def webhook_posts(self) -> list[SinkCall]:
        return [c for c in self.calls if c.accepted and c.kind == "webhook"]

    def original_message(self, token: str) -> dict[str, Any] | None:
        """The interaction's original response as Discord would show it after every edit."""
        with self._changed:
            message = self._originals.get(token)
            return dict(message) if message else None

    def registered_commands(self, guild_id: str | None = None) -> list[dict[str, Any]]:
        with self._changed:
            return list(self._commands.get((self.application_id, guild_id), []))

    def wait_for(
        self, predicate: Callable[[SinkCall], bool], timeout: float = 2.0, *, include_failed: bool = False
    ) -> SinkCall:
        """The first call (accepted ones only, unless include_failed) matching; TimeoutError if none comes."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for call in self._calls:
                    if (include_failed or call.accepted) and predicate(call):
                        return call
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = ", ".join(f"{c.kind}:{c.status}" for c in self._calls) or "nothing"
                    raise TimeoutError(f"no matching Discord call within {timeout} s (seen: {seen})")
                self._changed.wait(left)

    def clear(self) -> None:
        """Forget recorded calls, message state and pending faults."""
        with self._changed:
            self._calls.clear()
            self._originals.clear()
            self._commands.clear()
        self._faults.clear()

    # --- HTTP ----------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        kind, webhook_id, token, guild_id = self._classify(request)
        fault = self._faults.take(kind)
        try:
            body = request.json()
        except ValueError:
            body = None
        if fault is not None:
            response = self._fault_response(int(fault.kind), fault.details)
        else:
            response = self._answer(request, kind, webhook_id, token, guild_id, body)
        call = SinkCall(
            kind,
            request.method,
            request.path,
            webhook_id,
            token,
            guild_id,
            body,
            request.query,
            response.status,
        )
        with self._changed:
            self._calls.append(call)
            self._changed.notify_all()
        if self.on_call is not None:
            try:
                self.on_call(call)
            except Exception:  # a broken observer must not change what the bot sees
                traceback.print_exc()
        return response

    def _classify(self, request: Request) -> tuple[str, str | None, str | None, str | None]:
        if (match := _ORIGINAL.match(request.path)) and request.method == "PATCH":
            return "edit_original", match["id"], match["token"], None
        if (match := _EXECUTE.match(request.path)) and request.method == "POST":
            kind = "followup" if match["id"] == self.application_id else "webhook"
            return kind, match["id"], match["token"], None
        if (match := _COMMANDS.match(request.path)) and request.method == "PUT":
            return "commands", match["id"], None, match["guild"]
        return "unknown", None, None, None

    def _answer(
        self,
        request: Request,
        kind: str,
        webhook_id: str | None,
        token: str | None,
        guild: str | None,
        body: Any,
    ) -> Response:
        if kind == "unknown":
            return Response(404, {"message": "404: Not Found", "code": 0})
        if kind == "commands":
            return self._put_commands(request, webhook_id or "", guild, body)
        problem = _message_problem(body, creating=kind != "edit_original")
        if problem is not None:
            return problem
        with self._changed:
            if kind == "edit_original":
                if (token or "") not in self._originals:
                    self._originals[token or ""] = self._message(webhook_id, {})
                original = self._originals[token or ""]
                original.update(
                    {k: body[k] for k in ("content", "embeds", "components", "flags") if k in body}
                )
                original["edited_timestamp"] = datetime.now(UTC).isoformat()
                return Response(200, dict(original))
            message = self._message(webhook_id, body)
        if kind == "webhook" and request.query.get("wait", ["false"])[0].lower() != "true":
            return Response(204)  # Discord answers an execute without ?wait=true with no content
        return Response(200, message)

    def _message(self, author_id: str | None, body: dict[str, Any]) -> dict[str, Any]:
        """A Discord message object; call under the lock (it takes the next snowflake)."""
        self._next_id += 1
        return {
            "id": str(self._next_id),
            "type": 0,
            "channel_id": "1200000000000000001",
            "content": body.get("content", ""),
            "embeds": body.get("embeds", []),
            "components": body.get("components", []),
            "attachments": [],
            "mentions": [],
            "mention_roles": [],
            "mention_everyone": False,
            "pinned": False,
            "tts": False,
            "flags": body.get("flags", 0),
            "timestamp": datetime.now(UTC).isoformat(),
            "edited_timestamp": None,
            "webhook_id": author_id,
            "author": {"id": author_id, "username": body.get("username") or "AstraBot", "bot": True},
        }

    def _put_commands(self, request: Request, app_id: str, guild: str | None, body: Any) -> Response:
        scheme, _, secret = request.headers.get("authorization", "").partition(" ")
        if scheme != "Bot" or not secret or (self.bot_token is not None and secret != self.bot_token):
            return Response(401, {"message": "401: Unauthorized", "code": 0})
        if not isinstance(body, list) or not all(isinstance(c, dict) and c.get("name") for c in body):
            return Response(400, {"message": "Invalid Form Body", "code": 50035})
        with self._changed:
            registered = []
            for command in body:
                self._next_id += 1
                registered.append(
                    {"type": 1, **command, "id": str(self._next_id), "application_id": app_id, "version": "1"}
                    | ({"guild_id": guild} if guild else {})
                )
            self._commands[(app_id, guild)] = registered
        return Response(200, registered)

    @staticmethod
    def _fault_response(status: int, details: dict[str, Any]) -> Response:
        if status == 429:
            retry_after = float(details.get("retry_after") or 0.2)
            body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": False}
            headers = {"Retry-After": str(math.ceil(retry_after)), "X-RateLimit-Scope": "shared"}
            return Response(429, body, headers)
        message, code = _FAULT_BODIES.get(status, (f"{status}: Error", 0))
        if details.get("code") is not None:
            code = int(details["code"])
            message = _FAULT_MESSAGES_BY_CODE.get(code, message)
        return Response(status, {"message": message, "code": code})


def _describe_call(call: SinkCall) -> str:
    text = (call.content or "").replace("\n", " ")
    shown = text[:100] + ("..." if len(text) > 100 else "")
    titles = ", ".join(str(e.get("title", "")) for e in call.embeds)
    return f"[{call.kind} {call.status}] {shown!r}" + (f" embeds: {titles}" if call.embeds else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=8788)
    parser.add_argument("--application-id", default=DEFAULT_APPLICATION_ID)
    args = parser.parse_args(argv)
    sink = DiscordSink(
        application_id=args.application_id,
        port=args.port,
        on_call=lambda c: print(_describe_call(c), flush=True),
    )

    def describe() -> Iterator[str]:
        yield f"application id {sink.application_id}; alert webhook {sink.webhook_url()}"
        yield "Ctrl-C to stop"

    return run_until_interrupted(sink, describe)


if __name__ == "__main__":
    raise SystemExit(main())
