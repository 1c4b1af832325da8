"""Raw-feed recording (issue 17 item 2): the recorder's files, rotation, bounds and failures, damaged
recordings, and a feeder recorded against the simulator replayed offline to the same books."""

from __future__ import annotations

import base64
import gzip
import logging
import os
import subprocess
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import start_sim_process
from feeder_helpers import feeder_in_thread, wait_until

from ldc.config import parse_config
from ldc.errors import ConfigError
from ldc.record import RecordConfig, Recorder, read_recording, recording_files
from ldc.sim import SimConfig, Simulator
from ldc.sim.config import ReplaySource
from ldc.sim.replay import load_captures

FRAME = b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":%d,"u":%d,"b":[],"a":[]}}'
SNAPSHOT = b'{"lastUpdateId":5,"bids":[["1.0","2.0"]],"asks":[["3.0","4.0"]]}'
SYMBOLS = ("BTCUSDT", "ETHUSDT")
COMPRESS_TIMEOUT_S = 30.0
REST_LINE = b'0 {"rest":"/api/v3/depth?symbol=BTCUSDT&limit=100","data":{"lastUpdateId":0,"bids":[],"asks":[]}}\n'


def frame(update_id: int) -> bytes:
    return FRAME % (update_id, update_id)


def recorder(tmp_path: Path, **fields: object) -> Recorder:
    values: dict[str, object] = dict(directory=str(tmp_path), group="g", rotate_bytes=10**9, rotate_s=3600.0)
    values.update(fields)
    options = {k: values.pop(k) for k in ("queue_max_bytes", "poll_s", "supervise_s") if k in values}
    return Recorder(RecordConfig(**values), **options)  # type: ignore[arg-type]


def closed(rec: Recorder) -> Recorder:
    """Closed, and its spools compressed (the compressor is a process of its own)."""
    rec.close()
    assert rec.wait_compressed(COMPRESS_TIMEOUT_S)
    return rec


