"""Ed25519 verification of Discord's interaction requests (PyNaCl).

Discord signs `timestamp + raw body` and deliberately sends forged requests to check the endpoint,
so every malformed input is a plain "no", never an exception. The key is parsed once per container.
"""

from __future__ import annotations

import binascii
from typing import Final

from nacl.exceptions import BadSignatureError, CryptoError
from nacl.signing import VerifyKey

MAX_CLOCK_SKEW_SECONDS: Final = 300
SIGNATURE_HEX_LENGTH: Final = 128  # 64 bytes
# A Unix time in seconds has 10 digits until 2286; anything much longer is not a timestamp.
MAX_TIMESTAMP_DIGITS: Final = 12
_HEX = frozenset("0123456789abcdefABCDEF")


class SignatureVerifier:
    """Checks `X-Signature-Ed25519` / `X-Signature-Timestamp` against the application's public key."""

    def __init__(self, public_key_hex: str, *, max_skew_seconds: int = MAX_CLOCK_SKEW_SECONDS) -> None:
        # A malformed key is a configuration error: let it raise at cold start, loudly.
        self._key = VerifyKey(bytes.fromhex(public_key_hex))
        self._max_skew = max_skew_seconds

    def verify(self, signature_hex: str | None, timestamp: str | None, body: bytes, now: float) -> bool:
        """True only for a well-formed, fresh (|now - timestamp| <= 300 s) and valid signature."""
        if not isinstance(signature_hex, str) or not isinstance(timestamp, str):
            return False
        if len(signature_hex) != SIGNATURE_HEX_LENGTH or not _HEX.issuperset(signature_hex):
            return False
        # ASCII digits only: str.isdigit() also accepts "²" and other Unicode digits.
        if not (0 < len(timestamp) <= MAX_TIMESTAMP_DIGITS and timestamp.isascii() and timestamp.isdigit()):
            return False
        if abs(now - int(timestamp)) > self._max_skew:
            return False
        try:
            self._key.verify(timestamp.encode("ascii") + body, binascii.unhexlify(signature_hex))
        except (BadSignatureError, CryptoError, ValueError, TypeError):
            return False
        return True
