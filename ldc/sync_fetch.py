"""BookSync's live fetch: when a market asks for a snapshot, and how often it may ask again.

A failed request is retried after a doubling backoff (or the venue's Retry-After); an answer older than the
buffered stream is asked again at once while each answer advances (the stream keeps overtaking the request),
else after a doubling delay; re-asks after answers older than the book (live and refresh) share one budget a
minute per market. Time is an argument; nothing here does I/O.
"""

from __future__ import annotations

from ldc.sync_model import (
    MAX_LIVE_TOO_OLD_AT_ONCE,
    REFRESH_WINDOW_S,
    SNAPSHOT_RETRY_CAP_S,
    SNAPSHOT_RETRY_MIN_S,
)

__all__ = ["LiveFetch", "too_old_delay_s"]


class LiveFetch:
    """The live snapshot requests of one market: in flight, due, backed off, and the re-ask budget."""

    __slots__ = ("fetching", "retry_at", "backoff_s", "too_old", "_too_old_id", "_reasks", "_reasks_per_min")

    def __init__(self, reasks_per_min: int) -> None:
        self.fetching = False  # a live request is in flight
        self.retry_at: float | None = None  # when the next live request is due
        self.backoff_s = SNAPSHOT_RETRY_MIN_S
        self.too_old = 0  # live answers older than the buffered stream, in a row
        self._too_old_id = -1  # the last of them
        self._reasks: list[float] = []  # when this market re-asked after too-old answers, within the last minute
        self._reasks_per_min = reasks_per_min

    def joined(self) -> None:
        """A live snapshot joined the stream: a retry scheduled before it is moot, the too-old streak ends."""
        self.retry_at = None
        self.too_old, self._too_old_id = 0, -1

    def failed(self, retry_after_s: float) -> float:
        """A request failed (live or refresh): the delay before the next, the backoff doubles."""
        delay = max(retry_after_s, self.backoff_s)
        self.backoff_s = min(self.backoff_s * 2.0, SNAPSHOT_RETRY_CAP_S)
        return delay

    def due(self, now: float) -> bool:
        """The scheduled retry is due (and no longer scheduled)."""
        if self.retry_at is None or now < self.retry_at:
            return False
        self.retry_at = None
        return True

    def reask_wait_s(self, now: float) -> float:
        """How long until this market may re-ask after a too-old answer (0: now)."""
        times = self._reasks
        while times and now - times[0] >= REFRESH_WINDOW_S:
            del times[0]
        if len(times) < self._reasks_per_min:
            return 0.0
        return times[0] + REFRESH_WINDOW_S - now

    def reasked(self, at: float) -> None:
        """A re-ask after a too-old answer, made (or scheduled) ``at``: it counts against the budget."""
        self._reasks.append(at)

    def live_too_old(self, snapshot_id: int, now: float) -> float:
        """A live answer older than the buffered stream: 0 to ask again at once (the stream overtook the
        request), else the delay, scheduled (an answer that stays old is a lagging cache)."""
        self.too_old += 1
        advanced, self._too_old_id = snapshot_id > self._too_old_id, snapshot_id
        if advanced and self.too_old <= MAX_LIVE_TOO_OLD_AT_ONCE and not self.reask_wait_s(now):
            self.reasked(now)
            return 0.0
        delay = max(too_old_delay_s(self.too_old), self.reask_wait_s(now))
        self.retry_at = now + delay
        self.reasked(now + delay)  # the tick asks then: it counts against the budget
        return delay


def too_old_delay_s(streak: int) -> float:
    """Delay before asking again after the ``streak``-th too-old answer in a row (the second waits MIN)."""
    return float(min(SNAPSHOT_RETRY_MIN_S * 2.0 ** (streak - 2), SNAPSHOT_RETRY_CAP_S))
