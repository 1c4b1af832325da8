"""The reference order book: exact levels, snapshot coverage and the retention rule, in plain Python.

``OrderBook`` is the executable specification of :class:`ldc.depth.Book`. ``ldc._fastbook.FastBook``
is the hot-path implementation in C; tests drive both with the same streams and require them to agree
level for level, so every rule below is stated exactly and the C code mirrors it line for line.

Rules (per side):

- Keys. A level's sort key is its price for bids and minus its price for asks, so on both sides the
  keys ascend from the worst level to the best. Prices are float64: Binance sends decimal strings of at
  most 15 significant digits, and two such strings of different value parse to different doubles, so
  float keys are exact (see ``ldc/fastbook/fastbook.h``, "Exact prices").
- Quantities are absolute; any numeric zero ("0", "0.000", "0.00000000" all parse to 0.0) deletes.
- Coverage. A side of a snapshot with fewer levels than ``snapshot.limit`` is the whole side: every
  price is known. Otherwise the side is known exactly only down to its deepest price, the *boundary*.
  Diffs keep known prices exact; a level a diff reports beyond the boundary is held (its quantity is
  exact) but says nothing about the prices between it and the boundary, so the boundary never moves
  outwards until the next snapshot.
- Retention. After a snapshot and after every diff, levels ranked beyond ``snapshot.limit`` on a side
  are pruned, by numeric rank. The exchange stops streaming changes of levels it no longer tracks for
  us, so held levels beyond the window would silently turn into ghosts. Pruning moves the boundary up
  to the deepest retained level: the pruned prices are no longer known.
- ``covers(n)``: on each side, the side is whole or at least ``n`` held levels lie inside the boundary.
  When it is False the published top ``n`` may contain holes: the caller (``ldc.sync``) flags the book
  and fetches a snapshot.
- ``apply_diff`` returns True when one of its updates changed the state (inserted a level, deleted an
  existing one or changed a quantity) at a price ranked within the top ``depth`` at that moment (or on
  a side holding fewer than ``depth`` levels), or when pruning reached into the top ``depth``.
- Before the first snapshot nothing is known (``covers(n)`` is False for n > 0) and nothing is pruned.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from typing import Sequence

import numpy as np
import numpy.typing as npt

from ldc.depth import DepthDiff, DepthSnapshot, Level

DEFAULT_DEPTH = 20  # levels per side whose changes apply_diff reports
WHOLE_SIDE = -math.inf  # boundary key: every price of the side is known
NOTHING_KNOWN = math.inf  # boundary key: no price of the side is known (no snapshot yet)


class _Side:
    """One side of the book: ascending sort keys (best last) and their quantities."""

    __slots__ = ("sign", "keys", "qty", "boundary")

    def __init__(self, sign: float) -> None:
        self.sign = sign  # +1.0 for bids, -1.0 for asks: key = sign * price
        self.keys: list[float] = []
        self.qty: dict[float, float] = {}
        self.boundary = NOTHING_KNOWN  # keys >= boundary are known exactly

    def clear(self) -> None:
        self.keys.clear()
        self.qty.clear()

    def in_top(self, key: float, depth: int) -> bool:
        return len(self.keys) < depth or key >= self.keys[-depth]

    def set(self, price: float, qty: float, depth: int) -> bool:
        """Set one level; returns True when the top ``depth`` changed."""
        key = self.sign * price
        old = self.qty.get(key)
        if qty == 0.0:
            if old is None:
                return False
            top = self.in_top(key, depth)
            del self.qty[key]
            del self.keys[bisect_left(self.keys, key)]
            return top
        if old is None:
            top = self.in_top(key, depth)
            self.keys.insert(bisect_left(self.keys, key), key)
            self.qty[key] = qty
            return top
        if old == qty:
            return False
        self.qty[key] = qty
        return self.in_top(key, depth)

    def prune(self, window: int) -> int:
        """Drop the levels ranked beyond ``window``; returns how many were dropped."""
        excess = len(self.keys) - window
        if excess <= 0:
            return 0
        for key in self.keys[:excess]:
            del self.qty[key]
        del self.keys[:excess]
        self.boundary = max(self.boundary, self.keys[0]) if self.keys else NOTHING_KNOWN
        return excess

    def known(self) -> int:
        """How many held levels lie inside the boundary."""
        return len(self.keys) - bisect_left(self.keys, self.boundary)

    def best(self) -> Level | None:
        if not self.keys:
            return None
        key = self.keys[-1]
        return (self.sign * key, self.qty[key])

    def levels(self) -> list[Level]:
        return [(self.sign * key, self.qty[key]) for key in reversed(self.keys)]


class OrderBook:
    """Exact book of one market; the pure-Python reference of the ``Book`` protocol."""

    def __init__(self, *, depth: int = DEFAULT_DEPTH) -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, found {depth}")
        self.depth = depth
        self.window: int | None = None  # snapshot.limit of the last snapshot; None before the first
        self._bids = _Side(1.0)
        self._asks = _Side(-1.0)

    def load_snapshot(self, snapshot: DepthSnapshot) -> None:
        """Replace the book with ``snapshot``; its ``limit`` sets coverage and the retention window."""
        if snapshot.limit < 1:
            raise ValueError(f"snapshot limit must be at least 1, found {snapshot.limit}")
        self.window = snapshot.limit
        for side, given in ((self._bids, snapshot.bids), (self._asks, snapshot.asks)):
            _load_side(side, given, snapshot.limit, self.depth)

    def apply_diff(self, diff: DepthDiff) -> bool:
        """Apply absolute quantities, then prune; True when the top ``depth`` may have changed."""
        changed = False
        for side, given in ((self._bids, diff.bids), (self._asks, diff.asks)):
            for price, qty in given:
                changed |= side.set(price, qty, self.depth)
            if self.window is not None and side.prune(self.window) and self.window < self.depth:
                changed = True
        return changed

    def top(self, n: int, bids_out: npt.NDArray[np.float64], asks_out: npt.NDArray[np.float64]) -> tuple[int, int]:
        """Write up to ``n`` levels per side, best first, as (price, qty) rows; returns the counts."""
        _check_out("bids_out", bids_out, n)
        _check_out("asks_out", asks_out, n)
        counts = []
        for side, out in ((self._bids, bids_out), (self._asks, asks_out)):
            count = min(n, len(side.keys))
            if count:
                out[:count] = [(side.sign * key, side.qty[key]) for key in side.keys[: -count - 1 : -1]]
            counts.append(count)
        return counts[0], counts[1]

    def best_bid(self) -> Level | None:
        return self._bids.best()

    def best_ask(self) -> Level | None:
        return self._asks.best()

    def crossed(self) -> bool:
        """True when both sides hold levels and the best bid is at or above the best ask."""
        bid, ask = self._bids.best(), self._asks.best()
        return bid is not None and ask is not None and bid[0] >= ask[0]

    def covers(self, n: int) -> bool:
        """True when the top ``n`` levels of both sides are known exactly; else refresh the book."""
        return all(side.boundary == WHOLE_SIDE or side.known() >= n for side in (self._bids, self._asks))

    def coverage(self) -> tuple[float, float]:
        """Deepest known bid and ask price: -inf / +inf for a whole side, +inf / -inf when unknown."""
        return self._bids.boundary, -self._asks.boundary

    def levels(self) -> tuple[list[Level], list[Level]]:
        """Every level held, best first per side (tests and audits; not for the hot path)."""
        return self._bids.levels(), self._asks.levels()

    def __len__(self) -> int:
        return len(self._bids.keys) + len(self._asks.keys)

    def __repr__(self) -> str:
        return (f"OrderBook(depth={self.depth}, window={self.window}, "
                f"{len(self._bids.keys)} bids, {len(self._asks.keys)} asks)")


def _load_side(side: _Side, given: Sequence[Level], limit: int, depth: int) -> None:
    side.clear()
    for price, qty in given:
        side.set(price, qty, depth)
    if len(given) < limit:
        side.boundary = WHOLE_SIDE
    else:
        side.boundary = min(side.sign * price for price, _ in given)
    side.prune(limit)


def _check_out(name: str, out: npt.NDArray[np.float64], n: int) -> None:
    if n < 0:
        raise ValueError(f"n must be at least 0, found {n}")
    if out.ndim != 2 or out.shape[1] != 2 or out.shape[0] < n:
        raise ValueError(f"{name} must have shape (>= {n}, 2), found {out.shape}")
