"""The Rust reader (readers/rust, written from docs/LAYOUT.md alone) against live segments.

Segments are written by ldc.shm.writer.SegmentWriter; what `ldc-read` prints must equal what
ldc.Reader reads. Faults are the ones docs/LAYOUT.md says a reader must handle: wrong magic
(section 7 step 4), other major version (step 5, section 13), truncated file (steps 2 and 7),
dead or stopped writer (section 10), removed market (sections 8-9); plus clamping (section 5)
and the notify word (section 11). Header/slot offsets below are the tables of docs/LAYOUT.md.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ldc import Reader
from ldc.errors import MarketNotFound, WriterDead
from ldc.shm.writer import SegmentWriter

CRATE_DIR = Path(__file__).resolve().parent.parent / "readers" / "rust"
BINARY = CRATE_DIR / "target" / "release" / "ldc-read"
CARGO_BUILD_TIMEOUT_S = 50.0
RUN_TIMEOUT_S = 15.0
WAIT_PROCESS_TIMEOUT_S = 20.0
DEPTH = 5
CAPACITY = 8
EXCHANGE = "binance.com"

# docs/LAYOUT.md section 3 (header) and section 5 (slot header) offsets, in bytes.
MAGIC_OFFSET = 0
VERSION_MAJOR_OFFSET = 8
SEGMENT_SIZE_OFFSET = 24
SLOTS_OFFSET_OFFSET = 40
SLOT_SIZE_OFFSET = 44
CAPACITY_OFFSET = 48
DEPTH_OFFSET = 52
SLOT_N_BIDS_OFFSET = 52
HEADER_SIZE = 384

SYNCED = 0x01
STALE = 0x02
RESYNCING = 0x04

# Exit statuses documented in readers/rust/src/bin/ldc-read.rs.
EXIT_LAYOUT = 4
EXIT_MARKET_NOT_FOUND = 5
EXIT_OUT_OF_SYNC = 6
EXIT_WRITER_DEAD = 7

_group_ids = itertools.count()


def find_cargo() -> str | None:
    found = shutil.which("cargo")
    if found:
        return found
    home_cargo = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo")) / "bin" / "cargo"
    return str(home_cargo) if home_cargo.is_file() else None


@pytest.fixture(scope="module")
def ldc_read() -> Path:
    cargo = find_cargo()
    if cargo is None:
        pytest.skip("cargo is not installed: the Rust reader cannot be built")
    build = subprocess.run(
        [cargo, "build", "--release", "--offline", "--quiet"],
        cwd=CRATE_DIR,
        capture_output=True,
        text=True,
        timeout=CARGO_BUILD_TIMEOUT_S,
    )
    assert build.returncode == 0, f"cargo build failed:\n{build.stderr}"
    return BINARY


def unlink_segment(group: str) -> None:
    for path in (f"/dev/shm/ldc-{group}", f"/dev/shm/ldc-{group}.lock", f"/dev/shm/ldc-{group}.new"):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


@pytest.fixture
def group() -> Iterator[str]:
    name = f"rust{os.getpid()}_{next(_group_ids)}"
    yield name
    unlink_segment(name)


@pytest.fixture
def writer(group: str) -> Iterator[SegmentWriter]:
    w = SegmentWriter(group, depth=DEPTH, capacity=CAPACITY, exchange=EXCHANGE)
    yield w
    w.close()


def levels(rows: list[tuple[float, float]]) -> np.ndarray:
    out = np.zeros((DEPTH, 2), dtype=np.float64)
    if rows:
        out[: len(rows)] = rows
    return out


def publish(w: SegmentWriter, symbol: str, *, update_id: int, bids: list[tuple[float, float]], asks: list[tuple[float, float]], status: int = SYNCED) -> int:
    slot = w.slot(symbol)
    w.publish(slot, update_id=update_id, event_time_ms=1_700_000_000_000 + update_id, recv_time_ns=1_700_000_000_000_000_000 + update_id, status=status, bids=levels(bids), asks=levels(asks), n_bids=len(bids), n_asks=len(asks))
    w.notify()
    return slot


def run(binary: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=RUN_TIMEOUT_S)


def rust_snapshot(binary: Path, group: str, symbol: str, *, allow: bool = False) -> dict[str, Any]:
    proc = run(binary, "snapshot", group, symbol, *(["--allow-out-of-sync"] if allow else []))
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def python_snapshot(group: str, symbol: str, *, allow: bool = False) -> dict[str, Any]:
    with Reader(group) as reader:
        s = reader.snapshot(symbol, allow_out_of_sync=allow)
    return {"symbol": s.symbol, "update_id": s.update_id, "event_time_ms": s.event_time_ms, "recv_time_ns": s.recv_time_ns, "publish_time_ns": s.publish_time_ns, "status": int(s.status), "bids": np.asarray(s.bids).tolist(), "asks": np.asarray(s.asks).tolist()}


def comparable(rust: dict[str, Any]) -> dict[str, Any]:
    keys = ("symbol", "update_id", "event_time_ms", "recv_time_ns", "publish_time_ns", "status", "bids", "asks")
    return {k: rust[k] for k in keys}


def poke(group: str, offset: int, data: bytes) -> None:
    fd = os.open(f"/dev/shm/ldc-{group}", os.O_RDWR)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def header_u32(group: str, offset: int) -> int:
    with open(f"/dev/shm/ldc-{group}", "rb") as f:
        f.seek(offset)
        value: int = struct.unpack("<I", f.read(4))[0]
    return value


def header_u64(group: str, offset: int) -> int:
    with open(f"/dev/shm/ldc-{group}", "rb") as f:
        f.seek(offset)
        value: int = struct.unpack("<Q", f.read(8))[0]
    return value


BTC_BIDS = [(37_012.34, 0.00123), (37_012.33, 1.5), (37_000.0, 12.0), (36_999.99, 0.1)]
BTC_ASKS = [(37_012.35, 2.0e-8), (37_050.0, 3.3333333)]
ETH_BIDS = [(2_000.01 + i * -0.01, 0.1 * (i + 1)) for i in range(DEPTH)]
ETH_ASKS = [(2_000.02 + i * 0.01, 1.0 / (i + 3)) for i in range(DEPTH)]


def test_snapshot_equals_python_reader_for_every_market(ldc_read: Path, group: str, writer: SegmentWriter) -> None:
    for symbol in ("BTCUSDT", "ETHUSDT", "BTCUSD_PERP"):
        writer.add_market(symbol)
    publish(writer, "BTCUSDT", update_id=1001, bids=BTC_BIDS, asks=BTC_ASKS)
    publish(writer, "ETHUSDT", update_id=2002, bids=ETH_BIDS, asks=ETH_ASKS)
    publish(writer, "BTCUSD_PERP", update_id=3003, bids=[], asks=[(50_000.5, 7.0)])
    for symbol in ("BTCUSDT", "ETHUSDT", "BTCUSD_PERP"):
        assert comparable(rust_snapshot(ldc_read, group, symbol)) == python_snapshot(group, symbol)
    btc = rust_snapshot(ldc_read, group, "BTCUSDT")
    assert (btc["update_id"], btc["bids"], btc["asks"], btc["updates"]) == (1001, [list(r) for r in BTC_BIDS], [list(r) for r in BTC_ASKS], 1)


def test_list_shows_active_markets_in_slot_order(ldc_read: Path, group: str, writer: SegmentWriter) -> None:
    slots = {symbol: writer.add_market(symbol) for symbol in ("ETHUSDT", "BTCUSDT")}
    proc = run(ldc_read, "list", group)
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)["markets"]
    assert [(m["symbol"], m["slot"]) for m in sorted(listed, key=lambda m: m["slot"])] == sorted(slots.items(), key=lambda kv: kv[1])
    with Reader(group) as reader:
        assert [m["symbol"] for m in listed] == reader.markets()


def test_info_reports_header_and_live_writer(ldc_read: Path, group: str, writer: SegmentWriter) -> None:
    writer.add_market("BTCUSDT")
    info = json.loads(run(ldc_read, "info", group).stdout)
    assert (info["group"], info["exchange"], info["version"], info["depth"], info["capacity"]) == (group, EXCHANGE, "2.2", DEPTH, CAPACITY)
    assert (info["writer_pid"], info["state"], info["market_count"], info["liveness"]) == (os.getpid(), 2, 1, "alive")


def test_out_of_sync_market_is_refused_unless_allowed(ldc_read: Path, group: str, writer: SegmentWriter) -> None:
    writer.add_market("BTCUSDT")
    slot = publish(writer, "BTCUSDT", update_id=7, bids=BTC_BIDS, asks=BTC_ASKS)
    writer.set_status(slot, RESYNCING, "gap: 9 after 7")
    proc = run(ldc_read, "snapshot", group, "BTCUSDT")
    assert proc.returncode == EXIT_OUT_OF_SYNC
    assert proc.stderr.strip() == "ldc-read: market BTCUSDT out of sync: status 0x4 (RESYNCING): gap: 9 after 7"
    allowed = rust_snapshot(ldc_read, group, "BTCUSDT", allow=True)
    assert (allowed["status"], allowed["message"]) == (RESYNCING, "gap: 9 after 7")
    assert comparable(allowed) == python_snapshot(group, "BTCUSDT", allow=True)


def test_new_market_without_data_is_out_of_sync(ldc_read: Path, group: str, writer: SegmentWriter) -> None:
    writer.add_market("BTCUSDT")
    proc = run(ldc_read, "snapshot", group, "BTCUSDT")
    assert (proc.returncode, proc.stderr.strip()) == (EXIT_OUT_OF_SYNC, "ldc-read: market BTCUSDT out of sync: status 0x0 (none)")
    allowed = rust_snapshot(ldc_read, group, "BTCUSDT", allow=True)
    assert (allowed["update_id"], allowed["status"], allowed["bids"], allowed["asks"]) == (-1, 0, [], [])


def test_counts_beyond_depth_are_clamped(ldc_read: Path, group: str, writer: SegmentWriter) -> None:
    writer.add_market("ETHUSDT")
    slot = publish(writer, "ETHUSDT", update_id=5, bids=ETH_BIDS, asks=ETH_ASKS)
    slot_start = header_u32(group, SLOTS_OFFSET_OFFSET) + slot * header_u32(group, SLOT_SIZE_OFFSET)
    poke(group, slot_start + SLOT_N_BIDS_OFFSET, struct.pack("<I", 0xFFFF_FFFF))
    snap = rust_snapshot(ldc_read, group, "ETHUSDT")
    assert snap["bids"] == [list(r) for r in ETH_BIDS]


def test_missing_segment_is_reported(ldc_read: Path, group: str) -> None:
    proc = run(ldc_read, "snapshot", group, "BTCUSDT")
    assert (proc.returncode, proc.stderr.strip()) == (3, f"ldc-read: no segment /dev/shm/ldc-{group} (the feeder is not running)")


def test_wrong_magic_is_not_an_ldc_segment(ldc_read: Path, group: str, writer: SegmentWriter) -> None:
    writer.close()
    poke(group, MAGIC_OFFSET, b"NOTLDC!!")
    proc = run(ldc_read, "list", group)
    found = int.from_bytes(b"NOTLDC!!", "little")
    assert proc.returncode == EXIT_LAYOUT
    assert proc.stderr.strip() == f"ldc-read: segment /dev/shm/ldc-{group} is not an ldc segment: magic {found:#018x}, expected 0x485450454443444c"


def test_zero_magic_is_not_ready(ldc_read: Path, group: str, writer: SegmentWriter) -> None:
    writer.close()
    poke(group, MAGIC_OFFSET, bytes(8))
    proc = run(ldc_read, "list", group)
    assert (proc.returncode, proc.stderr.strip()) == (EXIT_LAYOUT, f"ldc-read: segment /dev/shm/ldc-{group} is not ready: magic is 0 (writer creating it or died doing so)")


def test_other_major_version_is_refused_naming_both(ldc_read: Path, group: str, writer: SegmentWriter) -> None:
    writer.close()
    poke(group, VERSION_MAJOR_OFFSET, struct.pack("<HH", 3, 3))
    proc = run(ldc_read, "list", group)
    assert (proc.returncode, proc.stderr.strip()) == (EXIT_LAYOUT, f"ldc-read: segment /dev/shm/ldc-{group} has layout version 3.3, this reader understands 2.0")


@pytest.mark.parametrize(
    ("offset", "value", "rule"),
    [
        (CAPACITY_OFFSET, 0xFFFF_FFFF, "directory_offset + capacity * directory_entry_size <= slots_offset"),
        (DEPTH_OFFSET, 0xFFFF_FFFF, "asks_offset >= bids_offset + 16 * depth"),
        (DEPTH_OFFSET, 0, "1 <= depth"),
        (SLOT_SIZE_OFFSET, 900, "slot_size multiple of 128"),
    ],
    ids=["huge-capacity", "huge-depth", "zero-depth", "unaligned-slot-size"],
)
def test_bad_geometry_is_refused_without_overflow(ldc_read: Path, group: str, writer: SegmentWriter, offset: int, value: int, rule: str) -> None:
    writer.close()
    poke(group, offset, struct.pack("<I", value))
    proc = run(ldc_read, "list", group)
    assert proc.returncode == EXIT_LAYOUT
    assert proc.stderr.startswith(f"ldc-read: segment /dev/shm/ldc-{group} has bad geometry: {rule} fails (")


def test_other_minor_version_is_accepted(ldc_read: Path, group: str, writer: SegmentWriter) -> None:
    writer.add_market("BTCUSDT")
    publish(writer, "BTCUSDT", update_id=11, bids=BTC_BIDS, asks=BTC_ASKS)
    poke(group, VERSION_MAJOR_OFFSET, struct.pack("<HH", 2, 7))
    assert rust_snapshot(ldc_read, group, "BTCUSDT")["update_id"] == 11


def test_truncated_file_fails_before_touching_slots(ldc_read: Path, group: str, writer: SegmentWriter) -> None:
    writer.close()
    segment_size = header_u64(group, SEGMENT_SIZE_OFFSET)
    os.truncate(f"/dev/shm/ldc-{group}", segment_size - 128)
    proc = run(ldc_read, "list", group)
    assert (proc.returncode, proc.stderr.strip()) == (EXIT_LAYOUT, f"ldc-read: segment /dev/shm/ldc-{group} is truncated: segment_size {segment_size} bytes, file has {segment_size - 128}")


def test_file_smaller_than_a_header_is_refused(ldc_read: Path, group: str, writer: SegmentWriter) -> None:
    writer.close()
    os.truncate(f"/dev/shm/ldc-{group}", 100)
    proc = run(ldc_read, "list", group)
    assert (proc.returncode, proc.stderr.strip()) == (EXIT_LAYOUT, f"ldc-read: segment /dev/shm/ldc-{group} has 100 bytes, expected at least {HEADER_SIZE}")


def test_stopped_writer_is_reported_and_its_last_book_carries_stale(ldc_read: Path, group: str, writer: SegmentWriter) -> None:
    writer.add_market("BTCUSDT")
    publish(writer, "BTCUSDT", update_id=21, bids=BTC_BIDS, asks=BTC_ASKS)
    writer.close()
    proc = run(ldc_read, "snapshot", group, "BTCUSDT")
    assert (proc.returncode, proc.stderr.strip()) == (EXIT_WRITER_DEAD, f"ldc-read: writer of segment /dev/shm/ldc-{group} is stopped")
    last = rust_snapshot(ldc_read, group, "BTCUSDT", allow=True)
    assert last["status"] & STALE == STALE
    assert comparable(last) == python_snapshot(group, "BTCUSDT", allow=True)


WRITER_SCRIPT = """
import sys, time, numpy as np
from ldc.shm.writer import SegmentWriter
w = SegmentWriter(sys.argv[1], depth={depth}, capacity={capacity})
status = int(sys.argv[2])
slot = w.add_market("BTCUSDT")
bids = np.array([[100.5, 1.0]] + [[0.0, 0.0]] * {depth_minus_1})
asks = np.array([[101.5, 2.0]] + [[0.0, 0.0]] * {depth_minus_1})
w.publish(slot, update_id=77, event_time_ms=1, recv_time_ns=2, status=status, bids=bids, asks=asks, n_bids=1, n_asks=1)
w.notify()
print("ready", flush=True)
time.sleep(60)
""".format(depth=DEPTH, capacity=CAPACITY, depth_minus_1=DEPTH - 1)


def start_writer_process(group: str, status: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", WRITER_SCRIPT, group, str(status)], stdout=subprocess.PIPE, text=True)


@pytest.fixture(params=[SYNCED], ids=["synced"])
def writer_process(group: str, request: pytest.FixtureRequest) -> Iterator[subprocess.Popen[str]]:
    proc = start_writer_process(group, request.param)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=RUN_TIMEOUT_S)


def test_killed_writer_is_dead_and_allowed_reads_carry_stale(ldc_read: Path, group: str, writer_process: subprocess.Popen[str]) -> None:
    assert json.loads(run(ldc_read, "info", group).stdout)["liveness"] == "alive"
    assert rust_snapshot(ldc_read, group, "BTCUSDT")["update_id"] == 77
    writer_process.send_signal(signal.SIGKILL)
    writer_process.wait(timeout=RUN_TIMEOUT_S)
    proc = run(ldc_read, "snapshot", group, "BTCUSDT")
    assert (proc.returncode, proc.stderr.strip()) == (EXIT_WRITER_DEAD, f"ldc-read: writer of segment /dev/shm/ldc-{group} is dead (state 2, no lock held)")
    last = rust_snapshot(ldc_read, group, "BTCUSDT", allow=True)
    assert (last["status"], last["bids"], last["asks"]) == (SYNCED | STALE, [[100.5, 1.0]], [[101.5, 2.0]])
    assert comparable(last) == python_snapshot(group, "BTCUSDT", allow=True)


@pytest.mark.parametrize("writer_process", [RESYNCING], ids=["resyncing"], indirect=True)
def test_dead_writer_is_reported_before_out_of_sync_like_the_python_reader(ldc_read: Path, group: str, writer_process: subprocess.Popen[str]) -> None:
    writer_process.send_signal(signal.SIGKILL)
    writer_process.wait(timeout=RUN_TIMEOUT_S)
    proc = run(ldc_read, "snapshot", group, "BTCUSDT")
    assert (proc.returncode, proc.stderr.strip()) == (EXIT_WRITER_DEAD, f"ldc-read: writer of segment /dev/shm/ldc-{group} is dead (state 2, no lock held)")
    with Reader(group) as reader, pytest.raises(WriterDead):
        reader.snapshot("BTCUSDT")


def test_takeover_keeps_levels_marked_stale(ldc_read: Path, group: str, writer_process: subprocess.Popen[str]) -> None:
    writer_process.send_signal(signal.SIGKILL)
    writer_process.wait(timeout=RUN_TIMEOUT_S)
    with SegmentWriter(group, depth=DEPTH, capacity=CAPACITY):
        info = json.loads(run(ldc_read, "info", group).stdout)
        assert (info["takeovers"], info["writer_pid"], info["liveness"]) == (1, os.getpid(), "alive")
        proc = run(ldc_read, "snapshot", group, "BTCUSDT")
        assert proc.returncode == EXIT_OUT_OF_SYNC, proc.stderr
        kept = rust_snapshot(ldc_read, group, "BTCUSDT", allow=True)
        assert (kept["status"] & STALE, kept["message"]) == (STALE, "writer restarted; waiting for the feeder to republish")
        assert (kept["update_id"], kept["bids"], kept["asks"]) == (77, [[100.5, 1.0]], [[101.5, 2.0]])
        assert comparable(kept) == python_snapshot(group, "BTCUSDT", allow=True)


def test_removed_market_is_not_found(ldc_read: Path, group: str, writer: SegmentWriter) -> None:
    writer.add_market("BTCUSDT")
    writer.add_market("ETHUSDT")
    publish(writer, "BTCUSDT", update_id=31, bids=BTC_BIDS, asks=BTC_ASKS)
    writer.remove_market("BTCUSDT")
    proc = run(ldc_read, "snapshot", group, "BTCUSDT")
    assert (proc.returncode, proc.stderr.strip()) == (EXIT_MARKET_NOT_FOUND, f'ldc-read: market "BTCUSDT" not found in group {group}')
    assert [m["symbol"] for m in json.loads(run(ldc_read, "list", group).stdout)["markets"]] == ["ETHUSDT"]
    with Reader(group) as reader, pytest.raises(MarketNotFound):
        reader.snapshot("BTCUSDT")


def start_wait(binary: Path, group: str, symbol: str, timeout_ms: int) -> subprocess.Popen[str]:
    """`ldc-read wait`, returned once it has resolved the market and is about to sleep."""
    proc = subprocess.Popen([str(binary), "wait", group, symbol, str(timeout_ms)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None and proc.stderr.readline().strip() == "waiting"
    return proc


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=WAIT_PROCESS_TIMEOUT_S)
    finally:
        proc.kill()
    return proc.returncode, out, err


def test_market_removed_while_cached_is_noticed_through_its_gen(ldc_read: Path, group: str, writer: SegmentWriter) -> None:
    writer.add_market("BTCUSDT")
    publish(writer, "BTCUSDT", update_id=41, bids=BTC_BIDS, asks=BTC_ASKS)
    waiting = start_wait(ldc_read, group, "BTCUSDT", 15_000)
    writer.remove_market("BTCUSDT")
    writer.add_market("ETHUSDT")  # may reuse the slot with a new gen
    writer.notify()
    code, _, err = finish(waiting)
    assert (code, err.strip()) == (EXIT_MARKET_NOT_FOUND, f'ldc-read: market "BTCUSDT" not found in group {group}')


def test_wait_wakes_on_publish(ldc_read: Path, group: str, writer: SegmentWriter) -> None:
    writer.add_market("BTCUSDT")
    publish(writer, "BTCUSDT", update_id=51, bids=BTC_BIDS, asks=BTC_ASKS)
    waiting = start_wait(ldc_read, group, "BTCUSDT", 15_000)
    started = time.monotonic()
    publish(writer, "BTCUSDT", update_id=52, bids=BTC_BIDS, asks=BTC_ASKS)
    code, out, err = finish(waiting)
    assert code == 0, err
    assert json.loads(out) == {"updated": True, "update_id": 52}
    assert time.monotonic() - started < WAIT_PROCESS_TIMEOUT_S


def test_wait_times_out_without_publish(ldc_read: Path, group: str, writer: SegmentWriter) -> None:
    writer.add_market("BTCUSDT")
    publish(writer, "BTCUSDT", update_id=61, bids=BTC_BIDS, asks=BTC_ASKS)
    code, out, err = finish(start_wait(ldc_read, group, "BTCUSDT", 200))
    assert code == 0, err
    assert json.loads(out) == {"updated": False, "update_id": 61}


TORTURE_DEPTH = 50
TORTURE_READS = 4000
TORTURE_WARMUP_PUBLISHES = 100


def torture_levels(update_id: int, ks: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Every field derives from update_id, so a copy mixing two publishes is detectable."""
    n = 1 + update_id % TORTURE_DEPTH
    bids = np.column_stack((update_id * 1000.0 - ks, np.full(TORTURE_DEPTH, float(update_id))))
    asks = np.column_stack((update_id * 1000.0 + 1 + ks, np.full(TORTURE_DEPTH, float(update_id))))
    return bids, asks, n


