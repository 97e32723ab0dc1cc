"""Hostile requests against functions/interactions/app.py: each gets its expected status, and nothing
that fails the signature check makes a single AWS call.

Discord sends forged requests on purpose and removes an endpoint that accepts one; anyone who finds
the Function URL can send the rest.
"""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from astrabot.service.interactions import NOT_ADMIN_TEXT, SOMETHING_WENT_WRONG_TEXT
from functions.interactions import app
from tests.reliability.conftest import Observe
from tests.reliability.endpoint import Endpoint, at
from tests.reliability.support import (
    ADMIN,
    ADMINISTRATOR,
    WRONG_KEYS,
    ask,
    command,
    encode,
    function_url_event,
    member,
    nexus,
    signed_event,
    signed_headers,
)

PING = b'{"type":1}'
SIX_MB = 6 * 1024 * 1024


def statuses(endpoint: Endpoint, events: list[dict[str, Any]]) -> Counter[int]:
    return Counter(endpoint.call(event).status for event in events)


def flip(data: bytes, bit: int) -> bytes:
    mutated = bytearray(data)
    mutated[bit // 8] ^= 1 << (bit % 8)
    return bytes(mutated)


def summary(counts: Counter[int], endpoint: Endpoint) -> str:
    shown = ", ".join(f"{status} ×{n}" for status, n in sorted(counts.items()))
    return f"{shown}; AWS calls: {len(endpoint.aws)}"


# --- replay and tampering -------------------------------------------------------------------------
def test_given_a_signed_request_when_replayed_outside_the_300_s_window_then_401_without_aws(
    endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch, observe: Observe
) -> None:
    signed_at = int(time.time())
    event = signed_event(encode(nexus("credits", who=ADMIN)), timestamp=str(signed_at))
    assert endpoint.call(event).status == 200  # the original delivery is served
    endpoint.reset()
    events = []
    for skew in (-86_400, -301, 301, 3_600):
        monkeypatch.setattr(app, "utcnow", at(datetime.fromtimestamp(signed_at + skew, UTC)))
        events.append(event)
        assert endpoint.call(event).status == 401
    assert endpoint.aws == []
    observe(
        "Replay outside the 300 s window (-1 day, -301 s, +301 s, +1 h)",
        f"401 ×{len(events)}; AWS calls: 0",
        inputs=len(events),
        requests=len(events) + 1,
    )


def test_given_any_single_bit_flipped_in_body_signature_or_timestamp_then_401_without_aws(
    endpoint: Endpoint, observe: Observe
) -> None:
    events = []
    for body in (PING, encode(nexus("credits", who=member(permissions=0)))):
        headers = signed_headers(body)
        events += [
            function_url_event(flip(body, bit), headers=headers, base64_body=True)
            for bit in range(len(body) * 8)
        ]
        signature = bytes.fromhex(headers["x-signature-ed25519"])
        events += [
            function_url_event(body, headers={**headers, "x-signature-ed25519": flip(signature, bit).hex()})
            for bit in range(len(signature) * 8)
        ]
        stamp = int(headers["x-signature-timestamp"])
        events += [
            function_url_event(body, headers={**headers, "x-signature-timestamp": str(stamp + delta)})
            for delta in (-1, 1)
        ]
    counts = statuses(endpoint, events)
    assert counts == {401: len(events)}
    assert endpoint.aws == []
    observe(
        "Flipped bits (every bit of body and signature, timestamp ±1)",
        summary(counts, endpoint),
        inputs=len(events),
        requests=len(events),
    )


def test_given_requests_signed_with_wrong_keys_then_401_without_aws(
    endpoint: Endpoint, observe: Observe
) -> None:
    bodies = [PING, encode(ask("hello")), encode(nexus("credits", who=ADMIN))]
    events = [signed_event(body, key=key) for key in WRONG_KEYS for body in bodies]
    counts = statuses(endpoint, events)
    assert counts == {401: len(events)}
    assert endpoint.aws == []
    observe(
        f"Wrong signing keys ({len(WRONG_KEYS)} keys × PING, /ask, /nexus)",
        summary(counts, endpoint)
        + f"; operator: metric SignatureRejected ×{len(events)}, log 'signature rejected'",
        inputs=len(events),
        requests=len(events),
    )


def test_given_forged_admin_permissions_signed_with_a_wrong_key_then_401_without_aws(
    endpoint: Endpoint, observe: Observe
) -> None:
    forged = [
        nexus(sub, who=member(permissions=bits), **({"test_alert": True} if sub == "diagnostics" else {}))
        for sub in ("credits", "status", "diagnostics")
        for bits in (ADMINISTRATOR, 1 << 5, (1 << 41) - 1)
    ]
    events = [signed_event(encode(i), key=WRONG_KEYS[0]) for i in forged]
    counts = statuses(endpoint, events)
    assert counts == {401: len(events)}
    assert endpoint.aws == []
    observe(
        "Forged member.permissions (admin bits) signed with a wrong key",
        summary(counts, endpoint),
        inputs=len(events),
        requests=len(events),
    )


# --- malformed signature headers -----------------------------------------------------------------
def _with_signature(value: str) -> dict[str, Any]:
    headers = signed_headers(PING)
    return function_url_event(PING, headers={**headers, "x-signature-ed25519": value})


def test_given_non_hex_or_wrong_length_signatures_then_401_without_aws(
    endpoint: Endpoint, observe: Observe
) -> None:
    good = signed_headers(PING)["x-signature-ed25519"]
    non_hex = [
        "g" * 128,
        "Z" * 128,
        "é" * 128,
        " " * 128,
        good[:-1] + "x",
        "0x" + good[:126],
        good.replace("a", "\u0430"),
    ]
    lengths = [good[:n] for n in (0, 2, 64, 126, 127)] + [good + "0", good + "00", good * 2]
    events = [_with_signature(value) for value in non_hex + lengths]
    counts = statuses(endpoint, events)
    assert counts == {401: len(events)}
    assert endpoint.aws == []
    observe(
        "Non-hex and wrong-length signatures",
        summary(counts, endpoint),
        inputs=len(events),
        requests=len(events),
    )


def test_given_duplicate_signature_headers_comma_joined_then_401_without_aws(
    endpoint: Endpoint, observe: Observe
) -> None:
    headers = signed_headers(PING)
    signature, stamp = headers["x-signature-ed25519"], headers["x-signature-timestamp"]
    wrong = signed_headers(PING, key=WRONG_KEYS[1])["x-signature-ed25519"]
    variants: list[dict[str, Any]] = [
        {**headers, "X-Signature-Ed25519": signature},  # the same header twice, as two names
        {**headers, "X-Signature-Timestamp": stamp},
        {**headers, "x-signature-ed25519": f"{signature},{signature}"},  # as Function URLs join them
        {**headers, "x-signature-timestamp": f"{stamp},{stamp}"},
        {**headers, "X-SIGNATURE-ED25519": wrong},  # a valid one and a forged one
        {"x-signature-timestamp": stamp, "X-Signature-Ed25519": signature, "x-signature-ed25519": signature},
    ]
    events = [function_url_event(PING, headers=h) for h in variants]
    counts = statuses(endpoint, events)
    assert counts == {401: len(events)}
    assert endpoint.aws == []
    observe(
        "Duplicate signature/timestamp headers (comma-joined)",
        summary(counts, endpoint),
        inputs=len(events),
        requests=len(events),
    )


# --- bodies: empty, huge, deeply nested -----------------------------------------------------------
def test_given_empty_bodies_then_401_unsigned_and_400_signed_without_aws(
    endpoint: Endpoint, observe: Observe
) -> None:
    signed_empty = signed_headers(b"")
    cases = [
        (function_url_event(b""), 401),
        (function_url_event(None), 401),
        (function_url_event(b"", headers=signed_empty), 400),
        (function_url_event(None, headers=signed_empty), 400),
        (function_url_event(b"", headers=signed_empty, base64_body=True), 400),
    ]
    got = [endpoint.call(event).status for event, _ in cases]
    assert got == [expected for _, expected in cases]
    assert endpoint.aws == []
    observe(
        "Empty and absent bodies",
        f"unsigned: 401 ×2; validly signed: 400 ×3; AWS calls: {len(endpoint.aws)}",
        inputs=len(cases),
        requests=len(cases),
    )


def test_given_6_mb_bodies_then_413_before_verifying_and_without_aws(
    endpoint: Endpoint, observe: Observe
) -> None:
    huge = b'{"type":1,"pad":"' + b"x" * SIX_MB + b'"}'
    events = [
        function_url_event(huge),
        function_url_event(huge, base64_body=True),
        signed_event(huge),
        {
            "version": "2.0",
            "headers": {},
            "body": base64.b64encode(huge).decode() + "=",
            "isBase64Encoded": True,
        },
    ]
    started = time.perf_counter()
    counts = statuses(endpoint, events)
    seconds = time.perf_counter() - started
    assert counts == {413: len(events)}
    assert endpoint.verifier.verdicts == []  # refused before any signature work
    assert endpoint.aws == []
    observe(
        "6 MB bodies (plain, base64, validly signed)",
        f"413 ×{len(events)} in {seconds * 1000:.0f} ms total, verifier not called; AWS calls: 0",
        inputs=len(events),
        requests=len(events),
    )


def _nested(depth: int, *, kind: str = "array") -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


def test_given_validly_signed_deeply_nested_json_then_400_never_500(
    endpoint: Endpoint, observe: Observe
) -> None:
    bodies = [
        _nested(30_000),
        _nested(10_000, kind="object"),
        encode(ask("PLACEHOLDER")).replace(b'"PLACEHOLDER"', _nested(20_000)),
        encode({**ask("hi"), "member": "PLACEHOLDER"}).replace(
            b'"PLACEHOLDER"', _nested(9_000, kind="object")
        ),
    ]
    counts = statuses(endpoint, [signed_event(body) for body in bodies])
    assert counts == {400: len(bodies)}
    assert endpoint.aws == []
    observe(
        "Deeply nested JSON, validly signed (9,000-30,000 levels)",
        summary(counts, endpoint),
        inputs=len(bodies),
        requests=len(bodies),
    )


def _deepest_parsable_array() -> int:
    """The deepest array json.loads accepts from this stack depth (binary search, ~18 tries)."""
    low, high = 1, 100_000
    while low < high:
        middle = (low + high + 1) // 2
        try:
            json.loads(_nested(middle))
            low = middle
        except RecursionError:
            high = middle - 1
    return low


def test_given_validly_signed_interactions_nested_up_to_the_parser_limit_then_never_a_recursion_error(
    endpoint: Endpoint, caplog: pytest.LogCaptureFixture, observe: Observe
) -> None:
    limit = _deepest_parsable_array()
    tried, generic, statuses_seen = 0, 0, Counter[int]()
    for depth in range(max(1, limit - 60), limit + 5):
        extra = encode({**ask("hi"), "extra": "PLACEHOLDER"}).replace(b'"PLACEHOLDER"', _nested(depth))
        prompt = encode(ask("PLACEHOLDER")).replace(b'"PLACEHOLDER"', _nested(depth))
        for body in (extra, prompt):
            response = endpoint.call(signed_event(body))
            tried += 1
            statuses_seen[response.status] += 1
            generic += response.body.get("data", {}).get("content") == SOMETHING_WENT_WRONG_TEXT
    observe(
        f"Validly signed /ask nested {limit - 60}-{limit + 4} levels (just below the parser's limit)",
        f"{', '.join(f'{s} ×{n}' for s, n in sorted(statuses_seen.items()))}; of which {generic} were "
        "200 'Something went wrong' after a RecursionError",
        inputs=tried,
        requests=tried,
    )
    assert set(statuses_seen) <= {200, 400}
    assert generic == 0
    assert "interaction failed" not in caplog.text


# --- validly signed but not ours ------------------------------------------------------------------
def test_given_unknown_interaction_types_then_400_without_aws(endpoint: Endpoint, observe: Observe) -> None:
    kinds: list[Any] = [0, 3, 4, 5, 6, 99, -1, "1", "2", None, True, False, [2], {"t": 2}]
    bodies = [encode({**ask("hi"), "type": kind}) for kind in kinds] + [
        b'{"data":{}}',
        b"[]",
        b'"ping"',
        b"1",
    ]
    counts = statuses(endpoint, [signed_event(body) for body in bodies])
    assert counts == {400: len(bodies)}
    assert endpoint.aws == []
    observe(
        "Unknown interaction types (numbers, strings, null, bools, non-objects)",
        summary(counts, endpoint),
        inputs=len(bodies),
        requests=len(bodies),
    )


def test_given_unknown_commands_and_subcommands_then_400_without_aws(
    endpoint: Endpoint, observe: Observe
) -> None:
    datas: list[Any] = [
        {"id": "9", "name": "dance", "type": 1},
        {"id": "9", "name": "ask", "type": 3},
        {"id": "9", "name": "Ask AstraBot", "type": 1},
        {"id": "9", "name": "ASK", "type": 1, "options": [{"name": "prompt", "type": 3, "value": "x"}]},
        {"id": "9", "name": "nexus", "type": 2},
        {"id": "9", "name": None},
        "ask",
        None,
    ]
    interactions = [command(data) for data in datas] + [
        nexus("selfdestruct", who=ADMIN),
        nexus("", who=ADMIN),
        command({"id": "3", "name": "nexus", "type": 1, "options": []}, who=ADMIN),
    ]
    counts = statuses(endpoint, [signed_event(encode(i)) for i in interactions])
    assert counts == {400: len(interactions)}
    assert endpoint.aws == []
    observe(
        "Unknown commands and /nexus subcommands",
        summary(counts, endpoint),
        inputs=len(interactions),
        requests=len(interactions),
    )


def test_given_ask_without_member_or_user_then_400_without_aws(endpoint: Endpoint, observe: Observe) -> None:
    no_one = {k: v for k, v in ask("hi").items() if k != "member"}
    userless_member = {**ask("hi"), "member": {"permissions": "0", "roles": []}}
    null_user = {**ask("hi"), "member": {"user": None, "permissions": "0"}}
    bodies = [encode(no_one), encode(userless_member), encode(null_user)]
    counts = statuses(endpoint, [signed_event(b) for b in bodies])
    assert counts == {400: len(bodies)}
    assert endpoint.aws == []
    observe(
        "/ask without member or user", summary(counts, endpoint), inputs=len(bodies), requests=len(bodies)
    )


def test_given_nexus_without_member_or_user_then_polite_refusal_without_aws(
    endpoint: Endpoint, observe: Observe
) -> None:
    no_one = {k: v for k, v in nexus("credits").items() if k != "member"}
    userless_member = {**nexus("status"), "member": {"permissions": "0", "roles": []}}
    responses = [endpoint.call(signed_event(encode(i))) for i in (no_one, userless_member)]
    assert [(r.status, r.body["data"]["content"]) for r in responses] == [(200, NOT_ADMIN_TEXT)] * 2
    assert all(r.body["data"]["flags"] == 64 for r in responses)
    assert endpoint.aws == []
    observe(
        "/nexus without member or user",
        "200 ephemeral 'for server managers' refusal ×2; AWS calls: 0",
        inputs=2,
        requests=2,
    )
