"""A market's slot as its BookSync says: the one state-to-status table and the one Python publish path.

A slot's status flags always follow its book's sync state: a book is shown in sync only while BookSync says
SYNCED. Both feeders (Binance's, ``ldc.feeder``, and the stream venues', ``ldc.stream_feeder``) carry BookSync's
actions out through :class:`SlotPublisher`; the C ``HotPath`` publishes with :func:`status_of` of the state it
was armed in (``ldc.handoff``).
"""

from __future__ import annotations

import logging
from typing import Callable, Final, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from ldc.shm.layout import Status
from ldc.shm.writer import SegmentWriter
from ldc.sync import Action, Actions, BookSync, MarkOutOfSync, Notice, OutOfSyncReason, Publish, SyncState

__all__ = ["SlotMarket", "SlotPublisher", "reason_status", "status_of", "text_of"]

log = logging.getLogger("ldc.feeder")

# BookSync state -> the slot's status flags and its message while in that state
_STATE_ROWS: Final = {
    SyncState.WAITING_FOR_DIFF: (Status.RESYNCING, "waiting for the first diff"),
    SyncState.BUFFERING: (Status.RESYNCING, "buffering diffs for a snapshot"),
    SyncState.SYNCED: (Status.SYNCED, ""),
    SyncState.UNCOVERED: (Status.SYNCED | Status.INCOMPLETE | Status.REFRESHING, "top levels no longer covered: refreshing"),
    SyncState.STALE: (Status.SYNCED | Status.STALE, "no diff for stale_after_s"),
    SyncState.DISCONNECTED: (Status.STALE | Status.RESYNCING, "connection dropped: reconnecting"),
}
# the flags indexed by the state's value: an IntEnum hashes in Python, an index costs nothing (the diff path)
_STATUS: Final = tuple(int(_STATE_ROWS[state][0]) for state in sorted(SyncState))
# MarkOutOfSync(reason) -> the state BookSync leaves the book in with that reason, and a flag of the reason's own
_REASON_STATE: Final = {
    OutOfSyncReason.GAP: (SyncState.BUFFERING, Status(0)),
    OutOfSyncReason.CROSSED: (SyncState.BUFFERING, Status.CROSSED),
    OutOfSyncReason.BUFFER_OVERFLOW: (SyncState.BUFFERING, Status(0)),
    OutOfSyncReason.STALE: (SyncState.STALE, Status(0)),
    OutOfSyncReason.DISCONNECTED: (SyncState.DISCONNECTED, Status(0)),
    OutOfSyncReason.UNCOVERED: (SyncState.UNCOVERED, Status(0)),
    OutOfSyncReason.CHECKSUM: (SyncState.BUFFERING, Status(0)),
    OutOfSyncReason.FAULT: (SyncState.BUFFERING, Status(0)),
}


def status_of(state: SyncState) -> int:
    """The slot status flags of a book in ``state``."""
    return _STATUS[state]


def text_of(state: SyncState) -> str:
    """The slot message of a book in ``state`` ("" in sync)."""
    return _STATE_ROWS[state][1]


def reason_status(reason: OutOfSyncReason) -> int:
    """The slot status flags ``MarkOutOfSync(reason)`` writes: those of the state it leaves, and its own."""
    state, flag = _REASON_STATE[reason]
    return _STATUS[state] | int(flag)


def reason_text(reason: OutOfSyncReason) -> str:
    return reason.name.lower().replace("_", " ")


class SlotMarket(Protocol):
    """What the publish path reads and keeps of a feeder's market."""

    symbol: str
    slot: int
    sync: BookSync
    bids: npt.NDArray[np.float64]  # (depth, 2) buffers the book's top is copied into
    asks: npt.NDArray[np.float64]
    shown_state: SyncState | None  # the state whose message the slot shows (None: another message)

    @property
    def last_event_ms(self) -> int: ...

    @property
    def last_recv_ns(self) -> int: ...


M = TypeVar("M", bound=SlotMarket)


