"""Recording with a hot standby (issue 17 items 2 and 3 together): the group's recording is the publishing
feeder's. A standby's recorder is held (no file, the latest frames in memory); at its takeover it starts a file
whose first lines are its in-sync books as snapshot lines, then the held frames (ldc/record.py, "A hot
standby's recording"). So no file holds two feeders' lines, the directory replays as one feed, and the
takeover file replays on its own: both through ``ldc sim --replay`` + a feeder, to books equal to the truth."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from feeder_helpers import feeder_in_thread, group_table, processes, snapshot_equals_truth, unique_group, wait_until, write_config
from test_record import COMPRESS_TIMEOUT_S, closed, frame, recorder
from test_standby import READY_TIMEOUT_S, all_in_sync_from, standby_ready, start_feeder

from ldc.config import endpoints, load_config
from ldc.io.governor import governor_key
from ldc.record import SPOOL_SUFFIX, Recorder, RecordConfig, book_snapshot_line, read_recording, recording_files
from ldc.shm.reader import Reader
from ldc.sim import SimConfig, Simulator
from ldc.sim.config import ReplaySource
from ldc.sim.replay import load_captures

pytestmark = pytest.mark.timeout(240)

SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT")
DEPTH = 10
KILLS = 2
RUN_S = 1.5  # each writer publishes (and records) this long before it is killed
ALL = (b"{",)  # read_recording: every line


def lines_of(path: str) -> list[bytes]:
    got = read_recording(path, wanted=ALL)
    assert got.damage == "", got.damage
    return [payload for _, payload in got.lines]


def held(tmp_path: Path, **options: object) -> Recorder:
    config = RecordConfig(directory=str(tmp_path), group="g", rotate_bytes=10**9, rotate_s=3600.0)
    return Recorder(config, held=True, **options)  # type: ignore[arg-type]


# -- the held recorder ----------------------------------------------------------------------------------


def test_a_held_recorder_writes_nothing_until_its_takeover_then_snapshots_held_frames_and_live_ones(tmp_path: Path) -> None:
    rec = held(tmp_path)
    rec.start()  # a feeder starts its recorder: a held one opens nothing
    rec.frames([frame(1), frame(2)], 10)
    rec.snapshot("/api/v3/depth", {"symbol": "BTCUSDT", "limit": 100}, b'{"lastUpdateId":0,"bids":[],"asks":[]}', 11)
    rec.frames([frame(3)], 12)
    assert not (tmp_path / "g").exists() and rec.held and rec.stats().files == 0
    line = book_snapshot_line("/api/v3/depth", "BTCUSDT", 100, 2, [(1.5, 2.0)], [(3.25, 1e-05)], 13)
    rec.take_over([line])
    rec.frames([frame(4)], 14)
    closed(rec)
    [path] = recording_files(str(tmp_path / "g"))
    got = lines_of(path)
    assert orjson.loads(got[0]) == {"rest": "/api/v3/depth?symbol=BTCUSDT&limit=100", "source": "takeover",
                                    "data": {"lastUpdateId": 2, "bids": [["1.5", "2.0"]], "asks": [["3.25", "0.00001"]]}}  # fmt: skip
    assert got[1:] == [frame(1), frame(2), b'{"rest":"/api/v3/depth?symbol=BTCUSDT&limit=100","data":{"lastUpdateId":0,"bids":[],"asks":[]}}',
                       frame(3), frame(4)]  # fmt: skip
    stats = rec.stats()
    assert (stats.frames, stats.snapshots, stats.dropped, stats.files) == (4, 2, 0, 1)
    # the takeover line starts the replay's known book; the held diffs it holds are skipped by their ids
    [capture] = load_captures((ReplaySource(path=path),))
    assert capture.snapshot is not None and capture.snapshot["lastUpdateId"] == 2 and capture.known().first_applied == 2


def test_a_held_recorder_keeps_only_its_latest_frames(tmp_path: Path) -> None:
    rec = held(tmp_path, hold_s=1.0, hold_max_bytes=3 * len(frame(1)))
    second = 1_000_000_000
    for i in range(1, 6):  # one a second: only the last 2 are younger than 1 s at the end
        rec.frames([frame(i)], i * second)
    rec.take_over()
    closed(rec)
    [path] = recording_files(str(tmp_path / "g"))
    assert lines_of(path) == [frame(4), frame(5)]
    rec = held(tmp_path / "b", hold_max_bytes=3 * len(frame(1)))
    for i in range(1, 6):  # by size: the last 3
        rec.frames([frame(i)], i)
    rec.take_over()
    closed(rec)
    [path] = recording_files(str(tmp_path / "b" / "g"))
    assert lines_of(path) == [frame(3), frame(4), frame(5)]


def test_a_held_recorder_closed_without_a_takeover_leaves_no_file(tmp_path: Path) -> None:
    rec = held(tmp_path)
    rec.start()
    rec.frames([frame(1)], 1)
    closed(rec)
    assert not (tmp_path / "g").exists() and rec.stats().frames == 0


def test_an_active_recorder_is_not_held_and_take_over_changes_nothing(tmp_path: Path) -> None:
    rec = recorder(tmp_path)
    rec.start()
    rec.frames([frame(1)], 1)
    rec.take_over([b"0 {}\n"])  # only a held recorder takes over
    closed(rec)
    [path] = recording_files(str(tmp_path / "g"))
    assert lines_of(path) == [frame(1)]


def test_a_takeover_line_writes_every_number_as_a_plain_decimal() -> None:
    line = book_snapshot_line("/fapi/v1/depth", "X", 5, 7, [(123456789012.5, 1e-08), (1e16, 0.1)], [], 0)
    data = orjson.loads(line.partition(b" ")[2])["data"]
    assert data == {"lastUpdateId": 7, "bids": [["123456789012.5", "0.00000001"], ["10000000000000000", "0.1"]], "asks": []}
    assert all(float(p) == v for (p, _), v in zip(data["bids"], (123456789012.5, 1e16)))


# -- two feeders of one group, killed in turn, recorded, replayed ----------------------------------------


@pytest.fixture
def live(sim_factory: Callable[..., Simulator]) -> Simulator:
    return sim_factory(spot_symbols=SYMBOLS, rate=50.0, history_events=50_000)


def spools_and_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


def replayed_books(source: str, symbols: tuple[str, ...]) -> dict[str, tuple[int, list[list[float]], list[list[float]]]]:
    """A feeder's books once it has fed on everything ``ldc sim --replay source`` serves."""
    final = {c.symbol: c.final_ids[-1] for c in load_captures((ReplaySource(path=source),))}
    replay = Simulator(SimConfig(spot_symbols=(), replay=(ReplaySource(path=source),), replay_pace="client")).start()
    try:
        with feeder_in_thread(replay, "spot", symbols, depth=DEPTH) as again:
            wait_until(lambda: all(again.in_sync(s) and again.status(s).update_id == final[s] for s in symbols),
                       what=f"the books replayed from {source} at their last recorded update ids")  # fmt: skip
            out = {}
            for symbol in symbols:
                snap = again.reader.snapshot(symbol)
                assert snapshot_equals_truth(replay.truth(symbol, limit=DEPTH), snap)  # type: ignore[arg-type]
                out[symbol] = (snap.update_id, snap.bids.tolist(), snap.asks.tolist())
            return out
    finally:
        replay.stop()