def test_frames_and_snapshots_come_back_as_written(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ldc.record")
    rec = recorder(tmp_path)
    rec.start()
    rec.frames([frame(1), frame(2)], 1_000)
    rec.snapshot("/api/v3/depth", {"symbol": "BTCUSDT", "limit": 100}, SNAPSHOT, 2_000)
    rec.frames([frame(3)], 3_000)
    closed(rec)
    [path] = recording_files(str(tmp_path / "g"))
    assert Path(path).name.startswith("g-") and path.endswith(".gz")
    got = read_recording(path)
    assert (got.damage, got.unfinished) == ("", False)
    assert got.lines == [(1_000, frame(1)), (1_000, frame(2)),
                         (2_000, b'{"rest":"/api/v3/depth?symbol=BTCUSDT&limit=100","data":' + SNAPSHOT + b"}"),
                         (3_000, frame(3))]  # fmt: skip
    assert gzip.decompress(Path(path).read_bytes()).count(b"\n") == 4  # plain gzip: zcat reads it
    stats = rec.stats()
    assert (stats.frames, stats.snapshots, stats.dropped, stats.errors, stats.files) == (3, 1, 0, 0, 1)
    assert "recording of group g closed: 3 frames and 1 snapshots written in 1 files, 0 dropped, 0 errors" in caplog.text


def test_a_line_feed_inside_a_frame_keeps_one_line_per_frame(tmp_path: Path) -> None:
    rec = recorder(tmp_path)
    rec.start()
    rec.frames([b'{"a":\n1}', frame(1)], 7)
    closed(rec)
    got = read_recording(recording_files(str(tmp_path / "g"))[0])
    assert got.lines == [(7, frame(1))] and got.damage == ""  # the first is not a depth line: checked, not kept
    text = gzip.decompress(Path(recording_files(str(tmp_path / "g"))[0]).read_bytes())
    assert text.split(b"\n")[0] == b'7 {"a": 1}'


def test_rotation_by_size_and_by_age(tmp_path: Path) -> None:
    # the size is the spool's bytes (what was received): each of these frames fills a file
    big = [b'{"stream":"x@depth","data":"' + base64.b64encode(os.urandom(200_000)) + b'"}' for _ in range(3)]
    rec = recorder(tmp_path, rotate_bytes=100_000, poll_s=0.01, supervise_s=0.01)
    rec.start()
    for i in range(3):
        rec.frames([big[i]], i)
        wait_until(lambda: rec.stats().files == i + 2, what="the file full, the next one opened")
    closed(rec)
    files = recording_files(str(tmp_path / "g"))
    assert len(files) == 3 and files == sorted(files) and all(f.endswith(".gz") for f in files)
    assert [read_recording(f).lines for f in files] == [[(i, big[i])] for i in range(3)]
    assert not list((tmp_path / "g").glob("*.spool"))  # the last, empty, spool removed at close

    aged = recorder(tmp_path, group="h", rotate_s=0.1, poll_s=0.01, supervise_s=0.01)
    aged.start()
    aged.frames([frame(1)], 1)
    wait_until(lambda: aged.stats().files == 2, what="the file aged out, the next one opened")
    time.sleep(0.2)  # an empty file is not rotated however old
    assert aged.stats().files == 2
    aged.frames([frame(2)], 2)
    closed(aged)
    assert [read_recording(f).lines for f in recording_files(str(tmp_path / "h"))] == [[(1, frame(1))], [(2, frame(2))]]


def test_a_full_queue_drops_and_counts_without_waiting(tmp_path: Path) -> None:
    rec = recorder(tmp_path, queue_max_bytes=sum(len(b"%d %s\n" % (i, frame(i))) for i in range(3)))  # 3 lines
    for i in range(5):  # the writer is not started yet: nothing leaves the queue
        rec.frames([frame(i)], i)
    assert rec.stats().dropped == 2
    rec.start()
    closed(rec)
    assert read_recording(recording_files(str(tmp_path / "g"))[0]).lines == [(i, frame(i)) for i in range(3)]
    assert (rec.stats().frames, rec.stats().dropped) == (3, 2)


def test_an_unusable_directory_stops_recording_with_an_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    rec = recorder(blocker)
    rec.start()
    rec.frames([frame(1)], 1)
    closed(rec)
    stats = rec.stats()
    assert (stats.errors, stats.dropped, stats.frames) == (1, 1, 0) and "Not a directory" in stats.failed
    assert any(r.levelno == logging.ERROR and "recording of group g stopped" in r.getMessage() for r in caplog.records)


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tiny"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_stops_recording_and_later_frames_are_counted(tiny_fs: Path, caplog: pytest.LogCaptureFixture) -> None:
    rec = recorder(tiny_fs, poll_s=0.01)
    rec.start()
    noise = [b'{"x":"' + base64.b64encode(os.urandom(3000)) + b'"}' for _ in range(10)]  # compresses ~25%
    for i in range(10):
        rec.frames(noise, i)
    wait_until(lambda: rec.stats().errors == 1, what="the write to fail")
    rec.frames([frame(1)], 99)
    closed(rec)
    stats = rec.stats()
    assert "No space left on device" in stats.failed
    assert stats.frames + stats.dropped == 101 and stats.dropped >= 1
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR and "stopped" in r.getMessage()]


# -- damaged recordings -----------------------------------------------------------------------------------


def write_gz(path: Path, text: bytes) -> None:
    path.write_bytes(gzip.compress(text))


def good_lines(n: int, start: int = 1) -> bytes:
    return b"".join(b"%d %s\n" % (i, frame(i)) for i in range(start, start + n))


