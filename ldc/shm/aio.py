"""asyncio waits on books: ``await reader.wait_for_update_async(symbol, timeout)`` and
``async for snap in reader.updates(symbols)``, with no thread per market or per reader.

One waiter thread per process (the hub) sleeps in a single ``futex_waitv`` (Linux 5.16+) on every futex
word that some coroutine waits for (each segment's ``notify`` word, docs/LAYOUT.md section 11) plus a word
of its own that wakes it when a wait is added or cancelled. When a word moves, it checks the slots its
waiters watch and hands each finished wait to that waiter's event loop (``call_soon_threadsafe``).

Section 11's protocol needs nothing more: the writer wakes every sleeper after each publish batch, so the
hub registers nowhere and writes nothing to a segment. A kernel without ``futex_waitv`` is polled every 5 ms.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import math
import mmap
import os
import threading
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np
import posix_ipc

from ldc.shm.layout import HEADER_SIZE


if TYPE_CHECKING:
    from ldc.shm.reader import Reader, Snapshot

# Linux x86-64 / arm64 (the generic table): futex_waitv since 5.16
SYS_FUTEX: Final = 202 if os.uname().machine == "x86_64" else 98
SYS_FUTEX_WAITV: Final = 449
FUTEX_WAKE: Final = 1
FUTEX_PRIVATE_FLAG: Final = 128
FUTEX2_SIZE_U32: Final = 0x02
FUTEX_WAITV_MAX: Final = 128  # the kernel's limit of words per futex_waitv
CLOCK_MONOTONIC: Final = 1
# Limits
POLL_SLICE_S: Final = 0.005  # a kernel without futex_waitv (before 5.16): poll
MAX_SEGMENTS: Final = FUTEX_WAITV_MAX - 1  # one word is the hub's own
IDLE_SLEEP_S: Final = 3600.0  # nothing to wait for: sleep until a wait is added

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _FutexWaitv(ctypes.Structure):
    _fields_ = [("val", ctypes.c_uint64), ("uaddr", ctypes.c_uint64), ("flags", ctypes.c_uint32), ("reserved", ctypes.c_uint32)]


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


@dataclass(eq=False)
class _Wait:
    """One coroutine's wait: done when any watched slot's seq moves (or, with none watched, the word moves)."""

    reader: Reader
    slots: list[tuple[str, int, int]]  # (symbol, seq offset, seq seen)
    word: int  # the notify value seen when the wait began
    deadline: float  # time.monotonic()
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[list[str] | None]  # changed symbols ([] for "any publish"), None on timeout

    def changed(self) -> list[str] | None:
        seg = self.reader._seg
        if not self.slots:
            return [] if seg.load_u32(self.reader._notify_off) != self.word else None
        moved = [symbol for symbol, off, seen in self.slots if seg.load_u64(off) != seen]
        return moved or None


class _Word:
    """A segment's notify word in a mapping of the hub's own: its address stays valid while the hub sleeps on
    it, whatever the readers do with theirs (a reader may close its mapping meanwhile)."""

    def __init__(self, reader: Reader) -> None:
        segment = posix_ipc.SharedMemory(reader.name, read_only=True)
        try:
            self._mm = mmap.mmap(segment.fd, HEADER_SIZE, access=mmap.ACCESS_READ)
        finally:
            segment.close_fd()
        self.address = _address(self._mm) + reader._notify_off

    def close(self) -> None:
        self._mm.close()


def _address(mm: mmap.mmap) -> int:
    """The mapping's address (the numpy view that tells it is dropped at once: the mapping stays closable)."""
    return int(np.frombuffer(mm, dtype=np.uint8, count=1).ctypes.data)