def test_a_group_with_a_standby_records_one_feeder_per_file_and_replays_to_the_truth(tmp_path: Path, live: Simulator) -> None:
    group = unique_group("rsb")
    record = tmp_path / "record"
    config = write_config(tmp_path / "ldc.toml", [group_table(group, "spot", SYMBOLS, live, depth=DEPTH, refresh_interval_s=0.0,
                                                              record=str(record))])  # fmt: skip
    key = governor_key(endpoints(load_config(config).group(group)).rest_url)
    directory = record / group
    log = tmp_path / "feeders.log"
    with processes() as procs:
        procs.groups.append(group)
        procs.governors.append(key)
        active = start_feeder(procs, config, group, log)  # no writer yet: it becomes the writer
        with Reader(group, attach_timeout_s=READY_TIMEOUT_S) as reader:
            wait_until(lambda: all_in_sync_from(reader, active.pid), timeout_s=READY_TIMEOUT_S, what="the first writer in sync")
            for kill in range(KILLS):
                standby = start_feeder(procs, config, group, log)
                wait_until(lambda: standby_ready(group, standby.pid, len(SYMBOLS)), timeout_s=READY_TIMEOUT_S, what="the standby in sync")
                time.sleep(RUN_S)
                # the standby, in sync and receiving, has written nothing: one spool, the writer's (a killed
                # writer's is compressed by the next one)
                wait_until(lambda: [n for n in spools_and_files(directory) if n.endswith(SPOOL_SUFFIX)] == spools_and_files(directory)[-1:],
                           timeout_s=COMPRESS_TIMEOUT_S, what="one spool, the writer's")  # fmt: skip
                assert len(recording_files(str(directory))) == kill + 1, spools_and_files(directory)
                os.kill(active.pid, signal.SIGKILL)
                active.wait()
                wait_until(lambda: all_in_sync_from(reader, standby.pid), timeout_s=READY_TIMEOUT_S, what="the takeover")
                active = standby
            time.sleep(RUN_S)
            active.send_signal(signal.SIGTERM)
            assert active.wait(timeout=15) == 0
            recorded = {s: reader.snapshot(s, allow_out_of_sync=True) for s in SYMBOLS}
    wait_until(lambda: not any(n.endswith(SPOOL_SUFFIX) for n in spools_and_files(directory)), timeout_s=COMPRESS_TIMEOUT_S,
               what="every spool compressed (the killed writers' ones by the next writer)")  # fmt: skip
    files = recording_files(str(directory))
    assert len(files) == KILLS + 1, files  # one per writer: the first, then one per takeover
    for number, path in enumerate(files):
        lines = lines_of(path)
        takeover = [orjson.loads(line) for line in lines if line.endswith(b',"source":"takeover"}')]
        if number == 0:
            assert takeover == [] and lines[0].startswith(b'{"stream":')  # a writer that started as such
        else:  # a takeover's file starts with the books of the standby, one snapshot line a market
            assert lines[: len(SYMBOLS)] == [orjson.dumps(t) for t in takeover] and len(takeover) == len(SYMBOLS)
            for line in takeover:
                symbol = line["rest"].split("symbol=")[1].split("&")[0]
                truth = live.truth(symbol, update_id=line["data"]["lastUpdateId"], limit=DEPTH, family="spot")
                assert truth is not None and _numerically_equal(truth, line["data"]), (truth, line["data"])
    # the directory as one feed, and the last takeover's file on its own: no diff missing across the takeovers
    for source in (str(directory), files[-1]):
        for capture in load_captures((ReplaySource(path=source),)):
            first = capture.known().first_applied
            firsts = [int(orjson.loads(p)["U"]) for p in capture.payloads[first:]]
            assert firsts[0] <= capture.known().snapshot_id + 1, (source, capture.symbol)  # the snapshot is bridged
            breaks = [(u, f) for u, f in zip(capture.final_ids[first:], firsts[1:]) if f != u + 1]
            assert breaks == [], (source, capture.symbol, breaks)  # spot: each diff's U is the last one's u + 1
    # ... and both replay to the truth
    whole = replayed_books(str(directory), SYMBOLS)
    alone = replayed_books(files[-1], SYMBOLS)
    for symbol in SYMBOLS:
        truth = live.truth(symbol, update_id=whole[symbol][0], limit=DEPTH, family="spot")
        assert truth is not None and snapshot_equals_truth(truth, recorded[symbol]) and whole[symbol][0] == recorded[symbol].update_id
        assert whole[symbol] == alone[symbol] == (recorded[symbol].update_id, recorded[symbol].bids.tolist(), recorded[symbol].asks.tolist())
    took = log.read_text().count("recording of group %s taken over: 3 book snapshots" % group)
    assert took == KILLS


