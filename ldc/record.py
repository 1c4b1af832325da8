"""Raw-feed recording: every frame a feeder receives and every REST snapshot it loads, with its receive
time, gzip-compressed and rotated, so that an incident replays offline (``ldc sim --replay DIR``).

    [[group]]
    record = "/var/lib/ldc/record"    # files in /var/lib/ldc/record/<group>/
    record_rotate_mb = 256            # a new file after this many compressed MB ...
    record_rotate_s = 3600            # ... or this many seconds, whichever comes first

**Format.** The captures' format (``shared/data/binance/README.md``) with one documented addition. Each
file is one gzip member of text lines ``<receive time, ns since the epoch> <JSON>``:

- a websocket data frame exactly as received, a combined-stream message ``{"stream":...,"data":...}``;
  its time is the feeder's receive stamp (one per socket read, ``ldc.io.ws``);
- a REST snapshot the feeder loaded: ``{"rest":"<path>?<query>","data":<the response body as received>}``
  (the addition: a capture's bare snapshot line cannot say whose book it is once several markets share a
  file). Its time is when the body had arrived.

A line feed inside a frame (JSON whitespace; Binance sends none) is written as a space, so that a line
is always one message. Websocket control answers the connection layer consumes (SUBSCRIBE results,
``serverShutdown``) are not recorded. Files are named ``<group>-<UTC start>.gz`` and sort in time order.

**Costs and bounds.** The feeder's threads append each socket read's lines to a buffer bounded in bytes
(``QUEUE_MAX_BYTES``), under a lock held for the copy; one writer thread takes the buffer every ``POLL_S``,
compresses it (ISA-L's igzip when the ``isal`` package is there: ~3x cheaper than zlib at level 1) and
writes it. When the buffer is full the frames are dropped and counted: the books never wait for the disk.
The compressor is flushed to a byte boundary every ``FLUSH_INTERVAL_S``, so a feeder killed at any moment
leaves a file readable up to then. Measured (``scripts/bench_feeder.py --record``): the feeder spends
~1.7-1.9x the CPU per diff with recording on; ~2 us of the ~4 us per 1.3 KB frame is the deflate itself.

**Failures.** A directory that cannot be created or written, or a full disk, stops recording: one error
in the log, the ``errors`` counter, and every later frame counted as dropped; the feeder goes on.

**Reading.** ``read_recording(path)`` returns a file's lines and the first damage found (the line number
and the reason); nothing after that damage is returned. ``recording_files(path)`` lists a directory's
files in order (a file is itself).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Final
from urllib.parse import urlencode

import orjson



def _deflate_module() -> ModuleType:
    """ISA-L's deflate: the same gzip format at ~1.8 us of CPU per 1.3 KB frame (zlib level 1: ~6.6 us)."""
    try:
        from isal import isal_zlib
    except ImportError:  # pragma: no cover - isal is a dependency; zlib is the portable fallback
        return zlib
    return isal_zlib


_deflate: Final = _deflate_module()

log = logging.getLogger("ldc.record")

# Limits
QUEUE_MAX_BYTES: Final = 64 * 1024 * 1024  # lines waiting for the writer thread; beyond this frames are dropped
COMPRESS_LEVEL: Final = 1  # the cheapest level that still compresses Binance JSON ~5x
GZIP_WBITS: Final = 31  # zlib's window bits for a gzip header and trailer
# Timers
POLL_S: Final = 0.1  # the writer takes the buffer this often (a wake-up per socket read cost more)
FLUSH_INTERVAL_S: Final = 1.0  # compressed data reaches the file (a crash loses at most this much)
DROP_LOG_EVERY_S: Final = 10.0  # a warning at most this often while frames are dropped
CLOSE_TIMEOUT_S: Final = 10.0  # close() waits this long for the queue to drain
# Defaults and bounds of the group keys
DEFAULT_ROTATE_MB: Final = 256.0
DEFAULT_ROTATE_S: Final = 3600.0
MIN_ROTATE_MB: Final = 0.001  # 1 kB: small values exist for tests
MAX_ROTATE_MB: Final = 1024.0 * 1024.0
MIN_ROTATE_S: Final = 0.1
MAX_ROTATE_S: Final = 7 * 86400.0
FILE_SUFFIX: Final = ".gz"
NAME_ATTEMPTS: Final = 100  # file names are stamped to the microsecond: a taken one is tried again this often
NAME_RETRY_S: Final = 0.000_01
REST_PREFIX: Final = b'{"rest":'

