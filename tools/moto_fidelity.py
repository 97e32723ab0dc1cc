"""Two DynamoDB behaviours moto 5.2 lacks, patched in one place for every local use of moto.

1. Isolation. moto serves requests in threads but takes no lock, and a TransactWriteItems snapshots
   the whole table first and restores that snapshot when any condition fails, wiping what other
   threads wrote meanwhile (its deepcopy can even crash on them). DynamoDB isolates every request;
   here each DynamoDB request runs under one lock, so concurrent clients see atomic conditional
   writes as they would on AWS.
2. Number arithmetic. moto's `SET a = a - :b` parses an operand with int() unless its text has a
   ".", so an exponent-form number ("0E-8": Decimal's 0.00060480 - 0.00060480) breaks every later
   update of that attribute. DynamoDB parses any number and stores it normalised.

Used by the integration tests, `make dev` and the benchmarks. Never shipped in the layer.
"""

from __future__ import annotations

import threading
from decimal import Decimal, localcontext
from typing import Any

DYNAMODB_PRECISION = 38  # digits of a DynamoDB number
_lock = threading.RLock()
_patched = False


def normalised(value: Decimal) -> str:
    """A number as DynamoDB returns it: no exponent, no trailing zeros."""
    return "0" if value == 0 else format(value.normalize(), "f")


def apply() -> None:
    """Patch moto (idempotent). Call before the first DynamoDB request reaches moto."""
    global _patched
    with _lock:
        if _patched:
            return
        from moto.dynamodb.models.dynamo_type import DDBType, DynamoType
        from moto.dynamodb.responses import DynamoHandler

        original_add, original_sub = DynamoType.__add__, DynamoType.__sub__

        def arithmetic(sign: int, fallback: Any) -> Any:
            def compute(self: Any, other: Any) -> Any:
                if self.type != DDBType.NUMBER or other.type != DDBType.NUMBER:
                    return fallback(self, other)
                with localcontext() as context:
                    context.prec = DYNAMODB_PRECISION
                    total = Decimal(self.value) + sign * Decimal(other.value)
                return DynamoType({DDBType.NUMBER: normalised(total)})

            return compute

        DynamoType.__add__ = arithmetic(+1, original_add)  # type: ignore[method-assign]
        DynamoType.__sub__ = arithmetic(-1, original_sub)  # type: ignore[method-assign]

        call_action = DynamoHandler.call_action

        def isolated(self: Any) -> Any:
            with _lock:
                return call_action(self)

        DynamoHandler.call_action = isolated  # type: ignore[method-assign]
        _patched = True
