"""What a hot standby's takeover is made of, without a feeder: a writer process (a bare SegmentWriter holding one
market) is killed with SIGKILL while a standby SegmentWriter's waiting thread (``ldc.standby.Standby``) blocks on
the group's lock in this process. Per kill: SIGKILL -> lock granted (as the standby's Python thread sees it: the
kernel's exit of the killed process, then the GIL) and lock granted -> file named (the standby's own part).

Four modes, alternated kill by kill: ``idle`` (the standby process has nothing else to do) or ``busy`` (a Python
thread spins beside the waiting one, as the threads of a standby keeping a busy group's books do), each with the
interpreter's GIL switch interval (5 ms) or the standby's own while it waits (``WAITING_SWITCH_INTERVAL_S``):
the differences are the GIL hand-offs the waiting thread pays once the kernel wakes it.

    .venv/bin/python scripts/bench_standby_exit.py --kills 15        # one JSON line: medians and maxima per mode
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time

import numpy as np

import ldc.standby as standby_module
from ldc.shm.files import ofd_wait_write_lock
from ldc.shm.layout import Status, lock_path, segment_path, temp_paths
from ldc.shm.writer import SegmentWriter
from ldc.standby import WAITING_SWITCH_INTERVAL_S, Standby

DEPTH = 20
SYMBOL = "BTCUSDT"
HOLDER = r"""
import sys, time
import numpy as np
from ldc.shm.files import ofd_wait_write_lock
from ldc.shm.layout import Status
from ldc.shm.writer import SegmentWriter
w = SegmentWriter(sys.argv[1], depth=%d, capacity=4)
slot = w.add_market("%s")
levels = np.ones((%d, 2))
w.publish(slot, update_id=10, event_time_ms=1, recv_time_ns=1, status=Status.SYNCED, bids=levels, asks=levels, n_bids=%d, n_asks=%d)
print("ready", flush=True)
while True:
    time.sleep(1)
""" % (DEPTH, SYMBOL, DEPTH, DEPTH, DEPTH)


def one_kill(group: str, granted: list[int], switch_interval_s: float | None) -> tuple[float, float]:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, group], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
    writer = SegmentWriter(group, depth=DEPTH, capacity=4, markets=(SYMBOL,), standby=True)
    levels = np.ones((DEPTH, 2))
    writer.publish(writer.slot(SYMBOL), update_id=11, event_time_ms=1, recv_time_ns=1, status=Status.SYNCED,
                   bids=levels, asks=levels, n_bids=DEPTH, n_asks=DEPTH)  # fmt: skip
    waiter = Standby(writer, on_failure=lambda: None, switch_interval_s=switch_interval_s)
    waiter.start()
    time.sleep(0.05)  # the waiting thread is in F_OFD_SETLKW
    killed = time.monotonic_ns()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    deadline = time.monotonic() + 10.0
    while waiter.takeover_ms is None and time.monotonic() < deadline:
        time.sleep(0.0005)
    assert writer.active and waiter.takeover_ms is not None, "no takeover"
    writer.close()
    return (granted[-1] - killed) / 1e6, waiter.takeover_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=15, help="kills per mode (alternated)")
    args = parser.parse_args()
    granted: list[int] = []
    wait = ofd_wait_write_lock

    def stamped(fd: int) -> None:
        wait(fd)
        granted.append(time.monotonic_ns())

    setattr(standby_module, "ofd_wait_write_lock", stamped)  # the waiting thread's call, stamped on its return
    group = f"benchsbx{os.getpid()}"
    modes = {f"{load} {name}": (load, interval) for load in ("idle", "busy")
             for name, interval in (("interpreter's switch interval", None), ("standby's switch interval", WAITING_SWITCH_INTERVAL_S))}
    figures: dict[str, list[tuple[float, float]]] = {mode: [] for mode in modes}
    stop = threading.Event()
    spinning = threading.Event()

    def spin() -> None:
        x = 0
        while not stop.is_set():
            if spinning.is_set():
                for i in range(1000):
                    x += i
            else:
                time.sleep(0.001)

    threading.Thread(target=spin, daemon=True).start()
    try:
        for _ in range(args.kills):
            for mode, (load, interval) in modes.items():
                spinning.set() if load == "busy" else spinning.clear()
                figures[mode].append(one_kill(group, granted, interval))
    finally:
        stop.set()
        for path in (segment_path(group), lock_path(group), *temp_paths(group)):
            try:
                os.unlink(path)
            except OSError:
                pass
    out: dict[str, object] = {"kills_per_mode": args.kills, "load_average": os.getloadavg(),
                              "switch_interval_s": {"interpreter": sys.getswitchinterval(), "standby": WAITING_SWITCH_INTERVAL_S}}
    for mode, rows in figures.items():
        out[mode] = {"sigkill_to_lock_granted_ms": {"median": round(statistics.median(r[0] for r in rows), 3), "max": round(max(r[0] for r in rows), 3)},
                     "lock_granted_to_named_ms": {"median": round(statistics.median(r[1] for r in rows), 3), "max": round(max(r[1] for r in rows), 3)}}  # fmt: skip
    print(json.dumps(out))


if __name__ == "__main__":
    main()
