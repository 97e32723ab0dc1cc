"""6. Reservation throughput on one balance item (moto_server): where the single item saturates.

Each thread runs what every LLM call does to the ledger, in a loop for a fixed window: reserve
(one TransactWriteItems: the reservation record + the conditional update of BALANCE/CURRENT),
then settle it (another, deleting the record). Settling keeps the open reservations at the number
of calls in flight, as in production; it also matters on moto, whose transactions copy the whole
table and so slow down as it grows.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from decimal import Decimal

from astrabot.adapters.ledger import Ledger, ReservationRequest
from astrabot.errors import LedgerUnavailable, ReservationRejected
from benchmarks.common import MODEL, Row, Section, Stack, median, p99, seed_balance

THREADS = (1, 4, 16)
AMOUNT = Decimal("0.0006")  # about one 1000-token answer of the default model


def _window(ledger: Ledger, threads: int, seconds: float, tag: str) -> tuple[int, int, list[float]]:
    """Reserve and settle from `threads` threads for `seconds`: (cycles done, refused or failed,
    reserve latencies in ms)."""
    start = threading.Barrier(threads + 1)
    lock = threading.Lock()
    latencies: list[float] = []
    counts = {"ok": 0, "failed": 0}
    stop_at = [0.0]

    def worker(index: int) -> None:
        mine: list[float] = []
        ok = failed = 0
        start.wait(timeout=30)
        while time.perf_counter() < stop_at[0]:
            began = time.perf_counter()
            try:
                reservation = ledger.reserve(
                    ReservationRequest(
                        f"{tag}-{index}-{ok + failed}", AMOUNT, 1000, "42", MODEL, datetime.now(UTC)
                    ),
                    balance_known=True,
                )
            except (ReservationRejected, LedgerUnavailable):
                failed += 1
                continue
            mine.append((time.perf_counter() - began) * 1000)
            try:
                ledger.settle(reservation, cost_usd=AMOUNT / 2, tokens_used=500)
                ok += 1
            except LedgerUnavailable:
                failed += 1
        with lock:
            latencies.extend(mine)
            counts["ok"] += ok
            counts["failed"] += failed

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for thread in pool:
        thread.start()
    stop_at[0] = time.perf_counter() + seconds
    start.wait(timeout=30)
    for thread in pool:
        thread.join(timeout=seconds + 60)
    return counts["ok"], counts["failed"], latencies


def run(quick: bool, stack: Stack) -> Section:
    seconds = 0.3 if quick else 4.0
    client = stack.dynamodb(pool=max(THREADS) * 2)
    ledger = Ledger(client, stack.new_table(client))
    seed_balance(ledger, Decimal(10**6))
    _window(ledger, 2, 0.2 if quick else 1.0, "warmup")
    rows: list[Row] = []
    notes: list[str] = []
    for threads in THREADS:
        ok, failed, latencies = _window(ledger, threads, seconds, f"t{threads}")
        rows.append(
            Row(
                name=f"reservations/s on one balance item, {threads} thread(s)",
                unit="per s",
                ours=ok / seconds,
            )
        )
        if latencies:
            rows.append(
                Row(
                    name=f"reserve latency, {threads} thread(s)",
                    unit="ms",
                    ours=median(latencies),
                    p99=p99(latencies),
                )
            )
        notes.append(
            f"{threads} thread(s): {ok} reserved and settled, {failed} refused or failed in {seconds:.1f} s"
        )
    notes.append(
        "moto is not DynamoDB: moto_server is one Python process (here with one lock around DynamoDB "
        "requests, see tools/moto_fidelity.py), so this ceiling is moto's CPU on this machine, and "
        "moto never raises TransactionConflict. Real DynamoDB caps one item at its partition's "
        "1000 WCU/s and a transactional write costs 2 WCU per KB: see docs/SCALING.md."
    )
    return Section("6. Reservation throughput (moto_server)", rows, notes)
