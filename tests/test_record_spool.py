"""The recording's spool and compressor (ldc/_spool.c, ldc/record.py, ldc/record_compress.py): lines kept
byte for byte from the feeder's read to the .gz, a killed feeder's spool replayed as is and compressed by the
next start, a cut last line, a locked spool, a failing compression, other users, and the stream venues' frames."""

from __future__ import annotations

import fcntl
import gzip
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from feeder_helpers import group_table, processes, unique_group, wait_until, write_config
from test_record import COMPRESS_TIMEOUT_S, SYMBOLS, closed, frame, recorder

from ldc._spool import Spool
from ldc.record import RecordConfig, Recorder, read_recording, recording_files
from ldc.sim import Simulator
from ldc.sim.config import ReplaySource
from ldc.sim.replay import load_captures

pytestmark = pytest.mark.timeout(120)

SPOOL_NAME = "g-20261207T000000.000000Z.spool"


def compressor(*paths: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ldc.record_compress", *paths], capture_output=True, text=True, timeout=60)


def test_every_line_reaches_the_gz_byte_for_byte(tmp_path: Path) -> None:
    """What the compressor writes decompresses to exactly the lines the feeder appended: reads of several
    frames of any size, UTF-8, a line feed made a space, a snapshot; through a ring small enough that lines
    wrap around its end while the writer thread writes (a read that finds no room is dropped, counted; the test
    then waits for the ring to drain, so a slow writer thread on a loaded host cannot leave it nearly empty)."""
    rng = random.Random(17)
    rec = recorder(tmp_path, queue_max_bytes=8192, poll_s=0.001)
    rec.start()
    expected, appended, refused = bytearray(), 0, 0
    drained_by = time.monotonic() + 60  # for all the waits below together
    for read in range(3000):
        stamp = 1_765_000_000_000_000_000 + read
        frames = [b'{"n":%d,"s":"%s"}' % (read, "é€\n".encode() * rng.randrange(0, 400)) for _ in range(rng.randrange(1, 4))]
        if rec.frames(frames, stamp):
            expected += b"".join(b"%d %s\n" % (stamp, f.replace(b"\n", b" ")) for f in frames)
            appended += len(frames)
        else:  # the writer thread is behind (a loaded host): let it drain, so most reads still land
            refused += len(frames)
            while rec.stats().frames != appended and time.monotonic() < drained_by:
                time.sleep(0.0005)
    wait_until(lambda: rec.stats().frames == appended, what="the ring written")  # room for the snapshot
    rec.snapshot("/api/v3/depth", {"symbol": "BTCUSDT", "limit": 5}, b'{"lastUpdateId":1,\n"bids":[],"asks":[]}', 42)
    expected += b'42 {"rest":"/api/v3/depth?symbol=BTCUSDT&limit=5","data":{"lastUpdateId":1, "bids":[],"asks":[]}}\n'
    closed(rec)
    [path] = recording_files(str(tmp_path / "g"))
    assert path.endswith(".gz") and gzip.decompress(Path(path).read_bytes()) == bytes(expected)
    stats = rec.stats()
    assert (stats.frames, stats.snapshots, stats.dropped, stats.errors) == (appended, 1, refused, 0)
    assert appended > 100 and stats.spooled_bytes == len(expected)


def test_a_full_ring_drops_whole_reads_and_counts_their_frames(tmp_path: Path) -> None:
    spool = Spool(100, 1000)  # bytes; no file yet: nothing leaves the ring
    assert spool.append([b"{}"] * 10, 1) is True  # 10 lines of 5 bytes
    assert spool.append([b"{}"] * 11, 2) is False  # 55 more do not fit: the whole read is dropped
    assert spool.append([b"{}"] * 10, 3) is True
    assert spool.append_line(b"4 {}\n") is False
    spool.close()
    frames, snapshots, dropped, err, *_ = spool.stats()
    assert (frames, snapshots, dropped, err) == (0, 0, 11 + 1 + 20, 0)  # closed without a file: the 20 are lost too
    with pytest.raises(TypeError, match="expected bytes frames, found str at index 1"):
        Spool(100, 1).append([b"{}", "{}"], 1)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="expected bytes ending in a line feed, found bytes"):
        Spool(100, 1).append_line(b"1 {}")
    with pytest.raises(ValueError, match="expected capacity >= 64 bytes and poll_ms >= 1, found 10 and 1"):
        Spool(10, 1)


# -- a feeder killed, then the next start ---------------------------------------------------------------


