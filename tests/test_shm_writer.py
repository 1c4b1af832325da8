"""SegmentWriter: creation, exclusivity, takeover and repair, markets, status, counters, publish
checks. Follows docs/LAYOUT.md ("Writer lifecycle", "Seqlock protocol")."""

from __future__ import annotations

import fcntl
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from shm_helpers import book, group_fixture

from ldc.errors import MarketNotFound, SegmentError, WriterDead
from ldc.shm.layout import HEADER, MAGIC, SLOT_HEADER, Counter, State, Status, segment_path
from ldc.shm.reader import Reader
from ldc.shm.writer import RESTART_MESSAGE, TORN_MESSAGE, SegmentWriter

PROC = str(Path(__file__).with_name("shm_proc.py"))
DEPTH = 20


@pytest.fixture
def group() -> Iterator[str]:
    yield from group_fixture()


def publish_book(w: SegmentWriter, slot: int, update_id: int = 1, status: int = Status.SYNCED) -> None:
    bids, asks = book(DEPTH)
    w.publish(slot, update_id=update_id, event_time_ms=1_700_000_000_000, recv_time_ns=5, status=status,
              bids=bids, asks=asks, n_bids=DEPTH, n_asks=DEPTH)


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, PROC, *args], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def kill(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait(timeout=30)
    if proc.stdout:
        proc.stdout.close()


def test_create_sets_mode_0640_and_writes_magic_and_running_state(group: str) -> None:
    with SegmentWriter(group, depth=DEPTH, capacity=4, exchange="binance.com"):
        st = os.stat(segment_path(group))
        assert stat.S_IMODE(st.st_mode) == 0o640
        raw = Path(segment_path(group)).read_bytes()
        assert raw[:8] == b"LDCDEPTH"
        assert int.from_bytes(raw[:8], "little") == MAGIC
        assert int.from_bytes(raw[HEADER.offset("state"):][:4], "little") == State.RUNNING
        assert int.from_bytes(raw[HEADER.offset("writer_pid"):][:4], "little") == os.getpid()


def test_second_writer_is_refused_while_the_first_lives(group: str) -> None:
    with SegmentWriter(group, depth=DEPTH, capacity=4):
        with pytest.raises(SegmentError, match=rf"segment /ldc-{group} has a live writer \(pid {os.getpid()}\)"):
            SegmentWriter(group, depth=DEPTH, capacity=4)


def test_close_marks_stopped_and_readers_get_writer_dead(group: str) -> None:
    w = SegmentWriter(group, depth=DEPTH, capacity=4)
    slot = w.add_market("BTCUSDT")
    publish_book(w, slot)
    with Reader(group) as r:
        assert r.writer_alive()
        w.close()
        assert not r.writer_alive()
        assert r.info().state == State.STOPPED
        with pytest.raises(WriterDead, match=rf"writer of /ldc-{group} \(pid \d+\) stopped"):
            r.snapshot("BTCUSDT")
        last = r.snapshot("BTCUSDT", allow_out_of_sync=True)
        assert last.update_id == 1 and last.status == Status.SYNCED | Status.STALE


def test_takeover_after_clean_stop_keeps_markets_and_marks_them_stale(group: str) -> None:
    with SegmentWriter(group, depth=DEPTH, capacity=4) as w:
        slot = w.add_market("ETHUSDT")
        publish_book(w, slot, update_id=42)
    with SegmentWriter(group, depth=DEPTH, capacity=4) as w2, Reader(group) as r:
        assert w2.took_over
        assert w2.markets() == {"ETHUSDT": slot}
        assert w2.add_market("ETHUSDT") == slot
        st = r.status("ETHUSDT")
        assert st.status == Status.STALE and st.message == RESTART_MESSAGE
        assert st.update_id == 42 and st.n_bids == DEPTH  # last book kept, flagged stale
        assert r.info().takeovers == 1
        publish_book(w2, slot, update_id=43)
        assert r.snapshot("ETHUSDT").update_id == 43


def test_takeover_after_sigkill_mid_write_repairs_the_odd_slot(group: str) -> None:
    proc = spawn("midwrite", group, "BNBUSDT")
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "odd"
        with Reader(group) as r:  # attached before the kill, as a live consumer would be
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            with pytest.raises(WriterDead, match="is dead: no process holds the segment lock"):
                r.snapshot("BNBUSDT")
            with SegmentWriter(group, depth=DEPTH, capacity=4) as w:
                s = w.slot("BNBUSDT")
                seq = w._seg.load_u64(w.geometry.slot_offset(s) + SLOT_HEADER.offset("seq"))
                assert seq % 2 == 0
                st = r.status("BNBUSDT")
                assert st.status == Status.STALE and st.message == TORN_MESSAGE
                assert (st.n_bids, st.n_asks) == (0, 0)  # torn levels are discarded, not shown
                publish_book(w, s, update_id=11)
                assert r.snapshot("BNBUSDT").update_id == 11
    finally:
        kill(proc)


def test_takeover_repairs_a_directory_left_mid_change(group: str) -> None:
    w = SegmentWriter(group, depth=DEPTH, capacity=4)
    publish_book(w, w.add_market("BTCUSDT"), update_id=3)
    dir_seq = HEADER.offset("dir_seq")
    w._seg.store_u64(dir_seq, w._seg.load_u64(dir_seq) + 1)  # as if killed inside write_dir_entry
    w.close()
    with Reader(group) as r:
        with pytest.raises(WriterDead, match=r"stopped; the directory was left mid-change"):
            r.markets()
        with SegmentWriter(group, depth=DEPTH, capacity=4) as w2:
            assert w2._seg.load_u64(dir_seq) % 2 == 0
            assert r.markets() == ["BTCUSDT"]
            assert r.status("BTCUSDT").update_id == 3


def test_takeover_drops_entries_that_disagree_with_their_slot(group: str) -> None:
    with SegmentWriter(group, depth=DEPTH, capacity=4) as w:
        for symbol in ("AAAUSDT", "BBBUSDT", "CCCUSDT"):
            publish_book(w, w.add_market(symbol))
        w._seg.reset_slot(0, 999, 0, b"", False)  # slot 0 now claims a generation its entry lacks
    with SegmentWriter(group, depth=DEPTH, capacity=4) as w2, Reader(group) as r:
        assert w2.markets() == {"BBBUSDT": 1, "CCCUSDT": 2}
        assert r.markets() == ["BBBUSDT", "CCCUSDT"]
        assert r.info().market_count == 2
        assert w2.add_market("DDDUSDT") == 0


def test_takeover_with_other_geometry_replaces_the_segment(group: str) -> None:
    with SegmentWriter(group, depth=DEPTH, capacity=4) as w:
        publish_book(w, w.add_market("BTCUSDT"))
    old_inode = os.stat(segment_path(group)).st_ino
    with Reader(group) as r, SegmentWriter(group, depth=10, capacity=8) as w2:
        assert w2.took_over
        assert os.stat(segment_path(group)).st_ino != old_inode
        slot = w2.add_market("BTCUSDT")
        bids, asks = book(10)
        w2.publish(slot, update_id=2, event_time_ms=1, recv_time_ns=1, status=Status.SYNCED,
                   bids=bids, asks=asks, n_bids=10, n_asks=10)
        snap = r.snapshot("BTCUSDT")  # the reader follows the replacement on its next read
        assert snap.update_id == 2 and r.depth == 10 and len(snap.bids) == 10


def test_add_and_remove_markets_reuse_slots_with_new_generations(group: str) -> None:
    with SegmentWriter(group, depth=DEPTH, capacity=2) as w, Reader(group) as r:
        a = w.add_market("AAAUSDT")
        b = w.add_market("BBBUSDT")
        assert (a, b) == (0, 1)
        with pytest.raises(SegmentError, match=rf"segment /ldc-{group} is full: capacity 2 markets"):
            w.add_market("CCCUSDT")
        publish_book(w, a)
        assert r.snapshot("AAAUSDT").update_id == 1
        w.remove_market("AAAUSDT")
        with pytest.raises(MarketNotFound, match="market 'AAAUSDT' is not in segment"):
            r.snapshot("AAAUSDT")
        assert w.add_market("CCCUSDT") == a
        assert r.markets() == ["CCCUSDT", "BBBUSDT"]
        assert r.info().market_count == 2
        with pytest.raises(MarketNotFound, match="market 'ZZZ' is not in segment"):
            w.remove_market("ZZZ")


def test_symbol_must_fit_the_directory(group: str) -> None:
    with SegmentWriter(group, depth=DEPTH, capacity=2) as w:
        with pytest.raises(ValueError, match="symbol must be 1..39 UTF-8 bytes without NUL, got 'X{40}'"):
            w.add_market("X" * 40)


def test_set_status_truncates_the_message_on_a_character_boundary(group: str) -> None:
    with SegmentWriter(group, depth=DEPTH, capacity=2) as w, Reader(group) as r:
        slot = w.add_market("BADUSDT")
        w.set_status(slot, Status.ERROR, "unknown symbol: -1121 Invalid symbol.")
        st = r.status("BADUSDT")
        assert st.status == Status.ERROR and st.message == "unknown symbol: -1121 Invalid symbol."
        assert not st.in_sync
        w.set_status(slot, Status.ERROR, "é" * 100)  # 200 bytes, 127 fit: 63 whole characters
        assert r.status("BADUSDT").message == "é" * 63


def test_counters_accumulate_and_publish_counts_updates(group: str) -> None:
    with SegmentWriter(group, depth=DEPTH, capacity=2) as w, Reader(group) as r:
        slot = w.add_market("BTCUSDT")
        publish_book(w, slot)
        w.publish(slot, update_id=2, event_time_ms=2, recv_time_ns=2, status=Status.SYNCED, copy_levels=False)
        w.bump(slot, Counter.GAPS)
        w.bump(slot, Counter.AUDIT_MISMATCHES, 7)
        assert r.status("BTCUSDT").counters == {
            "updates": 2, "resyncs": 0, "gaps": 1, "ignored": 0, "snapshots": 0, "audit_mismatches": 7,
        }


def test_publish_without_copy_advances_ids_and_keeps_levels(group: str) -> None:
    with SegmentWriter(group, depth=DEPTH, capacity=2) as w, Reader(group) as r:
        slot = w.add_market("BTCUSDT")
        publish_book(w, slot, update_id=1)
        w.publish(slot, update_id=9, event_time_ms=99, recv_time_ns=999, status=Status.SYNCED, copy_levels=False)
        snap = r.snapshot("BTCUSDT")
        bids, asks = book(DEPTH)
        assert (snap.update_id, snap.event_time_ms, snap.recv_time_ns) == (9, 99, 999)
        assert np.array_equal(snap.bids, bids) and np.array_equal(snap.asks, asks)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"n_bids": 21}, ValueError, "level counts must be 0..20, got n_bids 21 n_asks 20"),
        ({"bids": np.zeros((20, 2), dtype=np.float32)}, ValueError, "bids must be a C-contiguous"),
        ({"asks": np.zeros((5, 2))}, ValueError, "asks must be a C-contiguous"),
        ({"bids": np.zeros((2, 20)).T}, ValueError, "ndarray is not C-contiguous"),
        ({"nope": 1}, TypeError, "publish got an unexpected keyword 'nope'"),
    ],
)
def test_publish_rejects_bad_arguments(group: str, kwargs: dict[str, object], error: type, message: str) -> None:
    bids, asks = book(DEPTH)
    args: dict[str, object] = dict(update_id=1, event_time_ms=1, recv_time_ns=1, status=1, bids=bids, asks=asks,
                                   n_bids=DEPTH, n_asks=DEPTH)
    args.update(kwargs)
    with SegmentWriter(group, depth=DEPTH, capacity=2) as w:
        slot = w.add_market("BTCUSDT")
        with pytest.raises(error, match=message):
            w.publish(slot, **args)


