"""Venue-neutral depth events and the contract every book implementation keeps.

These are the types that cross the seams between ``venues`` (which parse exchange messages into
them), ``book`` (which applies them) and ``sync`` (which decides when to apply them). The fast C
parser in ``ldc._fastbook`` produces objects with the same attributes as :class:`DepthDiff`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np
import numpy.typing as npt

Level = tuple[float, float]  # (price, quantity); quantity is absolute, zero deletes
NO_ID = -1  # an id the venue does not send (spot has no `pu`, spot diffs no `T`)


@dataclass(frozen=True, slots=True)
class DepthDiff:
    """One diff-depth event. Binance: ``U`` -> first_id, ``u`` -> final_id, ``pu`` -> prev_final_id."""

    symbol: str
    first_id: int
    final_id: int
    prev_final_id: int  # NO_ID on spot
    event_time_ms: int
    transaction_time_ms: int  # NO_ID when absent
    bids: Sequence[Level]
    asks: Sequence[Level]
    checksum: int = 0  # the venue's checksum of its top levels after this diff (OKX); 0: none sent


@dataclass(frozen=True, slots=True)
class DepthSnapshot:
    """A REST depth snapshot. ``limit`` is the number of levels per side that was asked for: a side
    with fewer levels than that is the whole side; a side with exactly ``limit`` levels covers the
    book only down to its last price."""

    last_update_id: int
    bids: Sequence[Level]
    asks: Sequence[Level]
    limit: int
    event_time_ms: int = NO_ID
    checksum: int = 0  # the venue's checksum of the snapshot's top levels (OKX); 0: none sent


class Book(Protocol):
    """What ``sync`` needs from a book. ``ldc.book.OrderBook`` is the reference implementation,
    ``ldc._fastbook.FastBook`` the fast one; both keep this contract level for level."""

    def load_snapshot(self, snapshot: DepthSnapshot) -> None: ...

    def apply_diff(self, diff: DepthDiff) -> bool:
        """Apply absolute quantities (any numeric zero deletes), prune beyond the retention window.
        Returns True when the top ``depth`` levels of either side may have changed."""
        ...

    def top(self, n: int, bids_out: npt.NDArray[np.float64], asks_out: npt.NDArray[np.float64]) -> tuple[int, int]: ...

    def best_bid(self) -> Level | None: ...

    def best_ask(self) -> Level | None: ...

    def crossed(self) -> bool: ...

    def covers(self, n: int) -> bool:
        """True when the top ``n`` levels of both sides are known exactly (inside snapshot coverage)."""
        ...

    def levels(self) -> tuple[list[Level], list[Level]]:
        """Every level held, best first per side (tests and audits; not for the hot path)."""
        ...
