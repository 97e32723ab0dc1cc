"""The dev stack's control routes, `/_dev/...` on the interactions port: what the client and the demo
use to run the poller, steer the simulator and read what reached the Discord sink.

They exist only in the dev stack (the deployed Function URL has no such routes) and, like the rest
of it, listen on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import time
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from astrabot.settings import Settings
from tools.simulators import Request, Response

if TYPE_CHECKING:
    from tools.devstack import DevStack

MAX_WAIT_SECONDS = 120.0


class DevControl:
    """GET /_dev/info, POST /_dev/poll, GET /_dev/alerts?after=N&wait=S,
    GET|POST /_dev/simulator, GET /_dev/interactions/<id>?wait=S."""

    def __init__(self, stack: DevStack) -> None:
        self.stack = stack

    def __call__(self, request: Request) -> Response | None:
        route = (request.method, request.path.rstrip("/"))
        try:
            if route == ("GET", "/_dev/info"):
                return Response(200, self.info())
            if route == ("POST", "/_dev/poll"):
                return Response(200, {"poll": self.stack.poll_now()})
            if route == ("GET", "/_dev/alerts"):
                return Response(200, self._alerts(request))
            if route[1] == "/_dev/simulator":
                return self._simulator_route(request)
            if request.method == "GET" and request.path.startswith("/_dev/interactions/"):
                return self._interaction_route(request)
        except (ValueError, InvalidOperation, TypeError) as exc:
            return Response(400, {"error": f"bad request: {exc}"})
        return None

    def info(self) -> dict[str, Any]:
        return {
            "application_id": self.stack.sink.application_id,
            "public_key": self.stack.public_key,
            "simulator": self.stack.simulator is not None,
            "default_model": os.environ.get("DEFAULT_MODEL") or Settings().default_model,
            "poll_interval_seconds": self.stack.config.poll_interval,
            "polls": self.stack.polls,
            "alerts_delivered": self.stack.alerts_delivered,
        }

    def _alerts(self, request: Request) -> dict[str, Any]:
        after = int(request.query.get("after", ["0"])[0])
        deadline = time.monotonic() + min(float(request.query.get("wait", ["0"])[0]), MAX_WAIT_SECONDS)
        while len(self.stack.sink.webhook_posts()) <= after and time.monotonic() < deadline:
            time.sleep(0.05)
        posts = self.stack.sink.webhook_posts()
        return {"alerts": [post.body for post in posts[after:]], "next": len(posts)}

    def _interaction_route(self, request: Request) -> Response:
        interaction_id = request.path.removeprefix("/_dev/interactions/").strip("/")
        wait = min(float(request.query.get("wait", ["0"])[0]), MAX_WAIT_SECONDS)
        invocation = self.stack.invocation(interaction_id)
        if invocation is None:
            return Response(200, {"invoked": False, "done": True})
        invocation.done.wait(wait)
        token = str((invocation.event.get("interaction") or {}).get("token", ""))
        return Response(
            200,
            {
                "invoked": True,
                "done": invocation.done.is_set(),
                "attempts": invocation.attempts,
                "outcome": invocation.result,
                "error": invocation.error,
                "original": self.stack.sink.original_message(token),
                "messages": [{"kind": c.kind, "body": c.body} for c in self.stack.sink.messages_for(token)],
            },
        )

    def _simulator_route(self, request: Request) -> Response:
        sim = self.stack.simulator
        if sim is None:
            return Response(409, {"error": "the real OpenRouter is in use: its balance is yours to change"})
        if request.method == "POST":
            change = request.json() or {}
            if "balance" in change:
                sim.set_balance(Decimal(str(change["balance"])))
            if "top_up" in change:
                sim.top_up(Decimal(str(change["top_up"])))
            if "answer_tokens" in change:
                sim.answer_tokens = int(change["answer_tokens"])
        elif request.method != "GET":
            return Response(405, {"error": "GET or POST"})
        prices = {m.id: {"prompt": m.prompt_price, "completion": m.completion_price} for m in sim.models}
        return Response(
            200,
            {
                "balance": sim.balance,
                "spent": sim.spent,
                "answer_tokens": sim.answer_tokens,
                "prices": prices,
            },
        )