def _numerically_equal(truth: dict[str, object], data: dict[str, list[list[str]]]) -> bool:
    """The takeover line's top levels equal the truth's as numbers (the line writes each double's shortest form)."""
    def top(levels: object) -> list[tuple[float, float]]:
        return [(float(p), float(q)) for p, q in levels][:DEPTH]  # type: ignore[attr-defined]

    return top(truth["bids"]) == top(data["bids"]) and top(truth["asks"]) == top(data["asks"])


def test_the_stream_feeders_standby_holds_its_recording_too(tmp_path: Path, sim_factory: Callable[..., Simulator]) -> None:
    """A Bybit group: the standby writes nothing until it takes over, then its own file (no snapshot lines)."""
    symbols = ("BTCUSDT", "ETHUSDT")
    sim = sim_factory(spot_symbols=(), bybit_linear_symbols=symbols, rate=50.0, history_events=20_000)
    urls = sim.families.urls()["bybit"]
    assert isinstance(urls, dict)
    group = unique_group("rsbb")
    record = tmp_path / "record"
    table = {"name": group, "exchange": "bybit-linear", "symbols": list(symbols), "depth": DEPTH, "channel": "orderbook.50",
             "rest_url": urls["rest"], "ws_url": urls["ws"], "record": str(record)}  # fmt: skip
    config = write_config(tmp_path / "ldc.toml", [table])
    directory = record / group
    log = tmp_path / "feeders.log"
    with processes() as procs:
        procs.groups.append(group)
        active = start_feeder(procs, config, group, log)
        with Reader(group, attach_timeout_s=READY_TIMEOUT_S) as reader:
            wait_until(lambda: _quiet_in_sync(reader, symbols, active.pid), timeout_s=READY_TIMEOUT_S, what="the first writer in sync")
            standby = start_feeder(procs, config, group, log)
            wait_until(lambda: standby_ready(group, standby.pid, len(symbols)), timeout_s=READY_TIMEOUT_S, what="the standby in sync")
            time.sleep(RUN_S)
            assert len(spools_and_files(directory)) == 1, spools_and_files(directory)
            os.kill(active.pid, signal.SIGKILL)
            active.wait()
            wait_until(lambda: _quiet_in_sync(reader, symbols, standby.pid), timeout_s=READY_TIMEOUT_S, what="the takeover")
            time.sleep(RUN_S)
        standby.send_signal(signal.SIGTERM)
        assert standby.wait(timeout=15) == 0
    wait_until(lambda: not any(n.endswith(SPOOL_SUFFIX) for n in spools_and_files(directory)), timeout_s=COMPRESS_TIMEOUT_S,
               what="every spool compressed")  # fmt: skip
    first, second = recording_files(str(directory))
    assert lines_of(first) and lines_of(second)
    assert not any(b'"source":"takeover"' in line for line in lines_of(second))
    assert read_recording(second, wanted=ALL).lines[-1][0] > read_recording(first, wanted=ALL).lines[-1][0]


