"""Child processes for the shared-memory tests (run as ``python tests/shm_proc.py MODE GROUP ...``).

Modes:
  hold GROUP SYMBOL          writer: create, publish one book, print "ready", sleep until killed
  midwrite GROUP SYMBOL      writer: publish, then leave the slot's seq odd (as if killed inside a
                             write), print "odd", sleep until killed
  torture-writer GROUP SECONDS   publish checksummed payloads as fast as possible until SIGTERM
                             (or SECONDS), then print JSON {"publishes"}
  torture-reader GROUP SECONDS MODE   MODE "validated" (Reader.read_into) or "raw" (no seqlock):
                             verify every copy, print JSON {"reads", "torn", "contended"}
  sleep-reader GROUP SYMBOL  print "waiting", block in wait_for_update
  beat GROUP SYMBOL HB_MS STALE_MS   writer with that heartbeat interval and stale limit: publish one
                             book, print "ready", heartbeat every HB_MS / 2 until killed
  zygote GROUP SYMBOL        fork writers on command, so a kill -9 -> restart cycle costs no
                             interpreter start: stdin "start K DEPTH [legacy]" forks a writer of that
                             depth publishing update_id K * 10^9 + n (it prints "ready K"), "kill" SIGKILLs it and
                             prints "reaped K T" (T: CLOCK_MONOTONIC ns after waitpid), "quit".
                             "legacy" makes the new writer first look alive on its predecessor's
                             file, as a 1.x in-place takeover did (the negative control)
  spin GROUP SYMBOL MS [--attach-each]   Python reader spinning for MS ms (or until the segment
                             says STOPPED), output as readers/rust ldc-read spin; with
                             --attach-each every read is made by a fresh Reader
  churn GROUP                writer: slot 0 alternates between markets AAAUSDT (book around 100)
                             and BBBUSDT (book around 200), add / publish / remove, until killed
The payload invariant of the torture modes is payload_errors() below.
"""

from __future__ import annotations

import collections
import functools
import json
import mmap
import os
import signal
import sys
import time

import numpy as np
import numpy.typing as npt

from ldc.errors import LayoutError, LdcError, ReadContention, WriterDead
from ldc.shm import _seqlock
from ldc.shm.files import ofd_lock
from ldc.shm.layout import HEADER, SLOT_HEADER, State, Status, segment_name, segment_path
from ldc.shm.reader import Reader
from ldc.shm.segment import read_geometry
from ldc.shm.writer import SegmentWriter

TORTURE_DEPTH = 20
RAW_EXTRA_S = 15.0  # the negative control may read this much longer to catch its first torn copy
TORTURE_SYMBOL = "TORTUREUSDT"


def payload(k: int, depth: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], int, int]:
    """Publish number k: every value derives from k, and the counts vary so clamping is exercised."""
    steps = np.arange(depth, dtype=np.float64)
    bids = np.column_stack([k - steps, k * 2.0 + steps])
    asks = np.column_stack([k + 1 + steps, k * 3.0 + steps])
    return np.ascontiguousarray(bids), np.ascontiguousarray(asks), 1 + k % depth, depth - k % depth


PAYLOADS = 1000  # distinct payloads the torture writer cycles through (update_id = index)


@functools.lru_cache(maxsize=PAYLOADS)
def _expected(k: int, depth: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], int, int]:
    return payload(k, depth)


def payload_errors(update_id: int, event_time_ms: int, n_bids: int, n_asks: int,
                   bids: npt.NDArray[np.float64], asks: npt.NDArray[np.float64], depth: int) -> int:
    """0 when a copy is exactly publish number ``update_id``; otherwise the count of wrong fields."""
    if not 0 <= update_id < PAYLOADS:
        return 1
    eb, ea, nb, na = _expected(update_id, depth)
    k = update_id
    errors = int(event_time_ms != k * 7) + int(n_bids != nb) + int(n_asks != na)
    if n_bids == nb and n_asks == na:
        errors += int(not np.array_equal(bids[:nb], eb[:nb])) + int(not np.array_equal(asks[:na], ea[:na]))
    return errors


