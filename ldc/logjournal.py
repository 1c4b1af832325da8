"""Log records for journald: structured fields when stderr is the journal, plain lines otherwise.

systemd connects a service's stderr to the journal and says so in ``JOURNAL_STREAM`` (``<dev>:<inode>``
of that stream, systemd.exec(5)). When it matches stderr, records are sent over journald's native
protocol instead (systemd's "Native Journal Protocol": one datagram of ``KEY=value`` lines to
``/run/systemd/journal/socket``), so that every record keeps its fields:

    MESSAGE, PRIORITY (syslog levels), SYSLOG_IDENTIFIER, CODE_FILE / CODE_LINE / CODE_FUNC, LOGGER,
    THREAD_NAME, and ldc's own LDC_GROUP, LDC_SYMBOL, LDC_STATE, LDC_REASON when the record has them

(``journalctl -u ldc-feeder@spot LDC_SYMBOL=BTCUSDT``). A record gets them from ``extra={"symbol": ...}``
or from ``StructuredFields``: the process's group, and the symbol of a message written
``"market %s: ..."`` (the feeder's convention). No dependency: the datagram is built here. A record too
large for a datagram goes as a sealed memfd (the protocol's way); a journal that cannot be reached makes
the handler write the plain line to stderr instead, so nothing is lost.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import struct
import sys
import threading
from typing import Final, TextIO

JOURNAL_SOCKET: Final = "/run/systemd/journal/socket"
JOURNAL_SOCKET_ENV: Final = "LDC_JOURNAL_SOCKET"  # another socket path (containers, tests)
JOURNAL_STREAM_ENV: Final = "JOURNAL_STREAM"
LOG_FORMAT: Final = "%(asctime)s %(name)s %(levelname)s %(message)s"
IDENTIFIER: Final = "ldc"
# record attribute -> journal field (uppercase letters, digits and underscores, not starting with "_")
FIELDS: Final = (("group", "LDC_GROUP"), ("symbol", "LDC_SYMBOL"), ("state", "LDC_STATE"), ("reason", "LDC_REASON"))
MARKET_PREFIX: Final = "market %s"  # the feeder's "market %s: ..." messages name their symbol first
# syslog priorities (sd-daemon(3)) by logging level
PRIORITIES: Final = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))
DEBUG_PRIORITY: Final = 7
_SEALS: Final = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL


def stderr_is_journal(stream: TextIO | None = None) -> bool:
    """True when ``JOURNAL_STREAM`` names the device and inode of stderr (systemd connected it)."""
    value = os.environ.get(JOURNAL_STREAM_ENV, "")
    dev, sep, ino = value.partition(":")
    if not sep or not dev.isdigit() or not ino.isdigit():
        return False
    try:
        st = os.fstat((stream or sys.stderr).fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


def stderr_handler(formatter: logging.Formatter | None = None) -> logging.Handler:
    """A ``JournalHandler`` when stderr is the journal, else a ``StreamHandler`` on stderr with ``formatter``
    (default ``LOG_FORMAT``)."""
    formatter = formatter or logging.Formatter(LOG_FORMAT)
    handler: logging.Handler = JournalHandler() if stderr_is_journal() else logging.StreamHandler()
    if not isinstance(handler, JournalHandler):
        handler.setFormatter(formatter)
    return handler


class StructuredFields(logging.Filter):
    """Adds ``group`` to every record and ``symbol`` to a ``"market %s..."`` record that has none. Put it on
    the handlers (a filter of the root logger does not see records of child loggers), before any queue
    (a QueueHandler merges the arguments into the message)."""

    def __init__(self, group: str = "") -> None:
        super().__init__()
        self.group = group

    def filter(self, record: logging.LogRecord) -> bool:
        if self.group and not hasattr(record, "group"):
            record.group = self.group
        if not hasattr(record, "symbol") and isinstance(record.msg, str) and record.msg.startswith(MARKET_PREFIX):
            args = record.args
            if isinstance(args, tuple) and args:
                record.symbol = str(args[0])
        return True


class JournalHandler(logging.Handler):
    """Sends each record to journald as one native-protocol datagram (see the module docstring)."""

    def __init__(self, path: str | None = None, *, identifier: str = IDENTIFIER, fallback: TextIO | None = None) -> None:
        super().__init__()
        self.path = path or os.environ.get(JOURNAL_SOCKET_ENV) or JOURNAL_SOCKET
        self.identifier = identifier
        self._fallback = fallback
        self._plain = logging.Formatter(LOG_FORMAT)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._send_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = self.datagram(record)
        except Exception:  # noqa: BLE001  (logging must not raise: logging.Handler's contract)
            self.handleError(record)
            return
        try:
            with self._send_lock:
                self._send(data)
        except OSError:
            self._write_plain(record)

    def datagram(self, record: logging.LogRecord) -> bytes:
        """The record as journal fields, in the native protocol's serialization."""
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            message = f"{message}\n{record.exc_text}"
        fields = [
            ("MESSAGE", message),
            ("PRIORITY", str(priority(record.levelno))),
            ("SYSLOG_IDENTIFIER", self.identifier),
            ("LOGGER", record.name),
            ("CODE_FILE", record.pathname),
            ("CODE_LINE", str(record.lineno)),
            ("CODE_FUNC", record.funcName or ""),
            ("THREAD_NAME", record.threadName or ""),
        ]
        fields += [(key, str(getattr(record, attr))) for attr, key in FIELDS if getattr(record, attr, None) not in (None, "")]
        return b"".join(encode_field(key, value) for key, value in fields)

    def _send(self, data: bytes) -> None:
        try:
            self._sock.sendto(data, self.path)
        except OSError as exc:
            if exc.errno not in (errno.EMSGSIZE, errno.ENOBUFS):  # too large for a datagram
                raise
            self._send_memfd(data)

    def _send_memfd(self, data: bytes) -> None:
        """The protocol's way for large records: the same bytes in a sealed memfd, passed as SCM_RIGHTS."""
        fd = os.memfd_create("ldc-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
            self._sock.sendmsg([], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))], 0, self.path)
        finally:
            os.close(fd)

    def _write_plain(self, record: logging.LogRecord) -> None:
        stream = self._fallback or sys.stderr
        try:
            stream.write(self._plain.format(record) + "\n")
            stream.flush()
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        self._sock.close()
        super().close()


def priority(levelno: int) -> int:
    """The syslog priority of a logging level: CRITICAL 2, ERROR 3, WARNING 4, INFO 6, DEBUG 7."""
    for level, value in PRIORITIES:
        if levelno >= level:
            return value
    return DEBUG_PRIORITY


def encode_field(key: str, value: str) -> bytes:
    """``KEY=value\\n``, or for a value holding a line feed ``KEY\\n<u64 LE length><value>\\n``."""
    raw = value.encode("utf-8", "replace")
    if b"\n" in raw:
        return key.encode() + b"\n" + struct.pack("<Q", len(raw)) + raw + b"\n"
    return key.encode() + b"=" + raw + b"\n"


def decode_fields(data: bytes) -> list[tuple[str, str]]:
    """The inverse of joined ``encode_field`` results (what journald parses); for tests and tools."""
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(data):
        end = data.index(b"\n", pos)
        line = data[pos:end]
        key, sep, value = line.partition(b"=")
        if sep:
            out.append((key.decode(), value.decode()))
            pos = end + 1
            continue
        (length,) = struct.unpack_from("<Q", data, end + 1)
        start = end + 9
        out.append((line.decode(), data[start : start + length].decode()))
        pos = start + length + 1
    return out
