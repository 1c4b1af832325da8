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

While it waits, the standby's process hands the GIL over at least every ``WAITING_SWITCH_INTERVAL_S`` (a finer
interval already set, as ``ldc feed``'s 50 us, is kept; CPython's default is 5 ms), so that the takeover (Python between system calls) is not held up behind the standby's own
busy threads at each call; the default comes back once it took over. Its recording is held until then
(``ldc/record.py``, "A hot standby's recording"): ``on_takeover`` starts it.

Security: the ownership lock file is the feeders' user's, mode 0600: another account can neither take
nor release it, nor open the standby's file, so it can neither trigger nor fake a takeover.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ldc.errors import LdcError
from ldc.shm.files import ofd_wait_write_lock, open_owned, same_file
from ldc.shm.layout import HEADER, LOCK_MODE, lock_path, segment_name, temp_paths
from ldc.shm.writer import SegmentWriter

log = logging.getLogger("ldc.standby")

NS_PER_MS: Final = 1_000_000
# While a standby waits, its process hands the GIL over this often (CPython's default: 5 ms): the takeover is
# Python between system calls, each a point where a busy thread of the standby (its books, its sockets) takes
# the GIL, and the takeover then waited up to the whole interval to get it back, at each of them
# (scripts/bench_standby_exit.py: lock granted -> named max 12.8-63 ms with a spinning thread at 5 ms,
# 2.4-3.1 ms at 0.2 ms). The default comes back once the standby took over (or failed).
WAITING_SWITCH_INTERVAL_S: Final = 0.0002
PROC_LOCKS: Final = "/proc/locks"  # world-readable: who holds a lock on which inode, for ``ldc status``


class Standby:
    """The waiting thread of a standby feeder. ``on_failure()``: the takeover failed (logged; the feeder
    should stop, with ``exit_status`` 1: systemd restarts it); the group's lock is released so another
    standby may try. ``on_takeover()``: called on this thread once the segment is the standby's (after the
    rename, outside ``takeover_ms``): the feeder's recording starts there (``Recorder.take_over``)."""

    def __init__(self, writer: SegmentWriter, *, on_failure: Callable[[], None],
                 on_takeover: Callable[[], None] | None = None, switch_interval_s: float | None = -1.0) -> None:  # fmt: skip
        self._writer = writer
        # while waiting (-1: WAITING_SWITCH_INTERVAL_S, read now; None: the process's own, untouched)
        self._switch_interval_s = WAITING_SWITCH_INTERVAL_S if switch_interval_s == -1.0 else switch_interval_s
        self._saved_interval_s = sys.getswitchinterval()  # read again at start(): the process's then
        self._on_failure = on_failure
        self._on_takeover = on_takeover
        self.failed = False
        self.takeover_ms: float | None = None  # lock granted -> file named, once taken over
        # daemon: a thread blocked in fcntl cannot be woken; at a standby's stop the process exits, and a
        # lock granted to a closing writer is refused (take_over says False) and released at once
        self._thread = threading.Thread(target=self._run, name=f"ldc-standby-{writer.group}", daemon=True)

    def start(self) -> None:
        if self._switch_interval_s is not None:  # only ever finer: never coarser than the process already runs
            self._saved_interval_s = sys.getswitchinterval()
            sys.setswitchinterval(min(self._saved_interval_s, self._switch_interval_s))
        self._thread.start()
        log.info("standby for %s: waiting for its writer to go (pid %d here)", segment_name(self._writer.group), os.getpid())

    def _run(self) -> None:
        try:
            self._wait_and_take_over()
        except (LdcError, OSError) as exc:
            log.error("standby for %s: takeover failed: %s", segment_name(self._writer.group), exc)
            self.failed = True
            self._on_failure()
        finally:
            if self._switch_interval_s is not None:
                sys.setswitchinterval(self._saved_interval_s)

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
                    self._taken_over()
                    return
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
            if self._writer.closing:
                return

    def _taken_over(self) -> None:
        """The feeder's part of a takeover (its recording): a failure there is logged, the feeder publishes on."""
        if self._on_takeover is None:
            return
        try:
            self._on_takeover()
        except Exception:
            log.exception("standby for %s: after the takeover", segment_name(self._writer.group))


def standby_for(writer: SegmentWriter, on_failure: Callable[[], None],
                on_takeover: Callable[[], None] | None = None) -> Standby | None:  # fmt: skip
    """The waiting thread of a feeder whose writer is a standby's (not started); None for an active writer."""
    return None if writer.active else Standby(writer, on_failure=on_failure, on_takeover=on_takeover)


def role_prefix(writer: SegmentWriter) -> str:
    """What a feeder's status line starts with: nothing for the group's writer, ``standby, `` for a standby."""
    return "" if writer.active else "standby, "


def exit_status(standby: Standby | None) -> int:
    """A feeder's exit status: 1 when its takeover failed, else 0."""
    return 1 if standby is not None and standby.failed else 0


@dataclass(frozen=True)
class AttachedStandby:
    """A group's build file some process holds a write lock on: a hot standby's (or, for a moment, a
    starting writer's)."""

    path: str
    pid: int | None  # from its header; None when this account cannot read the file (0600: the feeders' user's)


def attached_standbys(group: str, proc_locks: str = PROC_LOCKS) -> list[AttachedStandby]:
    """For ``ldc status``: the group's write-locked build files, found through /proc/locks (any account
    may read it; the files themselves are the feeders' user's alone)."""
    held = _write_locked(proc_locks)
    found = []
    for path in temp_paths(group):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino) in held:
            found.append(AttachedStandby(path, _writer_pid(path)))
    return found


def _write_locked(proc_locks: str) -> set[tuple[int, int, int]]:
    """(major, minor, inode) of every file a process holds a write lock on (blocked requests, ``->``, skipped)."""
    held = set()
    try:
        with open(proc_locks) as f:
            for line in f:
                words = line.split()
                if len(words) < 6 or words[1] == "->" or words[3] != "WRITE":
                    continue
                major, minor, inode = words[5].split(":")
                held.add((int(major, 16), int(minor, 16), int(inode)))
    except (OSError, ValueError):
        return set()
    return held


def _writer_pid(path: str) -> int | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        raw = os.pread(fd, 4, HEADER.offset("writer_pid"))
    finally:
        os.close(fd)
    return int.from_bytes(raw, "little") if len(raw) == 4 else None
