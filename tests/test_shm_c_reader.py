"""readers/c: builds with -Wall -Wextra -Werror and reads what the Python writer wrote exactly as
the Python reader does (docs/LAYOUT.md section 14)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from shm_helpers import group_fixture
from shm_proc import PAYLOADS, payload, payload_errors

from ldc.shm.layout import HEADER, VERSION_MINOR, Counter, Status, segment_path
from ldc.shm.reader import Reader
from ldc.shm.writer import SegmentWriter

ROOT = Path(__file__).resolve().parents[1]
C_DIR = ROOT / "readers" / "c"
CFLAGS = ["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror"]
DEPTH = 20

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("c") / "ldc_example"
    subprocess.run(["cc", *CFLAGS, "-o", str(out), str(C_DIR / "ldc_example.c")], check=True, capture_output=True, text=True)
    return out


@pytest.fixture
def group() -> Iterator[str]:
    yield from group_fixture()


def run_c(example: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(example), *args], capture_output=True, text=True, timeout=60)


def test_the_benchmark_also_builds_warning_free(tmp_path: Path) -> None:
    subprocess.run(["cc", *CFLAGS, "-o", str(tmp_path / "b"), str(C_DIR / "ldc_bench.c")], check=True, capture_output=True, text=True)


def test_c_reader_sees_exactly_what_the_python_reader_sees(example: Path, group: str) -> None:
    rng = np.random.default_rng(7)
    with SegmentWriter(group, depth=DEPTH, capacity=8, exchange="binance.com") as w, Reader(group) as r:
        for i, symbol in enumerate(["BTCUSDT", "ETHUSDT", "1000SHIBUSDT"]):
            slot = w.add_market(symbol)
            # random doubles print and parse back exactly with %.17g; prices from 1e-8 to 1e6
            bids = np.ascontiguousarray(np.sort(rng.random((DEPTH, 2)) * 10.0 ** rng.integers(-8, 7, (DEPTH, 1)), axis=0)[::-1])
            asks = np.ascontiguousarray(rng.random((DEPTH, 2)))
            w.publish(slot, update_id=1000 + i, event_time_ms=1_700_000_000_000 + i, recv_time_ns=1_700_000_000_000_000_000 + i,
                      status=Status.SYNCED, bids=bids, asks=asks, n_bids=DEPTH - i, n_asks=DEPTH - 2 * i)
            w.bump(slot, Counter.SNAPSHOTS, i + 1)
            w.set_status(slot, Status.SYNCED | Status.REFRESHING, f"refresh {i}: \"quoted\" é")
            out = run_c(example, group, symbol)
            assert out.returncode == 0, out.stderr
            got = json.loads(out.stdout)
            snap, st = r.snapshot(symbol), r.status(symbol)
            assert got["result"] == "ok" and got["symbol"] == symbol and got["writer_alive"] is True
            assert (got["update_id"], got["event_time_ms"], got["recv_time_ns"], got["publish_time_ns"]) == (
                snap.update_id, snap.event_time_ms, snap.recv_time_ns, snap.publish_time_ns)
            assert got["status"] == snap.status == Status.SYNCED | Status.REFRESHING
            assert got["message"] == st.message == f"refresh {i}: \"quoted\" é"
            assert got["counters"] == list(st.counters.values())
            assert np.array_equal(np.array(got["bids"]).reshape(-1, 2), snap.bids)
            assert np.array_equal(np.array(got["asks"]).reshape(-1, 2), snap.asks)


def test_c_reader_lists_the_markets_in_slot_order(example: Path, group: str) -> None:
    with SegmentWriter(group, depth=DEPTH, capacity=8) as w, Reader(group) as r:
        for symbol in ("BTCUSDT", "ETHUSDT", "BNBUSDT"):
            w.add_market(symbol)
        w.remove_market("ETHUSDT")
        w.add_market("XRPUSDT")  # reuses slot 1
        out = run_c(example, group, "--list")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == r.markets() == ["BTCUSDT", "XRPUSDT", "BNBUSDT"]


def test_c_reader_reports_out_of_sync_and_a_stopped_writer(example: Path, group: str) -> None:
    w = SegmentWriter(group, depth=DEPTH, capacity=2)
    slot = w.add_market("BADUSDT")
    w.set_status(slot, Status.ERROR, "unknown symbol: -1121 Invalid symbol.")
    got = json.loads(run_c(example, group, "BADUSDT").stdout)
    assert got["result"] == "out_of_sync" and got["status"] == Status.ERROR and got["update_id"] == -1
    assert got["message"] == "unknown symbol: -1121 Invalid symbol."
    w.close()
    got = json.loads(run_c(example, group, "BADUSDT").stdout)
    assert got["result"] == "writer_dead" and got["writer_alive"] is False


def test_c_reader_fails_clearly_without_a_segment_or_with_another_major(example: Path, group: str) -> None:
    out = run_c(example, group, "BTCUSDT")
    assert out.returncode == 2 and out.stderr.startswith(f"cannot open segment /ldc-{group}: No such file")
    SegmentWriter(group, depth=DEPTH, capacity=2).close()
    fd = os.open(segment_path(group), os.O_RDWR)
    os.pwrite(fd, (3).to_bytes(2, "little"), HEADER.offset("version_major"))
    os.close(fd)
    out = run_c(example, group, "BTCUSDT")
    assert out.returncode == 2
    assert out.stderr.strip() == f"segment /ldc-{group} has layout version 3.{VERSION_MINOR}, this reader understands 2.0"


def test_c_reader_wakes_on_the_notify_word(example: Path, group: str) -> None:
    with SegmentWriter(group, depth=DEPTH, capacity=2) as w:
        slot = w.add_market("BTCUSDT")
        bids, asks, nb, na = payload(1, DEPTH)
        w.publish(slot, update_id=1, event_time_ms=7, recv_time_ns=1, status=Status.SYNCED, bids=bids, asks=asks, n_bids=nb, n_asks=na)
        proc = subprocess.Popen([str(example), group, "BTCUSDT", "--wait", "20"], stdout=subprocess.PIPE, text=True)
        try:
            time.sleep(0.3)
            bids, asks, nb, na = payload(2, DEPTH)
            w.publish(slot, update_id=2, event_time_ms=14, recv_time_ns=2, status=Status.SYNCED, bids=bids, asks=asks, n_bids=nb, n_asks=na)
            w.notify()
            out, _ = proc.communicate(timeout=15)
        finally:
            proc.kill()
            proc.wait(timeout=30)
        assert json.loads(out)["update_id"] == 2


def test_c_reader_copies_are_consistent_while_python_publishes(example: Path, group: str) -> None:
    with SegmentWriter(group, depth=DEPTH, capacity=2) as w:
        slot = w.add_market("TORTUREUSDT")
        payloads = [payload(k, DEPTH) for k in range(PAYLOADS)]
        stop = threading.Event()

        def publish_forever() -> None:
            k = 0
            while not stop.is_set():
                bids, asks, nb, na = payloads[k % PAYLOADS]
                w.publish(slot, update_id=k % PAYLOADS, event_time_ms=(k % PAYLOADS) * 7, recv_time_ns=k,
                          status=Status.SYNCED, bids=bids, asks=asks, n_bids=nb, n_asks=na)
                k += 1

        t = threading.Thread(target=publish_forever)
        t.start()
        try:
            # A writer descheduled with its seq odd (a loaded host, the GIL) makes a read end "contended" after
            # the reader's 10 ms spin (layout section 10: the caller tries again); only a copy that came back
            # is checked, and 15 of them must come back.
            copies = attempts = 0
            while copies < 15:
                attempts += 1
                assert attempts <= 300, f"only {copies} consistent copies in {attempts - 1} reads"
                got = json.loads(run_c(example, group, "TORTUREUSDT").stdout)
                assert got["result"] in ("ok", "contended"), got["result"]
                if got["result"] == "contended":
                    continue
                copies += 1
                bids = np.array(got["bids"]).reshape(-1, 2)
                asks = np.array(got["asks"]).reshape(-1, 2)
                assert payload_errors(got["update_id"], got["event_time_ms"], len(bids), len(asks), bids, asks, DEPTH) == 0
        finally:
            stop.set()
            t.join()
