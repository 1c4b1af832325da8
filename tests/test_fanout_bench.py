"""scripts/bench_mirror.py measures live mirrors: its origin stand-in keeps its heartbeat as a feeder
does. (It did not: 5 s into a run the origin read STALE, the relay said so, and every mirror flagged
all markets and stopped applying, so the 10-mirror runs measured flagged mirrors and saw no update.)"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from ldc.shm.reader import Reader
from shm_helpers import unique_group, unlink_group

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench_mirror.py"
STALE_AFTER_MS = 300


def test_the_benchmarks_origin_stays_alive_past_its_stale_after() -> None:
    group = unique_group("bpub")
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--role", "publisher", group, "3", "200", str(STALE_AFTER_MS)])
    try:
        reader = None
        deadline = time.monotonic() + 30
        while reader is None:
            try:
                reader = Reader(group)
            except Exception:
                assert time.monotonic() < deadline and proc.poll() is None, "the publisher never made its segment"
                time.sleep(0.05)
        with reader:
            time.sleep(4 * STALE_AFTER_MS / 1000)
            statuses = [reader.status(symbol) for symbol in reader.markets()]
            assert len(statuses) == 3 and all(st.in_sync for st in statuses), statuses
    finally:
        proc.terminate()
        proc.wait(30)
        unlink_group(group)