class _Hub:
    """The process's single waiter thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waits: list[_Wait] = []
        self._own = (ctypes.c_uint32 * 1)()  # bumped to wake the thread
        self._words: dict[tuple[int, int], _Word] = {}  # segment file (st_dev, st_ino) -> its word
        self._sleeping: dict[tuple[int, int], int] = {}  # segment -> the word's value the hub sleeps on (or is about to)
        self._sleeping_deadline = 0.0
        self._handed = False  # results were handed to loops in this round
        self._waitv = True  # futex_waitv exists (Linux 5.16+); else the hub polls every 5 ms
        self._thread = threading.Thread(target=self._run, name="ldc-aio-hub", daemon=True)
        self._thread.start()

    def add(self, wait: _Wait) -> None:
        key = wait.reader._identity
        with self._lock:
            if key not in self._words:
                if len(self._words) >= MAX_SEGMENTS:
                    raise RuntimeError(f"asyncio waits on more than {MAX_SEGMENTS} segments at once")
                self._words[key] = _Word(wait.reader)
            self._waits.append(wait)
            # the hub already sleeps on this word with the value this wait began from (so no publish came
            # in between) and will wake before this wait's deadline: waking it would only cost a round
            covered = self._sleeping.get(key) == wait.word and wait.deadline >= self._sleeping_deadline
        if not covered:
            self.wake()

    def wake(self) -> None:
        self._own[0] = (self._own[0] + 1) & 0xFFFFFFFF
        _libc.syscall(SYS_FUTEX, ctypes.c_void_p(ctypes.addressof(self._own)), FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 1, None, None, 0)

    def _run(self) -> None:
        while True:
            own = self._own[0]
            with self._lock:
                # each word is loaded before the slots are checked: a publish after the check moves the word,
                # and the kernel then returns at once instead of sleeping (section 11's order)
                values = {w.reader._identity: _notify_value(w.reader) for w in self._waits}
                self._waits = self._settle(self._waits)
                live = {w.reader._identity for w in self._waits}
                dropped = [word for key, word in self._words.items() if key not in live]
                self._words = {key: word for key, word in self._words.items() if key in live}
                self._sleeping = {key: value for key in live if (value := values[key]) is not None}
                words = [(self._words[key], value) for key, value in self._sleeping.items()]
                deadline = self._sleeping_deadline = min((w.deadline for w in self._waits), default=math.inf)
                handed, self._handed = self._handed, False
            for word in dropped:
                word.close()
            if handed:
                time.sleep(0)  # let the loops that were just handed results take the GIL before we re-arm
            self._sleep(own, words, deadline)

    def _settle(self, waits: list[_Wait]) -> list[_Wait]:
        """Hand finished waits to their loops; return those still waiting. Caller holds the lock."""
        now = time.monotonic()
        pending = []
        for wait in waits:
            if wait.future.done():  # cancelled by its coroutine
                continue
            try:
                result = wait.changed()
            except Exception as exc:  # a reader closed under its waiter: the coroutine gets the error
                wait.loop.call_soon_threadsafe(_set_exception, wait.future, exc)
                continue
            if result is not None or now >= wait.deadline:
                wait.loop.call_soon_threadsafe(_set_result, wait.future, result)
                self._handed = True
            else:
                pending.append(wait)
        return pending

    def _sleep(self, own: int, words: list[tuple[_Word, int]], deadline: float) -> None:
        """futex_waitv on the hub's own word and each segment's notify word until one moves or the deadline."""
        remaining = min(IDLE_SLEEP_S, max(0.0, deadline - time.monotonic()))
        vector = (_FutexWaitv * (len(words) + 1))()
        vector[0] = _FutexWaitv(own, ctypes.addressof(self._own), FUTEX2_SIZE_U32 | FUTEX_PRIVATE_FLAG, 0)
        for i, (word, value) in enumerate(words, 1):
            vector[i] = _FutexWaitv(value, word.address, FUTEX2_SIZE_U32, 0)  # shared: the word is in a file mapping
        if not self._waitv:  # a kernel before 5.16: poll
            time.sleep(min(remaining, POLL_SLICE_S))
            return
        absolute = time.clock_gettime(time.CLOCK_MONOTONIC) + remaining
        timeout = _Timespec(int(absolute), int((absolute % 1) * 1e9))
        if _libc.syscall(SYS_FUTEX_WAITV, vector, len(words) + 1, 0, ctypes.byref(timeout), CLOCK_MONOTONIC) < 0:
            if ctypes.get_errno() == errno.ENOSYS:
                self._waitv = False


def _notify_value(reader: Reader) -> int | None:
    try:
        return int(reader._seg.load_u32(reader._notify_off))
    except AttributeError:  # closed: its waits are answered with the error by _settle
        return None


def _set_result(future: asyncio.Future[list[str] | None], result: list[str] | None) -> None:
    if not future.done():
        future.set_result(result)


def _set_exception(future: asyncio.Future[list[str] | None], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


_hub: _Hub | None = None
_hub_lock = threading.Lock()


def hub() -> _Hub:
    global _hub
    with _hub_lock:
        if _hub is None:
            _hub = _Hub()
        return _hub


async def _wait(reader: Reader, symbols: Iterable[str], timeout: float, seen: dict[str, int] | None = None) -> list[str] | None:
    """Changed symbols (``[]``: any publish, when ``symbols`` is empty), None after ``timeout`` seconds."""
    seg = reader._seg
    word = seg.load_u32(reader._notify_off)
    slots = []
    for symbol in symbols:
        entry = reader._slots.get(symbol) or reader._resolve(symbol)
        off = reader.geometry.slot_offset(entry[0])
        slots.append((symbol, off, seen[symbol] if seen is not None and symbol in seen else seg.load_u64(off)))
    loop = asyncio.get_running_loop()
    future: asyncio.Future[list[str] | None] = loop.create_future()
    waiting = _Wait(reader, slots, word, time.monotonic() + timeout, loop, future)
    the_hub = hub()
    the_hub.add(waiting)
    try:
        return await future
    finally:
        if future.cancelled() or not future.done():  # the coroutine was cancelled (asyncio cancels the future)
            future.cancel()
            the_hub.wake()  # so that the hub stops watching for it now


async def wait_for_update(reader: Reader, symbol: str | None, timeout: float) -> bool:
    """``Reader.wait_for_update``'s asyncio twin: True when ``symbol``'s slot changed (any publish when None)."""
    return await _wait(reader, () if symbol is None else (symbol,), timeout) is not None


async def updates(reader: Reader, symbols: Iterable[str], *, timeout: float = math.inf) -> AsyncIterator[Snapshot]:
    """Each market's latest snapshot whenever its slot changes (several publishes between two wakes come as
    one: the latest; a copy taken mid-publish may come again after it). Not-in-sync books come too: check
    ``snapshot.in_sync``. Ends after ``timeout`` seconds without a change (default: never)."""
    names = list(symbols)
    if not names:
        raise ValueError("symbols expected at least one market, found none")
    seg = reader._seg
    seen: dict[str, int] = {}
    for symbol in names:
        entry = reader._slots.get(symbol) or reader._resolve(symbol)
        seen[symbol] = seg.load_u64(reader.geometry.slot_offset(entry[0]))
    while True:
        changed = await _wait(reader, names, timeout, seen)
        if changed is None:
            return
        for symbol in changed:
            entry = reader._slots.get(symbol) or reader._resolve(symbol)
            seen[symbol] = seg.load_u64(reader.geometry.slot_offset(entry[0]))
            yield reader.snapshot(symbol, allow_out_of_sync=True)
