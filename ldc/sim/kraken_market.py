"""What the Kraken family's two websocket protocols (v2 in ``kraken``, v1 in ``kraken_v1``) need of a pair's book.

Its own module so that ``kraken`` (which dispatches to ``kraken_v1``) and ``kraken_v1`` both depend on it and
not on each other: the simulator's import graph has no cycle (``tests/test_sim_boundaries.py``).
"""

from __future__ import annotations

from typing import Protocol

from ldc.sim.venue_book import Levels
from ldc.sim.venue_transport import VenueConn


class KrakenMarket(Protocol):
    """A pair's book as the family serves it: a model market, or a replayed recording."""

    symbol: str

    def depths(self) -> tuple[int, ...]: ...

    def subscribe(self, conn: VenueConn, depth: int, snapshot: bool) -> None: ...

    def unsubscribe(self, conn: VenueConn, depth: int) -> None: ...

    def flush(self, now_us: int) -> None: ...

    def truth(self, us: int | None, limit: int | None, depth: int | None) -> dict[str, object] | str: ...

    def precisions(self) -> tuple[int, int]: ...

    def rest_depth(self, count: int) -> tuple[Levels, Levels]: ...

    def stats(self) -> dict[str, object]: ...
