"""The systemd notify protocol (sd_notify(3)): newline-separated ``KEY=VALUE`` assignments in one datagram
to the AF_UNIX socket named by ``$NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract namespace).

With ``Type=notify`` systemd waits for ``READY=1``; with ``WatchdogSec=`` it kills the service when no
``WATCHDOG=1`` arrives within ``$WATCHDOG_USEC``. Outside systemd (no ``$NOTIFY_SOCKET``) every call is a
no-op that returns False, so the feeder calls these unconditionally.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

WATCHDOG_PINGS_PER_INTERVAL = 2  # ping at half the interval, as sd_watchdog_enabled(3) recommends
MAX_STATUS_CHARS = 200  # systemctl status shows one line; keep ours short


class Notifier:
    """A connection to systemd's notify socket, or an inert one when not started by systemd."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = _address(env.get("NOTIFY_SOCKET", ""))
        self._watchdog_s = _watchdog_interval(env)
        self._sock: socket.socket | None = None
        self._failed = False  # a failed send was logged: later ones are not

    @property
    def enabled(self) -> bool:
        return self._address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """``$WATCHDOG_USEC`` in seconds, if the watchdog is on for this process; ping at half of it."""
        return self._watchdog_s

    @property
    def watchdog_ping_every_s(self) -> float | None:
        """How often to call ``watchdog()``: the interval over ``WATCHDOG_PINGS_PER_INTERVAL``."""
        return None if self._watchdog_s is None else self._watchdog_s / WATCHDOG_PINGS_PER_INTERVAL

    def ready(self, status: str | None = None) -> bool:
        """Startup finished (every market is being synced): ``READY=1``."""
        return self.notify("READY=1", *_status(status))

    def status(self, text: str) -> bool:
        """One line for ``systemctl status``."""
        return self.notify(*_status(text))

    def watchdog(self) -> bool:
        """Still alive: ``WATCHDOG=1``. Call from the loop whose progress it vouches for."""
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        """Shutdown begun: ``STOPPING=1``."""
        return self.notify("STOPPING=1", *_status(status))

    def notify(self, *assignments: str) -> bool:
        """Send ``assignments`` in one datagram; False when not under systemd. OSError if the send fails."""
        if self._address is None:
            return False
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._sock.sendto("\n".join(assignments).encode(), self._address)
        return True

    def quietly(self, send: Callable[..., bool], *args: str) -> None:
        """``send(*args)`` (one of the methods above) for a service that must never stop over a notification:
        a vanished notify socket is logged once, not raised."""
        try:
            send(*args)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                log.error("systemd notification failed: %s", exc)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _address(value: str) -> str | bytes | None:
    if value.startswith("@"):
        return b"\0" + value[1:].encode()  # abstract namespace: a leading NUL instead of the '@'
    if value.startswith("/"):
        return value
    return None  # unset, or a vsock address (systemd 253+) that a feeder on the host never gets


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    pid = env.get("WATCHDOG_PID")
    if pid is not None and pid != str(os.getpid()):
        return None  # meant for another process of the unit
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 1e6 if usec > 0 else None


def _status(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ()
    line = " ".join(text.split())  # one line: a newline would start a new assignment
    return (f"STATUS={line[:MAX_STATUS_CHARS]}",)