@dataclass(frozen=True)
class RecordConfig:
    """Where one group records and when its files rotate."""

    directory: str  # the group key ``record``; the group's files go in ``directory/<group>``
    group: str
    rotate_bytes: int
    rotate_s: float

    @property
    def group_directory(self) -> Path:
        return Path(self.directory) / self.group


@dataclass(frozen=True)
class RecordStats:
    frames: int  # frames written
    snapshots: int  # REST snapshots written
    dropped: int  # frames and snapshots not recorded (queue full, or after a failure)
    errors: int  # write failures (recording stops at the first)
    files: int  # files opened
    compressed_bytes: int
    failed: str  # why recording stopped, "" while it runs


class Recorder:
    """One group's recording: ``frames`` and ``snapshot`` from any thread, never blocking; ``close`` at the end."""

    def __init__(self, config: RecordConfig, *, queue_max_bytes: int = QUEUE_MAX_BYTES, poll_s: float = POLL_S) -> None:
        self.config = config
        self._poll_s = poll_s
        # the lines not written yet: producers append under _lock, the writer swaps it for an empty one every
        # poll_s. Copied in at once rather than queued as the frames themselves (no measurable difference on
        # the bench; the bound is then the bytes the buffer really holds)
        self._pending = bytearray()
        self._pending_frames = self._pending_snapshots = 0
        self._stop = threading.Event()
        self._max = queue_max_bytes
        self._lock = threading.Lock()
        self._failed = ""
        self._dropped = self._frames = self._snapshots = self._errors = self._files = self._compressed = 0
        self._thread = threading.Thread(target=self._run, name=f"ldc-record-{config.group}", daemon=True)
        self._file: _GzipFile | None = None

    # -- producers (any thread) -----------------------------------------------------------------

    def frames(self, raws: list[bytes], recv_time_ns: int) -> None:
        """The data frames of one socket read, received at ``recv_time_ns``."""
        prefix = b"%d " % recv_time_ns
        separator = b"\n" + prefix
        body = separator.join(raws)  # the one copy before the buffer's (each more is a copy of every frame)
        if body.count(b"\n") != len(raws) - 1:  # a frame holds a line feed (JSON whitespace): one line each all the same
            body = separator.join(raw.replace(b"\n", b" ") for raw in raws)
        with self._lock:
            pending = self._pending
            if self._failed or len(pending) + len(prefix) + len(body) + 1 > self._max:
                self._dropped += len(raws)
                return
            pending += prefix
            pending += body
            pending += b"\n"
            self._pending_frames += len(raws)

    def snapshot(self, path: str, params: Mapping[str, str | int], body: bytes, recv_time_ns: int) -> None:
        """A REST answer the feeder loaded, as ``GET path?params`` returned it (a line feed in the body, JSON
        whitespace, is written as a space)."""
        request = path + ("?" + urlencode(params) if params else "")
        line = b'%d {"rest":%s,"data":%s}\n' % (recv_time_ns, orjson.dumps(request), body.replace(b"\n", b" "))
        with self._lock:
            if self._failed or len(self._pending) + len(line) > self._max:
                self._dropped += 1
                return
            self._pending += line
            self._pending_snapshots += 1

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Create the group's directory and start the writer thread; a failure stops recording (logged)."""
        try:
            self.config.group_directory.mkdir(parents=True, exist_ok=True)
            if not os.access(self.config.group_directory, os.W_OK | os.X_OK):
                raise PermissionError(f"directory {str(self.config.group_directory)!r} is not writable")
        except OSError as exc:
            self._fail(exc)
            return
        self._thread.start()
        log.info("recording group %s in %s", self.config.group, self.config.group_directory)

    def close(self) -> None:
        """Write what is queued, finish the file and stop the writer (bounded by ``CLOSE_TIMEOUT_S``)."""
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join(CLOSE_TIMEOUT_S)
            if self._thread.is_alive():
                log.error("recording of group %s: the writer did not finish within %g s", self.config.group, CLOSE_TIMEOUT_S)
        stats = self.stats()
        log.info("recording of group %s closed: %d frames and %d snapshots written in %d files, %d dropped, %d errors",
                 self.config.group, stats.frames, stats.snapshots, stats.files, stats.dropped, stats.errors)  # fmt: skip

    def stats(self) -> RecordStats:
        with self._lock:
            return RecordStats(self._frames, self._snapshots, self._dropped, self._errors, self._files,
                               self._compressed, self._failed)  # fmt: skip

    # -- the writer thread ----------------------------------------------------------------------

    def _run(self) -> None:
        """Every ``poll_s``: take everything queued, compress it in one call and write it; every
        ``FLUSH_INTERVAL_S`` flush the compressor to a byte boundary (the file is readable up to there)."""
        next_flush = time.monotonic() + FLUSH_INTERVAL_S
        dropped_logged, next_drop_log = 0, 0.0
        while True:
            stopping = self._stop.wait(self._poll_s)
            pending, frames, snapshots = self._take()
            now = time.monotonic()
            sync = stopping or now >= next_flush
            if not self._write(pending, sync=sync, frames=frames, snapshots=snapshots):
                return
            if stopping:
                break
            if sync:
                next_flush = now + FLUSH_INTERVAL_S
                dropped_logged, next_drop_log = self._log_drops(dropped_logged, next_drop_log, now)
        try:
            self._finish_file()
        except OSError as exc:
            self._fail(exc)

    def _take(self) -> tuple[bytearray, int, int]:
        """The lines appended since the last call (maybe none), and how many frames and snapshots they hold."""
        with self._lock:
            block, self._pending = self._pending, bytearray()
            frames, snapshots = self._pending_frames, self._pending_snapshots
            self._pending_frames = self._pending_snapshots = 0
        return block, frames, snapshots

    def _write(self, pending: bytearray, *, sync: bool, frames: int, snapshots: int) -> bool:
        """Compress and write ``pending``; rotate when due. False once recording failed."""
        try:
            if self._file is not None and self._file.due(self.config):
                self._finish_file()
            if pending:
                if self._file is None:
                    self._file = _GzipFile.create(self.config)
                    self._count(files=1)
                self._file.write(pending, sync=sync)
                self._count(frames=frames, snapshots=snapshots)
            elif sync and self._file is not None:
                self._file.write(b"", sync=True)
            if self._file is not None and self._file.due(self.config):
                self._finish_file()
        except OSError as exc:
            self._fail(exc, lost=frames + snapshots if pending else 0)
            return False
        return True

    def _finish_file(self) -> None:
        """Write the gzip trailer and close; OSError is the caller's to handle (``_fail``)."""
        done = self._file
        if done is None:
            return
        try:
            done.close()
            self._file = None
        finally:
            self._count(compressed=done.written)

    def _count(self, *, files: int = 0, frames: int = 0, snapshots: int = 0, compressed: int = 0) -> None:
        with self._lock:
            self._files += files
            self._frames += frames
            self._snapshots += snapshots
            self._compressed += compressed

    def _fail(self, exc: OSError, *, lost: int = 0) -> None:
        """Recording stops for good: ``lost`` (taken off the queue, not written) and later frames are only
        counted. The feeder is not told to wait."""
        where = getattr(self._file, "path", None) or self.config.group_directory
        with self._lock:
            self._errors += 1
            self._dropped += lost
            self._failed = f"{where}: {exc.strerror or exc}"
        log.error("recording of group %s stopped, the feeder goes on without it: %s", self.config.group, self._failed)
        if self._file is not None:
            self._file.abandon()
            self._file = None
        with self._lock:  # what was pending is dropped: count it
            self._dropped += self._pending_frames + self._pending_snapshots
            self._pending, self._pending_frames, self._pending_snapshots = bytearray(), 0, 0

    def _log_drops(self, logged: int, next_log: float, now: float) -> tuple[int, float]:
        with self._lock:
            dropped = self._dropped
        if dropped > logged and now >= next_log:
            log.warning("recording of group %s: %d frames dropped so far (the writer falls behind)", self.config.group, dropped)
            return dropped, now + DROP_LOG_EVERY_S
        return logged, next_log