def test_publish_to_a_free_slot_or_out_of_range_is_refused(group: str) -> None:
    bids, asks = book(DEPTH)
    with SegmentWriter(group, depth=DEPTH, capacity=2) as w:
        with pytest.raises(ValueError, match="slot 1 holds no market"):
            w.publish(1, update_id=1, event_time_ms=1, recv_time_ns=1, status=1, bids=bids, asks=asks,
                      n_bids=1, n_asks=1)
        with pytest.raises(IndexError, match="slot 2 out of range 0..1"):
            w.publish(2, update_id=1, event_time_ms=1, recv_time_ns=1, status=1, copy_levels=False)
        with pytest.raises(TypeError, match="publish missing keyword bids"):
            w.publish(0, update_id=1, event_time_ms=1, recv_time_ns=1, status=1)


def test_heartbeat_advances_the_header_clock(group: str) -> None:
    with SegmentWriter(group, depth=DEPTH, capacity=2) as w, Reader(group) as r:
        before = r.info().heartbeat_ns
        w.heartbeat()
        after = r.info().heartbeat_ns
        assert after >= before > 0


def test_bad_group_names_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"group name must match \[A-Za-z0-9_-\]\{1,63\}, got 'a/b'"):
        SegmentWriter("a/b")


def test_a_market_no_longer_configured_does_not_survive_a_restart(group: str) -> None:
    """Issue 14 item 6: only the configured markets are carried into the new file."""
    with SegmentWriter(group, depth=DEPTH, capacity=4, markets=["AAAUSDT", "BBBUSDT"]) as w:
        publish_book(w, w.slot("AAAUSDT"), update_id=5)
        publish_book(w, w.slot("BBBUSDT"), update_id=6)
    with SegmentWriter(group, depth=DEPTH, capacity=4, markets=["AAAUSDT"]) as w2, Reader(group) as r:
        assert w2.markets() == {"AAAUSDT": 0}
        assert r.markets() == ["AAAUSDT"] and r.info().market_count == 1
        with pytest.raises(MarketNotFound, match="market 'BBBUSDT' is not in segment"):
            r.status("BBBUSDT")
        kept = r.status("AAAUSDT")
        assert (kept.update_id, kept.status, kept.message) == (5, Status.STALE, RESTART_MESSAGE)


