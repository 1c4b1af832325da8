"""ldc status / book / top (issue 8 item 4) against segments written by SegmentWriter."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from shm_helpers import group_fixture, unique_group, unlink_group

from ldc.cli import main as cli
from ldc.shm.layout import Counter, Status
from ldc.shm.writer import SegmentWriter
from ldc.tools import list_groups

DEPTH = 5
BIDS = np.array([[100.5, 1.0], [100.0, 2.0], [99.5, 3.0], [99.0, 4.0], [98.5, 5.0]])
ASKS = np.array([[101.0, 1.5], [101.5, 2.5], [102.0, 3.5], [102.5, 4.5], [103.0, 5.5]])


@pytest.fixture
def group() -> Iterator[str]:
    yield from group_fixture()


@pytest.fixture
def writer(group: str) -> Iterator[SegmentWriter]:
    with SegmentWriter(group, depth=DEPTH, capacity=4, exchange="binance.com") as w:
        slot = w.add_market("BTCUSDT")
        publish(w, slot, 7)
        w.bump(slot, Counter.RESYNCS, 2)
        yield w


def publish(w: SegmentWriter, slot: int, update_id: int) -> None:
    w.publish(slot, update_id=update_id, event_time_ms=1_700_000_000_000, recv_time_ns=1_700_000_000_004_000_000,
              status=Status.SYNCED, bids=BIDS, asks=ASKS, n_bids=DEPTH, n_asks=DEPTH)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------- ldc book


def test_book_json_has_the_consistent_snapshot(capsys: pytest.CaptureFixture[str], group: str, writer: SegmentWriter) -> None:
    code, out, _ = run(capsys, "book", group, "BTCUSDT", "--json")
    got = json.loads(out)
    assert code == 0
    assert (got["symbol"], got["update_id"], got["synced"], got["status"]) == ("BTCUSDT", 7, True, ["SYNCED"])
    assert got["bids"] == BIDS.tolist() and got["asks"] == ASKS.tolist()
    assert got["event_time_ms"] == 1_700_000_000_000 and got["writer_alive"] is True


def test_book_ladder_shows_asks_above_bids_with_the_spread(capsys: pytest.CaptureFixture[str], group: str, writer: SegmentWriter) -> None:
    code, out, _ = run(capsys, "book", group, "BTCUSDT", "--depth", "2")
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("BTCUSDT  update_id 7  SYNCED  published ")
    assert [line.split() for line in lines[2:]] == [
        ["101.5", "2.5", "ask"], ["101", "1.5", "ask"], ["------------------", "spread", "0.5"],
        ["100.5", "1", "bid"], ["100", "2", "bid"],
    ]


def test_book_of_an_out_of_sync_market_is_shown_with_exit_1(capsys: pytest.CaptureFixture[str], group: str, writer: SegmentWriter) -> None:
    writer.set_status(writer.slot("BTCUSDT"), Status.RESYNCING, "gap: expected U=8, got U=12")
    code, out, _ = run(capsys, "book", group, "BTCUSDT", "--json")
    got = json.loads(out)
    assert code == 1 and got["synced"] is False and got["status"] == ["RESYNCING"] and got["update_id"] == 7
    code, out, _ = run(capsys, "book", group, "BTCUSDT")
    assert code == 1 and "message: gap: expected U=8, got U=12" in out


def test_book_errors_exit_2_with_the_reason(capsys: pytest.CaptureFixture[str], group: str, writer: SegmentWriter) -> None:
    code, _, err = run(capsys, "book", group, "ETHUSDT")
    assert code == 2 and err.strip() == f"ldc book: market 'ETHUSDT' is not in segment /ldc-{group} (1 markets)"
    code, _, err = run(capsys, "book", "nosuchgroup-x", "BTCUSDT")
    assert code == 2 and "no segment /ldc-nosuchgroup-x" in err
    code, _, err = run(capsys, "book", group, "BTCUSDT", "--depth", "0")
    assert code == 2 and err.strip() == "ldc book: --depth must be >= 1, got 0"


# ---------------------------------------------------------------- ldc status


def test_status_json_reports_writer_markets_errors_and_counters(capsys: pytest.CaptureFixture[str], group: str, writer: SegmentWriter) -> None:
    bad = writer.add_market("BADUSDT")
    writer.set_status(bad, Status.ERROR, "unknown symbol: -1121 Invalid symbol.")
    code, out, _ = run(capsys, "status", "--json", "--group", group, "--interval", "0")
    seg = json.loads(out)["segments"][0]
    assert code == 1  # one market is in error
    assert (seg["group"], seg["exchange"], seg["writer_alive"], seg["state"], seg["depth"]) == (group, "binance.com", True, "running", DEPTH)
    btc, badm = seg["markets"]
    assert (btc["symbol"], btc["synced"], btc["update_id"], btc["resyncs"], btc["updates"]) == ("BTCUSDT", True, 7, 2, 1)
    assert btc["lag_ms"] == 4.0 and btc["levels"] == [DEPTH, DEPTH] and btc["updates_per_s"] is None
    assert (badm["symbol"], badm["synced"], badm["status"]) == ("BADUSDT", False, ["ERROR"])
    assert badm["message"] == "unknown symbol: -1121 Invalid symbol." and badm["age_s"] is None


def test_status_measures_updates_per_second_over_the_interval(capsys: pytest.CaptureFixture[str], group: str, writer: SegmentWriter) -> None:
    slot = writer.slot("BTCUSDT")
    stop = threading.Event()

    def keep_publishing() -> None:
        k = 8
        while not stop.is_set():
            publish(writer, slot, k)
            k += 1
            time.sleep(0.002)

    t = threading.Thread(target=keep_publishing)
    t.start()
    try:
        code, out, _ = run(capsys, "status", "--json", "--group", group, "--interval", "0.3")
    finally:
        stop.set()
        t.join()
    market = json.loads(out)["segments"][0]["markets"][0]
    assert code == 0 and market["updates_per_s"] > 0


def test_status_text_and_a_stopped_writer(capsys: pytest.CaptureFixture[str], group: str, writer: SegmentWriter) -> None:
    code, out, _ = run(capsys, "status", "--group", group, "--interval", "0")
    assert code == 0
    assert out.startswith(f"{group}  binance.com  writer alive (running, pid ")
    assert out.splitlines()[2].split()[:2] == ["BTCUSDT", "yes"]
    writer.close()
    code, out, _ = run(capsys, "status", "--group", group, "--interval", "0")
    assert code == 1 and "writer NOT RUNNING (stopped" in out
    assert out.splitlines()[2].split()[:2] == ["BTCUSDT", "NO"]


def test_status_of_a_missing_group_is_an_error_row(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "status", "--json", "--group", "nosuchgroup-y")
    seg = json.loads(out)["segments"][0]
    assert code == 1 and seg["error"].startswith("no segment /ldc-nosuchgroup-y")


def test_list_groups_skips_waiter_files_and_foreign_names(tmp_path: Path) -> None:
    for name in ("ldc-spot", "ldc-spot.waiters", "ldc-futures", "other", "ldc-bad name"):
        (tmp_path / name).write_bytes(b"")
    assert list_groups(str(tmp_path)) == ["futures", "spot"]
    assert list_groups(str(tmp_path / "missing")) == []


def test_status_lists_every_segment_by_default(capsys: pytest.CaptureFixture[str], group: str, writer: SegmentWriter) -> None:
    other = unique_group()
    try:
        with SegmentWriter(other, depth=DEPTH, capacity=2):
            _, out, _ = run(capsys, "status", "--json", "--interval", "0")
        groups = [s["group"] for s in json.loads(out)["segments"]]
        assert group in groups and other in groups
    finally:
        unlink_group(other)


# ---------------------------------------------------------------- ldc top


def test_top_draws_the_ladder_and_redraws_on_publish(capsys: pytest.CaptureFixture[str], group: str, writer: SegmentWriter) -> None:
    slot = writer.slot("BTCUSDT")

    def later() -> None:
        time.sleep(0.2)
        publish(writer, slot, 8)
        writer.notify()

    t = threading.Thread(target=later)
    t.start()
    code, out, _ = run(capsys, "top", group, "BTCUSDT", "--depth", "2", "--duration", "0.8")
    t.join()
    assert code == 0
    frames = out.strip().split("\n\n")
    assert frames[0].startswith("BTCUSDT  update_id 7  SYNCED")
    assert any(f.startswith("BTCUSDT  update_id 8  SYNCED") for f in frames[1:])
    assert "updates 1  resyncs 2  gaps 0" in frames[0]


def test_top_without_a_segment_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "top", "nosuchgroup-z", "BTCUSDT", "--duration", "0.1")
    assert code == 2 and "no segment /ldc-nosuchgroup-z" in err