class _GzipFile:
    """One recording file: a gzip member written through a raw file descriptor (errors surface at once)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self._fd = path, fd
        self._compressor = _deflate.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, GZIP_WBITS)
        self.opened = time.monotonic()
        self.written = 0

    @classmethod
    def create(cls, config: RecordConfig) -> _GzipFile:
        """A new file named by its UTC start to the microsecond; never an existing one (a name taken in the
        same microsecond is tried again with a later stamp, so that names keep sorting in time order)."""
        for _ in range(NAME_ATTEMPTS):
            now_ns = time.time_ns()
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now_ns // 1_000_000_000)) + f".{now_ns // 1000 % 1_000_000:06d}Z"
            path = config.group_directory / f"{config.group}-{stamp}{FILE_SUFFIX}"
            try:
                return cls(path, os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640))
            except FileExistsError:
                time.sleep(NAME_RETRY_S)
        raise FileExistsError(f"no free file name in {config.group_directory} after {NAME_ATTEMPTS} attempts")

    def write(self, data: bytes | bytearray, *, sync: bool) -> None:
        out = self._compressor.compress(data) if data else b""
        if sync:
            out += self._compressor.flush(zlib.Z_SYNC_FLUSH)
        self._write_all(out)

    def due(self, config: RecordConfig) -> bool:
        return self.written >= config.rotate_bytes or time.monotonic() - self.opened >= config.rotate_s

    def close(self) -> None:
        try:
            self._write_all(self._compressor.flush(zlib.Z_FINISH))
        finally:
            self.abandon()

    def abandon(self) -> None:
        """Close the descriptor once (a number closed twice may meanwhile be another thread's file)."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            self.written += n
            view = view[n:]


# -- reading ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recording:
    """The lines of one file up to its first damage: ``(receive ns, JSON bytes)``, and that damage."""

    path: str
    lines: list[tuple[int, bytes]]
    damage: str  # "" when the whole file is sound; else "<path>:<line>: <reason>"
    unfinished: bool  # the gzip member has no trailer (its writer was killed or still writes), no line cut


def recording_files(path: str) -> list[str]:
    """A directory's recording files in name (= time) order, or the path itself when it is a file."""
    if not os.path.isdir(path):
        return [path]
    return [str(p) for p in sorted(Path(path).iterdir()) if p.name.endswith(FILE_SUFFIX) and p.is_file()]


def read_recording(path: str, *, wanted: tuple[bytes, ...] = (b"@depth", b"lastUpdateId", REST_PREFIX)) -> Recording:
    """The lines of ``path`` (gzip or plain) whose first bytes hold one of ``wanted`` (the other lines
    are checked for their form only). Stops at the first damage: a line that is not
    ``<digits> <JSON object>``, a wanted line that is not JSON, gzip data that is corrupt, or a file that
    ends inside a line. ``OSError`` when the file cannot be read at all."""
    with open(path, "rb") as handle:
        blob = handle.read()
    text, gzip_error, unfinished = _decompress(blob) if path.endswith(FILE_SUFFIX) else (blob, "", False)
    lines: list[tuple[int, bytes]] = []
    body, cut = text, b""
    if not text.endswith(b"\n") and text:
        end = text.rfind(b"\n") + 1
        body, cut = text[:end], text[end:]
    number = 0
    for number, line in enumerate(body.split(b"\n")[:-1] if body else [], 1):
        reason = _check_line(line, wanted, lines)
        if reason:
            return Recording(path, lines, f"{path}:{number}: {reason}", unfinished)
    if gzip_error:
        return Recording(path, lines, f"{path}:{number + 1}: {gzip_error}", unfinished)
    if cut:
        return Recording(path, lines, f"{path}:{number + 1}: the file ends inside this line "
                                      f"({len(cut)} bytes, no line feed): truncated", unfinished)  # fmt: skip
    return Recording(path, lines, "", unfinished)


def _check_line(line: bytes, wanted: tuple[bytes, ...], out: list[tuple[int, bytes]]) -> str:
    """Why ``line`` is damaged ("" when it is sound); a sound wanted line is appended to ``out``."""
    stamp, sep, payload = line.partition(b" ")
    payload = payload.rstrip(b"\r")
    if not sep or not stamp.isdigit() or not payload.startswith(b"{") or not payload.endswith(b"}"):
        return f"expected '<receive ns> <JSON object>', found {line[:60]!r}"
    head = payload[:48]
    if any(w in head for w in wanted):
        try:
            orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            return f"not valid JSON ({exc}): {payload[:60]!r}"
        out.append((int(stamp), payload))
    return ""


def _decompress(blob: bytes) -> tuple[bytes, str, bool]:
    """(the text decoded, why decoding stopped early or "", no gzip trailer but nothing cut)."""
    parts: list[bytes] = []
    rest = blob
    while rest:  # concatenated members (gzip(1) allows them) are read one after another
        decoder = zlib.decompressobj(GZIP_WBITS)
        try:
            parts.append(decoder.decompress(rest))
        except zlib.error as exc:
            return b"".join(parts), f"corrupt gzip data ({exc})", False
        if not decoder.eof:
            return b"".join(parts) + decoder.flush(), "", True
        rest = decoder.unused_data
    return b"".join(parts), "", False


def config_for(directory: str | None, group: str, rotate_mb: float, rotate_s: float) -> RecordConfig | None:
    """The recording of a group whose key ``record`` is ``directory`` (None: it does not record)."""
    if not directory:
        return None
    return RecordConfig(directory=directory, group=group, rotate_bytes=max(1, int(rotate_mb * 1e6)), rotate_s=rotate_s)
