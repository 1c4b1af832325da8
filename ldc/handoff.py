"""Who holds a market's book: its ``BookSync``, or the C ``HotPath`` BookSync allowed to take its diffs.

One :class:`Handoff` per market owns the hand-over both ways, so no caller does it by convention:

- ``settle()`` takes the book back: the diffs the HotPath applied (and the ones it recorded for a pending
  refresh, into a list this object owns) are adopted by BookSync, and the HotPath stops. Before anything
  else reads or feeds the BookSync.
- ``rearm(shown)`` hands the book to the HotPath again when ``BookSync.fast_path()`` allows it and the slot
  already shows that state (the HotPath publishes with the state's flags and must never show a book as more
  exact than its state).
- ``feed`` / ``on_diff`` / ``top_fault`` / ``checksum_fault`` / ``fault`` settle first, then let BookSync decide; the caller carries the actions
  out and then calls ``rearm``.

Fail closed (h11): an exception while the engine touched the book (the HotPath or the Router raising in C,
BookSync raising inside ``top_fault``) resyncs the market through ``BookSync.fail_closed``; a half-applied
book is never handed back to the HotPath nor kept by BookSync (``fault`` takes it back to discard it).

Sans-I/O apart from the HotPath's own slot publishes; the lock is the caller's (the feeder's one lock).
"""

from __future__ import annotations

from ldc._fastbook import FastBook, HotPath
from ldc.depth import DepthDiff
from ldc.publish import status_of
from ldc.sync import Actions, BookSync, Event, SyncState

__all__ = ["Handoff"]


class HotTimes:
    """A market whose C HotPath keeps its last event's times (the Router stamps them without Python): the two
    feeders' market records read and stamp them here. The record has a ``hot: HotPath`` field."""

    hot: HotPath

    @property
    def last_event_ms(self) -> int:
        """Exchange event time of the last event fed (-1: none yet)."""
        return self.hot.last_event_ms

    @property
    def last_recv_ns(self) -> int:
        """When it was received."""
        return self.hot.last_recv_ns

    def stamp(self, event_time_ms: int, recv_time_ns: int) -> None:
        self.hot.last_event_ms, self.hot.last_recv_ns = event_time_ms, recv_time_ns


class Handoff:
    """The hand-over of one market's book between its BookSync and its HotPath (see the module)."""

    __slots__ = ("sync", "hot", "_recorded")

    def __init__(self, sync: BookSync, hot: HotPath) -> None:
        self.sync = sync
        self.hot = hot
        hot.window_whole = sync.config.window_kept_whole  # Kraken: neither side checks coverage (one source)
        self._recorded: list[DepthDiff] = []  # what the HotPath records for a pending refresh, until settle()

    @property
    def armed(self) -> bool:
        """The HotPath holds the book: BookSync's ``update_id`` and counters lag until ``settle``."""
        return self.hot.armed

    def settle(self) -> None:
        """Take the book back from the HotPath (if it holds it): BookSync adopts what it applied and recorded."""
        hot = self.hot
        if hot.armed:
            recorded = self._recorded
            self.sync.adopt(hot.update_id, hot.take_applied(), recorded, hot.take_checksums(), hot.take_ignored())
            hot.disarm()
            recorded.clear()

    def rearm(self, shown: SyncState | None) -> bool:
        """Hand the book to the HotPath if BookSync allows it and the slot shows ``shown`` (None: the slot shows no
        state of this book, as a failed market's). Call after carrying out BookSync's actions; returns whether
        it is armed."""
        sync = self.sync
        fast, book = sync.fast_path(), sync.book
        if fast is None or type(book) is not FastBook or shown is not fast.state:
            return False
        record = self._recorded if fast.recording else None
        self.hot.arm(book, sync.update_id, status_of(fast.state), fast.state is SyncState.UNCOVERED, record,
                     fast.record_limit)  # fmt: skip
        return True

    def feed(self, event: Event, now: float) -> Actions:
        """A non-diff event (or a diff the HotPath left) to BookSync, the book settled first."""
        self.settle()
        return self.sync.feed(event, now)

    def on_diff(self, diff: DepthDiff, now: float) -> Actions:
        """A diff the HotPath left to BookSync (``BookSync.on_diff``: its fast method where one applies)."""
        self.settle()
        return self.sync.on_diff(diff, now)

    def top_fault(self, now: float) -> Actions:
        """The HotPath applied a diff but did not publish it (crossed top, coverage changed): BookSync's answer."""
        self.settle()
        return self.sync.top_fault(now)

    def checksum_fault(self, diff: DepthDiff, now: float) -> Actions:
        """The HotPath applied ``diff`` but did not confirm the venue checksum it carries: BookSync verifies it."""
        self.settle()
        return self.sync.checksum_fault(diff, now)

    def fault(self, exc: BaseException, where: str) -> Actions:
        """The HotPath (or the Router feeding it) raised while it held the book: the book may be half-applied, so
        BookSync takes it back only to discard it (a resync), never to go on from it."""
        self.settle()
        return self.sync.fail_closed(exc, where)
