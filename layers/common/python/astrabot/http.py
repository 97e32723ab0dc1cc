"""Lambda Function URL (payload v2) requests and JSON responses, without a web framework.

Function URLs lower-case header names and join repeated headers with commas; we do the same for
any event we are given (tests, `sam local`, the local stack), so a header can be read one way.
The body is returned as the exact bytes that were signed: never re-serialised.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

MAX_BODY_BYTES: Final = 64 * 1024  # Discord interactions are a few KiB; the URL itself allows 6 MB
JSON_HEADERS: Final = {"Content-Type": "application/json"}


class HttpError(Exception):
    """A request we refuse before looking inside it (400 malformed, 413 too large)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class HttpRequest:
    headers: Mapping[str, str]  # lower-cased names
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def lower_headers(raw: Any) -> dict[str, str]:
    """Header names lower-cased; values of names that differ only in case are comma-joined."""
    headers: dict[str, str] = {}
    if not isinstance(raw, Mapping):
        return headers
    for name, value in raw.items():
        if not isinstance(name, str) or not isinstance(value, str):
            continue
        key = name.lower()
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    return headers


def _body_bytes(event: Mapping[str, Any], max_bytes: int) -> bytes:
    body = event.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        raise HttpError(400, "the body is not text")
    if event.get("isBase64Encoded") is True:
        # Reject before decoding: base64 of `max_bytes` is at most 4 * ceil(max_bytes / 3) characters.
        if len(body) > 4 * (max_bytes // 3 + 1):
            raise HttpError(413, "the body is too large")
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise HttpError(400, "the body is not valid base64") from None
    if len(body) > max_bytes:  # a character is at least one byte
        raise HttpError(413, "the body is too large")
    try:
        return body.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: no client could have signed these bytes
        raise HttpError(400, "the body is not valid text") from None


def read_request(event: Any, max_body_bytes: int = MAX_BODY_BYTES) -> HttpRequest:
    """The headers and raw body of a Function URL event; HttpError for malformed or oversize ones."""
    if not isinstance(event, Mapping):
        raise HttpError(400, "not a Function URL event")
    body = _body_bytes(event, max_body_bytes)
    if len(body) > max_body_bytes:
        raise HttpError(413, "the body is too large")
    return HttpRequest(headers=lower_headers(event.get("headers")), body=body)


def json_response(status: int, payload: Any) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": dict(JSON_HEADERS),
        "body": json.dumps(payload, separators=(",", ":")),
    }


def error_response(status: int, message: str) -> dict[str, Any]:
    return json_response(status, {"error": message})
