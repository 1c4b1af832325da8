#!/usr/bin/env python3
"""Processes of the feeder benchmark (scripts/bench_feeder.py): the simulator, the feeder, and a raw reader
that measures the simulator's own send rate.

Each runs in its own process so that only the feeder's CPU is charged to the feeder, read from outside
through its process CPU clock in ns (``/proc/<pid>/stat`` counts 10 ms ticks, too coarse for a 0.1 s
interval).

Run as a script, ``feed CONFIG GROUP WINDOW_MS`` runs ``ldc feed`` with the REST weight window shortened to
``WINDOW_MS`` (the cold-start measurement: a minute-long window would make the weight bound minutes long; the
simulator's window is shortened to match). The configuration has no window key, so the governor class the
feeder builds is given the window; every other part is the product's own code.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import posix_ipc

from ldc.io.governor import governor_key, unlink_governor
from ldc.shm.layout import segment_name, waiters_name

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
RAW_READ_BYTES = 1 << 20
HANDSHAKE_END = b"\r\n\r\n"
CPUCLOCK_SCHED = 2  # linux/posix-timers.h: a process CPU clock counting every thread's time on CPU


def _python() -> list[str]:
    return [sys.executable, "-m", "ldc.cli"]


class SimProcess:
    """``ldc sim ARGS`` in a subprocess; ``urls`` is its first stdout line."""

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(_python() + ["sim", "--log-level", "ERROR", *args], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.stop()
            raise RuntimeError(f"simulator exited with {self.proc.returncode} before printing its urls")
        self.urls: dict[str, Any] = json.loads(line)
        self.port = int(self.urls["rest"].rsplit(":", 1)[1])
        self.ca_file: str | None = self.urls.get("ca_file")  # with --tls: the CA every client here trusts

    @property
    def verify(self) -> str | bool:
        """``requests``' verify=: the simulator's CA with --tls (verified as the feeder verifies), else the default."""
        return self.ca_file or True

    def stats(self) -> dict[str, Any]:
        import requests

        result: dict[str, Any] = requests.get(f"{self.urls['rest']}/_sim/stats", timeout=10, verify=self.verify).json()
        return result

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(Exception):
            unlink_governor(governor_key(self.urls["rest"]))

    def __enter__(self) -> SimProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def config_text(group: str, sim: SimProcess, symbols: list[str], **keys: object) -> str:
    quoted = ", ".join(f'"{s}"' for s in symbols)
    extra = "".join(f"{k} = {v}\n" for k, v in keys.items()) + (f'ca_file = "{sim.ca_file}"\n' if sim.ca_file else "")
    return (f'[[group]]\nname = "{group}"\nexchange = "binance.com"\nsymbols = [{quoted}]\n'
            f'rest_url = "{sim.urls["rest"]}"\nws_url = "{sim.urls["ws"]}"\n{extra}')  # fmt: skip


class FeederProcess:
    """``ldc feed CONFIG --group G`` in a subprocess (``window_ms``: with a shortened weight window)."""

    def __init__(self, group: str, config: str, *, window_ms: int | None = None) -> None:
        self.group = group
        self._dir = tempfile.TemporaryDirectory(prefix="ldc-bench-feeder-")
        path = Path(self._dir.name) / "ldc.toml"
        path.write_text(config)
        self.log_path = Path(self._dir.name) / "feeder.log"
        self._log = open(self.log_path, "wb")
        if window_ms is None:
            args = _python() + ["feed", str(path), "--group", group]
        else:
            args = [sys.executable, __file__, "feed", str(path), group, str(window_ms)]
        self.started = time.perf_counter()  # the spawn, on the clock of Sample.t
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)
        self._cpu_clock = (~self.proc.pid << 3) | CPUCLOCK_SCHED  # MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)
        self.rusage: Any = None
        self.returncode: int | None = None

    def cpu_ns(self) -> int:
        """The feeder's CPU time, every thread, ns: its process CPU clock (clock_getcpuclockid). For a thread
        running on the other core right now it lags by that thread's current slice (up to a scheduler tick):
        exact when the feeder is idle, so measurements end on an idle feeder."""
        return time.clock_gettime_ns(self._cpu_clock)

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()

    def stop(self) -> None:
        """SIGTERM, then the exit status and the whole process's rusage (os.wait4)."""
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while True:
                pid, status, rusage = os.wait4(self.proc.pid, os.WNOHANG)
                if pid:
                    self.returncode, self.rusage = os.waitstatus_to_exitcode(status), rusage
                    self.proc.returncode = self.returncode
                    break
                if time.monotonic() > deadline:
                    self.proc.kill()
                    deadline = float("inf")
                time.sleep(0.01)
        self._log.close()
        for name in (segment_name(self.group), waiters_name(self.group)):
            with contextlib.suppress(posix_ipc.ExistentialError):
                posix_ipc.unlink_shared_memory(name)

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> FeederProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def raw_reader_rate(port: int, streams: list[str], frames: int, timeout_s: float, *, ca_file: str | None = None) -> dict[str, float]:
    """Subscribe like the feeder (combined stream URL) and only count frames, walking the frame headers
    of raw socket reads: the simulator's own send rate, frames/s from the first byte to the last frame.
    With ``ca_file`` the connection is TLS (``ldc sim --tls``), verified against it."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    if ca_file is not None:
        sock = ssl.create_default_context(cafile=ca_file).wrap_socket(sock, server_hostname="127.0.0.1")
    key = base64.b64encode(os.urandom(16))
    sock.sendall(f"GET /stream?streams={'/'.join(streams)} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()
                 + b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key
                 + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")  # fmt: skip
    buf = b""
    while HANDSHAKE_END not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("simulator closed during the handshake")
        buf += chunk
    rest = buf.split(HANDSHAKE_END, 1)[1]
    count, pending, first = 0, bytearray(rest), None
    start_cpu = time.process_time()
    while count < frames:
        if first is None and pending:
            first = time.perf_counter()
        count, pending = _count_frames(pending, count)
        if count >= frames:
            break
        chunk = sock.recv(RAW_READ_BYTES)
        if not chunk:
            raise ConnectionError(f"simulator closed after {count} of {frames} frames")
        if first is None:
            first = time.perf_counter()
        pending += chunk
    elapsed = time.perf_counter() - (first or time.perf_counter())
    cpu = time.process_time() - start_cpu
    sock.close()
    return {"frames": count, "frames_per_s": count / elapsed if elapsed > 0 else float("inf"), "reader_cpu_s": cpu}


def _count_frames(pending: bytearray, count: int) -> tuple[int, bytearray]:
    """Complete server frames (unmasked) at the front of ``pending``: (count, the incomplete rest)."""
    pos, size = 0, len(pending)
    while size - pos >= 2:
        length, head = pending[pos + 1] & 0x7F, 2
        if length == 126:
            if size - pos < 4:
                break
            length, head = int.from_bytes(pending[pos + 2 : pos + 4], "big"), 4
        elif length == 127:
            if size - pos < 10:
                break
            length, head = int.from_bytes(pending[pos + 2 : pos + 10], "big"), 10
        if size - pos < head + length:
            break
        if pending[pos] & 0x0F in (0x1, 0x2):  # text or binary: a data frame
            count += 1
        pos += head + length
    return count, pending[pos:]


def _feed_with_window(config: str, group: str, window_ms: int) -> int:
    import functools

    import ldc.feeder
    from ldc.io.governor import RateGovernor

    ldc.feeder.RateGovernor = functools.partial(RateGovernor, window_ms=window_ms)  # type: ignore[attr-defined,assignment]
    return ldc.feeder.main([config, "--group", group])


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "feed":
        sys.exit(f"usage: {sys.argv[0]} feed CONFIG GROUP WINDOW_MS")
    sys.exit(_feed_with_window(sys.argv[2], sys.argv[3], int(sys.argv[4])))
