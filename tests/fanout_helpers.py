"""Hosts for the fan-out tests: an origin (a segment writer publishing fanout_truth books, as a feeder
would), a real nats-server, `ldc relay`, and mirrors each in its own mount namespace with a private
/dev/shm (so no mirror can read the origin's segment), probed by a reader run inside that namespace.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import fanout_truth
from ldc.fanout.server import stop_process
from ldc.shm.layout import DEFAULT_STALE_AFTER_MS, MIN_STALE_INTERVALS, Counter, Status
from ldc.shm.writer import SegmentWriter
from shm_helpers import unique_group, unlink_group

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
WAIT_S = 30.0  # generous: the suite runs on a loaded 2-core machine
STOP_S = 10.0
# a mount namespace whose /dev/shm is a fresh tmpfs: the mirror's host
HOST_SHELL = 'mount -t tmpfs -o mode=1777,size=64m ldc-host /dev/shm && exec "$0" "$@"'


class Origin:
    """The origin host's feeder stand-in: a real SegmentWriter publishing fanout_truth books."""

    def __init__(self, symbols: list[str], *, rate_hz: float = 100.0, stale_after_ms: int = DEFAULT_STALE_AFTER_MS) -> None:
        self.group = unique_group("fo")
        self.symbols = symbols
        self.rate_hz = rate_hz
        self.stale_after_ms = stale_after_ms
        self.uid = {s: 0 for s in symbols}
        self.paused: set[str] = set()  # markets not published (quiet)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.writer = self._open()
        self._thread: threading.Thread | None = None

    def _open(self) -> SegmentWriter:
        writer = SegmentWriter(self.group, depth=fanout_truth.DEPTH, capacity=16, exchange="binance.com",
                               heartbeat_interval_ms=self.stale_after_ms // MIN_STALE_INTERVALS,
                               stale_after_ms=self.stale_after_ms)
        for symbol in self.symbols:
            writer.add_market(symbol)
        return writer

    def publish(self, symbol: str) -> None:
        uid = self.uid[symbol] + 1
        slot = self.writer.slot(symbol)
        if fanout_truth.ignored(uid) != fanout_truth.ignored(uid - 1):
            self.writer.bump(slot, Counter.IGNORED)
        bids, asks = fanout_truth.book(symbol, uid)
        self.writer.publish(slot, update_id=uid, event_time_ms=fanout_truth.event_time_ms(uid),
                            recv_time_ns=fanout_truth.recv_time_ns(uid), status=Status.SYNCED,
                            bids=bids, asks=asks, n_bids=len(bids), n_asks=len(asks))
        self.uid[symbol] = uid

    def start(self) -> Origin:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(1.0 / self.rate_hz):
            with self._lock:
                for symbol in self.symbols:
                    if symbol not in self.paused:
                        self.publish(symbol)
                # as a feeder does (layout 2.0): readers judge a writer with an old heartbeat STALE
                self.writer.heartbeat()
                self.writer.notify()

    def stop_publishing(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def restart_writer(self) -> None:
        """The origin feeder restarts: close (readers see it stopped), a new writer takes over (STALE
        slots, same update ids and counters), then it publishes again."""
        self.stop_publishing()
        self.writer.close()
        self.writer = self._open()

    def close(self) -> None:
        self.stop_publishing()
        self.writer.close()
        unlink_group(self.group)


def start_relay(group: str, url: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "ldc.cli", "relay", "--group", group, "--nats", url],
                            stdout=subprocess.DEVNULL, stderr=open(log, "ab"), cwd=REPO)


class MirrorHost:
    """`ldc mirror` in a new mount namespace with its own /dev/shm; its own NATS connection."""

    def __init__(self, group: str, url: str, *args: str, name: str = "m", config: Path | None = None) -> None:
        self.group = group
        self.log_path = Path(tempfile.mkstemp(prefix=f"ldc-{name}-", suffix=".log")[1])
        self.args = args
        self.nats_args = [str(config)] if config is not None else ["--nats", url]
        self.proc = self._start()
        # until the shell has mounted the private /dev/shm and exec'd the mirror, entering the
        # process's namespace would land on this host's /dev/shm (the origin's segment)
        wait_for(self._in_own_host, "the mirror host's namespace")

    def _in_own_host(self) -> bool:
        if self.proc.poll() is not None:
            return True
        try:
            # argv[0] is "unshare", then "sh", and the Python executable only once sh exec'd it
            return Path(f"/proc/{self.proc.pid}/cmdline").read_bytes().split(b"\0")[0] == sys.executable.encode()
        except OSError:
            return False

    def _start(self) -> subprocess.Popen[bytes]:
        cmd = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", HOST_SHELL,
               sys.executable, "-m", "ldc.cli", "mirror", "--group", self.group, *self.nats_args, *self.args]
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(self.log_path, "ab"), cwd=REPO)

    def run(self, *argv: str, timeout: float = WAIT_S) -> subprocess.CompletedProcess[str]:
        """Run a command on this host (inside the mirror's mount namespace)."""
        return subprocess.run(["nsenter", "--target", str(self.proc.pid), "--mount", "--", *argv],
                              capture_output=True, text=True, timeout=timeout + 10, cwd=REPO)

    def probe(self, mode: str, symbols: list[str], arg: str | int, timeout_s: float = WAIT_S, *, exact: bool = True) -> dict[str, Any]:
        """Run fanout_probe.py on this host; with ``exact`` every in-sync read must equal the origin."""
        done = self.run(sys.executable, str(TESTS / "fanout_probe.py"), self.group, mode, ",".join(symbols),
                        str(arg), str(timeout_s), timeout=timeout_s)
        assert done.returncode == 0, done.stderr
        result: dict[str, Any] = json.loads(done.stdout)
        if not exact:
            return result
        assert result["n_mismatches"] == 0, result["mismatches"]
        assert result["writer_pid"] in (0, self.proc.pid), "the probe read a segment the mirror did not write"
        assert result["ok"], f"{mode} {arg} not reached: {result['states']}\n{self.log()[-3000:]}"
        return result

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def stop(self) -> int:
        return stop_process(self.proc, STOP_S)


@contextmanager
def relayed_host(origin: Origin, url: str, logdir: Path, *mirror_args: str, name: str = "m") -> Iterator[MirrorHost]:
    """`ldc relay` of the origin and one mirror host in sync with it; both stopped on exit."""
    relay = start_relay(origin.group, url, logdir / "relay.log")
    host = MirrorHost(origin.group, url, *mirror_args, name=name)
    try:
        host.probe("sync", origin.symbols, min(origin.uid[s] for s in origin.symbols) + 5)
        yield host
    finally:
        host.signal(signal.SIGCONT)  # a test may have stopped it
        host.stop()
        stop_process(relay)


def wait_for(predicate: Any, what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