class SlotPublisher:
    """Writes BookSync's answers into the slots of one segment. Caller holds the feeder's lock."""

    __slots__ = ("writer", "depth", "_publish")

    def __init__(self, writer: SegmentWriter, depth: int) -> None:
        self.writer = writer
        self.depth = depth
        self._publish = writer.publish  # the C method, bound once

    def top(self, market: SlotMarket, *, update_id: int, event_time_ms: int, recv_time_ns: int, changed: bool) -> None:
        """The one publish of a book's top N (``changed`` False: ids and times only) with its state's flags; the
        slot message follows when the state changed (the diff path: a diff BookSync answered with a publish)."""
        self._write_top(market, update_id, event_time_ms, recv_time_ns, changed)
        if market.sync.state is not market.shown_state:
            self.follow(market)

    def _write_top(self, market: SlotMarket, update_id: int, event_time_ms: int, recv_time_ns: int, changed: bool) -> None:
        sync = market.sync
        state = sync.state
        if changed:
            bids, asks = market.bids, market.asks
            n_bids, n_asks = sync.book.top(self.depth, bids, asks)  # type: ignore[union-attr]
            self._publish(market.slot, update_id=update_id, event_time_ms=event_time_ms, recv_time_ns=recv_time_ns,
                          status=_STATUS[state], bids=bids, asks=asks, n_bids=n_bids, n_asks=n_asks)  # fmt: skip
        else:
            self._publish(market.slot, update_id=update_id, event_time_ms=event_time_ms, recv_time_ns=recv_time_ns,
                          status=_STATUS[state], copy_levels=False)  # fmt: skip

    def carry_out(self, market: M, actions: Actions, other: Callable[[M, Action], None]) -> None:
        """BookSync's actions on the slot (Publish, MarkOutOfSync, Notice); ``other`` does the rest (fetches,
        resubscriptions). A publish carries the times of the last diff fed (the book's id is that diff's or older)."""
        sync = market.sync
        marked = False
        for action in actions:
            kind = type(action)
            if kind is Publish:
                if sync.book is None or sync.update_id < 0:
                    self.writer.set_status(market.slot, _STATUS[sync.state])
                    continue
                self._write_top(market, sync.update_id, market.last_event_ms, market.last_recv_ns,
                                action.top_changed)  # type: ignore[union-attr]  # fmt: skip
            elif kind is MarkOutOfSync:
                marked = True
                reason = action.reason  # type: ignore[union-attr]
                _log_transition(market, sync.state, reason_text(reason))
                market.shown_state = None
                self.writer.set_status(market.slot, reason_status(reason), reason_text(reason))
            elif kind is Notice:  # the state's flags, BookSync's words (a backoff, an abandoned refresh)
                market.shown_state = sync.state
                self.writer.set_status(market.slot, _STATUS[sync.state], action.text or text_of(sync.state))  # type: ignore[union-attr]
            else:
                other(market, action)
        if sync.state is not market.shown_state and not marked:
            self.follow(market)

    def follow(self, market: SlotMarket) -> None:
        """The slot's flags and message become the state's (logged when it goes back in sync)."""
        state = market.sync.state
        _log_transition(market, state)
        market.shown_state = state
        self.writer.set_status(market.slot, _STATUS[state], text_of(state))

    def say(self, market: SlotMarket, text: str) -> None:
        """A message beside the state's flags (a connection failing); the next state change writes its own."""
        market.shown_state = None
        self.writer.set_status(market.slot, _STATUS[market.sync.state], text)


def _log_transition(market: SlotMarket, state: SyncState, reason: str = "") -> None:
    """One line when a market goes out of sync (and why) or back in sync, with the journal's fields."""
    if reason:
        log.info("market %s: out of sync: %s", market.symbol, reason,
                 extra={"symbol": market.symbol, "state": state.name.lower(), "reason": reason})  # fmt: skip
    elif state is SyncState.SYNCED and market.shown_state is not SyncState.SYNCED:
        log.info("market %s: in sync at update id %d", market.symbol, market.sync.update_id,
                 extra={"symbol": market.symbol, "state": state.name.lower()})  # fmt: skip