def test_a_replacing_file_has_every_configured_market_before_it_has_its_name(group: str) -> None:
    """Issue 13 item 4: a reader that follows the new file at once finds every configured market
    (a new one with status 0, "no data yet"), never "not found" for a market not added yet."""
    with SegmentWriter(group, depth=DEPTH, capacity=4, markets=["AAAUSDT"]) as w:
        publish_book(w, w.slot("AAAUSDT"), update_id=5)
    with Reader(group) as r:
        with SegmentWriter(group, depth=DEPTH + 1, capacity=4, markets=["AAAUSDT", "NEWUSDT"]):
            assert r.markets() == ["AAAUSDT", "NEWUSDT"]  # followed at once, both there
            fresh = r.status("NEWUSDT")
            assert (fresh.status, fresh.update_id) == (0, -1)
            moved = r.status("AAAUSDT")  # another depth: the symbol is kept, its levels are not
            assert moved.status == Status.STALE and moved.message == f"{RESTART_MESSAGE} (depth {DEPTH} -> {DEPTH + 1})"


def test_the_writer_never_shrinks_a_file_it_replaces(group: str) -> None:
    """Issue 13 item 8: a restart at a smaller depth builds a new file; a reader's old mapping stays whole."""
    with SegmentWriter(group, depth=DEPTH, capacity=4, markets=["AAAUSDT"]) as w:
        publish_book(w, w.slot("AAAUSDT"), update_id=5)
    old_size = os.path.getsize(segment_path(group))
    with Reader(group) as r:
        fd = os.open(segment_path(group), os.O_RDONLY)
        try:
            with SegmentWriter(group, depth=1, capacity=1, markets=["AAAUSDT"]):
                assert os.fstat(fd).st_size == old_size  # the file the reader maps kept its size
                assert os.path.getsize(segment_path(group)) < old_size
            assert r.snapshot("AAAUSDT", allow_out_of_sync=True).update_id == -1  # followed, no SIGBUS
        finally:
            os.close(fd)


