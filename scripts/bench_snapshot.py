"""CPU per call of the REST snapshot path: parsing a depth body and the refresh audit, Python vs C.

For each limit (levels per side) a body is built as Binance's spot ``/api/v3/depth`` sends it
(rest-api.md "Order book": ``{"lastUpdateId":N,"bids":[["60000.01000000","0.12345000"],...],"asks":[...]}``,
8 decimals, one tick 0.01 apart with random gaps), and a USD-M one (``/fapi/v1/depth``: ``E`` and ``T``
first, 2 decimals for prices and 3 for quantities). Measured, alternating old and new in each repeat:

- ``parse``: ``binance._parse_snapshot_reference`` (orjson + the Python checks, the code before C) vs
  ``binance.parse_snapshot`` (the C parser);
- ``audit``: ``sync._count_differences`` over the same two FastBooks through the Python dict path
  (books wrapped so that the C method is not seen) vs the C merge walk; once with identical books (the
  usual audit outcome) and once with 1% of the levels differing.

Process CPU time, median per call over the repeats; ratio = old / new.

    .venv/bin/python scripts/bench_snapshot.py [--repeats 15] [--calls 40]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from typing import Any, Callable

import orjson

from ldc._fastbook import FastBook
from ldc.depth import DepthDiff, DepthSnapshot, Level
from ldc.sync import _count_differences
from ldc.venues import binance

LIMITS = (100, 500, 1000)
SPOT_MID_TICKS = 6_000_001  # 60000.01 in ticks of 0.01
BOOK_DEPTH = 20  # published levels: FastBook(depth=...)
DIFFERING_SHARE = 0.01  # of the levels per side, for the audit that finds differences
NS_PER_MS = 1_000_000


class _PythonPath:
    """A FastBook seen only through the Book protocol: _count_differences takes its dict path."""

    def __init__(self, book: FastBook) -> None:
        self._book = book

    def levels(self) -> tuple[list[Level], list[Level]]:
        return self._book.levels()

    def coverage(self) -> tuple[float, float]:
        return self._book.coverage()


def price_text(ticks: int, decimals: int) -> str:
    return f"{ticks // 100}.{ticks % 100:02d}" + "0" * (decimals - 2)


def side(rng: random.Random, limit: int, direction: int, *, price_decimals: int, qty_decimals: int) -> list[list[str]]:
    ticks = SPOT_MID_TICKS + (1 if direction > 0 else 0)
    levels = []
    for _ in range(limit):
        qty = rng.randrange(1, 10**qty_decimals * 3)
        levels.append([price_text(ticks, price_decimals), f"{qty / 10**qty_decimals:.{qty_decimals}f}"])
        ticks += direction * rng.choice((1, 1, 1, 2, 5))
    return levels


def body(rng: random.Random, limit: int, *, futures: bool) -> bytes:
    price_decimals, qty_decimals = (2, 3) if futures else (8, 8)
    head: dict[str, Any] = {"lastUpdateId": 51234567890}
    if futures:
        head = {"lastUpdateId": 5123107852948, "E": 1723161255208, "T": 1723161255200}
    bids = side(rng, limit, -1, price_decimals=price_decimals, qty_decimals=qty_decimals)
    asks = side(rng, limit, 1, price_decimals=price_decimals, qty_decimals=qty_decimals)
    return orjson.dumps({**head, "bids": bids, "asks": asks})


def median_ms(fn: Callable[[], object], calls: int, samples: list[float]) -> None:
    start = time.process_time_ns()
    for _ in range(calls):
        fn()
    samples.append((time.process_time_ns() - start) / calls / NS_PER_MS)


def compare(old: Callable[[], object], new: Callable[[], object], *, repeats: int, calls: int) -> dict[str, float]:
    old_ms: list[float] = []
    new_ms: list[float] = []
    for _ in range(repeats):
        median_ms(old, calls, old_ms)
        median_ms(new, calls, new_ms)
    o, n = statistics.median(old_ms), statistics.median(new_ms)
    return {"python_ms": round(o, 4), "c_ms": round(n, 4), "ratio": round(o / n, 1)}


def differing(snapshot: DepthSnapshot, rng: random.Random) -> DepthDiff:
    """Quantities changed at DIFFERING_SHARE of the levels of each side."""
    def changed(levels: list[Level]) -> list[Level]:
        picked = rng.sample(levels, max(1, int(len(levels) * DIFFERING_SHARE)))
        return [(price, qty + 1.0) for price, qty in picked]
    return DepthDiff("BTCUSDT", 1, 1, -1, 0, -1, changed(list(snapshot.bids)), changed(list(snapshot.asks)))


def audit(snapshot: DepthSnapshot, diff: DepthDiff | None, *, repeats: int, calls: int) -> dict[str, float]:
    live, shadow = FastBook(depth=BOOK_DEPTH), FastBook(depth=BOOK_DEPTH)
    live.load_snapshot(snapshot)
    shadow.load_snapshot(snapshot)
    if diff is not None:
        live.apply_diff(diff)
    old_live, old_shadow = _PythonPath(live), _PythonPath(shadow)
    expected = _count_differences(old_live, old_shadow, snapshot)  # type: ignore[arg-type]
    assert _count_differences(live, shadow, snapshot) == expected
    result = compare(lambda: _count_differences(old_live, old_shadow, snapshot),  # type: ignore[arg-type]
                     lambda: _count_differences(live, shadow, snapshot), repeats=repeats, calls=calls)
    return {"differences": expected, **result}


def run(limit: int, *, futures: bool, repeats: int, calls: int, rng: random.Random) -> dict[str, Any]:
    raw = body(rng, limit, futures=futures)
    snapshot = binance.parse_snapshot(raw, limit)
    assert snapshot == binance._parse_snapshot_reference(raw, limit)
    parse = compare(lambda: binance._parse_snapshot_reference(raw, limit), lambda: binance.parse_snapshot(raw, limit),
                    repeats=repeats, calls=calls)
    return {
        "market": "usdm" if futures else "spot",
        "limit": limit,
        "body_bytes": len(raw),
        "parse": parse,
        "audit_identical": audit(snapshot, None, repeats=repeats, calls=calls),
        "audit_differing": audit(snapshot, differing(snapshot, rng), repeats=repeats, calls=calls),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds per figure (median taken)")
    parser.add_argument("--calls", type=int, default=40, help="calls per round")
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    results = [run(limit, futures=futures, repeats=args.repeats, calls=args.calls, rng=rng)
               for futures in (False, True) for limit in LIMITS]  # fmt: skip
    print(json.dumps({"unit": "ms CPU per call, median", "repeats": args.repeats, "calls": args.calls,
                      "results": results}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
