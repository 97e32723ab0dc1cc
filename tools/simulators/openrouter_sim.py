"""An OpenRouter-compatible simulator: /key, /credits, /models and chat completions that bill a balance.

It enforces credits the way OpenRouter does (API_FACTS.md): the worst case, prompt cost plus
`max_tokens` at the completion price, must fit the remaining balance, otherwise HTTP 402 with
OpenRouter's own "can only afford N" text. Free models answer unless the balance is negative. An
answer costs exactly prompt_tokens * prompt price + completion_tokens * completion price, reported
as `usage.cost` and deducted. Tokens are counted as about 4 characters each.

    python -m tools.simulators.openrouter_sim --port 8787 --balance 5.00
"""

from __future__ import annotations

import argparse
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from tools.simulators import FaultQueue, Request, Response, SimulatorServer, run_until_interrupted

TOPUP_URL = "https://openrouter.ai/settings/credits"
KEYS_URL = "https://openrouter.ai/settings/keys"
CHARS_PER_TOKEN = 4
DEFAULT_API_KEY = "sk-or-sim"
DEFAULT_MANAGEMENT_KEY = "sk-or-mgmt-sim"
DEFAULT_PRICES: dict[str, tuple[str, str]] = {
    "openai/gpt-4o-mini": ("0.00000015", "0.0000006"),
    "anthropic/claude-3.5-haiku": ("0.0000008", "0.000004"),
    "meta-llama/llama-3.3-70b-instruct:free": ("0", "0"),
}
# name, context_length, top_provider.max_completion_tokens, as OpenRouter lists them.
_KNOWN_MODELS: dict[str, tuple[str, int, int]] = {
    "openai/gpt-4o-mini": ("OpenAI: GPT-4o-mini", 128_000, 16_384),
    "anthropic/claude-3.5-haiku": ("Anthropic: Claude 3.5 Haiku", 200_000, 8_192),
    "meta-llama/llama-3.3-70b-instruct:free": ("Meta: Llama 3.3 70B Instruct (free)", 131_072, 8_192),
}
_FAULT_KINDS = ("timeout", "malformed", "error_in_200")
_STATUS_MESSAGES = {
    400: "Bad Request",
    401: "User not found.",
    402: "Insufficient credits",
    403: "Input was flagged by moderation",
    408: "Request timed out",
    429: "Rate limit exceeded: free-models-per-min.",
    500: "Internal Server Error",
    502: "Provider returned error",
    503: "No available model provider that meets your routing requirements",
}


@dataclass(frozen=True)
class ModelSpec:
    id: str
    name: str
    prompt_price: Decimal  # USD per token
    completion_price: Decimal
    context_length: int = 128_000
    max_completion_tokens: int = 16_384

    @property
    def is_free(self) -> bool:
        return self.prompt_price == 0 and self.completion_price == 0


@dataclass(frozen=True)
class ChatPrompt:
    """What a responder sees: the model, the messages, the granted max_tokens and the last user text."""

    model: str
    messages: list[Any]
    max_tokens: int
    question: str


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    body: Any
    headers: dict[str, str]  # Authorization redacted
    status: int
    fault: str | None
    at: float = field(default_factory=time.time)


Responder = Callable[[ChatPrompt], str]


def _usd(value: Decimal | str | int | float) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _text_of(content: Any) -> str:
    """Message content as text: a string, or the text parts of a multi-part content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def estimate_prompt_tokens(messages: list[Any]) -> int:
    """The simulator's prompt token count: total characters of the messages' content / 4, plus 4."""
    chars = sum(len(_text_of(m.get("content"))) for m in messages if isinstance(m, dict))
    return chars // CHARS_PER_TOKEN + 4


def insufficient_credits_message(
    requested: int, affordable: int, limit_source: str, reset: str | None
) -> str:
    """OpenRouter's 402 text, for the account's credits or for a key's own limit."""
    head = (
        "This request requires more credits, or fewer max_tokens. "
        f"You requested up to {requested} tokens, but can only afford {affordable}. "
    )
    if limit_source == "openrouter_key_limit":
        period = f"{reset} " if reset else ""
        return head + f"To increase, visit {KEYS_URL} and create a key with a higher {period}limit"
    return head + f"To increase, visit {TOPUP_URL} and upgrade to a paid account"


