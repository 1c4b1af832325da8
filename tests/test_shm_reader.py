"""Reader: attach validation, snapshots, UNICORN-compatible accessors, faults, waiting.
Follows docs/LAYOUT.md ("Attaching", "Reading one market", "Waiting for updates")."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import posix_ipc
import pytest
from shm_helpers import book, group_fixture

from ldc import Reader as LazyReader
from ldc.errors import LayoutError, MarketNotFound, OutOfSync, SegmentNotFound, WriterDead
from ldc.shm.layout import HEADER, SLOT_HEADER, Status, segment_name, segment_path, waiters_path
from ldc.shm.reader import Reader, _trim
from ldc.shm.writer import SegmentWriter

PROC = str(Path(__file__).with_name("shm_proc.py"))
DEPTH = 20


@pytest.fixture
def group() -> Iterator[str]:
    yield from group_fixture()


@pytest.fixture
def writer(group: str) -> Iterator[SegmentWriter]:
    with SegmentWriter(group, depth=DEPTH, capacity=4, exchange="binance.com") as w:
        yield w


def publish(w: SegmentWriter, symbol: str, *, update_id: int = 1, n_bids: int = DEPTH, n_asks: int = DEPTH,
            status: int = Status.SYNCED) -> tuple[np.ndarray, np.ndarray]:
    slot = w.add_market(symbol)
    bids, asks = book(DEPTH)
    w.publish(slot, update_id=update_id, event_time_ms=1_700_000_000_123, recv_time_ns=1_700_000_000_123_456_789,
              status=status, bids=bids, asks=asks, n_bids=n_bids, n_asks=n_asks)
    return bids, asks


def segment_bytes(group: str) -> bytes:
    return Path(segment_path(group)).read_bytes()


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, PROC, *args], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


# ---------------------------------------------------------------- attaching


def test_lazy_import_gives_the_reader_class() -> None:
    assert LazyReader is Reader


def test_missing_segment_raises_segment_not_found(group: str) -> None:
    with pytest.raises(SegmentNotFound, match=rf"no segment /ldc-{group}: is the feeder for group '{group}' running\?"):
        Reader(group)


def make_raw_segment(group: str, data: bytes) -> None:
    shm = posix_ipc.SharedMemory(segment_name(group), posix_ipc.O_CREX, mode=0o640, size=max(len(data), 1))
    os.ftruncate(shm.fd, len(data))
    os.pwrite(shm.fd, data, 0) if data else None
    shm.close_fd()


def test_empty_segment_is_a_layout_error(group: str) -> None:
    make_raw_segment(group, b"")
    with pytest.raises(LayoutError, match=rf"segment /ldc-{group} is 0 bytes, expected at least a 384-byte header"):
        Reader(group)


def test_wrong_magic_is_a_layout_error(group: str) -> None:
    make_raw_segment(group, b"NOTADEPTH" + bytes(1000))
    with pytest.raises(LayoutError, match=r"has magic b'NOTADEPT', expected b'LDCDEPTH'"):
        Reader(group)


def test_uninitialised_segment_says_so(group: str) -> None:
    make_raw_segment(group, bytes(4096))
    with pytest.raises(LayoutError, match=r"is not initialised \(magic is 0\)"):
        Reader(group)


def test_other_major_version_names_both_versions(group: str) -> None:
    SegmentWriter(group, depth=DEPTH, capacity=4).close()
    fd = os.open(segment_path(group), os.O_RDWR)
    os.pwrite(fd, (3).to_bytes(2, "little") + (7).to_bytes(2, "little"), HEADER.offset("version_major"))
    os.close(fd)
    with pytest.raises(LayoutError, match=r"has layout version 3\.7, this reader understands 2\.2"):
        Reader(group)


def test_other_minor_version_is_accepted(group: str, writer: SegmentWriter) -> None:
    publish(writer, "BTCUSDT")
    fd = os.open(segment_path(group), os.O_RDWR)
    os.pwrite(fd, (9).to_bytes(2, "little"), HEADER.offset("version_minor"))
    os.close(fd)
    with Reader(group) as r:
        assert r.info().version == (2, 9)
        assert r.snapshot("BTCUSDT").update_id == 1


def test_truncated_segment_is_a_layout_error(group: str) -> None:
    SegmentWriter(group, depth=DEPTH, capacity=4).close()
    size = os.path.getsize(segment_path(group))
    os.truncate(segment_path(group), size - 128)
    with pytest.raises(LayoutError, match=rf"segment_size {size} but the file has {size - 128} bytes \(truncated\)"):
        Reader(group)


def test_attach_timeout_waits_for_a_starting_writer(group: str) -> None:
    def start_later() -> None:
        time.sleep(0.2)
        SegmentWriter(group, depth=DEPTH, capacity=4).close()

    t = threading.Thread(target=start_later)
    t.start()
    try:
        with Reader(group, attach_timeout_s=20) as r:
            assert r.depth == DEPTH
    finally:
        t.join()


# ---------------------------------------------------------------- reading


def test_snapshot_returns_an_own_copy_with_ids_and_times(group: str, writer: SegmentWriter) -> None:
    bids, asks = publish(writer, "BTCUSDT", update_id=77, n_bids=DEPTH, n_asks=12)
    with Reader(group) as r:
        snap = r.snapshot("BTCUSDT")
        assert snap.symbol == "BTCUSDT" and snap.update_id == 77
        assert snap.event_time_ms == 1_700_000_000_123 and snap.recv_time_ns == 1_700_000_000_123_456_789
        assert snap.publish_time_ns > 1_700_000_000_000_000_000
        assert snap.status == Status.SYNCED and snap.in_sync
        assert np.array_equal(snap.bids, bids) and np.array_equal(snap.asks, asks[:12])
        assert snap.bids.dtype == np.float64 and snap.bids.shape == (DEPTH, 2)
        publish(writer, "BTCUSDT", update_id=78)
        assert snap.update_id == 77 and np.array_equal(snap.asks, asks[:12])  # untouched by later publishes
        top = r.snapshot("BTCUSDT", depth=3)
        assert top.bids.shape == (3, 2) and np.array_equal(top.asks, asks[:3])


def test_read_into_refills_the_buffer_and_zeroes_rows_beyond_the_counts(group: str, writer: SegmentWriter) -> None:
    bids, asks = publish(writer, "BTCUSDT", update_id=1)
    with Reader(group) as r:
        buf = r.new_buffer()
        assert r.read_into("BTCUSDT", buf) is buf
        assert np.array_equal(buf.bids, bids) and buf.n_bids == DEPTH
        publish(writer, "BTCUSDT", update_id=2, n_bids=5, n_asks=0)
        r.read_into("BTCUSDT", buf)
        assert (buf.update_id, buf.n_bids, buf.n_asks) == (2, 5, 0)
        assert np.array_equal(buf.bids[:5], bids[:5]) and not buf.bids[5:].any() and not buf.asks.any()
        assert buf.best == ((bids[0, 0], bids[0, 1]), None)
        with pytest.raises(ValueError, match="read-only"):
            buf.bids[0, 0] = 1.0


def test_get_asks_and_get_bids_follow_unicorn_trimming(group: str, writer: SegmentWriter) -> None:
    bids, asks = publish(writer, "BTCUSDT")
    with Reader(group) as r:
        assert r.get_asks("BTCUSDT") == asks.tolist()
        assert r.get_bids("BTCUSDT", limit_count=2) == bids[:2].tolist()
        assert r.get_bids("BTCUSDT", limit_count=0) == []
        # notional of the first asks: 100.5*1, 101*2, 101.5*3 -> running 100.5, 302.5, 607.0
        assert r.get_asks("BTCUSDT", threshold_volume=302.5) == asks[:2].tolist()
        assert r.get_asks("BTCUSDT", threshold_volume=1.0) == asks[:1].tolist()  # the first level always
        assert r.get_asks("BTCUSDT", limit_count=1, threshold_volume=1e9) == asks[:1].tolist()
        assert r.best("BTCUSDT") == ((99.5, 1.0), (100.5, 1.0))


def test_trim_matches_unicorn_on_a_hand_computed_side() -> None:
    side = [[10.0, 1.0], [11.0, 2.0], [12.0, 3.0]]  # notional 10, 22, 36
    assert _trim(side, None, None) == side
    assert _trim(side, 2, None) == side[:2]
    assert _trim(side, None, 32.0) == side[:2]
    assert _trim(side, None, 31.9) == side[:1]
    assert _trim(side, None, 0.0) == side[:1]


def test_unknown_market_names_the_segment(group: str, writer: SegmentWriter) -> None:
    publish(writer, "BTCUSDT")
    with Reader(group) as r, pytest.raises(MarketNotFound, match=rf"market 'XRPUSDT' is not in segment /ldc-{group} \(1 markets\)"):
        r.snapshot("XRPUSDT")


def test_out_of_sync_market_raises_with_flags_and_message_unless_allowed(group: str, writer: SegmentWriter) -> None:
    publish(writer, "BTCUSDT", update_id=5)
    writer.set_status(writer.slot("BTCUSDT"), Status.RESYNCING | Status.STALE, "gap: expected U=6, got U=9")
    with Reader(group) as r:
        with pytest.raises(OutOfSync, match=r"market 'BTCUSDT' is out of sync: status STALE\|RESYNCING \(gap: expected U=6, got U=9\)"):
            r.snapshot("BTCUSDT")
        with pytest.raises(OutOfSync):
            r.get_asks("BTCUSDT")
        snap = r.snapshot("BTCUSDT", allow_out_of_sync=True)
        assert snap.update_id == 5 and not snap.in_sync


def test_new_market_is_out_of_sync_until_its_first_publish(group: str, writer: SegmentWriter) -> None:
    writer.add_market("NEWUSDT")
    with Reader(group) as r, pytest.raises(OutOfSync, match=r"status 0 \(no data yet\)"):
        r.snapshot("NEWUSDT")


def test_garbage_level_counts_are_clamped_to_depth(group: str, writer: SegmentWriter) -> None:
    bids, _ = publish(writer, "BTCUSDT")
    base = writer.geometry.slot_offset(writer.slot("BTCUSDT"))
    writer._seg.store_u32(base + SLOT_HEADER.offset("n_bids"), 0xFFFFFFFF)
    writer._seg.store_u32(base + SLOT_HEADER.offset("n_asks"), 1_000_000)
    with Reader(group) as r:
        buf = r.read_into("BTCUSDT", r.new_buffer())
        assert (buf.n_bids, buf.n_asks) == (DEPTH, DEPTH)
        assert np.array_equal(buf.bids, bids)


def test_market_removed_and_slot_reused_is_never_read_as_the_old_market(group: str, writer: SegmentWriter) -> None:
    publish(writer, "OLDUSDT", update_id=1)
    with Reader(group) as r:
        buf = r.new_buffer()
        r.read_into("OLDUSDT", buf)
        writer.remove_market("OLDUSDT")
        publish(writer, "NEWUSDT", update_id=2)  # same slot, new generation
        assert writer.slot("NEWUSDT") == 0
        with pytest.raises(MarketNotFound, match="market 'OLDUSDT' is not in segment"):
            r.read_into("OLDUSDT", buf)
        assert r.snapshot("NEWUSDT").update_id == 2


def test_reads_racing_market_removal_and_slot_reuse_never_return_the_other_market(group: str) -> None:
    from shm_proc import churn_book

    a_bids, a_asks = churn_book(100.0)
    proc = spawn("churn", group)  # another process: the removals really race the reads
    seen = missing = 0
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        with Reader(group) as r:
            buf = r.new_buffer()
            deadline = time.monotonic() + 30
            while (seen < 100 or missing < 100) and time.monotonic() < deadline:
                try:
                    r.read_into("AAAUSDT", buf)
                except (MarketNotFound, OutOfSync):  # absent, or added and not yet published
                    missing += 1
                    continue
                seen += 1
                assert np.array_equal(buf.bids, a_bids) and np.array_equal(buf.asks, a_asks)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stdout and proc.stdout.close()
    assert seen >= 100 and missing >= 100


def test_readers_write_nothing_and_map_read_only(group: str, writer: SegmentWriter) -> None:
    publish(writer, "BTCUSDT")
    before = hashlib.sha256(segment_bytes(group)).digest()
    with Reader(group) as r:
        r.snapshot("BTCUSDT")
        r.status("BTCUSDT")
        r.markets()
        r.info()
        r.wait_for_update(timeout=0.01)
        with pytest.raises(TypeError):
            r._mm[0] = 0
    assert hashlib.sha256(segment_bytes(group)).digest() == before


def test_stuck_odd_slot_with_a_live_writer_is_read_contention(group: str, writer: SegmentWriter) -> None:
    from ldc.errors import ReadContention

    publish(writer, "BTCUSDT")
    off = writer.geometry.slot_offset(writer.slot("BTCUSDT"))
    writer._seg.store_u64(off, writer._seg.load_u64(off) + 1)
    with Reader(group) as r, pytest.raises(ReadContention, match="no consistent copy within 10 ms"):
        r.snapshot("BTCUSDT")


def test_killed_writer_is_reported_dead_within_the_probe_interval(group: str) -> None:
    proc = spawn("hold", group, "BTCUSDT")
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        with Reader(group) as r:
            assert r.snapshot("BTCUSDT").update_id == 10
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            assert not r.writer_alive()
            time.sleep(0.06)  # the read path re-probes every 50 ms
            with pytest.raises(WriterDead, match=r"\(pid \d+\) is dead"):
                r.snapshot("BTCUSDT")
            assert r.status("BTCUSDT").status == Status.SYNCED | Status.STALE
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stdout and proc.stdout.close()


# ---------------------------------------------------------------- waiting


def test_wait_for_update_wakes_on_publish_and_times_out_without(group: str, writer: SegmentWriter) -> None:
    publish(writer, "BTCUSDT")
    publish(writer, "ETHUSDT")
    with Reader(group) as r:
        assert r.wait_for_update(timeout=0.05) is False
        assert r.wait_for_update("BTCUSDT", timeout=0.05) is False

        def later(symbol: str) -> None:
            time.sleep(0.1)
            publish(writer, symbol, update_id=3)
            writer.notify()

        for symbol, expected in (("BTCUSDT", True), ("ETHUSDT", False)):
            t = threading.Thread(target=later, args=(symbol,))
            t.start()
            start = time.monotonic()
            woke = r.wait_for_update("BTCUSDT", timeout=1.5 if expected else 0.5)
            t.join()
            assert woke is expected
            if expected:
                assert time.monotonic() - start < 1.4


def test_a_reader_opens_nothing_writable_and_a_waiters_file_changes_nothing(group: str, writer: SegmentWriter) -> None:
    """Layout 2.0 has no reader-writable file (issue 14 item 2): a sleeping reader is woken by the
    writer's unconditional FUTEX_WAKE, and a leftover 1.x waiters file truncated to 0 harms nobody."""
    publish(writer, "BTCUSDT")
    with open(waiters_path(group), "wb"):  # a 1.x leftover, emptied as the hostile reader did
        pass
    with Reader(group) as r:
        assert not os.path.samefile(f"/proc/self/fd/{r._fd}", waiters_path(group))
        with open(f"/proc/{os.getpid()}/fdinfo/{r._fd}") as f:
            flags = int(next(line for line in f if line.startswith("flags:")).split()[1], 8)
        assert flags & os.O_ACCMODE == os.O_RDONLY

        def later() -> None:
            time.sleep(0.1)
            publish(writer, "BTCUSDT", update_id=2)
            writer.notify()

        t = threading.Thread(target=later)
        t.start()
        try:
            assert r.wait_for_update("BTCUSDT", timeout=30) is True
        finally:
            t.join()
        assert r.snapshot("BTCUSDT").update_id == 2


