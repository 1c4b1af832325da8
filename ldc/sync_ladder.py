"""BookSync's snapshot limit ladder (``SyncConfig.escalation_limits``).

The first request of a market uses the cheap ``snapshot_limit``, so a cold start of many markets costs what it
always did; a book that loses coverage within ``escalate_within_s`` of its snapshot joining asks the next limit
for its refresh (and any later request), and a book covered for ``step_down_after_s`` steps one limit down.
Time is an argument; nothing here does I/O.
"""

from __future__ import annotations

import logging

from ldc.sync_model import SyncConfig

__all__ = ["SnapshotLadder"]

logger = logging.getLogger("ldc.sync")


class SnapshotLadder:
    """Which snapshot limit a market asks next. ``limit`` is that limit; ``escalations`` counts the steps up."""

    __slots__ = ("symbol", "limit", "escalations", "_steps", "_tier", "_within_s", "_down_after_s",
                 "_installed_at", "_covered_since")  # fmt: skip

    def __init__(self, symbol: str, config: SyncConfig) -> None:
        self.symbol = symbol
        self._steps = (config.snapshot_limit, *config.escalation_limits)
        self._tier = 0
        self._within_s = config.escalate_within_s
        self._down_after_s = config.step_down_after_s
        self.limit = config.snapshot_limit  # the limit of the next request
        self.escalations = 0
        self._installed_at: float | None = None  # when the book's current snapshot joined
        self._covered_since: float | None = None  # start of the current covered stretch (step-down clock)

    @property
    def raised(self) -> bool:
        """Above the first step: a covered book may step down."""
        return self._tier > 0

    def installed(self, now: float) -> None:
        """A book from a new snapshot: the escalation and step-down clocks start."""
        self._installed_at = self._covered_since = now

    def lost_coverage(self, now: float) -> bool:
        """Coverage lost within ``escalate_within_s`` of the snapshot joining: that limit is too small
        for this market, so the next request (the refresh about to start) asks for the next step.
        Returns whether the limit went up."""
        self._covered_since = None
        installed = self._installed_at
        if installed is None or now - installed > self._within_s or not self.climb():
            return False
        self._installed_at = None  # one step per snapshot: the larger one must fall short too
        logger.info("%s: coverage lost %.1f s after a snapshot, next snapshot limit %d", self.symbol, now - installed, self.limit)
        return True

    def climb(self) -> bool:
        """One step up the ladder, unless at its top; returns whether the limit went up."""
        if self._tier + 1 >= len(self._steps):
            return False
        self._tier += 1
        self.escalations += 1
        self.limit = self._steps[self._tier]
        return True

    def maybe_step_down(self, now: float) -> None:
        """A book covered for ``step_down_after_s`` (call while SYNCED): one step down."""
        covered_since = self._covered_since
        if not self._tier or covered_since is None or now - covered_since < self._down_after_s:
            return
        self._covered_since = now  # another whole stretch before the next step down
        self._tier -= 1
        self.limit = self._steps[self._tier]
        logger.info("%s: covered for %.0f s, next snapshot limit %d", self.symbol, now - covered_since, self.limit)