def _error(status: int, message: str, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": status, "message": message}
    if metadata:
        error["metadata"] = metadata
    return {"error": error}


class OpenRouterSimulator(SimulatorServer):
    name = "openrouter-sim"
    base_path = "/api/v1"

    def __init__(
        self,
        *,
        balance: Decimal | str | int | float = Decimal("5.00"),
        key_limit: Decimal | str | int | float | None = None,
        limit_reset: str | None = None,
        prices: Mapping[str, tuple[str | Decimal, str | Decimal]] | None = None,
        latency: float = 0.0,
        generation_seconds: float = 0.0,
        answer_tokens: int = 120,
        responder: Responder | None = None,
        api_key: str = DEFAULT_API_KEY,
        management_key: str = DEFAULT_MANAGEMENT_KEY,
        port: int = 0,
    ) -> None:
        super().__init__(port=port, latency=latency)
        self._lock = threading.Lock()
        self._credits = _usd(balance)  # the account's total_credits
        self._usage = Decimal(0)  # one simulated key, so the key's usage is the account's usage
        self._key_limit = None if key_limit is None else _usd(key_limit)
        self._limit_reset = limit_reset
        self._models: dict[str, ModelSpec] = {}
        for model, (prompt, completion) in (prices or DEFAULT_PRICES).items():
            self.set_price(model, prompt, completion)
        # Seconds between the credit check and the charge, as while a real model generates: lets a
        # benchmark show what concurrent requests do to a naive check-then-spend client.
        self.generation_seconds = generation_seconds
        self.answer_tokens = answer_tokens
        self.responder: Responder = responder or self.default_answer
        self.api_key = api_key
        self.management_key = management_key
        self._faults = FaultQueue()
        self._log: deque[RecordedRequest] = deque(maxlen=10_000)
        self._counts: Counter[tuple[str, str, int]] = Counter()
        self._generation = 0

    # --- control -------------------------------------------------------------------------------
    @property
    def balance(self) -> Decimal:
        """The account's remaining credits (total_credits - total_usage); may be negative."""
        with self._lock:
            return self._credits - self._usage

    @property
    def spent(self) -> Decimal:
        with self._lock:
            return self._usage

    def set_balance(self, usd: Decimal | str | int | float) -> None:
        with self._lock:
            self._credits = self._usage + _usd(usd)

    def top_up(self, usd: Decimal | str | int | float) -> None:
        with self._lock:
            self._credits += _usd(usd)

    def set_key_limit(self, usd: Decimal | str | int | float | None, reset: str | None = None) -> None:
        with self._lock:
            self._key_limit = None if usd is None else _usd(usd)
            self._limit_reset = reset

    def set_price(self, model: str, prompt: str | Decimal, completion: str | Decimal) -> None:
        name, context, max_completion = _KNOWN_MODELS.get(model, (model, 128_000, 16_384))
        spec = ModelSpec(model, name, _usd(prompt), _usd(completion), context, max_completion)
        with self._lock:
            self._models[model] = spec

    def model(self, model_id: str) -> ModelSpec:
        with self._lock:
            return self._models[model_id]

    @property
    def models(self) -> list[ModelSpec]:
        with self._lock:
            return list(self._models.values())

    def fail_next(
        self, kind: int | str, times: int = 1, path: str | None = "/chat/completions", **details: Any
    ) -> None:
        """Script a failure for the next `times` requests to `path` (None = any path).

        kind: an HTTP status (429 honours `retry_after`, default 1 s, in a Retry-After header; any
        status takes `message`), "timeout" (hold the answer `delay` seconds, default 30, then 408),
        "malformed" (HTTP 200 with broken JSON) or "error_in_200" (HTTP 200 with an error body,
        `code` default 502, `message`).
        """
        if not (isinstance(kind, int) and 400 <= kind <= 599) and kind not in _FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}: use a 4xx/5xx status or one of {_FAULT_KINDS}")
        if path is not None:
            path = "/" + path.removeprefix(self.base_path).lstrip("/")
        self._faults.add(kind, times, path, details)

    @property
    def pending_faults(self) -> int:
        return self._faults.pending()

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._log)

    def count(self, path: str | None = None, *, status: int | None = None, method: str | None = None) -> int:
        """How many requests matched (all of them by default), e.g. count("/chat/completions", status=402)."""
        with self._lock:
            return sum(
                n
                for (m, p, s), n in self._counts.items()
                if (path is None or p == path) and (status is None or s == status) and (method in (None, m))
            )

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()
            self._counts.clear()

    def default_answer(self, prompt: ChatPrompt) -> str:
        """A deterministic answer echoing the question, about `answer_tokens` tokens long."""
        text = f"(simulated {prompt.model}) You asked: {prompt.question.strip()}."
        filler = " This is a deterministic answer from the local OpenRouter simulator."
        size = self.answer_tokens * CHARS_PER_TOKEN
        repeats = max(0, math.ceil((size - len(text)) / len(filler)))
        return (text + filler * repeats)[:size]

    # --- HTTP ----------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        fault = self._faults.take(request.path)
        response = self._fault_response(fault.kind, fault.details) if fault else self._route(request)
        try:
            body = request.json()
        except ValueError:
            body = request.body.decode(errors="replace")
        headers = {k: ("[redacted]" if k == "authorization" else v) for k, v in request.headers.items()}
        record = RecordedRequest(
            request.method,
            request.path,
            body,
            headers,
            response.status,
            None if fault is None else str(fault.kind),
        )
        with self._lock:
            self._log.append(record)
            self._counts[(request.method, request.path, response.status)] += 1
        return response

    def _route(self, request: Request) -> Response:
        route = (request.method, request.path)
        if route == ("GET", "/models"):
            return Response(200, {"data": [self._model_json(spec) for spec in self.models]})
        if route in (("GET", "/key"), ("GET", "/auth/key")):
            return self._authorized(request, self.api_key) or Response(200, self._key_json())
        if route == ("GET", "/credits"):
            if self._bearer(request) == self.api_key:
                return Response(403, _error(403, "Only management keys can perform this operation"))
            return self._authorized(request, self.management_key) or self._credits_response()
        if route == ("POST", "/chat/completions"):
            return self._authorized(request, self.api_key) or self._chat(request)
        return Response(404, _error(404, "Not Found"))

    @staticmethod
    def _bearer(request: Request) -> str | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def _authorized(self, request: Request, expected: str) -> Response | None:
        """None when the bearer key is the expected one, else OpenRouter's 401."""
        token = self._bearer(request)
        if token is None:
            return Response(401, _error(401, "No auth credentials found"))
        return None if token == expected else Response(401, _error(401, "User not found."))

    @staticmethod
    def _model_json(spec: ModelSpec) -> dict[str, Any]:
        return {
            "id": spec.id,
            "name": spec.name,
            "created": 1_700_000_000,
            "context_length": spec.context_length,
            "pricing": {
                "prompt": format(spec.prompt_price, "f"),
                "completion": format(spec.completion_price, "f"),
                "request": "0",
                "image": "0",
            },
            "top_provider": {
                "context_length": spec.context_length,
                "max_completion_tokens": spec.max_completion_tokens,
                "is_moderated": False,
            },
        }

    def _key_json(self) -> dict[str, Any]:
        with self._lock:
            limit, usage = self._key_limit, self._usage
            return {
                "data": {
                    "label": self.api_key[:8] + "...sim",
                    "limit": limit,
                    "limit_reset": self._limit_reset,
                    "limit_remaining": None if limit is None else limit - usage,
                    "usage": usage,
                    # The simulator lives less than a day, so every window holds all of its usage.
                    "usage_daily": usage,
                    "usage_weekly": usage,
                    "usage_monthly": usage,
                    "is_free_tier": self._credits == 0,
                    "rate_limit": {"requests": -1, "interval": "10s"},
                }
            }

    def _credits_response(self) -> Response:
        with self._lock:
            return Response(200, {"data": {"total_credits": self._credits, "total_usage": self._usage}})

    def _fault_response(self, kind: int | str, details: dict[str, Any]) -> Response:
        if kind == "timeout":
            return Response(408, _error(408, "Request timed out"), delay=float(details.get("delay", 30.0)))
        if kind == "malformed":
            return Response(200, b'{"id": "gen-sim-malformed", "choices": [{"message": ')
        if kind == "error_in_200":
            code = int(details.get("code", 502))
            return Response(
                200, _error(code, str(details.get("message", _STATUS_MESSAGES.get(code, "Error"))))
            )
        status = int(kind)
        body = _error(status, str(details.get("message", _STATUS_MESSAGES.get(status, "Error"))))
        headers = {}
        if status == 429:
            headers["Retry-After"] = format(details.get("retry_after", 1), "g")
        return Response(status, body, headers)

    # --- chat completions ----------------------------------------------------------------------
    def _chat(self, request: Request) -> Response:
        try:
            body = request.json()
        except ValueError:
            return Response(400, _error(400, "Invalid JSON in request body"))
        if not isinstance(body, dict):
            return Response(400, _error(400, "Request body must be a JSON object"))
        if body.get("stream"):
            return Response(400, _error(400, "stream is not supported by the simulator; send stream: false"))
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return Response(400, _error(400, "messages must be a non-empty list"))
        spec = self._pick_model(body)
        if spec is None:
            return Response(400, _error(400, f"{body.get('model')} is not a valid model ID"))
        max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
        if max_tokens is None:
            max_tokens = spec.max_completion_tokens  # what OpenRouter checks the balance against
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            return Response(400, _error(400, "max_tokens must be a positive integer"))

        prompt_tokens = estimate_prompt_tokens(messages)
        if not all(isinstance(m, dict) for m in messages):
            return Response(400, _error(400, "each message must be an object with role and content"))
        question = next(
            (_text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), ""
        )
        text = self.responder(ChatPrompt(spec.id, messages, max_tokens, question))
        finish_reason = "stop"
        if len(text) > max_tokens * CHARS_PER_TOKEN:
            text, finish_reason = text[: max_tokens * CHARS_PER_TOKEN], "length"
        completion_tokens = math.ceil(len(text) / CHARS_PER_TOKEN)
        cost = prompt_tokens * spec.prompt_price + completion_tokens * spec.completion_price

        delay = self.generation_seconds
        with self._lock:
            refusal = self._refusal(spec, prompt_tokens, max_tokens)
            if refusal is None and not delay:
                self._usage += cost
            self._generation += 1
            generation_id = f"gen-sim-{self._generation}"
        if refusal is not None:
            return refusal
        if delay:
            self._pause(delay)
            with self._lock:
                self._usage += cost
        return Response(
            200,
            {
                "id": generation_id,
                "provider": "Simulator",
                "model": spec.id,
                "object": "chat.completion",
                "created": int(time.time()),
                "choices": [
                    {
                        "index": 0,
                        "logprobs": None,
                        "finish_reason": finish_reason,
                        "native_finish_reason": finish_reason,
                        "message": {"role": "assistant", "content": text, "refusal": None},
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                    "cost": cost,
                    "is_byok": False,
                },
            },
        )

    def _pick_model(self, body: dict[str, Any]) -> ModelSpec | None:
        """`model`, else the first known entry of `models` (OpenRouter's fallback list)."""
        candidates = [body.get("model"), *(body.get("models") or [])]
        with self._lock:
            return next(
                (self._models[m] for m in candidates if isinstance(m, str) and m in self._models), None
            )

    def _refusal(self, spec: ModelSpec, prompt_tokens: int, max_tokens: int) -> Response | None:
        """OpenRouter's 402 when the worst case does not fit the remaining credit; call under the lock."""
        remaining, source = self._credits - self._usage, "openrouter_credits"
        if self._key_limit is not None and self._key_limit - self._usage < remaining:
            remaining, source = self._key_limit - self._usage, "openrouter_key_limit"
        prompt_cost = prompt_tokens * spec.prompt_price
        if spec.is_free:
            if remaining >= 0:
                return None
            affordable = 0
        else:
            if prompt_cost + max_tokens * spec.completion_price <= remaining:
                return None
            affordable = 0
            if spec.completion_price > 0 and remaining > prompt_cost:
                ratio = (remaining - prompt_cost) / spec.completion_price
                affordable = int(ratio.to_integral_value(rounding=ROUND_FLOOR))
        message = insufficient_credits_message(max_tokens, affordable, source, self._limit_reset)
        return Response(402, _error(402, message, {"limit_source": source}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=8787)
    parser.add_argument("--balance", type=Decimal, default=Decimal("5.00"), help="starting credits, USD")
    parser.add_argument("--key-limit", type=Decimal, default=None, help="the key's own limit, USD")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    parser.add_argument("--answer-tokens", type=int, default=120)
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument("--management-key", default=DEFAULT_MANAGEMENT_KEY)
    args = parser.parse_args(argv)
    sim = OpenRouterSimulator(
        balance=args.balance,
        key_limit=args.key_limit,
        latency=args.latency,
        answer_tokens=args.answer_tokens,
        api_key=args.api_key,
        management_key=args.management_key,
        port=args.port,
    )

    def describe() -> Iterator[str]:
        yield f"balance ${sim.balance}; models: {', '.join(spec.id for spec in sim.models)}"
        yield "Ctrl-C to stop"

    return run_until_interrupted(sim, describe)


if __name__ == "__main__":
    raise SystemExit(main())
