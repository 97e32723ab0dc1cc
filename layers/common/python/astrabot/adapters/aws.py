"""boto3 clients built one way: standard retries, short timeouts, `AWS_ENDPOINT_URL` honoured.

Clients are created lazily by handlers (at module scope of a function, never at import of the layer),
so tests can start moto first.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(
    retries={"max_attempts": 3, "mode": "standard"},
    connect_timeout=2,
    read_timeout=5,
)


def client(service: str, **overrides: Any) -> Any:
    """A boto3 client for `service` with our timeouts and retry policy."""
    config = _CONFIG.merge(overrides.pop("config")) if "config" in overrides else _CONFIG
    return boto3.client(service, config=config, **overrides)  # type: ignore[call-overload]
