"""Ed25519 verification of Discord requests: only fresh, well-formed, valid signatures pass."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from astrabot.adapters.signature import SignatureVerifier

KEY = SigningKey(b"\x01" * 32)
OTHER_KEY = SigningKey(b"\x02" * 32)
NOW = 1_767_225_600.0
TS = str(int(NOW))
BODY = b'{"type":1}'


def sign(body: bytes = BODY, timestamp: str = TS, key: SigningKey = KEY) -> str:
    return str(key.sign(timestamp.encode() + body).signature.hex())


@pytest.fixture
def verifier() -> SignatureVerifier:
    return SignatureVerifier(KEY.verify_key.encode().hex())


def test_given_discord_signature_when_verified_then_accepted(verifier: SignatureVerifier) -> None:
    assert verifier.verify(sign(), TS, BODY, NOW) is True


def test_given_uppercase_hex_signature_when_verified_then_accepted(verifier: SignatureVerifier) -> None:
    assert verifier.verify(sign().upper(), TS, BODY, NOW) is True


def test_given_signature_by_another_key_when_verified_then_rejected(verifier: SignatureVerifier) -> None:
    assert verifier.verify(sign(key=OTHER_KEY), TS, BODY, NOW) is False


def test_given_body_changed_after_signing_when_verified_then_rejected(verifier: SignatureVerifier) -> None:
    assert verifier.verify(sign(), TS, b'{"type":2}', NOW) is False


def test_given_unicode_escapes_when_verified_then_raw_bytes_are_what_count(
    verifier: SignatureVerifier,
) -> None:
    raw = b'{"content":"caf\\u00e9 \\ud83d\\ude00"}'
    reserialised = '{"content":"café 😀"}'.encode()
    assert verifier.verify(sign(raw), TS, raw, NOW) is True
    assert verifier.verify(sign(raw), TS, reserialised, NOW) is False


@pytest.mark.parametrize("skew", [-300, 300])
def test_given_timestamp_at_the_300s_edge_when_verified_then_accepted(
    verifier: SignatureVerifier, skew: int
) -> None:
    timestamp = str(int(NOW) + skew)
    assert verifier.verify(sign(timestamp=timestamp), timestamp, BODY, NOW) is True


@pytest.mark.parametrize("skew", [-301, 301, -86400])
def test_given_stale_or_future_timestamp_when_verified_then_rejected(
    verifier: SignatureVerifier, skew: int
) -> None:
    timestamp = str(int(NOW) + skew)
    assert verifier.verify(sign(timestamp=timestamp), timestamp, BODY, NOW) is False


@pytest.mark.parametrize("timestamp", ["", "12.5", "abc", "-1767225600", "²", " 1767225600", "9" * 40])
def test_given_non_integer_timestamp_when_verified_then_rejected(
    verifier: SignatureVerifier, timestamp: str
) -> None:
    assert verifier.verify(sign(timestamp=timestamp), timestamp, BODY, NOW) is False


@pytest.mark.parametrize(
    "signature",
    [None, "", "zz" * 64, "ab" * 63, "ab" * 65, sign()[:-2] + "é", sign() + "," + sign()],
)
def test_given_malformed_signature_when_verified_then_rejected(
    verifier: SignatureVerifier, signature: str | None
) -> None:
    assert verifier.verify(signature, TS, BODY, NOW) is False


def test_given_missing_timestamp_when_verified_then_rejected(verifier: SignatureVerifier) -> None:
    assert verifier.verify(sign(), None, BODY, NOW) is False


def test_given_malformed_public_key_when_built_then_it_fails_at_cold_start() -> None:
    with pytest.raises(ValueError, match="hex"):
        SignatureVerifier("not-a-key")


@settings(max_examples=300, deadline=None)
@given(
    signature=st.one_of(st.none(), st.text(max_size=140)),
    timestamp=st.one_of(st.none(), st.text(max_size=20)),
    body=st.binary(max_size=256),
)
def test_given_arbitrary_input_when_verified_then_false_and_never_raises(
    signature: str | None, timestamp: str | None, body: bytes
) -> None:
    verifier = SignatureVerifier(KEY.verify_key.encode().hex())
    assert verifier.verify(signature, timestamp, body, NOW) is False
