"""Hypothesis fuzzing of the interactions endpoint's headers and body (2,000 examples in CI).

Invariant: the status is 200, 400, 401 or 413; 401 exactly when the request is well-formed but not
validly signed; and no AWS call happens unless it is validly signed. "Validly signed" is decided by
an oracle written here from Discord's rules (Ed25519 over timestamp + raw body, |skew| <= 300 s),
not by asking the product. About a third of the examples are validly signed so that the routes
behind the signature check are exercised too; the rest are forged, tampered or garbage.
"""

from __future__ import annotations

import base64
import binascii
import json
import string
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from astrabot.http import MAX_BODY_BYTES
from functions.interactions import app
from tests.reliability.conftest import Observe
from tests.reliability.endpoint import Endpoint, at
from tests.reliability.support import (
    ADMINISTRATOR,
    APP_ID,
    KEY,
    PUBLIC_KEY,
    WRONG_KEYS,
    AwsCalls,
    ask,
    encode,
    member,
    nexus,
    signed_headers,
)

EXAMPLES = 2000
NOW = 1_790_000_000  # a fixed clock: the window check is part of what is fuzzed
SIG, STAMP = "x-signature-ed25519", "x-signature-timestamp"
HEADER_NAMES = [SIG, STAMP, "X-Signature-Ed25519", "X-SIGNATURE-TIMESTAMP", "content-type", "Content-Type"]

# --- bodies ------------------------------------------------------------------------------------------
LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63), st.text(max_size=12))
JSON_VALUES = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
)
OPTIONS = st.lists(
    st.fixed_dictionaries(
        {
            "name": st.sampled_from(["prompt", "model", "credits", "status", "diagnostics"]),
            "type": st.integers(1, 5),
        },
        optional={"value": JSON_VALUES, "options": JSON_VALUES},
    ),
    max_size=3,
)
MEMBER = st.fixed_dictionaries(
    {},
    optional={
        "user": st.one_of(st.fixed_dictionaries({"id": st.sampled_from(["1", "42", ""])}), JSON_VALUES),
        "permissions": st.one_of(
            st.sampled_from(["0", str(ADMINISTRATOR), "32", "2048", "-8", "8.0", "0x8", " 8", "٨"]),
            JSON_VALUES,
        ),
        "roles": st.one_of(st.lists(st.sampled_from(["1", "2"]), max_size=2), JSON_VALUES),
    },
)
INTERACTIONS = st.fixed_dictionaries(
    {"type": st.one_of(st.sampled_from([1, 2, 2, 2, 3, 4, 5]), LEAVES)},
    optional={
        "id": st.one_of(st.from_regex(r"[0-9]{17,19}", fullmatch=True), LEAVES),
        "application_id": st.just(APP_ID),
        "token": st.one_of(st.text(string.ascii_letters, min_size=1, max_size=20), LEAVES),
        "guild_id": st.just("1100000000000000001"),
        "member": st.one_of(MEMBER, JSON_VALUES),
        "user": JSON_VALUES,
        "data": st.one_of(
            st.fixed_dictionaries(
                {
                    "name": st.sampled_from(["ask", "nexus", "Ask AstraBot", "other"]),
                    "type": st.integers(1, 3),
                },
                optional={
                    "options": st.one_of(OPTIONS, JSON_VALUES),
                    "target_id": LEAVES,
                    "resolved": JSON_VALUES,
                },
            ),
            JSON_VALUES,
        ),
    },
)
PLAUSIBLE = st.one_of(
    st.builds(lambda prompt: ask(prompt), st.text(max_size=300)),
    st.builds(
        lambda sub, bits, alert: nexus(
            sub, who=member(permissions=bits), **({"test_alert": alert} if alert else {})
        ),
        st.sampled_from(["credits", "status", "diagnostics", "other"]),
        st.sampled_from(["0", str(ADMINISTRATOR), "32", "2048", "x"]),
        st.booleans(),
    ),
)
BODIES = st.one_of(
    PLAUSIBLE.map(encode),
    PLAUSIBLE.map(encode),
    INTERACTIONS.map(encode),
    st.just(b'{"type":1}'),
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
)


# --- events: validly signed, tampered, or garbage -----------------------------------------------------
def _flip(data: bytes, index: int) -> bytes:
    if not data:
        return b"\x00"
    mutated = bytearray(data)
    mutated[index % len(data)] ^= 0x01
    return bytes(mutated)


@st.composite
def signed_events(draw: st.DrawFn) -> dict[str, Any]:
    body = draw(BODIES)
    key = draw(st.sampled_from([KEY, KEY, KEY, *WRONG_KEYS[:2]]))
    skew = draw(st.one_of(st.integers(-300, 300), st.integers(-(10**6), 10**6)))
    headers = signed_headers(body, key=key, timestamp=str(NOW + skew))
    tamper = draw(st.sampled_from(["none", "none", "body", "signature", "timestamp", "duplicate", "case"]))
    where = draw(st.integers(0, 10**6))
    if tamper == "body":
        body = _flip(body, where)
    elif tamper == "signature":
        headers[SIG] = _flip(bytes.fromhex(headers[SIG]), where).hex()
    elif tamper == "timestamp":
        headers[STAMP] = draw(st.sampled_from([" ", "", "+", "-"])) + headers[STAMP]
    elif tamper == "duplicate":
        headers["X-Signature-Ed25519"] = headers[SIG]
    elif tamper == "case":
        headers = {name.title(): value for name, value in headers.items()}
    extra = draw(
        st.dictionaries(st.sampled_from([*HEADER_NAMES, "x-other"]), st.text(max_size=20), max_size=2)
    )
    return _event(body, {**headers, **extra}, draw(st.booleans()))


