"""What the Binance family's REST API and its websocket sessions use of the server they run in.

``ServerState`` (``server.py``) owns the listening socket, the connections and the background loops, and
provides these two narrow contexts; ``rest.py`` and ``session.py`` depend on this module, never on
``server.py``, so the simulator's import graph has no cycle (``tests/test_sim_boundaries.py`` holds it).
Each context names only what its user reads or calls: a session never sees the weight ledger, the REST API
never sees the tick's output queue.
"""

from __future__ import annotations

from typing import Any, Protocol

from ldc.sim.config import SimConfig
from ldc.sim.exchange import Exchange
from ldc.sim.faults import FaultRule, FaultTable
from ldc.sim.weights import WeightLimiter


class Queued(Protocol):
    """A session with frames queued in the current model tick: the server writes them all after the tick."""

    def flush_output(self) -> None: ...


class SessionContext(Protocol):
    """What a websocket session uses: the configured limits (pings, lifetime, streams per connection, message
    rate), the exchange's markets and subscriptions, the faults that act on frames, the counters that
    ``/_sim/stats`` reports, and the queue of sessions with frames to write after this tick."""

    @property
    def config(self) -> SimConfig: ...

    @property
    def exchange(self) -> Exchange: ...

    @property
    def faults(self) -> FaultTable: ...

    @property
    def counters(self) -> dict[str, int]: ...

    def queue_output(self, session: Queued) -> None:
        """``session`` has its first frame of this tick queued: call its ``flush_output`` after the tick."""
        ...


class RestContext(Protocol):
    """What the REST API uses: the exchange's markets (depth, exchangeInfo, truth), the faults and the weight
    ledger that shape answers, the counters, and what the private ``/_sim/*`` endpoints report or change on
    the server as a whole (its stats, its connections, a fault that acts at once)."""

    @property
    def exchange(self) -> Exchange: ...

    @property
    def faults(self) -> FaultTable: ...

    @property
    def limiter(self) -> WeightLimiter: ...

    @property
    def counters(self) -> dict[str, int]: ...

    def stats(self) -> dict[str, Any]: ...

    def connections_json(self) -> list[dict[str, object]]: ...

    def apply_fault(self, rule: FaultRule) -> None:
        """A fault from ``POST /_sim/faults``: a disconnect or shutdown acts on the sessions now, others are kept."""
        ...