def _writer_hold(group: str, symbol: str, leave_odd: bool) -> None:
    w = SegmentWriter(group, depth=TORTURE_DEPTH, capacity=4)
    slot = w.add_market(symbol)
    bids, asks, _, _ = payload(10, TORTURE_DEPTH)
    w.publish(slot, update_id=10, event_time_ms=70, recv_time_ns=1, status=Status.SYNCED,
              bids=bids, asks=asks, n_bids=TORTURE_DEPTH, n_asks=TORTURE_DEPTH)
    if leave_odd:
        off = w.geometry.slot_offset(slot) + SLOT_HEADER.offset("seq")
        w._seg.store_u64(off, w._seg.load_u64(off) + 1)  # what a writer killed inside write_begin leaves
        print("odd", flush=True)
    else:
        print("ready", flush=True)
    while True:
        time.sleep(1)


def torture_writer(group: str, seconds: float) -> None:
    stop: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    with SegmentWriter(group, depth=TORTURE_DEPTH, capacity=4) as w:
        slot = w.add_market(TORTURE_SYMBOL)
        payloads = [payload(k, TORTURE_DEPTH) for k in range(PAYLOADS)]
        publish = w.publish
        print("ready", flush=True)
        deadline = time.monotonic() + seconds
        k = 0
        while not stop and time.monotonic() < deadline:
            w.heartbeat()  # readers flag a writer whose heartbeat is older than stale_after_ms STALE
            for j in range(PAYLOADS):
                bids, asks, nb, na = payloads[j]
                # update_id is the payload index, so payloads are precomputed on both sides
                publish(slot, update_id=j, event_time_ms=j * 7, recv_time_ns=k, status=Status.SYNCED,
                        bids=bids, asks=asks, n_bids=nb, n_asks=na)
                k += 1
        print(json.dumps({"publishes": k}), flush=True)


def torture_reader(group: str, seconds: float, mode: str) -> None:
    reads = torn = contended = 0
    with Reader(group, attach_timeout_s=10) as r:
        deadline = time.monotonic() + seconds
        if mode == "validated":
            buf = r.new_buffer()
            while time.monotonic() < deadline:
                for _ in range(200):
                    try:
                        r.read_into(TORTURE_SYMBOL, buf)
                    except ReadContention:
                        contended += 1
                        continue
                    reads += 1
                    errors = payload_errors(buf.update_id, buf.event_time_ms, buf.n_bids, buf.n_asks,
                                            buf.bids, buf.asks, TORTURE_DEPTH)
                    # rows beyond the counts must be zero, even after discarded (torn) copies wrote them
                    errors += bool(buf.bids[buf.n_bids:].any() or buf.asks[buf.n_asks:].any())
                    torn += errors > 0
        else:
            reads, torn = _raw_reads(r, deadline)
    print(json.dumps({"reads": reads, "torn": torn, "contended": contended}), flush=True)