def publish_until(w: SegmentWriter, slot: int, stop: threading.Event, published: list[int]) -> None:
    ks = np.arange(TORTURE_DEPTH, dtype=np.float64)
    update_id = 0
    while not stop.is_set():
        update_id += 1
        bids, asks, n = torture_levels(update_id, ks)
        w.publish(slot, update_id=update_id, event_time_ms=update_id, recv_time_ns=update_id, status=SYNCED, bids=bids, asks=asks, n_bids=n, n_asks=n)
        published[0] = update_id


def test_reads_during_concurrent_publishes_are_never_torn(ldc_read: Path, group: str) -> None:
    w = SegmentWriter(group, depth=TORTURE_DEPTH, capacity=2)
    stop, published = threading.Event(), [0]
    thread = threading.Thread(target=publish_until, args=(w, w.add_market("BTCUSDT"), stop, published))
    thread.start()
    try:
        while published[0] < TORTURE_WARMUP_PUBLISHES:
            time.sleep(0.001)
        proc = run(ldc_read, "repeat", group, "BTCUSDT", str(TORTURE_READS))
    finally:
        stop.set()
        thread.join()
        w.close()
    assert proc.returncode == 0, proc.stderr
    seen = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(seen) == TORTURE_READS
    ks = np.arange(TORTURE_DEPTH, dtype=np.float64)
    for snap in seen:
        u = snap["update_id"]
        bids, asks, n = torture_levels(u, ks)
        assert (snap["status"], snap["event_time_ms"], snap["recv_time_ns"]) == (SYNCED, u, u)
        assert (snap["bids"], snap["asks"]) == (bids[:n].tolist(), asks[:n].tolist()), f"torn copy at update_id {u}"
    # the writer ran during the reads, so the reads overlapped publishes
    assert len({snap["update_id"] for snap in seen}) > 1


def test_reader_follows_a_segment_replaced_with_another_geometry(ldc_read: Path, group: str, writer: SegmentWriter) -> None:
    writer.add_market("BTCUSDT")
    publish(writer, "BTCUSDT", update_id=81, bids=BTC_BIDS, asks=BTC_ASKS)
    waiting = start_wait(ldc_read, group, "BTCUSDT", 1500)  # holds the old mapping, then reads
    writer.close()
    deeper = DEPTH + 2
    with SegmentWriter(group, depth=deeper, capacity=CAPACITY) as replacement:
        slot = replacement.add_market("BTCUSDT")
        bids, asks = np.zeros((deeper, 2)), np.zeros((deeper, 2))
        bids[0], asks[0] = (10.0, 1.0), (11.0, 2.0)
        replacement.publish(slot, update_id=82, event_time_ms=1, recv_time_ns=2, status=SYNCED, bids=bids, asks=asks, n_bids=1, n_asks=1)
        code, out, err = finish(waiting)
    assert code == 0, err
    assert json.loads(out) == {"updated": False, "update_id": 82}