def test_a_segment_too_big_for_a_java_reader_is_refused(group: str) -> None:
    with pytest.raises(ValueError, match=r"depth 5000 x capacity 20000 makes a \d+-byte segment; at most 2147483647 bytes"):
        SegmentWriter(group, depth=5000, capacity=20000)
    assert not os.path.exists(segment_path(group))


def test_a_live_layout_1_writer_is_never_replaced(group: str) -> None:
    """During an upgrade a 1.x feeder may still run: it holds flock(LOCK_EX) on the segment (its
    liveness lock), which the 2.0 probe does not see; the new writer must refuse, not replace it."""
    SegmentWriter(group, depth=DEPTH, capacity=4).close()
    fd = os.open(segment_path(group), os.O_RDWR)
    try:
        os.pwrite(fd, (1).to_bytes(2, "little"), 8)  # version_major 1: a 1.x writer's file (a 2.x one is never refused for a flock)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(SegmentError, match=rf"{segment_path(group)} has a live layout 1.x writer \(pid \d+\): stop it first"):
            SegmentWriter(group, depth=DEPTH, capacity=4)
        assert os.stat(segment_path(group)).st_ino == os.fstat(fd).st_ino  # not replaced
    finally:
        os.close(fd)


def _futex_wait_u32(mm: object, offset: int, expected: int, timeout_s: float) -> int:
    """FUTEX_WAIT (shared) on the u32 at offset of a writable mapping; 0 woken, else the errno."""
    import ctypes
    import platform

    sys_futex = {"x86_64": 202, "aarch64": 98}[platform.machine()]
    word = ctypes.c_uint32.from_buffer(mm, offset)  # type: ignore[arg-type]
    libc = ctypes.CDLL(None, use_errno=True)
    ts = (ctypes.c_long * 2)(int(timeout_s), int(timeout_s % 1 * 1e9))
    rc = libc.syscall(sys_futex, ctypes.byref(word), 0, ctypes.c_uint32(expected), ts, None, 0)  # FUTEX_WAIT
    del word
    return 0 if rc == 0 else ctypes.get_errno()


