"""The origin books of the fan-out tests, a pure function of (symbol, update id), so a reader on any
"host" can check what it reads without asking anyone. Imported by the tests and by fanout_probe.py.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

DEPTH = 10
Levels = npt.NDArray[np.float64]


def base(symbol: str) -> float:
    return 1000.0 + 10.0 * (sum(symbol.encode()) % 50)


def book(symbol: str, uid: int, depth: int = DEPTH) -> tuple[Levels, Levels]:
    """Bids strictly decreasing, asks strictly increasing, best bid < best ask; moves with uid."""
    b = base(symbol)
    k = np.arange(depth, dtype=np.float64)
    bids = np.column_stack((b - k - (uid % 7) * 0.5, 1.0 + (uid * 31 + k) % 13))
    asks = np.column_stack((b + 4.0 + k + (uid % 5) * 0.5, 2.0 + (uid * 17 + k) % 11))
    return np.ascontiguousarray(bids), np.ascontiguousarray(asks)


def event_time_ms(uid: int) -> int:
    return 1_700_000_000_000 + uid * 10


def recv_time_ns(uid: int) -> int:
    return 1_700_000_000_000_000_000 + uid * 1000 + 7


def ignored(uid: int) -> int:
    """The origin bumps its `ignored` counter every third update: counters must travel too."""
    return uid // 3


def mismatch(symbol: str, uid: int, bids: Levels, asks: Levels, event_ms: int, recv_ns: int, counters: dict[str, int]) -> str:
    """'' when an in-sync read equals the origin at its update id, else what differs."""
    want_bids, want_asks = book(symbol, uid)
    if bids.shape != want_bids.shape or not np.array_equal(bids, want_bids):
        return f"{symbol}@{uid}: bids {bids.tolist()[:2]} != {want_bids.tolist()[:2]}"
    if asks.shape != want_asks.shape or not np.array_equal(asks, want_asks):
        return f"{symbol}@{uid}: asks differ"
    if event_ms != event_time_ms(uid) or recv_ns != recv_time_ns(uid):
        return f"{symbol}@{uid}: times {event_ms} {recv_ns}"
    # The origin's slot has two states at update id uid: as published, and, when update uid + 1 bumps `ignored`,
    # bumped before that publish (a separate slot write, as a feeder's ignored diff is): any reader of the origin,
    # the relay included, may copy either. Anything else is a counter from another update.
    if counters["updates"] != uid or counters["ignored"] not in (ignored(uid), ignored(uid + 1)):
        return f"{symbol}@{uid}: counters {counters}"
    return ""
