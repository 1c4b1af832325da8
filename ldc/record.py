"""Raw-feed recording: every frame a feeder receives and every REST snapshot it loads, with its receive
time, in gzip-compressed rotated files, so that an incident replays offline (``ldc sim --replay DIR``).

    [[group]]
    record = "/var/lib/ldc/record"    # files in /var/lib/ldc/record/<group>/
    record_rotate_mb = 256            # a new file after this many MB received (uncompressed) ...
    record_rotate_s = 3600            # ... or this many seconds, whichever comes first

**Format.** The captures' format (``shared/data/binance/README.md``) with one documented addition. Each
file is text lines ``<receive time, ns since the epoch> <JSON>``:

- a websocket data frame exactly as received (Binance: a combined-stream message ``{"stream":...,"data":...}``;
  the stream venues: their own messages); its time is the feeder's receive stamp (one per socket read);
- a REST snapshot the feeder loaded: ``{"rest":"<path>?<query>","data":<the response body as received>}``
  (the addition: a capture's bare snapshot line cannot say whose book it is once several markets share a
  file). Its time is when the body had arrived.

A line feed inside a frame (JSON whitespace; Binance sends none) is written as a space, so that a line
is always one message. Websocket control answers the connection layer consumes (SUBSCRIBE results,
``serverShutdown``) are not recorded.

**Files.** The feeder writes plain lines to a spool file ``<group>-<UTC start>.spool``; at rotation (and
at close) a separate process at the lowest priority (``ldc/record_compress.py``) turns each closed spool
into ``<group>-<UTC start>.gz``, one gzip member holding the spool's bytes exactly, and removes the spool.
Names sort in time order. Replay reads both: a ``.gz``, or a ``.spool`` whose compression has not happened
(one with a ``.gz`` of the same name is left out). A feeder killed at any moment leaves its spool with every
line the writer thread wrote (all but the last ``POLL_S`` or so; a last line cut inside a ``write`` is
left out by the compressor); its next start compresses every spool no feeder holds (``flock``). A
compressor killed (``systemctl stop`` ends the unit's processes) leaves its spool for the next one.

**Costs and bounds.** One C call per socket read (``ldc/_spool.c``) copies the read's lines into a ring of
``QUEUE_MAX_BYTES`` under a mutex; a native thread (never the GIL) writes the ring to the spool in large
``writev``s every ``POLL_S``, or at once when 256 KB are pending, and whenever the ring is empty the lines
start again at its first byte: in the steady state they are written while still in cache (walking the
whole 64 MB cost a cache miss and a first-touch page fault on every line: 1.4x the CPU per diff), and the
rest of the ring absorbs a slow disk. When the ring is full the frames are dropped and counted: the books
never wait for the disk. A Python thread looks at the spool every ``SUPERVISE_S`` (rotation, failures,
finished compressors: a GIL hand-off each). The compressor (ISA-L's deflate, ~1.2-1.6 ms of CPU per MB of
spool, ~2 us per 1.3 KB frame) runs in its own process at idle priority and is not the feeder's CPU.
Measured with ``scripts/bench_feeder.py --record --repeats 7`` (load average 15-17): the feeder's CPU per
diff 1.06x with recording on, 1 and 10 markets (medians; pairs 0.73-1.17x); the README's table has the rest.

**Failures.** A directory that cannot be created or written, or a full disk, stops recording: one error
in the log, the ``errors`` counter, and every line not written and every later frame counted as dropped;
the feeder goes on. A compression that fails keeps its spool (replayable as is), is logged by the
compressor and counted in ``errors`` too, and recording goes on.

**A hot standby's recording** (``ldc feed --standby``, ``ldc/standby.py``). The group's recording is the
publishing feeder's: one feeder's lines in a file, files in time order, so a directory replays as one feed.
A standby's recorder is *held* (``Recorder(config, held=True)``): it opens no file and writes nothing; it
keeps the frames and snapshots of the last ``HOLD_S`` seconds (at most ``HOLD_MAX_BYTES``) in memory. At
takeover (``take_over``) it starts its first file, whose first lines are the standby's books that are in
sync, one REST snapshot line each (``book_snapshot_line``: ``{"rest":"<path>?symbol=S&limit=N","data":
{"lastUpdateId":U,"bids":...,"asks":...},"source":"takeover"}``, every level the book holds, prices and
quantities in their shortest exact decimal form), then the held frames, then what it receives. So the file
replays on its own through ``ldc sim --replay`` + ``ldc feed``, and after the dead writer's files the
directory replays continuously: the held frames cover the dead writer's last unwritten lines (its spool
lacks at most the last ``POLL_S``) and a diff already in a book is skipped by its update id. No frame is
lost between the two: a frame is handed to the recorder before its book applies it, so a frame the
snapshot does not hold is either held (written after the snapshot lines) or arrives after the switch. The
one bound: a frame whose socket read waited more than ``HOLD_S`` between its receipt and its book. A market
not in sync at the takeover gets no line (its book is not the exchange's): it is resyncing, and the REST
snapshot it loads is recorded as any is. A stream venue's standby (``ldc/stream_feeder.py``) holds and
switches the same way, with no snapshot lines (its file starts with the held frames, up to ``HOLD_S`` of
which the dead writer's file also holds): those recordings are for inspection (``ldc sim --replay`` reads
Binance recordings only).

**Reading.** ``read_recording(path)`` returns a file's lines and the first damage found (the line number
and the reason); nothing after that damage is returned. ``recording_files(path)`` lists a directory's
files in order (a file is itself).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import subprocess
import sys
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Final
from urllib.parse import urlencode

import orjson

from ldc._spool import Spool
from ldc.errors import ProtocolError
from ldc.record_compress import FILE_MODE, FILE_SUFFIX, GZIP_WBITS, SPOOL_SUFFIX, target_of
from ldc.venues.htx import decompress as htx_frame_json

log = logging.getLogger("ldc.record")

# Limits
QUEUE_MAX_BYTES: Final = 64 * 1024 * 1024  # the ring of lines not yet written (malloc'd: pages are used as it fills)
# Timers
POLL_S: Final = 0.1  # the writer thread writes what is pending this often (a killed feeder loses about this much)
SUPERVISE_S: Final = 0.5  # rotation, failures and compressors are looked at this often (a GIL hand-off each)
DROP_LOG_EVERY_S: Final = 10.0  # a warning at most this often while frames are dropped
HOLD_S: Final = 5.0  # a held (standby's) recorder keeps this much of the latest frames for its takeover file
HOLD_MAX_BYTES: Final = 32 * 1024 * 1024  # ... and at most this many bytes of them
# Defaults and bounds of the group keys
DEFAULT_ROTATE_MB: Final = 256.0  # of spool (received bytes); the .gz is ~4-5x smaller
DEFAULT_ROTATE_S: Final = 3600.0
MIN_ROTATE_MB: Final = 0.001  # 1 kB: small values exist for tests
MAX_ROTATE_MB: Final = 1024.0 * 1024.0
MIN_ROTATE_S: Final = 0.1
MAX_ROTATE_S: Final = 7 * 86400.0
NAME_ATTEMPTS: Final = 100  # file names are stamped to the microsecond: a taken one is tried again this often
NAME_RETRY_S: Final = 0.000_01
REST_PREFIX: Final = b'{"rest":'
GZIP_MAGIC: Final = b"\x1f\x8b"
DIRECTORY_MODE: Final = 0o750  # others can neither add files nor open (and flock) a spool to stall its compression
COMPRESSOR: Final = [sys.executable, "-m", "ldc.record_compress"]

__all__ = ["FILE_SUFFIX", "SPOOL_SUFFIX", "RecordConfig", "RecordStats", "Recorder", "Recording", "book_snapshot_line",
           "config_for", "read_recording", "recording_files"]  # fmt: skip


@dataclass(frozen=True)
class RecordConfig:
    """Where one group records and when its files rotate."""

    directory: str  # the group key ``record``; the group's files go in ``directory/<group>``
    group: str
    rotate_bytes: int  # of spool: the bytes received
    rotate_s: float

    @property
    def group_directory(self) -> Path:
        return Path(self.directory) / self.group


@dataclass(frozen=True)
class RecordStats:
    frames: int  # frames written to a spool
    snapshots: int  # REST snapshots written to a spool
    dropped: int  # frames and snapshots not recorded (ring full, or after a failure)
    errors: int  # the spool's write failure (recording stops at it) and compressions that failed
    files: int  # spool files opened
    spooled_bytes: int  # written to spool files
    failed: str  # why recording stopped, "" while it runs


@dataclass
class _SpoolFile:
    """The spool file the writer thread writes now: its descriptor holds an exclusive ``flock`` (no
    compressor touches it) until it is closed."""

    path: Path
    fd: int
    opened: float  # monotonic

    @classmethod
    def create(cls, config: RecordConfig) -> _SpoolFile:
        """A new file named by its UTC start to the microsecond; never an existing one (a name taken in the
        same microsecond is tried again with a later stamp, so that names keep sorting in time order)."""
        for _ in range(NAME_ATTEMPTS):
            now_ns = time.time_ns()
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now_ns // 1_000_000_000)) + f".{now_ns // 1000 % 1_000_000:06d}Z"
            path = config.group_directory / f"{config.group}-{stamp}{SPOOL_SUFFIX}"
            if os.path.exists(target_of(str(path))):
                time.sleep(NAME_RETRY_S)
                continue
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_APPEND, FILE_MODE)
            except FileExistsError:
                time.sleep(NAME_RETRY_S)
                continue
            fcntl.flock(fd, fcntl.LOCK_EX)  # a new file nobody else has: never waits
            return cls(path, fd, time.monotonic())
        raise FileExistsError(errno.EEXIST, f"no free file name in {config.group_directory} after {NAME_ATTEMPTS} attempts")

    def close(self) -> None:
        """Close the descriptor once (a number closed twice may meanwhile be another thread's file)."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


class Recorder:
    """One group's recording: ``frames`` and ``snapshot`` from any thread, never blocking; ``close`` at the end."""

    def __init__(self, config: RecordConfig, *, queue_max_bytes: int = QUEUE_MAX_BYTES, poll_s: float = POLL_S,
                 supervise_s: float = SUPERVISE_S, held: bool = False, hold_s: float = HOLD_S,
                 hold_max_bytes: int = HOLD_MAX_BYTES) -> None:  # fmt: skip
        self.config = config
        self._spool = Spool(queue_max_bytes, max(1, round(poll_s * 1000)))
        # a standby's recorder until its takeover: the latest frames and snapshots in memory, no file
        self._held: deque[tuple[int, list[bytes] | bytes]] | None = deque() if held else None
        self._held_bytes = 0
        self._hold_s, self._hold_max_bytes = hold_s, hold_max_bytes
        self._hold_lock = threading.Lock()  # the held lines and the switch to the spool (``take_over``)
        self._life_lock = threading.Lock()  # a takeover (the standby's thread) against close() (the feeder's)
        self._closed = False
        # the data frames of one socket read, received at ``recv_time_ns``: the C call itself (a Python frame
        # around it cost ~0.1 us a read); False when they were dropped (counted)
        self.frames: Callable[[list[bytes], int], bool] = self._hold_frames if held else self._spool.append
        self._supervise_s = supervise_s
        self._stop = threading.Event()
        self._lock = threading.Lock()  # the supervisor's state below, read by stats() from the feeder's tick
        self._file: _SpoolFile | None = None
        self._failed = ""
        self._compress_errors = self._files = 0
        self._compressors: list[subprocess.Popen[bytes]] = []
        self._thread = threading.Thread(target=self._run, name=f"ldc-record-{config.group}", daemon=True)

    # -- producers (any thread) -----------------------------------------------------------------

    def snapshot(self, path: str, params: Mapping[str, str | int], body: bytes, recv_time_ns: int) -> None:
        """A REST answer the feeder loaded, as ``GET path?params`` returned it (a line feed in the body, JSON
        whitespace, is written as a space)."""
        line = _snapshot_line(path, params, body, recv_time_ns)
        if self._held is None or not self._hold(recv_time_ns, line):
            self._spool.append_line(line)

    def stream_frame(self, raw: bytes, recv_time_ns: int) -> None:
        """One stream venue's message: ``stream_frames`` of one."""
        self.stream_frames([raw], recv_time_ns)

    def stream_frames(self, raws: list[bytes], recv_time_ns: int) -> None:
        """A stream venue's messages of one socket read (``ldc/stream_feeder.py``), one ``frames`` call: a JSON
        object as is; a gzip frame (HTX's every frame) as the JSON it holds, since lines are text; anything
        else (OKX's ``pong``) is not a recording line. A gzip frame that does not inflate is left out: its
        parser reports it."""
        lines = []
        for raw in raws:
            if raw[:1] == b"{":
                lines.append(raw)
            elif raw[:2] == GZIP_MAGIC:
                try:
                    lines.append(htx_frame_json(raw))
                except ProtocolError:
                    pass
        if lines:
            self.frames(lines, recv_time_ns)

    # -- a standby's recorder (held until its takeover) -----------------------------------------

    @property
    def held(self) -> bool:
        return self._held is not None

    def _hold_frames(self, frames: list[bytes], recv_time_ns: int) -> bool:
        """``frames`` while held: kept in memory; after ``take_over`` (a caller that read ``frames`` before the
        switch): to the spool, after the takeover's lines."""
        if self._held is not None and self._hold(recv_time_ns, frames):
            return True
        return self._spool.append(frames, recv_time_ns)

    def _hold(self, recv_time_ns: int, item: list[bytes] | bytes) -> bool:
        """Keep ``item`` (a read's frames, or a whole snapshot line) while held, the oldest beyond ``HOLD_S`` or
        ``HOLD_MAX_BYTES`` let go; False once the recorder took over (the caller writes it to the spool)."""
        size = len(item) if isinstance(item, bytes) else sum(len(f) for f in item)
        with self._hold_lock:
            held = self._held
            if held is None:
                return False
            held.append((recv_time_ns, item))
            self._held_bytes += size
            oldest_kept = recv_time_ns - int(self._hold_s * 1e9)
            while held and (held[0][0] < oldest_kept or self._held_bytes > self._hold_max_bytes) and len(held) > 1:
                _, gone = held.popleft()
                self._held_bytes -= len(gone) if isinstance(gone, bytes) else sum(len(f) for f in gone)
            return True

    def take_over(self, snapshot_lines: Sequence[bytes] = ()) -> None:
        """The standby became the group's writer: start recording (``start``) with ``snapshot_lines`` first
        (``book_snapshot_line``: its books in sync), then the held frames and snapshots, then everything it
        receives. Does nothing for a recorder that is not held, or closed (a feeder stopping as it took over)."""
        with self._life_lock:
            if self._held is None or self._closed:
                return
            self._open()  # a failure stops recording (logged): the lines below are then dropped and counted
            with self._hold_lock:
                held, self._held, self._held_bytes = self._held, None, 0
                for line in snapshot_lines:
                    self._spool.append_line(line)
                for recv_time_ns, item in held:
                    if isinstance(item, bytes):
                        self._spool.append_line(item)
                    else:
                        self._spool.append(item, recv_time_ns)
                self.frames = self._spool.append
        log.info("recording of group %s taken over: %d book snapshots, then %d held reads and snapshots",
                 self.config.group, len(snapshot_lines), len(held))  # fmt: skip

    def publish(self, set_counter: Callable[[str, int], None]) -> None:
        """The counts into the feeder-stats block (``FeederStats.set``), once per tick: they only go up."""
        counts = self.stats()
        set_counter("record_written", counts.frames + counts.snapshots)
        set_counter("record_dropped", counts.dropped)
        set_counter("record_errors", counts.errors)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Create the group's directory and the first spool, compress what earlier feeders left, start the
        supervisor; a failure stops recording (logged). A held recorder starts at its ``take_over``."""
        if self._held is None:
            self._open()

    def _open(self) -> None:
        try:
            self.config.group_directory.mkdir(parents=True, exist_ok=True, mode=DIRECTORY_MODE)
            if not os.access(self.config.group_directory, os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, f"directory {str(self.config.group_directory)!r} is not writable")
            self._file = _SpoolFile.create(self.config)
        except OSError as exc:
            self._fail(exc)
            return
        self._spool.switch(self._file.fd)
        with self._lock:
            self._files += 1
        left = [p for p in recording_files(str(self.config.group_directory)) if p.endswith(SPOOL_SUFFIX) and p != str(self._file.path)]
        if left:
            self._compress(left)  # spools of a killed feeder (one another feeder holds is locked: skipped)
        self._thread.start()
        log.info("recording group %s in %s", self.config.group, self.config.group_directory)

    def close(self) -> None:
        """Write what is pending, close the spool and hand it to a compressor (not waited for). A held
        recorder's frames are let go: they are the group writer's to record."""
        with self._life_lock:  # after a takeover under way: its file is finished here
            self._closed = True
            with self._hold_lock:
                if self._held is not None:
                    self._held.clear()
            if self._thread.is_alive():
                self._stop.set()
                self._thread.join()
            self._spool.close()
            self._check_writer()
            if self._file is not None:
                self._finish(self._file)
                self._file = None
        stats = self.stats()
        log.info("recording of group %s closed: %d frames and %d snapshots written in %d files, %d dropped, %d errors",
                 self.config.group, stats.frames, stats.snapshots, stats.files, stats.dropped, stats.errors)  # fmt: skip

    def stats(self) -> RecordStats:
        frames, snapshots, dropped, err, _file_bytes, total, _pending = self._spool.stats()
        with self._lock:
            failed = self._failed or (self._writer_failure(err) if err else "")
            errors = (1 if failed else 0) + self._compress_errors
            return RecordStats(frames, snapshots, dropped, errors, self._files, total, failed)

    def wait_compressed(self, timeout_s: float) -> bool:
        """Wait for the compressors started so far (tests, benchmarks); False if one still runs."""
        deadline = time.monotonic() + timeout_s
        for proc in list(self._compressors):
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                return False
        self._reap()
        return True

    # -- the supervisor thread ------------------------------------------------------------------

    def _run(self) -> None:
        dropped_logged, next_drop_log = 0, 0.0
        while not self._stop.wait(self._supervise_s):
            if self._check_writer():
                continue
            self._rotate_if_due()
            self._reap()
            dropped_logged, next_drop_log = self._log_drops(dropped_logged, next_drop_log)

    def _rotate_if_due(self) -> None:
        current = self._file
        if current is None:
            return
        file_bytes = self._spool.stats()[4]
        if file_bytes == 0 or (file_bytes < self.config.rotate_bytes and time.monotonic() - current.opened < self.config.rotate_s):
            return  # an empty file is never rotated: no empty .gz files on an idle feed
        try:
            following = _SpoolFile.create(self.config)
        except OSError as exc:
            self._fail(exc)
            return
        self._spool.switch(following.fd)  # returns once every line appended before is in ``current``
        self._file = following
        with self._lock:
            self._files += 1
        self._finish(current)

    def _finish(self, done: _SpoolFile) -> None:
        """Close a spool the writer no longer writes and compress it (an empty one is removed)."""
        done.close()
        try:
            if done.path.stat().st_size == 0:
                done.path.unlink()
                return
        except OSError:
            return  # gone already (an operator removed it): nothing to compress
        self._compress([str(done.path)])

    def _compress(self, paths: list[str]) -> None:
        """Start a compressor process (it lowers its own priority); its stderr is the feeder's log."""
        self._reap()
        try:
            proc = subprocess.Popen([*COMPRESSOR, *paths], stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            with self._lock:
                self._compress_errors += 1
            log.error("recording of group %s: the compressor did not start, %s stays a spool: %s", self.config.group, paths, exc)
            return
        self._compressors.append(proc)

    def _reap(self) -> None:
        """Collect finished compressors; a failed one is counted (it logged why and kept its spool)."""
        running = []
        for proc in self._compressors:
            status = proc.poll()
            if status is None:
                running.append(proc)
            elif status != 0:
                with self._lock:
                    self._compress_errors += 1
        self._compressors = running

    # -- failures -------------------------------------------------------------------------------

    def _check_writer(self) -> bool:
        """True once recording failed; the writer thread's write error is logged here the first time."""
        err = self._spool.stats()[3]
        with self._lock:
            if self._failed:
                return True
            if not err:
                return False
            self._failed = self._writer_failure(err)
        self._log_failure()
        return True

    def _writer_failure(self, err: int) -> str:
        where = self._file.path if self._file is not None else self.config.group_directory
        return f"{where}: {os.strerror(err)}"

    def _fail(self, exc: OSError) -> None:
        """Recording stops for good (the writer writes nothing more; pending and later lines count as dropped)."""
        where = exc.filename or self.config.group_directory
        with self._lock:
            self._failed = self._failed or f"{where}: {exc.strerror or exc}"
        self._spool.fail(exc.errno or errno.EIO)
        self._log_failure()

    def _log_failure(self) -> None:
        log.error("recording of group %s stopped, the feeder goes on without it: %s", self.config.group, self._failed)

    def _log_drops(self, logged: int, next_log: float) -> tuple[int, float]:
        dropped, now = self._spool.stats()[2], time.monotonic()
        if dropped > logged and now >= next_log:
            log.warning("recording of group %s: %d frames dropped so far (the writer falls behind)", self.config.group, dropped)
            return dropped, now + DROP_LOG_EVERY_S
        return logged, next_log


# -- reading ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recording:
    """The lines of one file up to its first damage: ``(receive ns, JSON bytes)``, and that damage."""

    path: str
    lines: list[tuple[int, bytes]]
    damage: str  # "" when the whole file is sound; else "<path>:<line>: <reason>"
    unfinished: bool  # the gzip member has no trailer (its writer was killed or still writes), no line cut


def recording_files(path: str) -> list[str]:
    """A directory's recording files in name (= time) order, or the path itself when it is a file: each
    ``.gz``, and each ``.spool`` not compressed yet (one whose ``.gz`` is there is that file's leftover)."""
    if not os.path.isdir(path):
        return [path]
    files = {p.name: p for p in Path(path).iterdir() if p.name.endswith((FILE_SUFFIX, SPOOL_SUFFIX)) and p.is_file()}
    return [str(p) for name, p in sorted(files.items())
            if not (name.endswith(SPOOL_SUFFIX) and Path(target_of(name)).name in files)]  # fmt: skip


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


def book_snapshot_line(path: str, symbol: str, limit: int, update_id: int, bids: Sequence[tuple[float, float]],
                       asks: Sequence[tuple[float, float]], recv_time_ns: int) -> bytes:  # fmt: skip
    """A snapshot line made from a book a feeder holds (a standby's at its takeover), in the form of a recorded
    REST snapshot ``GET path?symbol=S&limit=N`` plus ``"source":"takeover"``: every level, best first, each
    number the shortest decimal that reads back as the book's double (plain, never an exponent)."""
    body = orjson.dumps({"lastUpdateId": update_id, "bids": [[_plain(p), _plain(q)] for p, q in bids],
                         "asks": [[_plain(p), _plain(q)] for p, q in asks]})  # fmt: skip
    return _snapshot_line(path, {"symbol": symbol, "limit": limit}, body, recv_time_ns, source="takeover")


def _snapshot_line(path: str, params: Mapping[str, str | int], body: bytes, recv_time_ns: int, *, source: str = "") -> bytes:
    """The one form of a snapshot line: ``<recv_time_ns> {"rest":"<path>?<params>","data":<body>}``, with
    ``,"source":"<source>"`` when given; a line feed in the body (JSON whitespace) is written as a space."""
    request = orjson.dumps(path + ("?" + urlencode(params) if params else ""))
    tail = b',"source":' + orjson.dumps(source) if source else b""
    return b'%d {"rest":%s,"data":%s%s}\n' % (recv_time_ns, request, body.replace(b"\n", b" "), tail)


def _plain(value: float) -> str:
    text = repr(value)
    if "e" in text or "E" in text:
        text = format(Decimal(text), "f")
    return text


def config_for(directory: str | None, group: str, rotate_mb: float, rotate_s: float) -> RecordConfig | None:
    """The recording of a group whose key ``record`` is ``directory`` (None: it does not record)."""
    if not directory:
        return None
    return RecordConfig(directory=directory, group=group, rotate_bytes=max(1, int(rotate_mb * 1e6)), rotate_s=rotate_s)
