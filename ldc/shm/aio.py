"""asyncio waits on books: ``await reader.wait_for_update_async(symbol, timeout)`` and
``async for snap in reader.updates(symbols)``, with no thread per market or per reader.

One waiter thread per process (the hub) sleeps in a single ``futex_waitv`` (Linux 5.16+) on every futex
word that some coroutine waits for (each segment's ``notify`` word, docs/LAYOUT.md section 11) plus a word
of its own that wakes it when a wait is added or cancelled. When a word moves, it checks the slots its
waiters watch and hands each finished wait to that waiter's event loop (``call_soon_threadsafe``).

The waiter counter protocol of section 11 is kept: before sleeping the hub registers in each segment's
waiter file (an atomic add done by the kernel, ``FUTEX_WAKE_OP``, so no C is needed here) and
unregisters after. A segment without a usable waiter file is polled every 5 ms, as ``Reader`` does.
"""

from __future__ import annotations

import asyncio
import ctypes
import math
import os
import threading
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np


if TYPE_CHECKING:
    from ldc.shm.reader import Reader, Snapshot

# Linux x86-64 / arm64 (the generic table): futex_waitv since 5.16
SYS_FUTEX: Final = 202 if os.uname().machine == "x86_64" else 98
SYS_FUTEX_WAITV: Final = 449
FUTEX_WAKE: Final = 1
FUTEX_WAKE_OP: Final = 5
FUTEX_PRIVATE_FLAG: Final = 128
FUTEX2_SIZE_U32: Final = 0x02
FUTEX_OP_ADD: Final = 1
FUTEX_WAITV_MAX: Final = 128  # the kernel's limit of words per futex_waitv
CLOCK_MONOTONIC: Final = 1
# Limits
UNREGISTERED_WAIT_SLICE_S: Final = 0.005  # no waiter file: the writer never wakes us, poll
MAX_SEGMENTS: Final = FUTEX_WAITV_MAX - 1  # one word is the hub's own
IDLE_SLEEP_S: Final = 3600.0  # nothing to wait for: sleep until a wait is added

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _FutexWaitv(ctypes.Structure):
    _fields_ = [("val", ctypes.c_uint64), ("uaddr", ctypes.c_uint64), ("flags", ctypes.c_uint32), ("reserved", ctypes.c_uint32)]


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _op_add(delta: int) -> int:
    """FUTEX_WAKE_OP's encoded ``*uaddr2 += delta`` (oparg: 12-bit signed), comparison never true."""
    return (FUTEX_OP_ADD << 28) | ((delta & 0xFFF) << 12)


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


@dataclass(frozen=True)
class _Word:
    """A segment's notify word as the hub sleeps on it (addresses only: no buffer stays exported, so the
    reader can close its mapping at any time; a word unmapped meanwhile makes the kernel answer EFAULT)."""

    address: int
    waiters_address: int  # the waiter counter, 0 when the segment has no usable waiter file


class _Hub:
    """The process's single waiter thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waits: list[_Wait] = []
        self._own = (ctypes.c_uint32 * 1)()  # bumped to wake the thread
        self._words: dict[int, _Word] = {}  # id(reader) -> its word, for the readers waited on
        self._sleeping: dict[int, int] = {}  # id(reader) -> the word's value the hub sleeps on (or is about to)
        self._sleeping_deadline = 0.0
        self._handed = False  # results were handed to loops in this round
        self._thread = threading.Thread(target=self._run, name="ldc-aio-hub", daemon=True)
        self._thread.start()

    def add(self, wait: _Wait) -> None:
        key = id(wait.reader)
        with self._lock:
            if key not in self._words and len(self._words) >= MAX_SEGMENTS:
                raise RuntimeError(f"asyncio waits on more than {MAX_SEGMENTS} segments at once")
            self._words.setdefault(key, _word_of(wait.reader))
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
        registered: list[int] = []
        while True:
            own = self._own[0]
            with self._lock:
                # each word is loaded before the slots are checked: a publish after the check moves the word,
                # and the kernel then returns at once instead of sleeping (section 11's order)
                values = {id(w.reader): _notify_value(w.reader) for w in self._waits}
                self._waits = self._settle(self._waits)
                live = {id(w.reader) for w in self._waits}
                self._words = {key: word for key, word in self._words.items() if key in live}
                words = [(self._words[key], value) for key in live if (value := values[key]) is not None]
                deadline = min((w.deadline for w in self._waits), default=math.inf)
                self._sleeping = {key: value for key in live if (value := values[key]) is not None}
                self._sleeping_deadline = deadline
                handed = self._handed
                self._handed = False
            # unregistered only now: the results above reach their loops first (each syscall here lets a
            # loop take the GIL); staying registered a little longer costs the writer a wake, nothing more
            for address in registered:
                _counter_add(address, -1)
            if handed:
                time.sleep(0)  # let the loops that were just handed results take the GIL before we re-arm
            registered = self._sleep(own, words, deadline)

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

    def _sleep(self, own: int, words: list[tuple[_Word, int]], deadline: float) -> list[int]:
        """futex_waitv on the hub's own word and each segment's notify word, registered as a waiter; returns
        the waiter counters it registered in (the caller unregisters once it has handed results over)."""
        remaining = min(IDLE_SLEEP_S, max(0.0, deadline - time.monotonic()))
        if any(word.waiters_address == 0 for word, _ in words):
            remaining = min(remaining, UNREGISTERED_WAIT_SLICE_S)
        vector = (_FutexWaitv * (len(words) + 1))()
        vector[0] = _FutexWaitv(own, ctypes.addressof(self._own), FUTEX2_SIZE_U32 | FUTEX_PRIVATE_FLAG, 0)
        for i, (word, value) in enumerate(words, 1):
            vector[i] = _FutexWaitv(value, word.address, FUTEX2_SIZE_U32, 0)  # shared: the word is in a file mapping
        registered = [word.waiters_address for word, _ in words if word.waiters_address]
        for address in registered:
            _counter_add(address, 1)
        absolute = time.clock_gettime(time.CLOCK_MONOTONIC) + remaining
        timeout = _Timespec(int(absolute), int((absolute % 1) * 1e9))
        _libc.syscall(SYS_FUTEX_WAITV, vector, len(words) + 1, 0, ctypes.byref(timeout), CLOCK_MONOTONIC)
        return registered


def _notify_value(reader: Reader) -> int | None:
    try:
        return int(reader._seg.load_u32(reader._notify_off))
    except AttributeError:  # closed: its waits are answered with the error by _settle
        return None


def _counter_add(address: int, delta: int) -> None:
    """Atomic ``*address += delta`` on a shared u32, done by the kernel (FUTEX_WAKE_OP waking nobody)."""
    dummy = ctypes.c_uint32(0)
    # ctypes passes a bare int as a C int: every address goes as a pointer
    _libc.syscall(SYS_FUTEX, ctypes.byref(dummy), FUTEX_WAKE_OP, 0, ctypes.c_void_p(0), ctypes.c_void_p(address),
                  ctypes.c_uint(_op_add(delta)))  # fmt: skip


def _word_of(reader: Reader) -> _Word:
    """The addresses of the reader's notify word and waiter counter (the views are dropped at once)."""
    base = int(np.frombuffer(reader._mm, dtype=np.uint8, count=1).ctypes.data)
    waiters = reader._waiters_mm
    counter = int(np.frombuffer(waiters, dtype=np.uint32, count=1).ctypes.data) if waiters is not None else 0
    return _Word(base + reader._notify_off, counter)


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
