"""REST weight governor shared by every feeder process on the host.

A venue with a REST weight model counts request weight per IP and per API host in one-minute windows, and
may ban an IP (status 418) that keeps sending after a 429. So the budget belongs to the host, not to one process: every feeder that
talks to the same REST host reserves weight in one small POSIX shared-memory segment before each request,
and a 429 / 418 seen by any of them stops all of them until ``Retry-After`` has passed.

The ledger is a sliding window: weight granted is counted in ``BUCKETS`` buckets per window, and a grant
must keep the last ``BUCKETS + 1`` buckets within the budget. Any interval of one window's length touches
at most that many buckets, so *every* window the exchange may count in — whatever its alignment against
our clock — stays within the budget. A cold start pays one bucket (1/60) more than a perfectly aligned
fixed window would. The venue's used-weight header (its ``RestProtocol.used_weight_header``) wins when it is higher than our count (some
other client of the IP spent weight): the difference is booked into the current bucket.

Segment ``/ldc-governor-<key>`` (``/dev/shm/ldc-governor-<key>``), ``<key>`` = the REST host and port
(``api.example.com``, ``127.0.0.1_18080``): one ledger per host, each has its own limit. Little-endian,
every access a read-modify-write under ``flock(LOCK_EX)`` on the segment's file (plus a thread lock, flock
being per open file)::

    0       8      12          16            24                32           40          48
    +-------+------+-----------+-------------+-----------------+------------+-----------+
    | magic | ver  | window ms | budget      | banned until ms | ban status | granted   |   header, 48 B
    +-------+------+-----------+-------------+-----------------+------------+-----------+
    48: RING x (bucket number i64, weight i64), slot = bucket number % RING              ring, 976 B

``budget`` and ``window ms`` are the most cautious (smallest budget, longest window) any attached process
asked for. The decisions are pure functions of (ledger, now): ``reserve``, ``observe_used``,
``observe_ban``; ``RateGovernor`` loads, applies, stores, and sleeps.

The ledger belongs to the feeders' user alone (mode 0600, created with ``O_EXCL | O_NOFOLLOW``, a file
of another owner refused naming it): a reader of the order books must not be able to fake a ban. Every
load is checked against what the exchange can say (a ban of at most ``MAX_BAN_MS`` with status 418 or
429, buckets not in the future, weights within the budget): a ledger outside that is corrupt, said in
the log with the value found, and reset.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import stat
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

import posix_ipc

from ldc.errors import ConfigError, RateLimitError, SegmentError
from ldc.shm.files import create_exclusive, owner_name, refusal

log = logging.getLogger(__name__)

WINDOW_MS = 60_000  # the venue's weight interval: 1 minute
BUCKETS = 60  # per window: the sliding count's resolution
RING = BUCKETS + 1  # a window-long interval touches at most this many buckets
DEFAULT_418_BACKOFF_MS = 120_000  # a 418 without Retry-After: bans start at 2 minutes
MAX_BAN_MS = 3 * 24 * 3600 * 1000  # bans scale up to 3 days; a longer Retry-After is clamped
STATUS_LOCAL = 0  # RateLimitError.status when the governor refused and nothing was sent
SEGMENT_PREFIX = "/ldc-governor-"
SEGMENT_MODE = 0o600  # the feeders' user alone: readers must not be able to fake a ban (issue 14)
SHM_DIR = "/dev/shm"
MAX_BUDGET = 1_000_000  # weight per window; venues' limits are in the thousands
MAX_WINDOW_MS = 24 * 3600 * 1000  # REQUEST_WEIGHT intervals are a minute; a day bounds any future one
BAN_STATUSES = (0, 418, 429)
MAGIC = 0x3230564F47434C44  # b"LDCGOV02" little-endian
VERSION = 2
_HEADER = struct.Struct("<QIIqqqq")
_RING = struct.Struct(f"<{2 * RING}q")
SEGMENT_SIZE = _HEADER.size + _RING.size
EMPTY_RING: tuple[tuple[int, int], ...] = ((-1, 0),) * RING


@dataclass(frozen=True, slots=True)
class Ledger:
    """The host's weight account: ``ring[n % RING]`` holds (bucket number n, weight granted in it)."""

    budget: int
    window_ms: int = WINDOW_MS
    ring: tuple[tuple[int, int], ...] = EMPTY_RING
    banned_until_ms: int = 0
    ban_status: int = 0
    granted: int = 0  # requests granted since the segment was created, for status displays

    @property
    def bucket_ms(self) -> int:
        return max(1, self.window_ms // BUCKETS)


@dataclass(frozen=True, slots=True)
class Decision:
    """The result of ``reserve``: store ``ledger``; if not ``granted``, ask again after ``wait_ms``."""

    ledger: Ledger
    granted: bool
    wait_ms: int
    reason: str  # "granted", "banned" or "budget"


def used(ledger: Ledger, now_ms: int) -> int:
    """Weight counted against the budget at ``now_ms``: the current bucket and the ``BUCKETS`` before it."""
    current = now_ms // ledger.bucket_ms
    return sum(weight for number, weight in ledger.ring if current - BUCKETS <= number <= current)


def _book(ledger: Ledger, weight: int, now_ms: int) -> Ledger:
    number = now_ms // ledger.bucket_ms
    slot = number % RING
    held_number, held = ledger.ring[slot]
    total = held + weight if held_number == number else weight
    ring = ledger.ring[:slot] + ((number, total),) + ledger.ring[slot + 1 :]
    return replace(ledger, ring=ring)


def reserve(ledger: Ledger, weight: int, now_ms: int) -> Decision:
    """Reserve ``weight`` at ``now_ms`` if the host stays within its budget and is not banned."""
    if weight > ledger.budget:
        raise ConfigError(f"request weight {weight} exceeds the host budget of {ledger.budget} per window")
    if now_ms < ledger.banned_until_ms:
        return Decision(ledger, False, ledger.banned_until_ms - now_ms, "banned")
    excess = used(ledger, now_ms) + weight - ledger.budget
    if excess > 0:
        return Decision(ledger, False, _wait_until_freed(ledger, excess, now_ms), "budget")
    granted = _book(ledger, weight, now_ms)
    return Decision(replace(granted, granted=granted.granted + 1), True, 0, "granted")


def _wait_until_freed(ledger: Ledger, excess: int, now_ms: int) -> int:
    """Time until the oldest live buckets, leaving the count, free ``excess`` weight."""
    current = now_ms // ledger.bucket_ms
    live = sorted((n, w) for n, w in ledger.ring if current - BUCKETS <= n <= current and w > 0)
    freed = 0
    for number, weight in live:
        freed += weight
        if freed >= excess:
            return (number + RING) * ledger.bucket_ms - now_ms  # the first instant bucket n is out
    return ledger.window_ms  # unreachable while weight <= budget; a full window is always enough


def observe_used(ledger: Ledger, used_weight: int, now_ms: int) -> Ledger:
    """Take the venue's used-weight header: weight it counts beyond ours is booked now. A lower
    count changes nothing (our reservations still in flight are not in it)."""
    missing = used_weight - used(ledger, now_ms)
    return _book(ledger, missing, now_ms) if missing > 0 else ledger


def observe_ban(ledger: Ledger, status: int, retry_after_s: float | None, now_ms: int) -> Ledger:
    """A 429 or 418: nobody on the host sends until ``Retry-After`` has passed (the exchange knows when its
    count resets; without the header, a whole window, or the shortest ban after a 418)."""
    if retry_after_s is None:
        wait_ms = DEFAULT_418_BACKOFF_MS if status == 418 else ledger.window_ms
    else:
        wait_ms = int(max(0.0, retry_after_s) * 1000)
    until = now_ms + min(wait_ms, MAX_BAN_MS)
    if until <= ledger.banned_until_ms:
        return ledger
    return replace(ledger, banned_until_ms=until, ban_status=status)


def governor_key(rest_url: str) -> str:
    """The ledger key of a REST base URL: its host and port, e.g. ``api.example.com``, ``127.0.0.1_18080``."""
    parts = urlsplit(rest_url)
    if not parts.hostname:
        raise ConfigError(f"rest url {rest_url!r} has no host, expected scheme://host[:port]")
    key = parts.hostname if parts.port is None else f"{parts.hostname}_{parts.port}"
    return re.sub(r"[^A-Za-z0-9._-]", "_", key)


class RateGovernor:
    """The host-wide weight ledger of one REST host, in shared memory.

    ``acquire(weight)`` before every request (it waits, bounded, while the host is out of budget or banned);
    then ``observe_response`` with the response's status, the venue's used weight and ``Retry-After``.
    """

    def __init__(
        self,
        key: str,
        *,
        budget: int,
        window_ms: int = WINDOW_MS,
        clock_ms: Callable[[], int] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if budget < 1 or window_ms < BUCKETS:
            raise ConfigError(f"weight budget {budget} per {window_ms} ms, expected >= 1 per >= {BUCKETS} ms")
        self.name = SEGMENT_PREFIX + key
        self.path = SHM_DIR + self.name
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._sleep = sleep
        self._lock = threading.Lock()
        self._budget, self._window_ms = budget, window_ms
        self._fd = _open_ledger(self.path)  # kept for flock and pread/pwrite; closed by close()
        now_ms = self._clock_ms()
        self._update(lambda ledger: _most_cautious(ledger, budget, window_ms, now_ms))

    def acquire(self, weight: int, *, timeout_s: float, stop: threading.Event | None = None) -> None:
        """Reserve ``weight``, waiting while the host is out of budget or banned.

        Raises ``RateLimitError`` (status ``STATUS_LOCAL``, nothing sent) when the wait would pass
        ``timeout_s`` or ``stop`` is set; its ``retry_after_s`` says when asking again can succeed.
        """
        deadline_ms = self._clock_ms() + int(timeout_s * 1000)
        said_ban = False
        while True:
            now_ms = self._clock_ms()
            decision = self._decide(weight, now_ms)
            if decision.granted:
                return
            if now_ms + decision.wait_ms > deadline_ms or (stop is not None and stop.is_set()):
                raise _refusal(decision, weight, now_ms, timeout_s)
            if decision.reason == "banned" and not said_ban:  # a ban's wait is never silent
                said_ban = True
                log.warning("REST request waits %.1f s: host banned by the exchange (status %d)",
                            decision.wait_ms / 1000, decision.ledger.ban_status)  # fmt: skip
            if stop is not None:
                stop.wait(decision.wait_ms / 1000)
            else:
                self._sleep(decision.wait_ms / 1000)

    def observe_response(self, *, status: int, used_weight: int | None, retry_after_s: float | None) -> None:
        """Fold a response into the ledger: the exchange's weight count, and 429 / 418 bans for the host."""
        now_ms = self._clock_ms()
        if used_weight is not None:
            self._update(lambda ledger: observe_used(ledger, used_weight, now_ms))
        if status in (418, 429):
            self._update(lambda ledger: observe_ban(ledger, status, retry_after_s, now_ms))

    def ledger(self) -> Ledger:
        """The ledger as stored now."""
        return self._update(lambda ledger: ledger)

    def used(self) -> int:
        """Weight counted against the budget now."""
        return used(self.ledger(), self._clock_ms())

    def close(self) -> None:
        """Close this process's handle; the segment stays for the other feeders."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> RateGovernor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _decide(self, weight: int, now_ms: int) -> Decision:
        with self._lock, _Flock(self._fd):
            decision = reserve(self._load(now_ms), weight, now_ms)
            if decision.granted:
                self._store(decision.ledger)
            return decision

    def _update(self, change: Callable[[Ledger], Ledger]) -> Ledger:
        with self._lock, _Flock(self._fd):
            ledger = change(self._load(self._clock_ms()))
            self._store(ledger)
            return ledger

    def _load(self, now_ms: int) -> Ledger:
        raw = os.pread(self._fd, SEGMENT_SIZE, 0)
        if len(raw) < SEGMENT_SIZE or _HEADER.unpack_from(raw)[0] == 0:  # being created: zero-filled
            return Ledger(budget=0, window_ms=0)
        magic, version, window_ms, budget, banned_until, ban_status, granted = _HEADER.unpack_from(raw)
        flat = _RING.unpack_from(raw, _HEADER.size)
        ring = tuple(zip(flat[0::2], flat[1::2], strict=True))
        problem = (
            f"magic {magic:#x} version {version}, expected magic {MAGIC:#x} version {VERSION}"
            if magic != MAGIC or version != VERSION
            else corruption(Ledger(budget, window_ms, ring, banned_until, ban_status, granted), now_ms)
        )
        if problem is None:
            return Ledger(budget, window_ms, ring, banned_until, ban_status, granted)
        log.error("governor ledger %s is corrupt (%s): reset to an empty ledger", self.path, problem)
        return Ledger(budget=self._budget, window_ms=self._window_ms)

    def _store(self, ledger: Ledger) -> None:
        header = _HEADER.pack(
            MAGIC, VERSION, ledger.window_ms, ledger.budget, ledger.banned_until_ms, ledger.ban_status, ledger.granted
        )
        flat = [value for pair in ledger.ring for value in pair]
        os.pwrite(self._fd, header + _RING.pack(*flat), 0)


def corruption(ledger: Ledger, now_ms: int) -> str | None:
    """What in ``ledger`` no exchange answer can have produced (None when nothing): the ledger is then
    damaged or was written by someone else, and must not stop a host's requests."""
    if not 1 <= ledger.budget <= MAX_BUDGET:
        return f"budget {ledger.budget}, expected 1..{MAX_BUDGET}"
    if not BUCKETS <= ledger.window_ms <= MAX_WINDOW_MS:
        return f"window {ledger.window_ms} ms, expected {BUCKETS}..{MAX_WINDOW_MS}"
    if ledger.banned_until_ms - now_ms > MAX_BAN_MS:
        ahead_h = (ledger.banned_until_ms - now_ms) / 3_600_000
        return f"banned for another {ahead_h:.1f} h, the exchange bans for at most {MAX_BAN_MS // 3_600_000} h"
    if ledger.ban_status not in BAN_STATUSES:
        return f"ban status {ledger.ban_status}, expected one of {BAN_STATUSES}"
    current = now_ms // ledger.bucket_ms
    for number, weight in ledger.ring:
        if number > current or not 0 <= weight <= ledger.budget or (number < 0 and (number, weight) != (-1, 0)):
            return f"bucket {number} with weight {weight} (now bucket {current}, budget {ledger.budget})"
    if ledger.granted < 0:
        return f"granted {ledger.granted}"
    return None


def _open_ledger(path: str) -> int:
    """The ledger file, this user's alone: created with O_EXCL; an existing one adopted only when it is
    this user's regular file with mode 0600. Another owner is refused (naming it); a file of ours with a
    looser mode (an older ldc made them 0660) may have been written by others: replaced."""
    for _ in range(2):
        try:
            fd = create_exclusive(path, SEGMENT_MODE)
        except FileExistsError:
            try:
                fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError as exc:  # a link (ELOOP), or another user's file we may not open
                raise refusal(path, exc) from None
        st = os.fstat(fd)
        mode = st.st_mode & 0o7777
        if st.st_uid != os.geteuid() or not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise SegmentError(
                f"governor ledger {path} belongs to {owner_name(st.st_uid)} with mode {mode:04o}; ldc adopts only "
                f"a ledger of its own user {owner_name(os.geteuid())} with mode {SEGMENT_MODE:04o}: remove it"
            )
        if mode == SEGMENT_MODE:
            if st.st_size < SEGMENT_SIZE:
                os.ftruncate(fd, SEGMENT_SIZE)  # ours: only ever grown to its size, never shrunk
            return fd
        log.warning("governor ledger %s has mode %04o, expected %04o: replacing it", path, mode, SEGMENT_MODE)
        os.close(fd)
        os.unlink(path)
    raise SegmentError(f"governor ledger {path} was replaced by someone else while being opened")


def unlink_governor(key: str) -> None:
    """Remove the segment of ``key`` (tests, or an operator resetting a host); absent is fine."""
    try:
        posix_ipc.unlink_shared_memory(SEGMENT_PREFIX + key)
    except posix_ipc.ExistentialError:
        pass


def _most_cautious(ledger: Ledger, budget: int, window_ms: int, now_ms: int) -> Ledger:
    # processes may be configured differently; the smallest budget over the longest window holds for all
    if ledger.budget == 0:
        return Ledger(budget=budget, window_ms=window_ms)
    cautious = replace(ledger, budget=min(budget, ledger.budget))
    if window_ms <= ledger.window_ms:
        return cautious
    # bucket numbers change meaning with the window: carry what is in use into the new current bucket
    return _book(replace(cautious, window_ms=window_ms, ring=EMPTY_RING), used(ledger, now_ms), now_ms)


def _refusal(decision: Decision, weight: int, now_ms: int, timeout_s: float) -> RateLimitError:
    ledger, wait_s = decision.ledger, decision.wait_ms / 1000
    if decision.reason == "banned":
        what = f"host banned by the exchange (status {ledger.ban_status}) for another {wait_s:.1f} s"
    else:
        what = (
            f"host weight budget spent: {used(ledger, now_ms)} of {ledger.budget} used, "
            f"need {weight}, free again in {wait_s:.1f} s"
        )
    return RateLimitError(f"{what}, expected a grant within {timeout_s:g} s", status=STATUS_LOCAL, retry_after_s=wait_s)


class _Flock:
    def __init__(self, fd: int) -> None:
        self._fd = fd

    def __enter__(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
