"""The Python reader of tests/test_standby.py: ``python standby_spin.py GROUP MS SYMBOL...``.

Reads the symbols in turn with ``ldc.shm.reader.Reader`` as fast as it can for MS ms (or until the segment
says STOPPED) and prints one JSON object, the same as ``shm_reader_tool timeline`` per symbol: ``runs``,
the runs of reads accepted live and in sync per writer pid ([pid, first start, last start, count],
CLOCK_MONOTONIC ns), and ``samples``, books to check against the simulator's truth (the first
SAMPLE_AFTER_CHANGE of each run, then one every SAMPLE_EVERY_MS): [update_id, bids, asks].
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from ldc.errors import LayoutError, LdcError, WriterDead
from ldc.shm.layout import HEADER, State
from ldc.shm.reader import Reader

SAMPLE_AFTER_CHANGE = 3
SAMPLE_EVERY_NS = 50_000_000
PAUSE_S = 0.0002  # between rounds: the feeders restarting on a loaded 2-core host need the CPU


def spin(group: str, symbols: list[str], ms: int) -> dict[str, Any]:
    runs: dict[str, list[list[int]]] = {s: [] for s in symbols}
    samples: dict[str, list[Any]] = {s: [] for s in symbols}
    fresh = dict.fromkeys(symbols, 0)
    next_sample = dict.fromkeys(symbols, 0)
    r = Reader(group, attach_timeout_s=10)
    buf = r.new_buffer()
    end = time.monotonic_ns() + ms * 1_000_000
    try:
        while time.monotonic_ns() < end:
            time.sleep(PAUSE_S)
            for symbol in symbols:
                t0 = time.monotonic_ns()
                try:
                    buf = r.read_into(symbol, buf)
                except WriterDead:
                    if r._seg.load_u32(HEADER.offset("state")) == State.STOPPED:
                        return {"runs": runs, "samples": samples}  # the test's last writer stopped: over
                    continue
                except LayoutError:
                    buf = r.new_buffer()
                    continue
                except LdcError:
                    continue
                pid = r.info().writer_pid  # of the file this copy came from (a follow happens inside read_into)
                mine = runs[symbol]
                if not mine or mine[-1][0] != pid:
                    mine.append([pid, t0, t0, 0])
                    fresh[symbol] = SAMPLE_AFTER_CHANGE
                mine[-1][2] = t0
                mine[-1][3] += 1
                if fresh[symbol] > 0 or t0 >= next_sample[symbol]:
                    samples[symbol].append([buf.update_id, buf.bids[: buf.n_bids].tolist(), buf.asks[: buf.n_asks].tolist()])
                    fresh[symbol] = max(0, fresh[symbol] - 1)
                    next_sample[symbol] = t0 + SAMPLE_EVERY_NS
    finally:
        r.close()
    return {"runs": runs, "samples": samples}


if __name__ == "__main__":
    print(json.dumps(spin(sys.argv[1], sys.argv[3:], int(sys.argv[2]))), flush=True)
