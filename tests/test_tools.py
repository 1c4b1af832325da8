"""ldc status / book / top (issue 8 item 4) against segments written by SegmentWriter."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from shm_helpers import group_fixture, unique_group, unlink_group

from ldc.cli import EXIT_BROKEN_PIPE
from ldc.cli import main as cli
from ldc.shm.layout import Counter, Status
from ldc.shm.writer import SegmentWriter
from ldc.tools import human_ms, list_groups

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
        ["101.5", "2.5", "ask"], ["101.0", "1.5", "ask"], ["------------------", "spread", "0.5"],
        ["100.5", "1.0", "bid"], ["100.0", "2.0", "bid"],
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
    assert code == 2 and err.strip() == f"ldc book: market 'ETHUSDT' is not in segment /ldc-{group}, expected one of: BTCUSDT"
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


# ---------------------------------------------------------------- every venue's symbol syntax (issue 12 item 8)


@pytest.mark.parametrize("typed", ["btcusdt", "BTCUSDT", "BtcUsdt"])
def test_book_and_top_find_a_lower_case_market_typed_in_any_case(capsys: pytest.CaptureFixture[str], group: str, typed: str) -> None:
    """HTX spells its markets in lower case (btcusdt): the argument was upper-cased, so no case found them."""
    with SegmentWriter(group, depth=DEPTH, capacity=2, exchange="htx") as w:
        publish(w, w.add_market("btcusdt"), 3)
        book_code, out, err = run(capsys, "book", group, typed, "--json")
        top_code, frame_text, _ = run(capsys, "top", group, typed, "--depth", "1", "--duration", "0")
    assert (book_code, top_code) == (0, 0), err
    assert json.loads(out)["symbol"] == "btcusdt" and json.loads(out)["exchange"] == "htx"
    assert frame_text.startswith("btcusdt  update_id 3  SYNCED  published ") and "  htx\n" in frame_text


def test_book_asks_for_the_exact_spelling_when_two_markets_differ_only_in_case(capsys: pytest.CaptureFixture[str], group: str) -> None:
    with SegmentWriter(group, depth=DEPTH, capacity=2, exchange="binance.com") as w:
        publish(w, w.add_market("ABC"), 1)
        publish(w, w.add_market("abc"), 2)
        exact = [json.loads(run(capsys, "book", group, name, "--json")[1])["update_id"] for name in ("ABC", "abc")]
        code, _, err = run(capsys, "book", group, "Abc")
    assert exact == [1, 2]
    assert code == 2 and err.strip() == f"ldc book: market 'Abc' is not in segment /ldc-{group}, expected one of: ABC, abc"


# ---------------------------------------------------------------- hardening (issue 14 items 9, 10 and rough edges)


@pytest.mark.parametrize("argv", [["book", "../etc", "X"], ["status", "--group", "../etc"], ["top", "../etc", "X"],
                                  ["book", "", "X"], ["status", "--group", "a/b"], ["top", "x" * 64, "X"]])  # fmt: skip
def test_an_invalid_group_name_is_a_one_line_error_naming_the_rule(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, out, err = run(capsys, *argv)
    group = argv[2] if argv[0] == "status" else argv[1]
    assert (code, out) == (2, "")
    assert err.splitlines() == [f"ldc {argv[0]}: group name expected [A-Za-z0-9_-]{{1,63}} (letters, digits, '_', '-'), found {group!r}"]


@pytest.mark.parametrize("argv", [["book", "{g}", "BTCUSDT"], ["book", "{g}", "BTCUSDT", "--json"],
                                  ["status", "--group", "{g}", "--interval", "0"], ["top", "{g}", "BTCUSDT", "--duration", "5"]])  # fmt: skip
def test_a_reader_that_closed_the_pipe_ends_the_command_quietly(group: str, writer: SegmentWriter, argv: list[str]) -> None:
    """`ldc book ... | head -1`: the pipe's reading end is closed before the command writes (the race made
    deterministic), so every write fails with EPIPE."""
    proc = subprocess.Popen([sys.executable, "-m", "ldc.cli", *[a.format(g=group) for a in argv]],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=30) == EXIT_BROKEN_PIPE
    assert err == b""


def test_book_keeps_the_exchange_decimals_and_an_exact_spread(capsys: pytest.CaptureFixture[str], group: str) -> None:
    with SegmentWriter(group, depth=2, capacity=1, exchange="binance.com") as w:
        slot = w.add_market("ETHUSDT")
        w.publish(slot, update_id=1, event_time_ms=1, recv_time_ns=1, status=Status.SYNCED,
                  bids=np.array([[150.2, 0.3], [150.19, 12.0]]), asks=np.array([[150.5, 0.125], [150.6, 1.0]]),
                  n_bids=2, n_asks=2)  # fmt: skip
        code, out, _ = run(capsys, "book", group, "ethusdt")
    assert code == 0 and out.startswith("ETHUSDT  update_id 1  SYNCED  published ")
    assert [line.split() for line in out.splitlines()[2:]] == [
        ["150.60", "1.000", "ask"], ["150.50", "0.125", "ask"], ["------------------", "spread", "0.30"],
        ["150.20", "0.300", "bid"], ["150.19", "12.000", "bid"],
    ]  # 150.5 - 150.2 in floats is 0.30000000000001137


def test_a_market_never_published_says_so(capsys: pytest.CaptureFixture[str], group: str, writer: SegmentWriter) -> None:
    bad = writer.add_market("BADUSDT")
    writer.set_status(bad, Status.ERROR, "unknown symbol: -1121 Invalid symbol.")
    code, out, _ = run(capsys, "book", group, "badusdt")
    assert code == 1 and out.splitlines()[0] == "BADUSDT  update_id -1  ERROR  never published  binance.com"
    assert re.search(r"\bnan\b", out) is None  # no price or quantity printed as nan ("binance" has one inside)


@pytest.mark.parametrize(("ms", "text"), [(0.04, "0.0 ms"), (4.0, "4.0 ms"), (999.0, "999.0 ms"), (7_344.0, "7.3 s"),
                                          (720_000.0, "12.0 min"), (73_445_900.0, "20.4 h"), (7.34459e10, "850 d")])  # fmt: skip
def test_human_durations(ms: float, text: str) -> None:
    assert human_ms(ms) == text


def test_status_text_gives_lag_and_ages_in_human_units(capsys: pytest.CaptureFixture[str], group: str, writer: SegmentWriter) -> None:
    slot = writer.slot("BTCUSDT")
    writer.publish(slot, update_id=8, event_time_ms=1_000, recv_time_ns=73_445_901_000_000, status=Status.SYNCED,
                   bids=BIDS, asks=ASKS, n_bids=DEPTH, n_asks=DEPTH)  # fmt: skip
    code, out, _ = run(capsys, "status", "--group", group, "--interval", "0")
    row = out.splitlines()[2]
    assert code == 0 and " 20.4 h " in row and "e+" not in out
    assert re.search(r"heartbeat \d+\.\d (ms|s) ago", out.splitlines()[0])


def test_status_help_says_when_it_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli(["status", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "1 when any segment on the host (or given with --group) is unhealthy" in help_text
