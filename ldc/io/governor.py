"""REST weight governor shared by every feeder process on the host.

Binance counts request weight per IP and per API host family, in one-minute windows, and bans an IP (418)
that keeps sending after a 429. So the budget is a property of the host, not of one process: every feeder
that talks to the same REST host reserves weight in one small POSIX shared-memory segment before each
request, and every 429 / 418 it sees stops all of them until ``Retry-After`` has passed.

Segment ``/ldc-governor-<key>`` (``/dev/shm/ldc-governor-<key>``), ``<key>`` = the REST host and port
(``api.binance.com``, ``127.0.0.1_18080``): one ledger per host family, since each has its own limit.
64 bytes, little-endian, every access a read-modify-write under ``flock(LOCK_EX)`` on the segment's file
(plus a thread lock: flock is per open file, threads of one process share it)::

    0       8      12     16              24                32      40                48           56          64
    +-------+------+------+---------------+-----------------+-------+-----------------+------------+-----------+
    | magic | ver  | pad  | budget / min  | window start ms | used  | banned until ms | ban status | granted   |
    +-------+------+------+---------------+-----------------+-------+-----------------+------------+-----------+

``budget`` is the smallest budget any attached process asked for; windows are wall-clock minutes (epoch ms
floored to 60 000, as the exchange counts them); ``used`` is our reservations in the window, raised to the
exchange's own ``X-MBX-USED-WEIGHT-1M`` when that is higher (a lower count is not trusted: reservations still
in flight are not in it). Clock skew against the exchange is covered by the budget's headroom
(``weight_budget_fraction``) and corrected by the header.

The decisions are pure functions of (ledger, now): ``reserve``, ``observe_used``, ``observe_ban``.
``RateGovernor`` only loads, applies and stores them, and sleeps.
"""

from __future__ import annotations

import fcntl
import os
import re
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

import posix_ipc

from ldc.errors import ConfigError, RateLimitError

WINDOW_MS = 60_000  # Binance's REQUEST_WEIGHT interval: 1 minute
DEFAULT_429_BACKOFF_MS = WINDOW_MS  # a 429 without Retry-After: wait out a whole window
DEFAULT_418_BACKOFF_MS = 120_000  # a 418 without Retry-After: bans start at 2 minutes
MAX_BAN_MS = 3 * 24 * 3600 * 1000  # bans scale up to 3 days; a longer Retry-After is clamped
STATUS_LOCAL = 0  # RateLimitError.status when the governor refused and nothing was sent
SEGMENT_PREFIX = "/ldc-governor-"
SEGMENT_MODE = 0o660  # feeders of one service user and group share it
MAGIC = 0x3130564F47434C44  # b"LDCGOV01" little-endian
VERSION = 1
_LAYOUT = struct.Struct("<QII6q")
SEGMENT_SIZE = 64
assert _LAYOUT.size == SEGMENT_SIZE


@dataclass(frozen=True, slots=True)
class Ledger:
    """The host's weight account for the current window."""

    budget: int
    window_start_ms: int = 0
    used: int = 0
    banned_until_ms: int = 0
    ban_status: int = 0
    granted: int = 0  # requests granted since the segment was created, for status displays


@dataclass(frozen=True, slots=True)
class Decision:
    """The result of ``reserve``: store ``ledger``; if not ``granted``, ask again after ``wait_ms``."""

    ledger: Ledger
    granted: bool
    wait_ms: int
    reason: str  # "granted", "banned" or "budget"


def window_of(now_ms: int) -> int:
    """Start of the wall-clock minute holding ``now_ms``."""
    return now_ms - now_ms % WINDOW_MS


def roll(ledger: Ledger, now_ms: int) -> Ledger:
    """The ledger as seen at ``now_ms``: a new window starts with nothing used."""
    start = window_of(now_ms)
    if start <= ledger.window_start_ms:
        return ledger
    return replace(ledger, window_start_ms=start, used=0)


