"""Discord interaction events for the benchmarks: the repository's sample events (events/*.json),
signed with a key made here, exactly as Discord signs them."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

from nacl.signing import SigningKey

from benchmarks.common import ROOT

EVENTS = ROOT / "events"


def sample_event(name: str) -> dict[str, Any]:
    """events/<name>.json: a Lambda Function URL (payload v2) event."""
    event: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return event


def sample_body(name: str) -> bytes:
    return str(sample_event(name)["body"]).encode()


def signed_event(name: str, key: SigningKey, timestamp: int | None = None) -> dict[str, Any]:
    """The sample event with a valid `x-signature-ed25519` over `timestamp + body`."""
    event = copy.deepcopy(sample_event(name))
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    body = str(event["body"]).encode()
    event["headers"]["x-signature-timestamp"] = stamp
    event["headers"]["x-signature-ed25519"] = key.sign(stamp.encode() + body).signature.hex()
    return event
