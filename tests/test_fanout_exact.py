"""A mirror slot is exact or flagged at every instant, not only between updates (issue 16): when an
update moves counters beyond the publish's own `updates` bump (the relay coalesced several origin
publishes, or `ignored` rose), or changes the status message, the mirror makes several slot writes;
a reader hammering the slot from another process must never see an in-sync copy whose counters
belong to another update id than its levels, nor an in-sync copy of a book the origin flagged."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from ldc.fanout import codec
from ldc.fanout.conn import options_from_url
from ldc.fanout.mirror import Mirror
from ldc.shm.layout import Counter, Status
from ldc.shm.reader import Reader
from ldc.shm.writer import SegmentWriter
from shm_helpers import unique_group, unlink_group

UPDATES = 20_000
DEPTH = 5

# "counters": each origin update id u has 2u publishes and u ignored diffs, so a copy is consistent
# iff both hold. "flags": one publish per u, odd u RESYNCING at the origin with a message, even u
# SYNCED without: an in-sync copy of an odd u is a flag lost.
READER = textwrap.dedent("""
    import json, sys, time
    from ldc.shm.reader import Reader
    reader, torn, seen = Reader(sys.argv[1], attach_timeout_s=10), 0, 0
    buf = reader.new_buffer()
    end = time.monotonic() + float(sys.argv[2])
    while time.monotonic() < end:
        try:
            b = reader.read_into("AAAUSDT", buf)
        except Exception:
            continue
        u, counters = b.update_id, b.counters
        seen += 1
        if sys.argv[3] == "counters" and u > 0 and (counters[0] != 2 * u or counters[3] != u):
            torn += 1
        if sys.argv[3] == "flags" and u % 2:
            torn += 1
    print(json.dumps({"torn": torn, "seen": seen}))
""")


def origin_updates(group: str, mode: str) -> list[bytes]:
    """Genuine updates: a real slot published and copied, encoded as the relay encodes it."""
    payloads = []
    with SegmentWriter(group, depth=DEPTH, capacity=2) as w, Reader(group) as r:
        slot = w.add_market("AAAUSDT")
        steps = np.arange(DEPTH, dtype=np.float64)
        buf = r.new_buffer()
        g = r.geometry
        for u in range(1, UPDATES + 1):
            bids = np.ascontiguousarray(np.column_stack([100.0 + u - steps, np.full(DEPTH, 1.0)]))
            asks = np.ascontiguousarray(np.column_stack([101.0 + u + steps, np.full(DEPTH, 1.0)]))
            status = Status.RESYNCING if mode == "flags" and u % 2 else Status.SYNCED
            for _ in range(2 if mode == "counters" else 1):  # two publishes: the relay saw only the second
                w.publish(slot, update_id=u, event_time_ms=u, recv_time_ns=u, status=status, bids=bids, asks=asks,
                          n_bids=DEPTH, n_asks=DEPTH)
            if mode == "counters":
                w.bump(slot, Counter.IGNORED)
            else:
                w.set_status(slot, status, "gap: fetching a snapshot" if u % 2 else "")
            r._seg.read(0, 1, buf, True)  # with the message, in or out of sync (as the relay copies it)
            entry = codec.encode_entry(u, b"AAAUSDT", memoryview(buf), buf.n_bids, buf.n_asks, g.bids_offset, g.asks_offset,
                                       buf.message)
            payloads.append(codec.encode_batch(7, u, group.encode(), [entry]))  # one update a batch: every write seen
    return payloads


@pytest.mark.parametrize("mode", ["counters", "flags"])
def test_no_in_sync_copy_mixes_two_updates_or_loses_a_flag(mode: str) -> None:
    origin, local = unique_group("exo"), unique_group("exm")
    try:
        payloads = origin_updates(origin, mode)
        mirror = Mirror(origin, options_from_url("nats://127.0.0.1:1"), symbols=["AAAUSDT"], local_group=local, depth=DEPTH)
        reader = subprocess.Popen([sys.executable, "-c", READER, local, "4", mode], stdout=subprocess.PIPE, text=True)
        try:
            time.sleep(1.0)  # the reader is attached and spinning
            for payload in payloads:
                mirror.handle_batch(payload, codec.BATCH_TOKEN, from_stream=True)
            out, _ = reader.communicate(timeout=60)
        finally:
            reader.kill()
            mirror.writer.close()
        result = json.loads(out)
        assert mirror.stats.applied == UPDATES
        assert result["seen"] > 1000, result
        assert result["torn"] == 0, result
    finally:
        unlink_group(origin)
        unlink_group(local)