def reserve(ledger: Ledger, weight: int, now_ms: int) -> Decision:
    """Reserve ``weight`` at ``now_ms`` if the host stays within its budget and is not banned."""
    if weight > ledger.budget:
        raise ConfigError(f"request weight {weight} exceeds the host budget of {ledger.budget} per minute")
    current = roll(ledger, now_ms)
    if now_ms < current.banned_until_ms:
        return Decision(current, False, current.banned_until_ms - now_ms, "banned")
    if current.used + weight > current.budget:
        return Decision(current, False, current.window_start_ms + WINDOW_MS - now_ms, "budget")
    granted = replace(current, used=current.used + weight, granted=current.granted + 1)
    return Decision(granted, True, 0, "granted")


def observe_used(ledger: Ledger, used_weight: int, window_start_ms: int, now_ms: int) -> Ledger:
    """Take the exchange's ``X-MBX-USED-WEIGHT-1M`` of a request reserved in ``window_start_ms``."""
    current = roll(ledger, now_ms)
    if window_start_ms != current.window_start_ms or used_weight <= current.used:
        return current
    return replace(current, used=used_weight)


def observe_ban(ledger: Ledger, status: int, retry_after_s: float | None, now_ms: int) -> Ledger:
    """A 429 or 418: nobody on the host sends until ``Retry-After`` has passed (the exchange knows when its
    count resets; without the header, until the window ends, or for the shortest ban after a 418)."""
    current = roll(ledger, now_ms)
    if retry_after_s is None:
        wait_ms = DEFAULT_418_BACKOFF_MS if status == 418 else current.window_start_ms + WINDOW_MS - now_ms
    else:
        wait_ms = int(max(0.0, retry_after_s) * 1000)
    until = now_ms + min(wait_ms, MAX_BAN_MS)
    if until <= current.banned_until_ms:
        return current
    return replace(current, banned_until_ms=until, ban_status=status)


def governor_key(rest_url: str) -> str:
    """The ledger key of a REST base URL: its host and port, e.g. ``api.binance.com``, ``127.0.0.1_18080``."""
    parts = urlsplit(rest_url)
    if not parts.hostname:
        raise ConfigError(f"rest url {rest_url!r} has no host, expected scheme://host[:port]")
    key = parts.hostname if parts.port is None else f"{parts.hostname}_{parts.port}"
    return re.sub(r"[^A-Za-z0-9._-]", "_", key)


