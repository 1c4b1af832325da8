"""BookSync's transitions, as data: (state, trigger) -> (what it does, the states it may leave the market in).

Everything that decides which handler runs lives here, in the manner of h11's ``_state.py``: ``BookSync``
classifies an event into a :class:`Trigger` (a diff by the one sequence rule, ``venues.base.verdict``), looks the
pair up in :data:`TRANSITIONS`, runs the handler the row names (:class:`Do`), and checks that the state it ends in
is one the row allows. A pair missing from the table, or a handler ending in a state its row does not list,
raises :class:`TransitionError` inside the engine, which resyncs the market (fail closed).

The one path that skips the lookup is the SYNCED hot path (``BookSync.on_diff`` pointed at a dedicated method,
and the C ``HotPath`` armed through ``ldc.handoff``): it is the (SYNCED, DIFF_CONTINUES) row inlined, and takes
only diffs that row would apply without a decision (``BookSync.fast_path``).
"""

from __future__ import annotations

import enum
from typing import Final, Mapping, NamedTuple

from ldc.sync_model import SyncState
from ldc.venues.base import Verdict

__all__ = ["TRANSITIONS", "Do", "Step", "TransitionError", "Trigger", "TRIGGER_OF_VERDICT", "step"]


class Trigger(enum.Enum):
    """What happened to a market, as the table reads it."""

    DIFF_NO_BOOK = "diff while no book exists"
    DIFF_CONTINUES = "diff continuing the book"  # Verdict.APPLY
    DIFF_RESET = "diff restarting the venue's ids"  # Verdict.RESET (OKX seqId < prevSeqId)
    DIFF_OLD = "diff ending at or before the book"  # Verdict.OLD
    DIFF_GAP = "diff after a lost one"  # Verdict.GAP
    LIVE_SNAPSHOT = "REST snapshot for the live book"
    SHADOW_SNAPSHOT = "REST snapshot for a refresh"
    STREAM_SNAPSHOT = "snapshot sent in the stream"
    SNAPSHOT_FAILED = "snapshot request failed"
    TICK = "tick"
    DISCONNECT = "connection lost"
    MESSAGE_LOST = "message unreadable"


TRIGGER_OF_VERDICT: Final[Mapping[Verdict, Trigger]] = {
    Verdict.APPLY: Trigger.DIFF_CONTINUES,
    Verdict.RESET: Trigger.DIFF_RESET,
    Verdict.OLD: Trigger.DIFF_OLD,
    Verdict.GAP: Trigger.DIFF_GAP,
}


class Do(enum.Enum):
    """BookSync's handlers, one per job (``BookSync._HANDLERS`` maps each to its method)."""

    BUFFER = "buffer the diff, join a pending snapshot, ask for one"
    APPLY = "apply; coverage flags; a pending refresh records it, and joins its snapshot"
    APPLY_RESET = "apply from the venue's new ids (logged)"
    IGNORE = "count as ignored"
    RESYNC_GAP = "count a gap; discard the book; buffer the diff; ask a snapshot or resubscribe"
    JOIN_LIVE = "hold the snapshot; join it with the buffered stream once the stream reaches it"
    LATE_LIVE = "a flagged book exactly at the snapshot's id: audit and replace it; else moot"
    REPLACE = "the stream's snapshot replaces any book"
    JOIN_SHADOW = "the refresh's snapshot: audit the live book against it once the stream reaches it"
    BACK_OFF = "retry later; say why in the slot while no book exists"
    TIMERS = "staleness, retries, ladder step-down, refresh due, refresh re-ask"
    FLAG_DISCONNECTED = "drop a refresh; flag the book until a diff continues it"
    FORGET_BUFFER = "forget the buffered diffs: what follows cannot chain to them"
    RESYNC_LOST = "count a gap; discard the book; ask a snapshot or resubscribe"
    NOTHING = "nothing"


class Step(NamedTuple):
    do: Do
    next: frozenset[SyncState]  # the states the market may be in afterwards


class TransitionError(RuntimeError):
    """The engine met a pair the table does not have, or left a market in a state its row does not allow."""


W, B, S, U, T, D = (SyncState.WAITING_FOR_DIFF, SyncState.BUFFERING, SyncState.SYNCED, SyncState.UNCOVERED,
                    SyncState.STALE, SyncState.DISCONNECTED)  # fmt: skip