def test_a_killed_feeders_spool_replays_and_the_next_start_compresses_it(tmp_path: Path, sim_factory: Callable[..., Simulator]) -> None:
    sim = sim_factory(spot_symbols=SYMBOLS, rate=50.0)
    group = unique_group("rec")
    config = write_config(tmp_path / "ldc.toml", [group_table(group, "spot", SYMBOLS, sim, record=str(tmp_path / "rec"))])
    directory = tmp_path / "rec" / group
    with processes() as procs:
        procs.groups.append(group)
        with (tmp_path / "feeder.log").open("wb") as log:
            feeder = procs.ldc("feed", str(config), "--group", group, stdout=log, stderr=subprocess.STDOUT)

        def diffs_recorded() -> int:
            spools = list(directory.glob("*.spool")) if directory.is_dir() else []
            return sum(1 for _, p in read_recording(str(spools[0])).lines if b"@depth" in p[:48]) if spools else 0

        wait_until(lambda: diffs_recorded() >= 60, what="60 diffs in the spool")
        feeder.send_signal(signal.SIGKILL)
        feeder.wait(10)
    [spool] = recording_files(str(directory))
    assert spool.endswith(".spool")
    as_is = read_recording(spool)
    assert as_is.damage == "" or as_is.damage.endswith("truncated")  # a last line cut inside a write()
    [capture_a, capture_b] = sorted(load_captures((ReplaySource(path=str(directory)),)), key=lambda c: c.symbol)
    assert capture_a.snapshot is not None and capture_b.snapshot is not None
    assert len(capture_a.final_ids) + len(capture_b.final_ids) >= 50  # the diffs after each snapshot replay

    again = Recorder(RecordConfig(directory=str(tmp_path / "rec"), group=group, rotate_bytes=10**9, rotate_s=3600.0))
    again.start()  # the killed feeder's spool is not locked any more: compressed
    wait_until(lambda: not Path(spool).exists(), timeout_s=COMPRESS_TIMEOUT_S, what="the old spool compressed")
    closed(again)
    [gz] = recording_files(str(directory))  # the new, empty, spool was removed at close
    assert gz == spool.removesuffix(".spool") + ".gz"
    assert read_recording(gz).lines == as_is.lines and read_recording(gz).damage == ""


def test_a_spool_cut_inside_a_line_keeps_its_complete_lines(tmp_path: Path) -> None:
    spool = tmp_path / SPOOL_NAME
    whole = b"".join(b"%d %s\n" % (i, frame(i)) for i in range(1, 4))
    spool.write_bytes(whole + b"4 " + frame(4)[:25])
    assert read_recording(str(spool)).damage == f"{spool}:4: the file ends inside this line (27 bytes, no line feed): truncated"
    done = compressor(str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "its last 27 bytes are a line cut short (its writer was killed): left out" in done.stderr
    assert " at SCHED_IDLE " in done.stderr or " at nice " in done.stderr
    assert not spool.exists() and gzip.decompress((tmp_path / SPOOL_NAME.replace(".spool", ".gz")).read_bytes()) == whole


def test_a_locked_spool_and_an_empty_one_are_not_compressed(tmp_path: Path) -> None:
    held, empty = tmp_path / SPOOL_NAME, tmp_path / SPOOL_NAME.replace("00Z", "01Z")
    held.write_bytes(b"1 {}\n")
    empty.write_bytes(b"")
    with held.open("rb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # as its feeder holds it
        done = compressor(str(tmp_path))
    assert done.returncode == 0 and held.exists() and not empty.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [SPOOL_NAME]


def test_a_failing_compression_keeps_the_spool_counted_and_recording_goes_on(tmp_path: Path) -> None:
    rec = recorder(tmp_path)
    rec.start()
    rec.frames([frame(1), frame(2)], 5)
    current = rec._file.path  # type: ignore[union-attr]
    Path(str(current).removesuffix(".spool") + ".gz.part").mkdir()  # the compressor cannot write its .gz
    closed(rec)
    assert rec.stats().errors == 1 and rec.stats().failed == ""  # the spool was written: only the compression failed
    assert recording_files(str(tmp_path / "g")) == [str(current)]
    assert read_recording(str(current)).lines == [(5, frame(1)), (5, frame(2))]


# -- other users ---------------------------------------------------------------------------------------


@pytest.fixture
def open_parent() -> Iterator[Path]:
    """A directory every user can enter (pytest's tmp_path is root's alone: it would prove nothing)."""
    parent = Path(tempfile.mkdtemp(prefix="ldc-record-"))
    parent.chmod(0o755)
    try:
        yield parent
    finally:
        shutil.rmtree(parent)


def as_nobody(command: str) -> subprocess.CompletedProcess[str]:
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("needs root and runuser to act as another user")
    return subprocess.run(["runuser", "-u", "nobody", "--", "sh", "-c", command], capture_output=True, text=True, timeout=30)


def test_another_user_can_neither_open_a_spool_nor_add_a_file(open_parent: Path) -> None:
    rec = recorder(open_parent)
    rec.start()
    rec.frames([frame(1)], 1)
    wait_until(lambda: rec.stats().frames == 1, what="the frame written")
    spool = rec._file.path  # type: ignore[union-attr]
    stalled = as_nobody(f"exec 3<'{spool}' && flock -n 3 && echo opened")  # a shared lock would stall its compression
    added = as_nobody(f"echo '1 {{}}' > '{spool.parent}/g-00000000T000000.000000Z.spool' && echo added")
    closed(rec)
    assert stalled.returncode != 0 and "opened" not in stalled.stdout
    assert added.returncode != 0 and "added" not in added.stdout
    assert [Path(p).suffix for p in recording_files(str(spool.parent))] == [".gz"]


# -- the stream venues' frames ----------------------------------------------------------------------------


def test_stream_frames_are_recorded_as_json_lines(tmp_path: Path) -> None:
    rec = recorder(tmp_path)
    rec.start()
    okx = b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[]}'
    htx = b'{"ch":"market.btcusdt.mbp.150","ts":1,"tick":{"seqNum":2}}'
    rec.stream_frame(okx, 1)
    rec.stream_frame(b"pong", 2)  # OKX's answer to a text ping: not JSON, not a recording line
    rec.stream_frame(gzip.compress(htx), 3)  # HTX: every frame is gzip
    rec.stream_frame(b"\x1f\x8b broken", 4)  # its parser reports it; nothing recorded
    closed(rec)
    [path] = recording_files(str(tmp_path / "g"))
    assert zlib.decompress(Path(path).read_bytes(), 31) == b"1 " + okx + b"\n3 " + htx + b"\n"
