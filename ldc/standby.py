"""Hot standby (issue 17 item 3): ``ldc feed CONFIG --group G --standby``, for either feeder.

A standby is a whole feeder: its own websocket connections, its own REST snapshots (paced by the host's
weight ledger like any feeder's: ``ldc.io.governor`` is one ledger per REST host for every process),
its own books, published into its own segment file exactly as an active writer publishes. That file is
built as every writer builds one (LAYOUT.md section 12: random private name ``ldc-G.new-T``, mode 0600,
its whole-file OFD lock and robust word held) but it gets no ``magic`` and no name: no reader can open it.

The group's writer holds the ownership lock ``ldc-G.lock``. This module's thread waits for that lock in
``F_OFD_SETLKW``: the kernel grants it the instant the active writer's process dies (or stops and closes
it), with no polling. The takeover is then what any writer start ends with (``SegmentWriter.take_over``):
wait for the old file's own lock to go (microseconds: the dying process closes its files one by one),
complete the header, store RETIRED into the old file, ``rename``. The books are already in the file, in
sync, with their update ids and counters: no resync, no REST request. A market the standby has not in
sync is taken over as its slot says (resyncing, flagged), never as in sync: the slot's flags always
follow the standby's own BookSync. Readers see the old file DEAD at once (the robust word), then follow
the name to the new file (LAYOUT.md section 10, "A replaced segment"), unchanged.

Roles alternate: a standby started while no writer holds the group becomes the writer at once (a normal
start); the active writer killed and restarted with ``--standby`` finds the new writer and waits.

Security: the ownership lock file is the feeders' user's, mode 0600: another account can neither take
nor release it, nor open the standby's file, so it can neither trigger nor fake a takeover.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Final

from ldc.errors import LdcError
from ldc.shm.files import ofd_wait_write_lock, open_owned, same_file
from ldc.shm.layout import LOCK_MODE, lock_path, segment_name
from ldc.shm.writer import SegmentWriter

log = logging.getLogger("ldc.standby")

NS_PER_MS: Final = 1_000_000


class Standby:
    """The waiting thread of a standby feeder. ``on_failure()``: the takeover failed (logged; the feeder
    should stop, with ``exit_status`` 1: systemd restarts it); the group's lock is released so another
    standby may try."""

    def __init__(self, writer: SegmentWriter, *, on_failure: Callable[[], None]) -> None:
        self._writer = writer
        self._on_failure = on_failure
        self.failed = False
        self.takeover_ms: float | None = None  # lock granted -> file named, once taken over
        # daemon: a thread blocked in fcntl cannot be woken; at a standby's stop the process exits, and a
        # lock granted to a closing writer is refused (take_over says False) and released at once
        self._thread = threading.Thread(target=self._run, name=f"ldc-standby-{writer.group}", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("standby for %s: waiting for its writer to go (pid %d here)", segment_name(self._writer.group), os.getpid())

    def _run(self) -> None:
        try:
            self._wait_and_take_over()
        except (LdcError, OSError) as exc:
            log.error("standby for %s: takeover failed: %s", segment_name(self._writer.group), exc)
            self.failed = True
            self._on_failure()

    def _wait_and_take_over(self) -> None:
        path = lock_path(self._writer.group)
        while True:
            fd = open_owned(path, os.O_RDWR, LOCK_MODE, create=True)  # another account's file: refused
            assert fd is not None  # create=True never answers None
            try:
                ofd_wait_write_lock(fd)  # the kernel wakes us when the writer's process dies
                granted_ns = time.monotonic_ns()
                # a clean stop (or ``ldc clean``) removes the lock file while holding it: lock the current one
                if same_file(fd, path) and self._writer.take_over(fd):
                    self.takeover_ms = (time.monotonic_ns() - granted_ns) / NS_PER_MS
                    log.info("standby for %s: took over %.3f ms after its writer released the group (at "
                             "CLOCK_MONOTONIC %d ns); publishing its books as they are (no resync, no snapshot)",
                             segment_name(self._writer.group), self.takeover_ms, granted_ns)  # fmt: skip
                    return
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
            if self._writer.closing:
                return


def standby_for(writer: SegmentWriter, on_failure: Callable[[], None]) -> Standby | None:
    """The waiting thread of a feeder whose writer is a standby's (not started); None for an active writer."""
    return None if writer.active else Standby(writer, on_failure=on_failure)


def role_prefix(writer: SegmentWriter) -> str:
    """What a feeder's status line starts with: nothing for the group's writer, ``standby, `` for a standby."""
    return "" if writer.active else "standby, "


def exit_status(standby: Standby | None) -> int:
    """A feeder's exit status: 1 when its takeover failed, else 0."""
    return 1 if standby is not None and standby.failed else 0