_JOINED = (B, S, U)  # a join or a replacement: in sync, flagged uncovered, or resyncing (a crossed book)


def _rows() -> dict[tuple[SyncState, Trigger], Step]:
    rows: list[tuple[SyncState, Trigger, Do, tuple[SyncState, ...]]] = [
        # no book: diffs are buffered until a snapshot joins them
        (W, Trigger.DIFF_NO_BOOK, Do.BUFFER, (B, *_JOINED)),
        (W, Trigger.LIVE_SNAPSHOT, Do.JOIN_LIVE, (W,)),  # nothing buffered yet: held for the first diff
        (W, Trigger.STREAM_SNAPSHOT, Do.REPLACE, _JOINED),
        (W, Trigger.SHADOW_SNAPSHOT, Do.NOTHING, (W,)),  # a refresh abandoned by a resync
        (W, Trigger.SNAPSHOT_FAILED, Do.BACK_OFF, (W,)),
        (W, Trigger.TICK, Do.TIMERS, (W,)),
        (W, Trigger.DISCONNECT, Do.NOTHING, (W,)),
        (W, Trigger.MESSAGE_LOST, Do.NOTHING, (W,)),  # the snapshot it waits for decides
        (B, Trigger.DIFF_NO_BOOK, Do.BUFFER, _JOINED),
        (B, Trigger.LIVE_SNAPSHOT, Do.JOIN_LIVE, _JOINED),
        (B, Trigger.STREAM_SNAPSHOT, Do.REPLACE, _JOINED),
        (B, Trigger.SHADOW_SNAPSHOT, Do.NOTHING, (B,)),
        (B, Trigger.SNAPSHOT_FAILED, Do.BACK_OFF, (B,)),
        (B, Trigger.TICK, Do.TIMERS, (B,)),
        (B, Trigger.DISCONNECT, Do.FORGET_BUFFER, (B,)),
        (B, Trigger.MESSAGE_LOST, Do.NOTHING, (B,)),
    ]
    for state in (S, U, T, D):  # a book exists: diffs are judged against it by the sequence rule
        flagged = (state,) if state is not S else ()
        rows += [
            (state, Trigger.DIFF_CONTINUES, Do.APPLY, _JOINED),  # a flagged book is in sync again, or uncovered
            (state, Trigger.DIFF_RESET, Do.APPLY_RESET, _JOINED),
            (state, Trigger.DIFF_OLD, Do.IGNORE, (state,)),
            (state, Trigger.DIFF_GAP, Do.RESYNC_GAP, (B,)),
            (state, Trigger.STREAM_SNAPSHOT, Do.REPLACE, _JOINED),
            # an audit: in sync, uncovered (the new book falls short), resyncing (crossed); a flagged book
            # that the new one does not cover stays flagged
            (state, Trigger.LIVE_SNAPSHOT, Do.LATE_LIVE, (*_JOINED, *flagged) if state is not S else (S,)),
            (state, Trigger.SHADOW_SNAPSHOT, Do.JOIN_SHADOW, (*_JOINED, *flagged)),
            (state, Trigger.SNAPSHOT_FAILED, Do.BACK_OFF, (state,)),
            (state, Trigger.TICK, Do.TIMERS, (state, T) if state in (S, U) else (state,)),
            (state, Trigger.DISCONNECT, Do.FLAG_DISCONNECTED, (D,)),
            (state, Trigger.MESSAGE_LOST, Do.RESYNC_LOST, (B,)),
        ]
    return {(state, trigger): Step(do, frozenset(nexts)) for state, trigger, do, nexts in rows}


TRANSITIONS: Final[Mapping[tuple[SyncState, Trigger], Step]] = _rows()
# the same rows indexed by the state's value: the general diff path looks one up per diff
_BY_STATE: Final = tuple({t: s for (st, t), s in TRANSITIONS.items() if st is state} for state in sorted(SyncState))


def step(state: SyncState, trigger: Trigger) -> Step:
    """The row of ``state`` and ``trigger``; TransitionError when the table has none."""
    found = _BY_STATE[state].get(trigger)
    if found is None:
        raise TransitionError(f"no transition from {state.name.lower()} on {trigger.value}")
    return found