def _quiet_in_sync(reader: Reader, symbols: tuple[str, ...], pid: int) -> bool:
    try:
        return all(reader.status(s).in_sync for s in symbols) and reader.info().writer_pid == pid
    except Exception:
        return False


def test_the_compressor_of_a_killed_writers_spool_runs_at_the_takeover(tmp_path: Path) -> None:
    """A held recorder opens nothing at its start; its takeover compresses the spools no feeder holds."""
    left = tmp_path / "g" / "g-20260101T000000.000000Z.spool"
    left.parent.mkdir(parents=True)
    left.write_bytes(b"1 " + frame(1) + b"\n")
    rec = held(tmp_path)
    rec.start()
    assert left.exists()
    rec.take_over()
    closed(rec)
    wait_until(lambda: not left.exists(), timeout_s=COMPRESS_TIMEOUT_S, what="the left spool compressed")
    assert [Path(p).name for p in recording_files(str(tmp_path / "g"))][0] == "g-20260101T000000.000000Z.gz"


def test_a_takeover_into_an_unusable_directory_stops_recording_with_an_error_and_counts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    rec = Recorder(RecordConfig(directory=str(blocker / "record"), group="g", rotate_bytes=10**9, rotate_s=3600.0), held=True)
    rec.frames([frame(1)], 1)
    rec.take_over([book_snapshot_line("/api/v3/depth", "BTCUSDT", 100, 1, [(1.0, 1.0)], [(2.0, 1.0)], 2)])
    assert rec.frames([frame(2)], 3) is False  # the feeder goes on; the frame is counted, not written
    rec.close()
    stats = rec.stats()
    assert (stats.errors, stats.frames, stats.snapshots, stats.files) == (1, 0, 0, 0) and stats.dropped == 3
    assert "Not a directory" in stats.failed
    assert any("recording of group g stopped" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)


def test_a_takeover_after_the_recorder_closed_opens_nothing(tmp_path: Path) -> None:
    """A feeder stopping while its standby thread takes over: the closed recorder starts no file and no thread."""
    rec = held(tmp_path)
    rec.frames([frame(1)], 1)
    closed(rec)
    rec.take_over([book_snapshot_line("/api/v3/depth", "BTCUSDT", 100, 1, [(1.0, 1.0)], [(2.0, 1.0)], 2)])
    assert not (tmp_path / "g").exists() and rec.held and rec.stats().files == 0