@st.composite
def garbage_events(draw: st.DrawFn) -> dict[str, Any]:
    values = st.one_of(
        st.text(max_size=140),
        st.from_regex(r"[0-9a-fA-F]{128}", fullmatch=True),
        st.integers(0, 2**40).map(str),
        st.binary(min_size=64, max_size=64).map(bytes.hex),
    )
    headers = draw(
        st.dictionaries(st.one_of(st.sampled_from(HEADER_NAMES), st.text(max_size=20)), values, max_size=6)
    )
    body = draw(
        st.one_of(
            st.none(),
            st.text(max_size=300),
            st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode()),
        )
    )
    event: dict[str, Any] = {"version": "2.0", "headers": headers, "isBase64Encoded": draw(st.booleans())}
    if body is not None:
        event["body"] = body
    return event


def _event(body: bytes, headers: dict[str, str], as_base64: bool) -> dict[str, Any]:
    try:
        text = body.decode()
    except UnicodeDecodeError:
        as_base64 = True
    return {
        "version": "2.0",
        "headers": headers,
        "body": base64.b64encode(body).decode() if as_base64 else text,
        "isBase64Encoded": as_base64,
    }


EVENTS = st.one_of(signed_events(), signed_events(), garbage_events())


# --- the oracle ------------------------------------------------------------------------------------------
_VERIFY_KEY = VerifyKey(bytes.fromhex(PUBLIC_KEY))


def transport_body(event: dict[str, Any]) -> bytes | None:
    """The raw bytes a Function URL would hand over, or None when it is not a readable body."""
    body = event.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        return None
    if event.get("isBase64Encoded") is True:
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return None
    else:
        try:
            raw = body.encode("utf-8")
        except UnicodeEncodeError:
            return None
    return raw if len(raw) <= MAX_BODY_BYTES else None


def validly_signed(event: dict[str, Any]) -> bool:
    """Discord's rule, written independently: one signature and one timestamp header (names in any
    case), the timestamp within 300 s of now, Ed25519 over timestamp + raw body."""
    body = transport_body(event)
    values: dict[str, list[str]] = {}
    for name, value in event["headers"].items():
        values.setdefault(name.lower(), []).append(value)
    signatures, stamps = values.get(SIG, []), values.get(STAMP, [])
    if body is None or len(signatures) != 1 or len(stamps) != 1:
        return False
    signature, stamp = signatures[0], stamps[0]
    if not (stamp.isascii() and stamp.isdigit() and abs(NOW - int(stamp)) <= 300):
        return False
    if len(signature) != 128 or any(c not in string.hexdigits for c in signature):
        return False
    try:
        _VERIFY_KEY.verify(stamp.encode() + body, bytes.fromhex(signature))
    except BadSignatureError:
        return False
    return True


# --- the property --------------------------------------------------------------------------------------
def test_given_2000_fuzzed_requests_then_only_200_400_401_413_and_aws_only_when_validly_signed(
    endpoint: Endpoint, aws_calls: AwsCalls, monkeypatch: pytest.MonkeyPatch, observe: Observe
) -> None:
    monkeypatch.setattr(app, "utcnow", at(datetime.fromtimestamp(NOW, UTC)))
    seen: Counter[str] = Counter()

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(event=EVENTS)
    def one_request(event: dict[str, Any]) -> None:
        endpoint.reset()
        aws_calls.clear()
        valid = validly_signed(event)
        response = endpoint.call(event)
        seen[f"{'signed' if valid else 'unsigned'} {response.status}"] += 1
        assert response.status in {200, 400, 401, 413}
        assert response.content_type == "application/json"
        json.dumps(response.body)
        if not valid:
            assert endpoint.aws == []
            assert len(aws_calls) == 0
            assert response.status in {400, 401, 413}
            if transport_body(event) is not None:
                assert response.status == 401
        else:
            assert response.status in {200, 400}

    one_request()
    tried = sum(seen.values())
    assert tried >= EXAMPLES
    signed = sum(n for k, n in seen.items() if k.startswith("signed "))
    assert signed >= EXAMPLES // 10  # the routes behind the signature were exercised too
    breakdown = ", ".join(f"{k} ×{n}" for k, n in sorted(seen.items()))
    observe(
        "Fuzzed headers and bodies (Hypothesis: forged, tampered, garbage and validly signed)",
        f"{tried} requests: {breakdown}; 0 AWS calls for any request not validly signed",
        inputs=tried,
        requests=tried,
    )