def test_notify_paced_wakes_its_sleepers_at_most_once_a_window(group: str) -> None:
    """LAYOUT.md section 11 (2.2): every batch bumps notify; notify_paced moves, and wakes a sleeper, only
    for a batch notify_paced_us or more after its last move (the first batch always); a writer with 0
    never moves it."""
    import errno
    import mmap

    pace_s = 0.1
    paced_at, n_at = HEADER.offset("notify_paced"), HEADER.offset("notify")
    with SegmentWriter(group, depth=DEPTH, capacity=4, notify_paced_us=int(pace_s * 1e6)) as w:
        fd = os.open(segment_path(group), os.O_RDWR)
        mm = mmap.mmap(fd, os.fstat(fd).st_size)
        os.close(fd)
        u32 = lambda off: int.from_bytes(mm[off:off + 4], "little")  # noqa: E731
        assert u32(HEADER.offset("notify_paced_us")) == 100_000
        with Reader(group) as r:
            assert r.info().notify_paced_us == 100_000
        before = u32(paced_at)
        woken: list[tuple[int, float]] = []
        sleeper = threading.Thread(target=lambda: woken.append((_futex_wait_u32(mm, paced_at, before, 10), time.monotonic())))
        sleeper.start()
        time.sleep(0.2)  # asleep on the word by now (else its wait sees the moved word: EAGAIN)
        t0 = time.monotonic()
        w.notify()  # the writer's first batch moves it
        sleeper.join(10)
        assert u32(paced_at) == before + 1 and woken and woken[0][0] in (0, errno.EAGAIN) and woken[0][1] - t0 < 5
        notified = u32(n_at)
        for _ in range(50):
            w.notify()  # inside the window: notify moves every time, notify_paced at most once a pace
        took = time.monotonic() - t0
        assert u32(n_at) == notified + 50 and u32(paced_at) - (before + 1) <= took // pace_s
        moved = u32(paced_at)
        if time.monotonic() - t0 < pace_s * 0.8:  # still inside the window: nobody wakes it
            assert _futex_wait_u32(mm, paced_at, moved, pace_s * 0.1) == errno.ETIMEDOUT
        time.sleep(pace_s * 1.2)
        w.notify()
        assert u32(paced_at) == moved + 1
        mm.close()
    with SegmentWriter(group, depth=DEPTH, capacity=4, notify_paced_us=0) as w:
        raw = Path(segment_path(group)).read_bytes()
        assert int.from_bytes(raw[paced_at:paced_at + 8], "little") == 0  # the word and its window
        for _ in range(3):
            w.notify()
            time.sleep(0.01)
        assert int.from_bytes(Path(segment_path(group)).read_bytes()[paced_at:paced_at + 4], "little") == 0
    with pytest.raises(ValueError, match=r"notify_paced_us must be 0\.\.100000 \(0: not paced\), got 100001"):
        SegmentWriter(group, depth=DEPTH, capacity=4, notify_paced_us=100_001)
