"""1. Ed25519 signature verification: our verifier vs raw PyNaCl vs the `cryptography` package.

The raw baselines do what any endpoint must (Discord's own example): hex-decode the signature and
verify `timestamp + body`. Ours adds the header shape checks and the 300 s freshness window.
Invalid = a well-formed signature with one byte changed, which reaches the curve arithmetic.
"""

from __future__ import annotations

import functools
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey

from astrabot.adapters.signature import SignatureVerifier
from benchmarks.common import Row, Section, Stack, interleaved_us, median, p99
from benchmarks.events import sample_body


def _flip(signature_hex: str) -> str:
    first = int(signature_hex[:2], 16) ^ 0x01
    return f"{first:02x}{signature_hex[2:]}"


def run(quick: bool, stack: Stack) -> Section:
    rounds = 20 if quick else 3000
    signing = SigningKey.generate()
    public_hex = signing.verify_key.encode().hex()
    ours_verifier = SignatureVerifier(public_hex)
    nacl_key = signing.verify_key
    crypto_key = Ed25519PublicKey.from_public_bytes(bytes(signing.verify_key))
    body = sample_body("ask")
    timestamp = str(int(time.time()))
    good = signing.sign(timestamp.encode() + body).signature.hex()
    bad = _flip(good)

    def ours(signature: str) -> bool:
        return ours_verifier.verify(signature, timestamp, body, time.time())

    def raw_nacl(signature: str) -> bool:
        try:
            nacl_key.verify(timestamp.encode() + body, bytes.fromhex(signature))
        except BadSignatureError:
            return False
        return True

    def raw_cryptography(signature: str) -> bool:
        try:
            crypto_key.verify(bytes.fromhex(signature), timestamp.encode() + body)
        except InvalidSignature:
            return False
        return True

    verifiers = {"ours": ours, "pynacl": raw_nacl, "cryptography": raw_cryptography}
    for name, verify in verifiers.items():  # each must give the right answer before it is timed
        if verify(good) is not True or verify(bad) is not False:
            raise AssertionError(f"{name} verifier is wrong; nothing to benchmark")

    rows: list[Row] = []
    for label, signature in (("valid", good), ("invalid", bad)):
        samples = interleaved_us(
            {name: functools.partial(verify, signature) for name, verify in verifiers.items()}, rounds
        )
        ours_median = median(samples["ours"])
        rows.append(
            Row(
                f"signature verify, {label}: ours vs PyNaCl",
                "µs",
                ours_median,
                baseline=median(samples["pynacl"]),
                goal=1.2,
                p99=p99(samples["ours"]),
            )
        )
        rows.append(
            Row(
                f"signature verify, {label}: ours vs cryptography",
                "µs",
                ours_median,
                baseline=median(samples["cryptography"]),
                p99=p99(samples["ours"]),
            )
        )
    return Section(
        "1. Signature verification",
        rows,
        notes=[
            f"{rounds} calls per verifier and case, interleaved, body {len(body)} bytes. Raw baselines: "
            "bytes.fromhex + verify, as in Discord's example; ours adds header checks and the 300 s window.",
        ],
    )