def test_sleeping_reader_process_is_woken_and_a_killed_one_harms_nothing(group: str, writer: SegmentWriter) -> None:
    publish(writer, "BTCUSDT")
    victim = spawn("sleep-reader", group, "BTCUSDT")
    sleeper = spawn("sleep-reader", group, "BTCUSDT")
    try:
        for p in (victim, sleeper):
            assert p.stdout is not None and p.stdout.readline().strip() == "waiting"
        victim.send_signal(signal.SIGKILL)  # killed inside its wait: its waiter registration leaks
        victim.wait(timeout=30)
        time.sleep(0.1)
        publish(writer, "BTCUSDT", update_id=2)
        writer.notify()
        assert sleeper.stdout is not None
        assert json.loads(sleeper.stdout.readline()) == {"woke": True}
        with Reader(group) as r:
            assert r.snapshot("BTCUSDT").update_id == 2
    finally:
        for p in (victim, sleeper):
            p.kill()
            p.wait(timeout=30)
            p.stdout and p.stdout.close()


def test_read_into_after_a_depth_change_raises_an_ldc_error_naming_what_to_do(group: str) -> None:
    """Issue 14 item 8: the caller's buffer has the old depth: LayoutError (an LdcError), never ValueError,
    on the first read after the change and on every one after it; a new buffer reads the new file."""
    with SegmentWriter(group, depth=DEPTH, capacity=4, markets=["BTCUSDT"]) as w:
        publish(w, "BTCUSDT")
    with Reader(group) as r:
        buf = r.new_buffer()
        r.read_into("BTCUSDT", buf, allow_out_of_sync=True)
        with SegmentWriter(group, depth=DEPTH + 3, capacity=4, markets=["BTCUSDT"]) as w2:
            publish(w2, "BTCUSDT", update_id=9)
            for _ in range(2):
                with pytest.raises(LayoutError, match=rf"recreated with depth {DEPTH + 3}: take a new buffer from new_buffer\(\)"):
                    r.read_into("BTCUSDT", buf)
            assert r.read_into("BTCUSDT", r.new_buffer()).update_id == 9