def test_a_bad_line_is_named_and_nothing_after_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "r.gz"
    write_gz(path, good_lines(3) + b'4 {"stream":"btcusdt@depth@100ms","data":{"e":oops}}\n' + good_lines(2, 5))
    got = read_recording(str(path))
    assert [stamp for stamp, _ in got.lines] == [1, 2, 3]
    assert got.damage.startswith(f"{path}:4: not valid JSON")
    write_gz(path, good_lines(2) + b"abc " + frame(3) + b"\n" + good_lines(1, 4))
    got = read_recording(str(path))
    assert len(got.lines) == 2 and got.damage.startswith(f"{path}:3: expected '<receive ns> <JSON object>', found b'abc")


def test_a_truncated_and_a_corrupt_file_are_named(tmp_path: Path) -> None:
    path = tmp_path / "r.gz"
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
    path.write_bytes(compressor.compress(good_lines(5) + b"6 " + frame(6)[:30]) + compressor.flush(zlib.Z_SYNC_FLUSH))
    got = read_recording(str(path))
    assert got.unfinished and len(got.lines) == 5
    assert got.damage == f"{path}:6: the file ends inside this line (32 bytes, no line feed): truncated"
    blob = gzip.compress(good_lines(200))
    corrupt = bytearray(blob)
    corrupt[len(blob) // 2 : len(blob) // 2 + 16] = b"\xff" * 16
    path.write_bytes(bytes(corrupt))
    got = read_recording(str(path))
    assert "corrupt gzip data" in got.damage and len(got.lines) < 200


def test_a_killed_writer_leaves_a_file_readable_to_its_last_flush(tmp_path: Path) -> None:
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
    blob = compressor.compress(good_lines(5)) + compressor.flush(zlib.Z_SYNC_FLUSH)  # no trailer: as after SIGKILL
    path = tmp_path / "r.gz"
    path.write_bytes(blob)
    got = read_recording(str(path))
    assert (len(got.lines), got.damage, got.unfinished) == (5, "", True)


def test_replay_stops_at_the_damage_across_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    directory = tmp_path / "rec"
    directory.mkdir()
    write_gz(directory / "g-1.gz", REST_LINE + good_lines(3) + b"4 {bad\n" + good_lines(2, 5))
    write_gz(directory / "g-2.gz", good_lines(3, 7))
    [capture] = load_captures((ReplaySource(path=str(directory)),))
    assert capture.final_ids == [1, 2, 3] and capture.snapshot is not None
    assert any(r.levelno == logging.ERROR and f"{directory / 'g-1.gz'}:5: expected '<receive ns> <JSON object>'" in r.getMessage()
               and "nothing after it is replayed" in r.getMessage() for r in caplog.records)  # fmt: skip


# -- config ---------------------------------------------------------------------------------------------


def test_record_keys_are_checked() -> None:
    base = '[[group]]\nname = "g"\nexchange = "binance.com"\nsymbols = ["BTCUSDT"]\n'
    group = parse_config(base + 'record = "/var/lib/ldc/record"\nrecord_rotate_mb = 16\nrecord_rotate_s = 600\n').groups[0]
    assert (group.record, group.record_rotate_mb, group.record_rotate_s) == ("/var/lib/ldc/record", 16.0, 600.0)
    assert parse_config(base).groups[0].record is None
    with pytest.raises(ConfigError, match="key 'record' expected an absolute directory path, found 'rec'"):
        parse_config(base + 'record = "rec"\n')
    with pytest.raises(ConfigError, match="key 'record_rotate_s' expected a number"):
        parse_config(base + 'record = "/r"\nrecord_rotate_s = 0\n')


# -- a feeder recorded, then replayed --------------------------------------------------------------------


def final_books(run: object, symbols: tuple[str, ...]) -> dict[str, tuple[int, list[list[float]], list[list[float]]]]:
    reader = run.reader  # type: ignore[attr-defined]
    out = {}
    for symbol in symbols:
        snap = reader.snapshot(symbol, allow_out_of_sync=True)
        out[symbol] = (snap.update_id, snap.bids.tolist(), snap.asks.tolist())
    return out


def test_a_recorded_feeder_replays_offline_to_the_same_books(sim_factory: object, tmp_path: Path) -> None:
    live = sim_factory(spot_symbols=SYMBOLS, rate=50.0)  # type: ignore[operator]
    with feeder_in_thread(live, "spot", SYMBOLS, record=str(tmp_path)) as run:
        run.wait_synced()
        start = {s: run.counters(s)["updates"] for s in SYMBOLS}
        wait_until(lambda: all(run.counters(s)["updates"] > start[s] + 20 for s in SYMBOLS), what="20 more diffs each")
        run.feeder.request_stop()
        run.thread.join(10)
        recorded = final_books(run, SYMBOLS)
        group = run.group.name
        stats = run.feeder._recorder.stats()  # type: ignore[union-attr]
    assert stats.frames > 40 and stats.snapshots >= 2 and (stats.dropped, stats.errors) == (0, 0)
    replay = Simulator(SimConfig(spot_symbols=(), replay=(ReplaySource(path=str(tmp_path / group)),),
                                 replay_pace="client")).start()  # fmt: skip
    try:
        with feeder_in_thread(replay, "spot", SYMBOLS) as again:
            wait_until(lambda: all(again.in_sync(s) and again.status(s).update_id == recorded[s][0] for s in SYMBOLS),
                       what="the replayed books at the recorded final update ids")  # fmt: skip
            assert final_books(again, SYMBOLS) == recorded
    finally:
        replay.stop()


def test_a_feeder_whose_recording_fails_keeps_its_books(sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with feeder_in_thread(sim, "spot", SYMBOLS, record=str(blocker / "record")) as run:
        run.wait_synced()
        wait_until(lambda: run.check_truth("BTCUSDT"), what="a book equal to the truth")
        stats = run.feeder._recorder.stats()  # type: ignore[union-attr]
    assert stats.errors == 1 and stats.frames == 0 and stats.dropped > 0 and "Not a directory" in stats.failed
    assert any("recording of group" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)


def test_diffs_recorded_twice_across_a_rollover_are_replayed_once(tmp_path: Path) -> None:
    """During a connection rollover both connections deliver the market's diffs: the known book must not
    apply an older copy after a newer diff."""
    path = tmp_path / "g-1.gz"
    write_gz(path, REST_LINE + good_lines(3) + b"".join(b"%d %s\n" % (i, frame(i)) for i in (2, 4, 3, 5)))
    [capture] = load_captures((ReplaySource(path=str(path)),))
    assert capture.final_ids == [1, 2, 3, 4, 5]


def test_ldc_sim_replays_a_recording_directory(tmp_path: Path) -> None:
    directory = tmp_path / "spot"
    directory.mkdir()
    write_gz(directory / "spot-1.gz", REST_LINE + good_lines(3))
    write_gz(directory / "spot-2.gz", good_lines(3, 4))
    proc, urls = start_sim_process("--replay", str(directory))
    try:
        assert urls["markets"]["spot"] == ["BTCUSDT"]
        book = requests.get(f"{urls['rest']}/api/v3/depth?symbol=BTCUSDT&limit=5", timeout=10).json()
        assert book == {"lastUpdateId": 0, "bids": [], "asks": []}  # no subscriber yet: the replay has not started
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_file_name_taken_in_the_same_microsecond_is_not_overwritten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ldc import record as record_module

    stamps = iter([1_765_000_000_250_000_000, 1_765_000_000_250_000_999, 1_765_000_000_250_002_000])
    monkeypatch.setattr(time, "time_ns", lambda: next(stamps))  # the module ldc.record stamps its names with
    config = RecordConfig(directory=str(tmp_path), group="g", rotate_bytes=10**9, rotate_s=3600.0)
    config.group_directory.mkdir()
    first = record_module._SpoolFile.create(config)
    second = record_module._SpoolFile.create(config)  # the same stamp first: tried again with the next one
    first.close()
    second.close()
    assert [p.name for p in sorted(config.group_directory.iterdir())] == [
        "g-20251206T054640.250000Z.spool", "g-20251206T054640.250002Z.spool"]
