"""Benchmark: the kernel's floor under the relay's per-send cycle on this host (issue 16).

    .venv/bin/python scripts/bench_send_floor.py [--cycles 4000] [--repeat 3] [--bytes 4400] [--window-us 800]

One process sends ``--bytes`` on a loopback TCP connection (TCP_NODELAY) to a child blocked in
``epoll_wait`` and ``recv`` (as nats-server waits), then sleeps ``--window-us`` with a 1 us timer slack
(what the relay's loop thread sets): CPU time of the sender per cycle, its process CPU clock. The
same loop without the send (the sleep's wake-up alone) alternates with it. No relay code runs: this is
what a send per window costs before the relay scans, encodes or returns to Python. Prints one JSON
object, medians over ``--repeat`` alternations.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import statistics
import time

from ldc.fanout import _relay


def reader(listener: socket.socket) -> None:
    conn, _ = listener.accept()
    ep = select.epoll()
    ep.register(conn.fileno(), select.EPOLLIN)
    while True:
        ep.poll()
        if not conn.recv(1 << 20):
            os._exit(0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cycles", type=int, default=4000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--bytes", type=int, default=4400, help="a send's size (a 1 mirror run's batch at 800 us: ~4.4 KB)")
    p.add_argument("--window-us", type=int, default=800)
    args = p.parse_args()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    pid = os.fork()
    if pid == 0:
        reader(listener)
    sock = socket.create_connection(listener.getsockname())
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    _relay.set_timer_slack_ns(1000)
    payload = b"x" * args.bytes
    window = args.window_us / 1e6
    runs: dict[str, list[float]] = {"sleep_only_cpu_us": [], "send_and_sleep_cpu_us": []}
    for _ in range(args.repeat):
        for key in runs:
            send = key == "send_and_sleep_cpu_us"
            t0 = time.process_time_ns()
            for _ in range(args.cycles):
                if send:
                    sock.sendall(payload)
                time.sleep(window)
            runs[key].append((time.process_time_ns() - t0) / args.cycles / 1000)
    sock.close()
    os.waitpid(pid, 0)
    result = {"cycles": args.cycles, "repeat": args.repeat, "bytes": args.bytes, "window_us": args.window_us,
              **{k: round(statistics.median(v), 2) for k, v in runs.items()},
              "runs": {k: [round(x, 2) for x in v] for k, v in runs.items()},
              "load_average": os.getloadavg()[0]}
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
