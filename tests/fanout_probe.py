"""A reader on a mirror "host": run inside the mirror's mount namespace (nsenter), prints one JSON line.

    fanout_probe.py GROUP sync SYMBOLS MIN_UID TIMEOUT_S   until every symbol is in sync at >= MIN_UID
    fanout_probe.py GROUP flag SYMBOLS FLAG TIMEOUT_S      until every symbol shows FLAG (e.g. STALE)

Both check every in-sync read against fanout_truth (the origin's book at that update id), count the
reads, and report the segment's writer pid (the mirror's, never the origin feeder's: hosts are apart).
"""

from __future__ import annotations

import json
import sys
import time

import fanout_truth
from ldc.errors import SegmentError
from ldc.shm.layout import COUNTER_FIELDS, Status
from ldc.shm.reader import Reader


def main() -> int:
    group, mode, symbols_arg, arg, timeout_s = sys.argv[1:6]
    symbols = symbols_arg.split(",")
    deadline = time.monotonic() + float(timeout_s)
    reads, mismatches, states = 0, [], {}
    reader = None
    done = False
    while time.monotonic() < deadline and not done:
        try:
            reader = reader or Reader(group)
            states = {}
            for symbol in symbols:
                buf = reader.read_into(symbol, reader.new_buffer(), allow_out_of_sync=True)
                st = reader.status(symbol)
                reads += 1
                if st.in_sync and buf.update_id == st.update_id:
                    counters = dict(zip(COUNTER_FIELDS, buf.counters))
                    bad = fanout_truth.mismatch(symbol, buf.update_id, buf.bids[: buf.n_bids].copy(), buf.asks[: buf.n_asks].copy(),
                                                buf.event_time_ms, buf.recv_time_ns, counters)
                    if bad:
                        mismatches.append(bad)
                states[symbol] = {"uid": st.update_id, "status": int(st.status), "flags": str(Status(st.status)),
                                  "message": st.message, "in_sync": st.in_sync}
            if mode == "sync":
                done = all(s["in_sync"] and s["uid"] >= int(arg) for s in states.values())
            else:
                done = all(s["status"] & Status[arg] for s in states.values())
            if not done:
                reader.wait_for_update(timeout=0.05)
        except SegmentError as exc:  # not created yet, or being replaced: look again
            states = {"error": str(exc)}
            reader = None
            time.sleep(0.05)
    writer_pid = reader.info().writer_pid if reader is not None else 0
    print(json.dumps({"ok": done, "reads": reads, "mismatches": mismatches[:5], "n_mismatches": len(mismatches),
                      "states": states, "writer_pid": writer_pid}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