def _raw_reads(r: Reader, deadline: float) -> tuple[int, int]:
    """The negative control: copy the slot with no seqlock at all and apply the same check."""
    g = r.geometry
    slot = r._slots.get(TORTURE_SYMBOL) or r._resolve(TORTURE_SYMBOL)
    base = g.slot_offset(slot[0])
    mm: mmap.mmap = r._mm
    off = {name: SLOT_HEADER.offset(name) for name in ("update_id", "event_time_ms", "n_bids", "n_asks")}
    reads = torn = 0
    # a loaded machine may rarely run writer and reader at once: keep going until one tear shows
    hard_deadline = deadline + RAW_EXTRA_S
    while time.monotonic() < deadline or (torn == 0 and time.monotonic() < hard_deadline):
        for _ in range(200):
            raw = mm[base : base + g.slot_size]
            hdr = np.frombuffer(raw, np.int64, 16)
            counts = np.frombuffer(raw, np.uint32, 32)
            nb = min(int(counts[off["n_bids"] // 4]), g.depth)
            na = min(int(counts[off["n_asks"] // 4]), g.depth)
            bids = np.frombuffer(raw, np.float64, g.depth * 2, g.bids_offset).reshape(g.depth, 2)
            asks = np.frombuffer(raw, np.float64, g.depth * 2, g.asks_offset).reshape(g.depth, 2)
            reads += 1
            torn += payload_errors(int(hdr[off["update_id"] // 8]), int(hdr[off["event_time_ms"] // 8]),
                                   nb, na, bids, asks, g.depth) > 0
    return reads, torn


def sleep_reader(group: str, symbol: str) -> None:
    with Reader(group) as r:
        print("waiting", flush=True)
        woke = r.wait_for_update(symbol, timeout=30)
        print(json.dumps({"woke": woke}), flush=True)


CHURN_DEPTH = 20


def churn_book(mid: float) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    steps = np.arange(CHURN_DEPTH, dtype=np.float64)
    bids = np.column_stack([mid - 0.5 * (steps + 1), 1.0 + steps])
    asks = np.column_stack([mid + 0.5 * (steps + 1), 1.0 + steps])
    return np.ascontiguousarray(bids), np.ascontiguousarray(asks)


def churn(group: str) -> None:
    books = [("AAAUSDT", *churn_book(100.0)), ("BBBUSDT", *churn_book(200.0))]
    with SegmentWriter(group, depth=CHURN_DEPTH, capacity=1) as w:
        print("ready", flush=True)
        while True:
            for symbol, bids, asks in books:
                slot = w.add_market(symbol)
                w.publish(slot, update_id=1, event_time_ms=1, recv_time_ns=1, status=Status.SYNCED,
                          bids=bids, asks=asks, n_bids=CHURN_DEPTH, n_asks=CHURN_DEPTH)
                w.remove_market(symbol)


def beat(group: str, symbol: str, heartbeat_ms: int, stale_ms: int) -> None:
    w = SegmentWriter(group, depth=TORTURE_DEPTH, capacity=4, heartbeat_interval_ms=heartbeat_ms,
                      stale_after_ms=stale_ms, markets=[symbol])
    bids, asks, _, _ = payload(10, TORTURE_DEPTH)
    w.publish(w.slot(symbol), update_id=10, event_time_ms=70, recv_time_ns=1, status=Status.SYNCED,
              bids=bids, asks=asks, n_bids=TORTURE_DEPTH, n_asks=TORTURE_DEPTH)
    print("ready", flush=True)
    while True:
        w.heartbeat()
        time.sleep(heartbeat_ms / 2000)


CYCLE = 10**9  # update_id // CYCLE names the writer generation (tests/test_shm_takeover.py)
SPIN_TAIL = 256
LEGACY_WINDOW_S = 0.2  # how long the negative control's successor looks alive on the old file (a
# loaded 2-core machine may not run every reader within a shorter window)
PUBLISH_PAUSE_S = 0.0002  # the zygote's writers publish about 5,000 times a second, not flat out


def _zygote_writer(group: str, symbol: str, cycle: int, depth: int, legacy: bool) -> None:
    if legacy:
        _look_alive_on_the_old_file(group)
    w = SegmentWriter(group, depth=depth, capacity=4, markets=[symbol])
    slot = w.slot(symbol)
    bids, asks, _, _ = payload(10, depth)
    publish = w.publish
    n = 0
    while True:
        publish(slot, update_id=cycle * CYCLE + n, event_time_ms=n, recv_time_ns=n, status=Status.SYNCED,
                bids=bids, asks=asks, n_bids=depth, n_asks=depth)
        if n == 0:
            print(f"ready {cycle}", flush=True)
        n += 1
        w.heartbeat()
        time.sleep(PUBLISH_PAUSE_S)


def _look_alive_on_the_old_file(group: str) -> None:
    """What a 1.x successor did: take the old file's liveness signals first and mark its data dead
    only later. Readers following LAYOUT.md then accept the dead writer's books for the window."""
    fd = os.open(segment_path(group), os.O_RDWR)
    try:
        ofd_lock(fd, write=True)
        geometry = read_geometry(fd, segment_name(group))
        mm = mmap.mmap(fd, geometry.segment_size)
        seg = _seqlock.Segment(mm, geometry.c_layout(), writable=True)
        seg.hold_owner_lock()
        time.sleep(LEGACY_WINDOW_S)
        seg.close()
        mm.close()
    finally:
        os.close(fd)


def zygote(group: str, symbol: str) -> None:
    child: tuple[int, int] | None = None  # (cycle, pid)
    for line in sys.stdin:
        words = line.split()
        if words[0] == "start":
            cycle = int(words[1])
            pid = os.fork()
            if pid == 0:
                try:
                    _zygote_writer(group, symbol, cycle, int(words[2]), legacy=words[3:] == ["legacy"])
                finally:
                    os._exit(1)
            child = (cycle, pid)
        elif words[0] == "kill" and child is not None:
            os.kill(child[1], signal.SIGKILL)
            os.waitpid(child[1], 0)
            print(f"reaped {child[0]} {time.monotonic_ns()}", flush=True)
            child = None
        elif words[0] == "quit":
            break
    if child is not None:
        os.kill(child[1], signal.SIGKILL)
        os.waitpid(child[1], 0)


def spin(group: str, symbol: str, ms: int, attach_each: bool) -> None:
    reads = accepted = 0
    cycles: dict[int, tuple[list[int], collections.deque[int]]] = {}
    r = Reader(group, attach_timeout_s=10)
    try:
        buf = r.new_buffer()
        end = time.monotonic_ns() + ms * 1_000_000
        while (t0 := time.monotonic_ns()) < end:
            reads += 1
            try:
                if attach_each:  # a reader attaching now, perhaps in the middle of a takeover
                    fresh = Reader(group)
                    r.close()
                    r, buf = fresh, fresh.new_buffer()
                r.read_into(symbol, buf)
            except WriterDead:
                if r._seg.load_u32(HEADER.offset("state")) == State.STOPPED:
                    break  # the test's last writer stopped cleanly: the run is over
                continue
            except LayoutError:  # the writer restarted at another depth: our buffer has the old one
                buf = r.new_buffer()
                continue
            except LdcError:
                if reads % 64 == 0:
                    os.sched_yield()  # a writer restarting on a loaded host needs the CPU
                continue
            accepted += 1
            count, tail = cycles.setdefault(buf.update_id // CYCLE, ([0], collections.deque(maxlen=SPIN_TAIL)))
            count[0] += 1
            tail.append(t0)
    finally:
        r.close()
    out = {str(c): {"count": count[0], "tail": list(tail)} for c, (count, tail) in sorted(cycles.items())}
    print(json.dumps({"reads": reads, "accepted": accepted, "cycles": out}), flush=True)


def main(argv: list[str]) -> None:
    mode, group = argv[0], argv[1]
    if mode in ("hold", "midwrite"):
        _writer_hold(group, argv[2], leave_odd=mode == "midwrite")
    elif mode == "torture-writer":
        torture_writer(group, float(argv[2]))
    elif mode == "torture-reader":
        torture_reader(group, float(argv[2]), argv[3])
    elif mode == "sleep-reader":
        sleep_reader(group, argv[2])
    elif mode == "churn":
        churn(group)
    elif mode == "beat":
        beat(group, argv[2], int(argv[3]), int(argv[4]))
    elif mode == "zygote":
        zygote(group, argv[2])
    elif mode == "spin":
        spin(group, argv[2], int(argv[3]), attach_each=argv[4:] == ["--attach-each"])
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