class RateGovernor:
    """The host-wide weight ledger of one REST host, in shared memory.

    ``acquire(weight)`` before every request (it waits, bounded, while the host is out of budget or banned);
    then ``observe_response`` with the response's status, ``X-MBX-USED-WEIGHT-1M`` and ``Retry-After``.
    """

    def __init__(
        self,
        key: str,
        *,
        budget_per_min: int,
        clock_ms: Callable[[], int] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if budget_per_min < 1:
            raise ConfigError(f"weight budget {budget_per_min} per minute, expected at least 1")
        self.name = SEGMENT_PREFIX + key
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._sleep = sleep
        self._lock = threading.Lock()
        shm = posix_ipc.SharedMemory(self.name, posix_ipc.O_CREAT, mode=SEGMENT_MODE, size=SEGMENT_SIZE)
        self._fd = shm.fd  # kept for flock and pread/pwrite; closed by close()
        try:
            os.fchmod(self._fd, SEGMENT_MODE)  # the umask masked the mode given at creation
        except PermissionError:
            pass  # created by another user of the group: its mode already holds
        self._update(lambda ledger: _lower_budget(ledger, budget_per_min))

    def acquire(self, weight: int, *, timeout_s: float, stop: threading.Event | None = None) -> int:
        """Reserve ``weight``; return the window it was counted in (give it back to ``observe_response``).

        Raises ``RateLimitError`` (status ``STATUS_LOCAL``, nothing sent) when the wait would pass
        ``timeout_s`` or ``stop`` is set; its ``retry_after_s`` says when asking again can succeed.
        """
        deadline_ms = self._clock_ms() + int(timeout_s * 1000)
        while True:
            now_ms = self._clock_ms()
            decision = self._decide(weight, now_ms)
            if decision.granted:
                return decision.ledger.window_start_ms
            if now_ms + decision.wait_ms > deadline_ms or (stop is not None and stop.is_set()):
                raise _refusal(decision, weight, timeout_s)
            if stop is not None:
                stop.wait(decision.wait_ms / 1000)
            else:
                self._sleep(decision.wait_ms / 1000)

    def observe_response(
        self, *, status: int, used_weight: int | None, retry_after_s: float | None, window_start_ms: int
    ) -> None:
        """Fold a response into the ledger: the exchange's weight count, and 429 / 418 bans for the host."""
        now_ms = self._clock_ms()
        if used_weight is not None:
            self._update(lambda ledger: observe_used(ledger, used_weight, window_start_ms, now_ms))
        if status in (418, 429):
            self._update(lambda ledger: observe_ban(ledger, status, retry_after_s, now_ms))

    def ledger(self) -> Ledger:
        """The ledger as of now (read under the lock)."""
        now_ms = self._clock_ms()
        return self._update(lambda ledger: roll(ledger, now_ms))

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
            decision = reserve(self._load(), weight, now_ms)
            self._store(decision.ledger)
            return decision

    def _update(self, change: Callable[[Ledger], Ledger]) -> Ledger:
        with self._lock, _Flock(self._fd):
            ledger = change(self._load())
            self._store(ledger)
            return ledger

    def _load(self) -> Ledger:
        raw = os.pread(self._fd, SEGMENT_SIZE, 0)
        magic, version, _, budget, start, used, banned_until, ban_status, granted = _LAYOUT.unpack(raw)
        if magic == 0:  # freshly created: zero-filled by ftruncate
            return Ledger(budget=0)
        if magic != MAGIC or version != VERSION:
            raise ConfigError(
                f"governor segment {self.name}: magic {magic:#x} version {version}, "
                f"expected magic {MAGIC:#x} version {VERSION}"
            )
        return Ledger(budget, start, used, banned_until, ban_status, granted)

    def _store(self, ledger: Ledger) -> None:
        raw = _LAYOUT.pack(
            MAGIC, VERSION, 0, ledger.budget, ledger.window_start_ms, ledger.used,
            ledger.banned_until_ms, ledger.ban_status, ledger.granted,
        )  # fmt: skip
        os.pwrite(self._fd, raw, 0)


def unlink_governor(key: str) -> None:
    """Remove the segment of ``key`` (tests, or an operator resetting a host); absent is fine."""
    try:
        posix_ipc.unlink_shared_memory(SEGMENT_PREFIX + key)
    except posix_ipc.ExistentialError:
        pass


def _lower_budget(ledger: Ledger, budget: int) -> Ledger:
    # processes may be configured differently; the most cautious budget holds for the whole host
    if ledger.budget == 0 or budget < ledger.budget:
        return replace(ledger, budget=budget)
    return ledger


def _refusal(decision: Decision, weight: int, timeout_s: float) -> RateLimitError:
    ledger, wait_s = decision.ledger, decision.wait_ms / 1000
    if decision.reason == "banned":
        what = f"host banned by the exchange (status {ledger.ban_status}) for another {wait_s:.1f} s"
    else:
        what = f"host weight budget spent: {ledger.used} of {ledger.budget} used, need {weight}, next window in {wait_s:.1f} s"
    return RateLimitError(f"{what}, expected a grant within {timeout_s:g} s", status=STATUS_LOCAL, retry_after_s=wait_s)


class _Flock:
    def __init__(self, fd: int) -> None:
        self._fd = fd

    def __enter__(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
