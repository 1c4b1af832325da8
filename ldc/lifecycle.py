"""What both feeders (``ldc.feeder.Feeder``, ``ldc.stream_feeder.StreamFeeder``) tell systemd while they run:
one part of a feeder's life, cut out of both (issue 12's split of the feeder by job; the hot standby's role
is part of it, issue 17).

READY once the markets are syncing, ``WATCHDOG=1`` at half the unit's ``WatchdogSec`` from the tick loop
(so a stuck loop is restarted), ``STATUS`` whenever the line of markets in sync changes (``systemctl
status`` shows it; a hot standby's starts with ``standby,``), STOPPING at the end.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Protocol

from ldc.sdnotify import Notifier
from ldc.shm.writer import SegmentWriter
from ldc.standby import role_prefix
from ldc.sync import SyncState


class _Sync(Protocol):
    @property
    def state(self) -> SyncState: ...


class _Market(Protocol):
    """What the status line reads of a feeder's market (``Market``, ``StreamMarket``)."""

    @property
    def sync(self) -> _Sync: ...

    @property
    def error(self) -> str: ...


def status_line(writer: SegmentWriter, markets: Iterable[_Market]) -> str:
    """How many markets readers can trust right now (the caller holds the feeder's lock)."""
    listed = list(markets)
    synced = sum(1 for m in listed if m.sync.state is SyncState.SYNCED)
    failed = sum(1 for m in listed if m.error)
    return role_prefix(writer) + f"{synced}/{len(listed)} markets in sync" + (f", {failed} failed" if failed else "")


class SystemdReport:
    """A feeder's notifications to systemd, each sent without ever raising (``Notifier.quietly``)."""

    def __init__(self, notifier: Notifier) -> None:
        self._notifier = notifier
        self._ping_every = notifier.watchdog_ping_every_s
        self._next_watchdog = 0.0
        self._shown = ""

    def ready(self, markets: int) -> None:
        self._notifier.quietly(self._notifier.ready, f"{markets} markets syncing")

    def ticked(self, line: str) -> None:
        """After each tick: the watchdog when due, and the status line when it changed."""
        now = time.monotonic()
        if self._ping_every is not None and now >= self._next_watchdog:
            self._notifier.quietly(self._notifier.watchdog)
            self._next_watchdog = now + self._ping_every
        if line != self._shown:
            self._shown = line
            self._notifier.quietly(self._notifier.status, line)

    def stopping(self) -> None:
        self._notifier.quietly(self._notifier.stopping)
